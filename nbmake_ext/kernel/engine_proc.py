"""An engine process as the kernel sees it: its state in the pool, and what is left of it
when it dies (its log's tail, how it ended)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import deque
from dataclasses import dataclass, field

TAIL_BYTES = 8192  # of a dead engine's stderr, kept with the job it was running


@dataclass
class Engine:
    identity: bytes
    proc: subprocess.Popen
    log: str = ""          # its stderr: what it or a C library says when it dies
    log_from: int = 0      # where its log was when it said hello (before: its start)
    ready: bool = False
    queue: deque = field(default_factory=deque)   # job ids, in the order sent
    outbox: list = field(default_factory=list)    # RemoteJobs to send at the next poll
    functions: set = field(default_factory=set)
    undurable: dict = field(default_factory=dict)  # job id -> result file not yet on disk
    head_since: float = 0.0                        # when the job at the head started
    asked_back: str | None = None                  # a job we asked it to give back
    void: set = field(default_factory=set)         # dropped here: their outcome is ignored
    stale_durable: set = field(default_factory=set)  # a notice to ignore (a void result's)
    batching: bool = False                         # reading outcomes it sent together
    timeouts: dict = field(default_factory=dict)   # job id -> its job_timeout, in seconds
    timed_out: str | None = None                   # the job it was killed for: too long
    # The jobs it holds whose function was not known to be short when they came: job id
    # -> function key (pool.py, ``_limit``).
    unsure: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def load(self) -> int:
        """Jobs it has to run (dropped ones do not count)."""
        return len(self.queue) + len(self.outbox) - len(self.void)


def log_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def log_tail(path: str, start: int, limit: int = TAIL_BYTES) -> str:
    """The end of an engine's log from ``start``: at most ``limit`` bytes, whole lines."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            at = max(start, size - limit)
            f.seek(at)
            data = f.read(limit)
    except OSError:
        return ""
    if at > start:  # cut: from the first whole line
        data = data[data.find(b"\n") + 1:]
    return data.decode("utf-8", "replace")


def how_ended(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
