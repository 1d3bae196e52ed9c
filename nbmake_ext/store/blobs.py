"""Result files: written whole or not at all, and checked on every read.

A result file is named after its job and its checksum, so writing a new result never
touches the file the database still points to: the record is switched to the new file in
one commit, and only then is the old one removed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any, Callable


def checksum(data: bytes | memoryview) -> str:
    """40 hex digits of SHA-256: CPUs hash it in hardware (here ~2.5x blake2b's speed),
    and every result is hashed when written and again whenever it is read."""
    return hashlib.sha256(data).hexdigest()[:40]


def matches(data: bytes | memoryview, expected: str) -> bool:
    """``data`` is what ``expected`` (a checksum) was taken of."""
    if len(expected) == 32:  # taken by an earlier version: blake2b
        return hashlib.blake2b(data, digest_size=16).hexdigest() == expected
    return checksum(data) == expected


def file_name(job_id: str, sum_: str) -> str:
    return f"{hashlib.blake2b(job_id.encode(), digest_size=10).hexdigest()}-{sum_[:12]}.pkl"


def write_atomic(directory: Path, name: str, data: bytes | memoryview, *,
                 durable: bool = True) -> tuple[int, int]:
    """temp file -> fsync -> rename: a reader sees the whole file or none.
    Returns the file's stamp (size, mtime in ns), recorded to notice later edits."""
    final = directory / name
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if durable:
            os.fsync(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    return st.st_size, st.st_mtime_ns


class _HashingFile:
    """A file written through ``write`` (as a pickler does) that takes the checksum of what
    it is given in the same pass: a large result is never a second copy in memory."""

    def __init__(self, fd: int):
        self._fd = fd
        self.hash = hashlib.sha256()

    def write(self, data: Any) -> int:
        # A pickler hands large buffers over as they are (protocol 5: a PickleBuffer of an
        # array's own memory): their raw bytes, without a copy.
        view = data.raw() if isinstance(data, pickle.PickleBuffer) else memoryview(data)
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        size = view.nbytes
        self.hash.update(view)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        return size


def write_pickled(directory: Path, job_id: str,
                  dump: Callable[[_HashingFile], None]) -> tuple[str, str, tuple[int, int]]:
    """A result pickled straight into its file by ``dump(file)``, hashed as it is written
    (one pass over its bytes rather than three: pickle, checksum, write). Written whole or
    not at all, not flushed (as ``write_atomic(durable=False)``). Returns its name,
    checksum and stamp; a failing ``dump`` leaves no file."""
    tmp = directory / f".{file_name(job_id, 'streaming')}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        out = _HashingFile(fd)
        dump(out)
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    sum_ = out.hash.hexdigest()[:40]
    name = file_name(job_id, sum_)
    os.replace(tmp, directory / name)
    return name, sum_, (st.st_size, st.st_mtime_ns)


def _syncfs():
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _syncfs()


def make_durable(directory: Path, names: list[str]) -> None:
    """Flush freshly written files to disk: one ``syncfs`` of their filesystem (Linux)
    costs about what a single fsync does, however many files there are."""
    if _SYNCFS is not None and len(names) > 1:
        fd = os.open(directory, os.O_RDONLY)
        try:
            if _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    for name in names:
        try:
            fd = os.open(directory / name, os.O_RDONLY)
        except FileNotFoundError:
            continue  # already replaced: its successor is flushed with its own batch
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CorruptResult(Exception):
    pass


def read_checked(directory: Path, name: str, expected: str) -> bytearray:
    """The file's bytes; raises FileNotFoundError, or CorruptResult on a checksum mismatch.
    A bytearray: the arrays of a result loaded from it are views of it, not copies
    (``pickles.loads_value``)."""
    with open(directory / name, "rb", buffering=0) as file:
        data = bytearray(os.fstat(file.fileno()).st_size)
        with memoryview(data) as view:
            got = 0
            while got < len(data):
                n = file.readinto(view[got:])
                if not n:
                    break
                got += n
    if got < len(data):  # it shrank meanwhile: whatever is left cannot match
        raise CorruptResult(f"{name} was cut short while it was read")
    if not matches(data, expected):
        raise CorruptResult(f"checksum mismatch in {name}")
    return data


def stamps(directory: Path) -> dict[str, tuple[int, int]]:
    """Each result file's (size, mtime in ns), from one directory listing."""
    out = {}
    try:
        with os.scandir(directory) as it:
            for e in it:
                if not e.name.startswith("."):
                    st = e.stat()
                    out[e.name] = (st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        pass
    return out


def stamp(directory: Path, name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(directory / name)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def remove_quietly(directory: Path, name: str | None) -> None:
    if name:
        try:
            os.unlink(directory / name)
        except FileNotFoundError:
            pass
