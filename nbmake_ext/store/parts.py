"""Json columns read on demand: which code or argument a job was made of, fetched only when
``why`` asks, so reading many jobs does not decode them all."""

from __future__ import annotations

import json
import sqlite3
from typing import Any


_CODE_PARTS = "SELECT parts FROM code WHERE code_fp=?"
_ARG_FPS = "SELECT r_arg_fps FROM outcomes WHERE job_id=?"


class _Parts:
    """Json only `why` reads (which code or argument changed), fetched on demand by
    ``query`` of ``key``, so reading 100,000 jobs does not decode 100,000 of them."""

    __slots__ = ("_store", "_query", "_key")

    def __init__(self, store: Any, query: str, key: str | None):
        self._store, self._query, self._key = store, query, key

    def __call__(self) -> dict[str, str]:
        text = self.text(self._store._conn)
        return json.loads(text) if text else {}

    def text(self, conn: sqlite3.Connection) -> str | None:
        """The column as stored. The writer passes its own connection: a connection is
        busy for as long as it waits for the write lock, so reading through the main one
        while the main thread waits on the writer would deadlock."""
        if self._key is None:
            return None
        row = conn.execute(self._query, (self._key,)).fetchone()
        return row[0] if row else None
