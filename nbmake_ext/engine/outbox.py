"""What an engine says to the kernel, with the outcomes of short jobs sent together.

Thousands of trivial jobs a second would otherwise cost one signed message each, on both
sides (a send, a wake-up, a receive, a signature). Outcomes wait here while the engine runs
the next job of its queue only when that job is known to be short: its function took less
than ``SHORT`` the last time here. So a result waits at most about that long behind a short
job, and never behind a long or unknown one (the kernel is told before such a job starts).
Anything else the engine says (a child, an answer to the kernel) goes at once, after
whatever waits, so the kernel sees every message in the order the engine produced it.
"""

from __future__ import annotations

import json
import time
from typing import Callable

from ..shared.wire import Signer, pack

SHORT = 0.0005   # seconds: a job faster than this lets the outcomes before it wait
MAX_WAIT = 0.002  # seconds: the oldest waiting outcome goes before the next job after that
MAX_KEPT = 64     # outcomes per message


class Outbox:
    def __init__(self, signer: Signer, send_frames: Callable[[list], None]):
        self._signer = signer
        self._send_frames = send_frames
        self._waiting: list[bytes] = []  # packed sub-messages: header kind, then payloads
        self._since = 0.0
        self._seconds: dict[str, float] = {}  # function key -> its last duration here

    def send(self, kind: str, meta: dict | None, *payloads: bytes, outcome: bool = False) -> None:
        """``outcome``: a job's result, which may wait for the next ones."""
        meta_bytes = json.dumps(meta or {}).encode()
        if outcome:
            if not self._waiting:
                self._since = time.monotonic()
            self._waiting.append(pack(kind.encode(), (meta_bytes, *payloads)))
            if len(self._waiting) >= MAX_KEPT:
                self.flush()
            return
        self.flush()
        self._send_frames(self._signer.frames(kind, meta_bytes, *payloads))

    def flush(self) -> None:
        waiting = self._waiting
        if not waiting:
            return
        self._waiting = []
        self._send_frames(self._signer.frames("many", *waiting))

    def ran(self, func_key: str, seconds: float) -> None:
        self._seconds[func_key] = seconds

    def before_job(self, func_key: str) -> None:
        """The engine is about to run a job of this function: what waits goes first,
        unless the job is short and the oldest outcome has not waited long."""
        if not self._waiting:
            return
        last = self._seconds.get(func_key)
        if last is None or last >= SHORT or time.monotonic() - self._since >= MAX_WAIT:
            self.flush()
