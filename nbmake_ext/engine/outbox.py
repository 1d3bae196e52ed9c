"""What an engine says to the kernel, with the outcomes of short jobs sent together.

Thousands of trivial jobs a second would otherwise cost one signed message each, on both
sides (a send, a wake-up, a receive, a signature). Outcomes wait here while the engine runs
the next job of its queue only when that job is known to be short (its function took less
than ``SHORT`` the last time here) and more are queued behind it. So a result waits at
most about that long behind a short job, and never behind a long or unknown one (the
kernel is told before such a job starts).
Anything else the engine says (a child, an answer to the kernel) goes at once, after
whatever waits, so the kernel sees every message in the order the engine produced it.

When few jobs are left queued, what waits goes before the next job, so the kernel can
send more before this engine runs dry (a chain's next link waits on each outcome). But
once a deep queue ebbs, only once: the outcomes of its last few jobs then wait for the
queue to empty (the engine says all it has when it is idle), or for more jobs to come.
Else a fan-out's engine would send each of its last jobs' outcomes alone, every time the
kernel refills it.
"""

from __future__ import annotations

import json
import pickle
import time
from typing import Callable

from ..shared.wire import Signer

SHORT = 0.0005   # seconds: a job faster than this lets the outcomes before it wait
MAX_WAIT = 0.002  # seconds: the oldest waiting outcome goes before the next job after that
MAX_KEPT = 64     # outcomes per message
BUSY = 4          # queued jobs from which outcomes may wait (fewer: the kernel waits on them)


class Outbox:
    def __init__(self, signer: Signer, send_frames: Callable[[list], None]):
        self._signer = signer
        self._send_frames = send_frames
        self._waiting: list[tuple[str, dict, tuple]] = []  # kind, meta, payloads
        self._since = 0.0
        self._seconds: dict[str, float] = {}  # function key -> its last duration here
        self._deep = False    # outcomes waited behind a queue of BUSY jobs or more
        self._ebbing = False  # ...which then ran low: told once, no jobs came since

    def send(self, kind: str, meta: dict | None, *payloads: bytes, outcome: bool = False) -> None:
        """``outcome``: a job's result, which may wait for the next ones."""
        if outcome:
            if not self._waiting:
                self._since = time.monotonic()
            self._waiting.append((kind, meta, payloads))
            if len(self._waiting) >= MAX_KEPT:
                self.flush()
            return
        self.flush()
        self._send_frames(self._signer.frames(kind, json.dumps(meta or {}).encode(), *payloads))

    def flush(self) -> None:
        """What waits, in one message: ``many INDEX *PAYLOADS``, INDEX a pickled list of
        [kind, meta, number of payloads], the payloads of each in turn. (A pickle, not
        json: several times cheaper to make and read, per outcome; the kernel reads it
        only once the message's signature holds, as it does every pickle an engine sends.)"""
        waiting = self._waiting
        if not waiting:
            return
        self._waiting = []
        if len(waiting) == 1:  # alone: as any other message
            kind, meta, payloads = waiting[0]
            self._send_frames(self._signer.frames(kind, json.dumps(meta).encode(), *payloads))
            return
        index = pickle.dumps([[kind, meta, len(payloads)] for kind, meta, payloads in waiting],
                             protocol=pickle.HIGHEST_PROTOCOL)
        frames = [payload for _, _, payloads in waiting for payload in payloads]
        self._send_frames(self._signer.frames("many", index, *frames))

    def ran(self, func_key: str, seconds: float) -> None:
        self._seconds[func_key] = seconds

    def before_job(self, func_key: str, queued: int) -> None:
        """The engine is about to run a job of this function, with ``queued`` more behind
        it: what waits goes first, unless the job is short, the oldest outcome has not
        waited long, and the engine has work enough that the kernel is not waiting for
        these outcomes to send more (a chain's next link waits on each one)."""
        if not self._waiting:
            return
        last = self._seconds.get(func_key)
        if last is None or last >= SHORT or time.monotonic() - self._since >= MAX_WAIT:
            self.flush()
        elif queued >= BUSY:
            self._deep = True
        elif self._deep:  # the queue ebbs: the kernel is told now, of the rest when idle
            self._deep, self._ebbing = False, True
            self.flush()
        elif not self._ebbing:  # a queue that is never deep (a chain): told every time
            self.flush()

    def jobs_came(self) -> None:
        """The kernel sent more jobs: the end of an ebb."""
        self._ebbing = False
