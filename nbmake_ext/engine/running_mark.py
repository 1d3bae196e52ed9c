"""Which job an engine runs now, kept where the kernel reads it if the engine dies.

A message sent just before a crash may never leave; the file always survives. The file
is mapped into memory and shared: marking a job is a store into the page cache, with no
system call per job, and what was stored is the file's content even if this process is
killed the next instant. The id is written before its length, so a mark is never read
with a length that its bytes do not have yet.
"""

from __future__ import annotations

import mmap
import os

from ..shared.wire import encode_running

PAGE = 4096


class RunningMark:
    def __init__(self, path: str):
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._size = 0
        self._map: mmap.mmap | None = None
        self._grow(PAGE)

    def _grow(self, size: int) -> None:
        size = -(-size // PAGE) * PAGE
        os.ftruncate(self._fd, size)
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self._fd, size)
        self._size = size

    def set(self, job_id: str) -> None:
        if not job_id:  # none: a length of zero is enough
            self._map[0:4] = _NONE
            return
        data = encode_running(job_id)
        if len(data) > self._size:
            self._grow(len(data))
        self._map[4:len(data)] = data[4:]
        self._map[0:4] = data[:4]


_NONE = encode_running("")
