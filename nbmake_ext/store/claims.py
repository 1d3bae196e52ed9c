"""Claims: two processes on one store never run the same job at once.

A claim is a byte-range lock on one of the files ``<store>/claims/NN``, one byte per job
(the file and the offset hashed from its id). The operating system does the bookkeeping:
taking or testing a claim is one system call, and a process that dies, however it dies,
loses its claims at once, so there are no stale claims to clean up. (The kernel keeps a
file's locks in a list that every lock call walks; spread over several files, the hundreds
of claims a make holds until its results commit keep each call short.)

On Linux the locks are open-file-description locks (``F_OFD_SETLK``): they belong to the
open file, not the process, so two stores opened in one process exclude each other too.
Elsewhere, classic POSIX locks are used, which only exclude other processes.

A run with the store to itself claims in memory. Two system calls a job (a lock, and an
unlock once its result is committed) were a tenth of a fan-out of trivial jobs on
engines. The gate, a byte of ``claims.lock``, makes that safe:

- a store claims with a lock per job only while it holds a shared lock on the gate;
- a run that finds no other store open takes the gate exclusively (``run_alone``). No
  other store can then claim at all, so its claims need no locks;
- a store that opens meanwhile is seen within ``WATCH_EVERY`` by a thread of the run: the
  claims held in memory are then locked one by one, and the gate is shared again;
- until then, the newcomer waits for the gate before it claims, or says which jobs run
  (``settled``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import struct
import sys
import threading
import time
from pathlib import Path

_OFD = hasattr(fcntl, "F_OFD_SETLK")
_SET = fcntl.F_OFD_SETLK if _OFD else fcntl.F_SETLK
_GET = fcntl.F_OFD_GETLK if _OFD else fcntl.F_GETLK
# struct flock {short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid;}
_FLOCK = "@hhqqi4x"
_SPAN = 1 << 40  # offsets are hashed into a sparse 1 TiB range: collisions are negligible
_SHARDS = 32     # claim files
_PRESENCE = 0    # in claims.lock: each open store holds a shared lock on this byte
_GATE = 1        # ... shared while a store claims with locks; exclusive: claims in memory
WATCH_EVERY = 0.02  # seconds between looks for another store, while claiming in memory
SETTLE_WITHIN = 2.0  # seconds a store waits for another one to lock its claims in memory
_IN_MEMORY = (-1, -1)  # the place of a claim held in memory only


def _libc():
    """``fcntl`` and ``lseek`` called with the interpreter lock held. These calls never
    wait (SETLK, GETLK), and the ``fcntl`` module's version releases the lock: with the
    store's writer thread busy, each of a batch of claims then waited for that thread to
    hand it back."""
    if sys.platform != "linux":
        return None, None
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        lock, seek = libc.fcntl, libc.lseek
    except (OSError, AttributeError):
        return None, None
    # (No argtypes: ints and bytes convert as they are, a third cheaper than declared
    # conversions. fcntl is variadic: a pointer as its third argument is what it reads.)
    lock.restype = ctypes.c_int
    seek.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_int)
    seek.restype = ctypes.c_longlong
    return lock, seek


_FCNTL, _LSEEK = _libc()


def _fcntl(fd: int, cmd: int, arg: bytes) -> bytes:
    """fcntl.fcntl(fd, cmd, arg) for a struct flock."""
    if _FCNTL is None:
        return fcntl.fcntl(fd, cmd, arg)
    # Setting a lock only reads the struct: the bytes object itself is passed.
    buf = ctypes.create_string_buffer(arg, len(arg)) if cmd == _GET else arg
    if _FCNTL(fd, cmd, buf) == -1:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return buf.raw if cmd == _GET else arg


def _settle(done) -> bool:
    """Look again and again (briefly) until ``done()``; False if it is not by
    ``SETTLE_WITHIN``."""
    deadline = time.monotonic() + SETTLE_WITHIN
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def _place(job_id: str) -> tuple[int, int]:
    """The claim file and the byte in it of a job."""
    h = int.from_bytes(hashlib.blake2b(job_id.encode(), digest_size=8).digest(), "big")
    return h % _SHARDS, h // _SHARDS % _SPAN


class Claims:
    """Also tells whether another store may have written since a moment: every store
    that opens leaves a byte at the end of the file, and holds a shared lock on the
    presence byte while open (see ``activity``)."""

    def __init__(self, store_dir: Path):
        path = store_dir / "claims.lock"
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._shard_dir = store_dir / "claims"
        self._shards: list[int | None] = [None] * _SHARDS  # fds
        # job -> its claim file's fd and offset (_IN_MEMORY: not locked, see run_alone)
        self.held: dict[str, tuple[int, int]] = {}
        appender = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(appender, b"\n")
        finally:
            os.close(appender)
        self._lock(self._fd, _PRESENCE, fcntl.F_RDLCK)
        # All opened now, with the store: a new store's first make would otherwise create
        # them one by one as it claims, some milliseconds spent while its jobs wait.
        for shard in range(_SHARDS):
            self._fd_of(shard)
        self._gate: int | None = None  # what this store holds of the gate: RD, WR or nothing
        self._in_memory = False        # claims are kept in memory only (the gate is ours)
        # Claims taken and released (the store's writer thread releases them), and the
        # switch back to locks (the watcher's thread), one at a time.
        self._mutex = threading.Lock()
        # The watcher's thread starts with the first run alone and waits between runs:
        # a thread started per run cost its start (and, on busy cores, up to a millisecond
        # or two of waiting for it to run) at the head of every make.
        self._watcher: threading.Thread | None = None
        self._watch_cond = threading.Condition(threading.Lock())
        self._watching = False  # a run alone is on: look for other stores
        self._closing = False

    def activity(self) -> tuple[int, bool]:
        """A mark of now: how many stores have opened this one, and whether another is open."""
        size = _LSEEK(self._fd, 0, os.SEEK_END) if _LSEEK is not None \
            else os.lseek(self._fd, 0, os.SEEK_END)
        return size, self._held_elsewhere(self._fd, _PRESENCE) or not _OFD

    def quiet_since(self, mark: tuple[int, bool]) -> bool:
        """No other store was open at any time since ``mark`` was taken, so nothing but
        this one can have written to the store since. (Classic locks cannot tell two
        stores of one process apart: never quiet without open-file-description locks.)"""
        return not mark[1] and self.activity() == (mark[0], False)

    def alone(self) -> bool:
        """No other store (in any process) is open on this one now, so no other holds a
        claim. (Never alone without open-file-description locks: see ``quiet_since``.)"""
        return _OFD and not self._held_elsewhere(self._fd, _PRESENCE)

    def _fd_of(self, shard: int) -> int:
        fd = self._shards[shard]
        if fd is None:
            self._shard_dir.mkdir(mode=0o700, exist_ok=True)
            fd = self._shards[shard] = os.open(
                self._shard_dir / f"{shard:02d}", os.O_RDWR | os.O_CREAT, 0o600)
        return fd

    def _lock(self, fd: int, offset: int, kind: int) -> bool:
        arg = struct.pack(_FLOCK, kind, os.SEEK_SET, offset, 1, 0)
        try:
            _fcntl(fd, _SET, arg)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):  # held by someone else
                return False
            raise
        return True

    def claim(self, job_id: str) -> bool:
        """True if this store now holds the job (or already did)."""
        if job_id in self.held:
            return True
        with self._mutex:
            if self._in_memory:
                self.held[job_id] = _IN_MEMORY
                return True
        if self._gate is None and not self._share_gate():
            return False  # another store claims in memory: not one job can be claimed now
        shard, offset = _place(job_id)
        fd = self._fd_of(shard)
        if self._lock(fd, offset, fcntl.F_WRLCK):
            self.held[job_id] = (fd, offset)
            return True
        return False

    def release(self, job_id: str) -> None:
        with self._mutex:
            place = self.held.pop(job_id, None)
        if place is not None and place is not _IN_MEMORY:
            self._lock(place[0], place[1], fcntl.F_UNLCK)

    def held_elsewhere(self, job_id: str) -> bool:
        """Someone else (another process or store) holds the job's claim."""
        if job_id in self.held:
            return False
        shard, offset = _place(job_id)
        return self._held_elsewhere(self._fd_of(shard), offset)

    # -- a run alone on the store: claims in memory ---------------------------------------

    def run_alone(self) -> bool:
        """At a run's start: claim in memory from now on if no other store is open (and
        none holds a claim). ``run_over`` ends it."""
        if not _OFD or self._in_memory:
            return self._in_memory
        if not self._lock(self._fd, _GATE, fcntl.F_WRLCK):
            return False  # another store claims: with locks, as it does
        if self._held_elsewhere(self._fd, _PRESENCE):  # open, not claiming (yet)
            self._lock(self._fd, _GATE, fcntl.F_RDLCK if self._gate else fcntl.F_UNLCK)
            return False
        self._gate = fcntl.F_WRLCK
        with self._mutex:
            self._in_memory = True
        with self._watch_cond:
            self._watching = True
            self._watch_cond.notify()
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="nbmake-claims",
                                             daemon=True)
            self._watcher.start()
        return True

    def run_over(self) -> None:
        """The run ended: claims left (none, after a whole run) are locked, and the gate
        is let go unless a claim still needs it."""
        self._stop_watcher()
        self._to_locks()
        with self._mutex:
            if self._gate is not None and not self.held:
                self._lock(self._fd, _GATE, fcntl.F_UNLCK)
                self._gate = None

    def _stop_watcher(self) -> None:
        """The run ended. (A look already under way finds the claims locked, or turns
        those of the next run to locks: what another store's arrival would do.)"""
        with self._watch_cond:
            self._watching = False

    def _watch(self) -> None:
        """While a run is alone: another store opened, claims go back to locks (it waits
        for them)."""
        cond = self._watch_cond
        while True:
            with cond:
                while not self._watching and not self._closing:
                    cond.wait()
                if self._closing:
                    return
                cond.wait(WATCH_EVERY)
                if not self._watching or self._closing:
                    continue
            # (Once the claims are locks, later looks of the run find nothing to do: the
            # watcher does not stop itself, or a run alone that started meanwhile would
            # go unwatched.)
            if self._held_elsewhere(self._fd, _PRESENCE):
                self._to_locks()

    def _to_locks(self) -> None:
        with self._mutex:
            if not self._in_memory:
                return
            for job_id, place in list(self.held.items()):
                if place is _IN_MEMORY:
                    shard, offset = _place(job_id)
                    fd = self._fd_of(shard)
                    # No other store could claim while the gate was this one's alone.
                    self._lock(fd, offset, fcntl.F_WRLCK)
                    self.held[job_id] = (fd, offset)
            self._lock(self._fd, _GATE, fcntl.F_RDLCK)  # (from exclusive, at once)
            self._gate = fcntl.F_RDLCK
            self._in_memory = False

    def _share_gate(self) -> bool:
        """Take the gate shared before claiming with locks; another store that claims in
        memory switches back to locks within ``WATCH_EVERY`` of seeing this one open.
        False if it did not in ``SETTLE_WITHIN`` (its process stopped?): the jobs then
        count as held elsewhere."""
        if not _settle(lambda: self._lock(self._fd, _GATE, fcntl.F_RDLCK)):
            return False
        self._gate = fcntl.F_RDLCK
        return True

    def settled(self) -> bool:
        """Whether the claims of other stores can be seen (``held_elsewhere``): after a wait,
        if another store claims in memory, for it to lock them. False if it did not in
        ``SETTLE_WITHIN``: any job may be held by it."""
        return _settle(lambda: not self._gate_taken_elsewhere())

    def _gate_taken_elsewhere(self) -> bool:
        """Another store holds the gate exclusively: it claims in memory."""
        if self._gate == fcntl.F_WRLCK or not _OFD:
            return False
        arg = struct.pack(_FLOCK, fcntl.F_RDLCK, os.SEEK_SET, _GATE, 1, 0)
        return struct.unpack(_FLOCK, _fcntl(self._fd, _GET, arg))[0] != fcntl.F_UNLCK

    def _held_elsewhere(self, fd: int, offset: int) -> bool:
        arg = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
        result = _fcntl(fd, _GET, arg)
        return struct.unpack(_FLOCK, result)[0] != fcntl.F_UNLCK

    def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        with self._watch_cond:
            self._watching = False
            self._closing = True
            self._watch_cond.notify()
        if watcher is not None:
            watcher.join()
        for fd in self._shards:  # closing releases every claim of this store
            if fd is not None:
                os.close(fd)
        self._shards = [None] * _SHARDS
        os.close(self._fd)
        self.held.clear()
