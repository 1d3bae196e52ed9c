"""Where a result's bytes live. A small result is a row of the database: no file to create,
list, stat or flush, and it is committed in the same transaction as its record. A large one
is a file of its own (see blobs.py). A result's location is ``(name, checksum)``, where the
name ``INLINE`` means the row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from . import blobs

INLINE = ":db"
INLINE_MAX = 32 << 10  # pickled bytes; above this a file reads and writes faster


def is_inline(name: str | None) -> bool:
    return name == INLINE


class ResultReader:
    """Reads a store's results by location, in any process on the machine (engines read
    what the kernel stored). Raises FileNotFoundError or blobs.CorruptResult."""

    def __init__(self, store_path: str | Path):
        self.path = Path(store_path)
        self.results_dir = self.path / "results"
        self._conn: sqlite3.Connection | None = None

    def read(self, job_id: str, name: str, checksum: str) -> bytes:
        if not is_inline(name):
            return blobs.read_checked(self.results_dir, name, checksum)
        if self._conn is None:
            self._conn = sqlite3.connect(str(self.path / "nbmake.db"), timeout=30.0,
                                         check_same_thread=False)
        return checked_row(self._conn, job_id, checksum)

    def read_rows(self, wanted: dict[str, str]) -> dict[str, bytes]:
        """The small results among ``wanted`` ({job id: checksum}) in a few queries, not
        one each: only those found whole (``read`` says what is wrong with the others)."""
        if self._conn is None:
            self._conn = sqlite3.connect(str(self.path / "nbmake.db"), timeout=30.0,
                                         check_same_thread=False)
        found = {}
        ids = list(wanted)
        for at in range(0, len(ids), 500):
            chunk = ids[at:at + 500]
            marks = ",".join("?" * len(chunk))
            for job_id, data in self._conn.execute(
                    f"SELECT job_id, data FROM results WHERE job_id IN ({marks})", chunk):
                if data is not None and blobs.matches(data, wanted[job_id]):
                    found[job_id] = data
        return found

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def checked_row(conn: sqlite3.Connection, job_id: str, checksum: str) -> bytes:
    row = conn.execute("SELECT data FROM results WHERE job_id=?", (job_id,)).fetchone()
    if row is None:
        raise FileNotFoundError(f"no stored result of {job_id!r}")
    if not blobs.matches(row[0], checksum):
        raise blobs.CorruptResult(f"checksum mismatch in the stored result of {job_id!r}")
    return row[0]
