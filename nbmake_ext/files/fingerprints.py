"""Content fingerprints of files and directory trees, with a cache by (size, mtime,
inode), so that a file that did not change costs one ``stat``.

A file's fingerprint is the sha256 of its bytes (what ``sha256sum`` prints: with SHA
instructions in the CPU it is the fastest hash ``hashlib`` has); a directory's is the
sha256 of the sorted list of what its tree holds (relative path, kind, and each file's
fingerprint or each link's target).

The cache maps a path to ``(size, mtime_ns, inode, hashed_ns, fingerprint)``. An entry is
trusted only if the file was last modified at least ``RACY_NS`` before it was hashed: a
file written again within the same tick of the file system's clock (a second on some) with
the same size would otherwise look unchanged. Such a file is hashed again at each look
until it is old enough (git's "racily clean" entries, the same way).
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_mod
import time
from typing import Callable, Iterable, Mapping

RACY_NS = 1_000_000_000
CHUNK = 1 << 20

#: What travels from the process that ran a job: path -> [fingerprint, size, mtime_ns,
#: inode, hashed_ns] of a file, or [fingerprint] of a directory.
Stamps = dict[str, list]


def hash_file(path: str) -> str:
    """sha256 of the file's bytes (OSError if it cannot be read)."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


class FileCache:
    """Fingerprints by path, taken again only when a file's (size, mtime, inode) changed.

    ``entries`` is what is known (from the store, and what this process hashed); ``fresh``
    the entries this process made since they were last taken (``take_fresh``), for the
    store to keep."""

    def __init__(self, entries: Mapping[str, tuple] | None = None):
        self.entries: dict[str, tuple] = dict(entries or {})
        self.fresh: dict[str, tuple] = {}
        self.hashed = 0  # files read whole (for tests and benchmarks)

    def fingerprint(self, path: str) -> str | None:
        """The fingerprint of a file or a directory's tree; None if nothing is there."""
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat_mod.S_ISDIR(st.st_mode):
            return self._tree(path.rstrip("/") or "/", {})
        return self._file(path, st)

    def _file(self, path: str, st: os.stat_result, into: Stamps | None = None) -> str:
        hit = self.entries.get(path)
        if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns \
                and hit[2] == st.st_ino and hit[3] - hit[1] >= RACY_NS:
            fp = hit[4]
        else:
            hashed_ns = time.time_ns()
            fp = hash_file(path)
            self.hashed += 1
            entry = (st.st_size, st.st_mtime_ns, st.st_ino, hashed_ns, fp)
            self.entries[path] = self.fresh[path] = entry
        if into is not None:
            entry = self.entries[path]
            into[path] = [entry[4], *entry[:4]]
        return fp

    def _tree(self, root: str, into: Stamps) -> str:
        lines = []
        stack = [""]
        while stack:
            rel = stack.pop()
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                found = sorted(it, key=lambda e: e.name)
            for entry in found:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_symlink():
                    lines.append(f"l\0{name}\0{os.readlink(entry.path)}")
                elif entry.is_dir():
                    lines.append(f"d\0{name}")
                    stack.append(name)
                else:
                    fp = self._file(entry.path, entry.stat(), into)
                    lines.append(f"f\0{name}\0{fp}")
        lines.sort()
        return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()

    def stamps(self, paths: Iterable[str]) -> Stamps:
        """The fingerprints of ``paths`` (outputs just written), hashed now, with what
        the cache needs of each file (those inside a directory too). A missing path is
        left out."""
        out: Stamps = {}
        for path in paths:
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat_mod.S_ISDIR(st.st_mode):
                out[path] = [self._tree(path.rstrip("/") or "/", out)]
            else:
                self.entries.pop(path, None)  # just written: always read
                self._file(path, st, out)
        return out

    def learn(self, stamps: Stamps) -> None:
        """Entries another process made (the outputs it wrote and hashed)."""
        for path, stamp in stamps.items():
            if len(stamp) == 5:
                fp, size, mtime_ns, ino, hashed_ns = stamp
                self.entries[path] = self.fresh[path] = (size, mtime_ns, ino, hashed_ns, fp)

    def take_fresh(self) -> list[tuple]:
        """Rows (path, size, mtime_ns, inode, hashed_ns, fingerprint) made since last asked."""
        rows = [(path, *entry) for path, entry in self.fresh.items()]
        self.fresh.clear()
        return rows


class FileState:
    """The files as one command sees them: each path looked at once (the first time it is
    asked for), what jobs of the command wrote or removed taken as it happens. ``moment``
    starts another look (the next command)."""

    def __init__(self, load: Callable[[], Mapping[str, tuple]] | None = None):
        self._load = load
        self._cache: FileCache | None = None
        self.memo: dict[str, str | None] = {}

    @property
    def cache(self) -> FileCache:
        if self._cache is None:
            self._cache = FileCache(self._load() if self._load is not None else None)
        return self._cache

    def __call__(self, path: str) -> str | None:
        memo = self.memo
        if path in memo:
            return memo[path]
        fp = memo[path] = self.cache.fingerprint(path)
        return fp

    def moment(self) -> None:
        self.memo.clear()

    def written(self, stamps: Stamps) -> None:
        """A job wrote these outputs (stamps as its process took them)."""
        if stamps:
            self.cache.learn(stamps)
            for path, stamp in stamps.items():
                self.memo[path] = stamp[0]

    def removed(self, paths: Iterable[str]) -> None:
        for path in paths:
            self.memo[path] = None

    def take_fresh(self) -> list[tuple]:
        return self._cache.take_fresh() if self._cache is not None else []
