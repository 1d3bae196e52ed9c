"""The record of a clean make: proof, for the next make of the same jobs, that nothing it
would look at has changed since, so that it need not read and judge every job again.

A make whose jobs all ended up to date (done or skipped, none failed) records, in the
store's ``meta`` table, the digest of the definitions it made (core/unchanged.py), its
targets, how many jobs it covered, the store's count of writes (db.py: triggers count
every change to a job's definition or outcome, by any process) and a digest
of the result files' names, sizes and times. A later make of the same targets whose
definitions have that digest finds the same count and the same files: every job is as
that make left it, up to date.

The record is written only when no other store was open on this one since the make read
the store (``Claims.quiet_since``): what another process wrote meanwhile may not be what
this make judged.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from hashlib import blake2b
from pathlib import Path
from typing import Callable

from . import blobs, db
from .db import write_count

logger = logging.getLogger(__name__)

RECORD_KEY = "clean_make"


def files_digest(results_dir: Path) -> str:
    """The result files as they are: names, sizes and modification times."""
    listing = sorted(blobs.stamps(results_dir).items())
    return blake2b(json.dumps(listing).encode(), digest_size=16).hexdigest()


def record(conn: sqlite3.Connection, definitions: str, targets: str, jobs: int, writes: int,
           files: str) -> None:
    """Record a clean make: the store as it left it (``writes``, ``files``), to be
    written only while the count of writes is still that (the caller checks it in the
    same write transaction)."""
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (RECORD_KEY, json.dumps({
        "definitions": definitions, "targets": targets, "jobs": jobs, "writes": writes,
        "files": files})))


def jobs_unchanged(conn: sqlite3.Connection, results_dir: Path,
                   definitions: Callable[[], str | None], targets: str) -> int | None:
    """How many jobs the last clean make covered, if it made these very definitions (their
    digest: ``definitions()``, taken only once the rest matches) and targets and nothing
    changed since; else None."""
    rows = dict(conn.execute(
        "SELECT key, value FROM meta WHERE key IN ('writes', ?)", (RECORD_KEY,)))
    try:
        clean = json.loads(rows[RECORD_KEY])
        if clean["targets"] != targets or clean["writes"] != int(rows["writes"]):
            return None
        made = clean["definitions"]
    except (KeyError, TypeError, ValueError):
        return None
    if made is None or made != definitions():
        return None
    if clean["files"] != files_digest(results_dir):
        return None
    return int(clean["jobs"])


class CleanMakeRecord:
    """The record's methods of ``Store`` (it uses the store's connection, claims and
    writer)."""

    def record_clean_make(self, mark: tuple, definitions: Callable[[], str | None],
                          targets: str, jobs: int) -> None:
        """A make left every one of its jobs up to date (see the module); ``mark``:
        when it read the store; ``definitions()``: their digest (None: no record). The
        store is taken as the make leaves it: its result files now, its count of writes
        once its last records are committed (the writer writes the record after them),
        and the record is written only if no other store opened since, and nothing else
        wrote to the database since the make ended (by hand, say)."""
        if not self._run_ending:  # the make's writes are all committed
            try:
                writes = write_count(self._conn)
                files = files_digest(self.results_dir)
            except (sqlite3.Error, OSError) as exc:
                logger.debug("no record of a clean make: %r", exc)
                return
        else:  # its last records are not, but its files are all written (Store.end_run)
            writes, files = None, files_digest(self.results_dir)
        writer = self.writer
        foreign = writer.foreign  # (writes of others, found as the writer commits)
        # Until it is written: dropped if another make starts first (clean_make_jobs).
        pending = self._pending_record = [targets]

        def write(conn: sqlite3.Connection) -> None:
            if pending[0] is None:
                return
            try:
                now = write_count(conn)
                if now is None or writes is not None and now != writes \
                        or writer.foreign != foreign or not self._claims.quiet_since(mark):
                    return
                digest = definitions()
                if digest is not None:
                    record(conn, digest, targets, jobs, now, files)
            except (sqlite3.Error, OSError, ValueError) as exc:  # the next make goes the
                logger.debug("no record of a clean make: %r", exc)  # usual way
        self.writer.db(write)

    def clean_make_jobs(self, definitions: Callable[[], str | None], targets: str) -> int | None:
        """The number of jobs of the last clean make, if it made these definitions (their
        digest: ``definitions()``, asked for last) and targets and nothing changed since
        (see the module); else None. (What this store still has to write, the record of its
        last make included, is written first.)"""
        pending = self._pending_record
        if pending is not None and pending[0] != targets:
            # The record of a make of other targets, not written yet: it could not serve
            # this make, and whatever this one does replaces it (its own record) or makes
            # it wrong (its writes). Not written: its digest of every definition is not
            # taken for nothing.
            pending[0] = None
        self._pending_record = None
        self.flush()
        with db.one_moment(self._conn) as conn:
            return jobs_unchanged(conn, self.results_dir, definitions, targets)
