"""Reading a job's input files ahead, on two threads of the engine.

A job that takes many large results (a reduce step) would otherwise read each file and
check its checksum, then unpickle it, one after the other on one thread. Reading and
hashing let other threads run, so the next files are read and checked while this one is
unpickled. At most ``DEPTH`` files are read ahead of the one being loaded: a job of fifty
10 MB inputs never holds more than a few of their pickles at once.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

DEPTH = 2


class ReadAhead:
    def __init__(self, read: Callable[[str, str, str], bytes]):
        self._read = read  # (job id, file name, checksum) -> the file's checked bytes
        self._pool: ThreadPoolExecutor | None = None
        self._waiting: list[tuple[str, str, str]] = []  # not started, the next one last
        self._reading: dict[str, Future] = {}
        self._taken: set[str] = set()  # loaded meanwhile without waiting for this

    def start(self, files: list[tuple[str, str, str]]) -> None:
        """A job's input files (job id, file name, checksum), in the order it loads them."""
        self.clear()
        if len(files) < 2:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(DEPTH, thread_name_prefix="nbmake-read")
        self._waiting = files[::-1]
        self._fill()

    def take(self, job_id: str) -> bytes | None:
        """The bytes of ``job_id``'s file if it is being read ahead (raising what reading
        it raised), else None: the caller reads it."""
        future = self._reading.pop(job_id, None)
        if future is None:
            if self._waiting:
                self._taken.add(job_id)
            return None
        try:
            return future.result()
        finally:
            self._fill()

    def clear(self) -> None:
        """The job is over: what is still being read is dropped when read."""
        for future in self._reading.values():
            future.cancel()
        self._reading.clear()
        self._waiting.clear()
        self._taken.clear()

    def _fill(self) -> None:
        while self._waiting and len(self._reading) < DEPTH:
            job_id, name, checksum = self._waiting.pop()
            if job_id not in self._taken:
                self._reading[job_id] = self._pool.submit(self._read, job_id, name, checksum)
