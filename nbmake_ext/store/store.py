"""Store facade: definitions, results, claims, logs and timings in one directory.

Layout: ``<dir>/nbmake.db`` (SQLite, WAL) and ``<dir>/results/`` (one file per result).
Reads happen on the caller's connection; every write of a run goes through the writer
(writer.py) in order, and a result's record is committed only once its file is durable, so
state is on disk as each job finishes and a crash leaves either the whole result or none.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterable


from ..core.jobspec import JobSpec
from ..errors import NotDone, StoreError
from . import blobs, db
from .results import INLINE_MAX, checked_row, is_inline
from .claims import Claims
from .snapshots import Snapshots
from .unchanged import CleanMakeRecord
from .writer import Writer
from .parts import _CODE_PARTS, _Parts
from .pickles import dumps_value, loads_value  # noqa: F401  (dumps_value: re-exported)
from .stored_job import (  # noqa: F401  (FORCED_UNFINISHED: re-exported)
    FORCED_BY_REMAKE,
    FORCED_UNFINISHED,
    StoredJob,
)
from .recording import (
    _Recording,
    _chunks,
    _marks,
    _set_outcomes,
    _write_definitions,
)

logger = logging.getLogger(__name__)
HOST = socket.gethostname()
# Writes waiting at a run's end from which the run does not wait for their commit
# (``Store.end_run``).
DEFERRED_FROM = 64


class ResultUnavailable(NotDone):
    """A stored result cannot be read (missing or corrupt file): it has no usable result."""


class Store(Snapshots, _Recording, CleanMakeRecord):
    def __init__(self, path: str | os.PathLike, *, durable: bool = True):
        self.path = Path(path).absolute()
        self.results_dir = self.path / "results"
        self.durable = durable
        self.inline_max = INLINE_MAX  # results up to this size are rows, not files
        try:
            self._create_dirs()
            self._db_conn = db.connect(self.path / "nbmake.db")
            db.init_schema(self._db_conn)
            os.chmod(self.path / "nbmake.db", 0o600)
        except (OSError, sqlite3.Error, ValueError) as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        self._claims = Claims(self.path)
        self._functions: dict[str, Any] = {}
        self._inflight: dict[str, bytes] = {}
        self._keep_no_snapshot()
        self._writer: Writer | None = None
        self._lock = threading.Lock()
        # A run ended with writes of it not committed yet (``end_run``): the next look at
        # the store, its claims or its database waits for them.
        self._run_ending = False
        # The targets of the record of a clean make not written yet (unchanged.py): a cell,
        # emptied when another make starts before it is written.
        self._pending_record: list[str | None] | None = None

    def _create_dirs(self) -> None:
        existed = self.path.exists()
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.results_dir.mkdir(mode=0o700, exist_ok=True)
        if existed and self.path.stat().st_mode & 0o077:
            logger.warning("the store %s is readable by other users; `chmod 700` it", self.path)
        if not os.access(self.path, os.W_OK):
            raise OSError(f"{self.path} is not writable")

    # -- reading ----------------------------------------------------------------------------

    @property
    def _conn(self) -> sqlite3.Connection:
        """The connection reads (and writes outside the writer) go through: what this
        process wrote, it reads back (``end_run``)."""
        if self._run_ending:
            self._settle()
        return self._db_conn

    # One row per job, its outcome joined (a job without one is todo, never forced). Read
    # as a stream: no list of 100,000 rows is ever held, and each row's strings are freed
    # before the next row's are made.
    # Where a column holds what another one of the row does (the code and arguments a
    # result was made from are mostly the job's own) or the text most rows hold, SQLite
    # gives 1 instead (never a text of these columns), which costs no new string.
    def details(self, job_id: str) -> dict[str, Any]:
        cur = self._conn.execute(
            "SELECT * FROM jobs LEFT JOIN outcomes USING (job_id) WHERE job_id=?", (job_id,))
        row = cur.fetchone()
        if row is None:
            return {}
        out = dict(zip([c[0] for c in cur.description], row))
        out.pop("payload", None)
        if out["state"] is None:  # no outcome yet
            out["state"], out["forced"] = "todo", 0
        out["f_code_parts"] = _Parts(self, _CODE_PARTS, out["f_code_fp"]).text(self._conn)
        logs = self._conn.execute(
            "SELECT stdout, stderr, traceback FROM logs WHERE job_id=?", (job_id,)).fetchone()
        out["stdout"], out["stderr"], out["traceback"] = logs or ("", "", "")
        self._claims.settled()
        out["running_elsewhere"] = self._claims.held_elsewhere(job_id)
        return out

    def timings(self) -> list[tuple]:
        """When and where each job's last run ran (the timeline): (job_id, started, ended,
        duration, engine, state, error, attempts json) of every job that ran."""
        return self._conn.execute(
            "SELECT job_id, started, ended, duration, engine, state, error, attempts"
            " FROM outcomes WHERE started > 0").fetchall()

    def load_result(self, job_id: str) -> Any:
        data = self._inflight.get(job_id)
        if data is None:
            row = self._conn.execute(
                "SELECT r_file, r_checksum FROM outcomes WHERE job_id=?", (job_id,)).fetchone()
            if row is None or row[0] is None:
                raise ResultUnavailable(f"job {job_id!r} has no stored result")
            try:
                if is_inline(row[0]):
                    data = checked_row(self._conn, job_id, row[1])
                else:
                    data = blobs.read_checked(self.results_dir, row[0], row[1])
            except FileNotFoundError:
                raise ResultUnavailable(f"the result file of {job_id!r} is missing") from None
            except blobs.CorruptResult:
                raise ResultUnavailable(f"the result file of {job_id!r} is corrupt") from None
        try:
            return loads_value(data)
        except Exception as exc:
            raise ResultUnavailable(f"the result of {job_id!r} cannot be loaded: {exc!r}") from exc

    def load_call(self, job_id: str) -> tuple[Any, tuple, dict]:
        """The function and arguments of a stored job (for the console and engines)."""
        row = self._conn.execute(
            "SELECT func_key, payload FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        if row is None or row[0] is None:
            raise StoreError(f"job {job_id!r} has no stored definition to run")
        func = self.load_function(row[0])
        args, kwargs = pickle.loads(row[1])
        return func, args, kwargs

    def load_function(self, func_key: str) -> Any:
        func = self._functions.get(func_key)
        if func is None:
            row = self._conn.execute(
                "SELECT blob FROM functions WHERE func_key=?", (func_key,)).fetchone()
            if row is None:
                raise StoreError(f"function {func_key} is missing from the store")
            func = self._functions[func_key] = pickle.loads(row[0])
        return func

    def function_blob(self, func_key: str) -> bytes | None:
        row = self._conn.execute(
            "SELECT blob FROM functions WHERE func_key=?", (func_key,)).fetchone()
        return row[0] if row else None

    # -- fingerprints of files (files/fingerprints.py) -------------------------------------

    def file_stats(self) -> dict[str, tuple]:
        """path -> (size, mtime_ns, inode, hashed_ns, fingerprint) of every file whose
        fingerprint is cached."""
        rows = self._conn.execute(
            "SELECT path, size, mtime_ns, inode, hashed_ns, fp FROM file_stats").fetchall()
        return {row[0]: row[1:] for row in rows}

    def remember_files(self, rows: list[tuple]) -> None:
        """Cache fingerprints of files: rows (path, size, mtime_ns, inode, hashed_ns, fp)."""
        if rows:
            self.writer.db(lambda conn: conn.executemany(
                "INSERT OR REPLACE INTO file_stats VALUES (?,?,?,?,?,?)", rows))

    def logs(self, job_id: str) -> tuple[str, str, str]:
        row = self._conn.execute(
            "SELECT stdout, stderr, traceback FROM logs WHERE job_id=?", (job_id,)).fetchone()
        return tuple(x or "" for x in row) if row else ("", "", "")  # type: ignore[return-value]

    # -- definitions ------------------------------------------------------------------------

    def define(self, entries: list[tuple[JobSpec, str, bytes | None, bytes]]) -> None:
        """Upsert definitions: (spec, func_key, function blob or None if stored, payload).
        A redefinition keeps the stored result: it becomes stale, not lost."""
        if not entries:
            return
        self.flush()
        noted = []

        def write(conn: sqlite3.Connection) -> None:
            first = db.changes_mark(conn)[0] if self._kept is not None else None
            texts = _write_definitions(conn, entries)
            if first is not None:  # (what the next snapshot needs not read back)
                noted.append(self._note_definitions(conn, first, entries, texts))
        self._in_transaction(write)
        self._defined_since += noted

    def set_forced(self, job_ids: Iterable[str], why: int = FORCED_BY_REMAKE) -> None:
        """Make jobs run at their next make whatever their signature says (cleared when
        they succeed): ``FORCED_BY_REMAKE``, or ``FORCED_UNFINISHED`` for a dynamic job
        whose run redefined its children but did not finish."""
        rows = [(j, why) for j in job_ids]
        if rows:
            self._in_transaction(lambda conn: _set_outcomes(conn, ("forced",), {}, rows))

    def clean(self, job_ids: Iterable[str]) -> None:
        """Forget the results of these jobs (definitions stay; they become todo)."""
        ids = list(job_ids)
        self.flush()
        files = self._result_files(ids)
        self._write_now(
            "UPDATE outcomes SET state='todo', forced=0, r_code_fp=NULL,"
            " r_args_fp=NULL, r_arg_fps=NULL, r_dep_fps=NULL, r_result_fp=NULL, r_file=NULL,"
            " r_checksum=NULL, r_size=NULL, r_mtime=NULL, error=NULL, blocked_by=NULL,"
            " r_files=NULL"
            " WHERE job_id=?",
            [(j,) for j in ids])
        self._remove_results(ids, files)

    def _result_files(self, ids: list[str]) -> list[tuple[str | None]]:
        out = []
        for chunk in _chunks(ids):
            out += self._conn.execute(
                f"SELECT r_file FROM outcomes WHERE job_id IN ({_marks(chunk)})", chunk
            ).fetchall()
        return out

    def forget(self, job_ids: Iterable[str]) -> None:
        """Delete jobs entirely (dynamic children no longer defined)."""
        ids = list(job_ids)
        if not ids:
            return
        self.flush()
        files = self._result_files(ids)
        self._write_now("DELETE FROM jobs WHERE job_id=?", [(j,) for j in ids])
        self._write_now("DELETE FROM outcomes WHERE job_id=?", [(j,) for j in ids])
        self._write_now("DELETE FROM logs WHERE job_id=?", [(j,) for j in ids])
        self._remove_results(ids, files)

    def _remove_results(self, ids: list[str], files: list[tuple[str | None]]) -> None:
        if any(is_inline(name) for (name,) in files):
            self._write_now("DELETE FROM results WHERE job_id=?", [(j,) for j in ids])
        for (name,) in files:
            if name is not None and not is_inline(name):
                blobs.remove_quietly(self.results_dir, name)

    def _write_now(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            self._in_transaction(lambda conn: conn.executemany(sql, rows))

    def _in_transaction(self, write: Callable[[sqlite3.Connection], Any]) -> None:
        """``write(conn)`` in a write transaction of its own on the main connection."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            write(conn)
            if self._writer is not None:  # (this store's own write: not another's)
                self._writer.expected_writes = db.write_count(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- claims: two processes never run one job at once ----------------------------------

    def claim(self, job_ids: Iterable[str]) -> tuple[list[str], dict[str, str]]:
        """Claim jobs for this store. Returns (claimed, {job: holder} held elsewhere)."""
        mine, elsewhere = [], {}
        for jid in job_ids:
            if self._claims.claim(jid):
                mine.append(jid)
            else:
                elsewhere[jid] = "another process"
        return mine, elsewhere

    def release(self, job_ids: Iterable[str]) -> None:
        for jid in job_ids:
            self._claims.release(jid)

    def release_all(self) -> None:
        for jid in list(self._claims.held):
            self._claims.release(jid)

    def activity(self) -> tuple[int, bool]:
        """A mark of now, for ``quiet_since``."""
        return self._claims.activity()

    def quiet_since(self, mark: tuple[int, bool]) -> bool:
        """No other store (in any process) was open at any time since ``mark``: nothing
        but this store can have written to the database since."""
        return self._claims.quiet_since(mark)

    def claimed_elsewhere(self, job_ids: Iterable[str]) -> set[str]:
        if not self._claims.settled():
            return set(job_ids)  # another store claims in memory: any of them, maybe
        return {j for j in job_ids if self._claims.held_elsewhere(j)}

    def running_among(self, job_ids: Iterable[str]) -> set[str]:
        """Jobs being run now, by this store or any other process on it."""
        if self._run_ending:  # (their claims are held until their results are committed)
            self._settle()
        held = self._claims.held
        if self._claims.alone():  # one look instead of one per job
            return {j for j in job_ids if j in held}
        self._claims.settled()
        return {j for j in job_ids if j in held or self._claims.held_elsewhere(j)}

    def run_alone(self) -> bool:
        """A run starts: its claims are kept in memory while no other store is open
        (claims.py); ``run_over`` or ``end_run`` when it ends."""
        if self._run_ending:
            self._settle()
        return self._claims.run_alone()

    def run_over(self) -> None:
        """A run ends, its writes committed (``flush``)."""
        self._claims.run_over()

    def end_run(self) -> None:
        """A run ends whose writes may not all be committed yet (records, not files):
        the make that ran returns, and the writer's thread commits them once the oldest
        has waited ``MAX_AGE`` (not at once: it would take the interpreter lock from the
        code that follows the make), or whatever reads the store next does. A kill of
        this process before then loses the jobs that finished last (SPEC 4: at most those
        of its last 0.1 s). Until then this store holds their claims, so no other process
        runs them, and any read of this store, of its claims, or another run, waits for
        them first (``_settle``): this process reads back what it wrote. A failure of one
        of those writes is raised by that read."""
        writer = self._writer
        # Waited for: a few writes (their commit costs about its flush to disk, which the
        # next command would pay instead; other processes see them at once), and result
        # files (so that the files are as the make leaves them when its end is recorded:
        # unchanged.py).
        if writer is None or writer.waiting() < DEFERRED_FROM or writer.errors \
                or writer.pending_files():
            try:
                self.flush()  # (raises the errors of writes done already)
            finally:
                self.run_over()
            return
        # Once every write before it is committed, the claims left (none, unless a write
        # failed) become locks, and the gate goes (claims.py).
        writer.db(lambda conn: self._claims.run_over)
        self._run_ending = True

    def _settle(self) -> None:
        """The writes of the run that ended are committed (see ``end_run``)."""
        if self._writer is not None and self._writer.on_its_thread():
            return  # (a write reading the store: it is one of them)
        self._run_ending = False
        try:
            self.flush()
        finally:
            self.run_over()  # (done already, once committed: unless a write failed)

    # -- recording a run (ordered, on the writer thread) ------------------------------------

    @property
    def writer(self) -> Writer:
        with self._lock:
            if self._writer is None:
                self._writer = Writer(self, self._commit_results)
                # (what this store wrote so far: not another's writes, see unchanged.py)
                self._writer.expected_writes = db.write_count(self._db_conn)
            return self._writer

    def flush(self) -> None:
        """Wait until every recorded outcome is committed."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        self._keep_no_snapshot()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._run_ending = False
        self._claims.close()
        self._db_conn.close()

