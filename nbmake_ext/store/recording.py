"""Recording outcomes: the writes of a job that succeeded, failed, was blocked or was
skipped, each queued on the store's writer, and the SQL helpers they share."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable

from ..core.jobspec import JobSpec, RunRecord
from ..core.options import NO_OPTIONS
from ..core.options import to_json as options_json
from ..errors import StoreError
from . import blobs
from .parts import _Parts
from .results import INLINE, is_inline
from .writer import Result


class _Recording:
    """The ``record_*`` methods of ``Store``."""

    def record_success(self, job_id: str, record: RunRecord, data: bytes, timing: dict,
                       logs: tuple[str, str], checksum: str = "") -> None:
        """Store a result: the writer thread writes it (a row, or a file made durable
        first), then commits the record (and only then releases this store's claim).
        ``checksum``: the data's, if known already."""
        self._inflight[job_id] = data
        if len(data) <= self.inline_max:
            self.writer.db(Result(job_id, record, INLINE, checksum or blobs.checksum(data),
                                  (len(data), 0), timing, logs, data, made_here=True),
                           len(data))
            return

        def write_file() -> tuple[str, str, tuple[int, int]]:
            sum_ = checksum or blobs.checksum(data)
            name = blobs.file_name(job_id, sum_)
            return name, sum_, blobs.write_atomic(self.results_dir, name, data, durable=False)

        def commit(info: tuple) -> Result:
            return Result(job_id, record, *info, timing, logs, made_here=True)

        def on_file_error(exc: BaseException) -> Callable[[sqlite3.Connection], None]:
            self._inflight.pop(job_id, None)
            return lambda conn: self._fail_row(conn, job_id, f"could not store the result: {exc}",
                                               "", timing, logs)

        self.writer.result(write_file, commit, on_file_error, len(data))

    def record_successes(self, entries: list[tuple]) -> None:
        """``record_success(*entry)`` for each, the small results handed to the writer at
        once (the results of a batch of jobs)."""
        inline_max, inflight = self.inline_max, self._inflight
        small, size = [], 0
        for job_id, record, data, timing, logs, checksum in entries:
            if len(data) > inline_max:  # (after those before it: the writes keep their order)
                self.writer.db_many(small, size)
                small, size = [], 0
                self.record_success(job_id, record, data, timing, logs, checksum)
                continue
            inflight[job_id] = data
            small.append(Result(job_id, record, INLINE, checksum or blobs.checksum(data),
                                (len(data), 0), timing, logs, data, made_here=True))
            size += len(data)
        self.writer.db_many(small, size)

    def record_stored_many(self, entries: list[tuple]) -> None:
        """``record_stored(*entry)`` for each, handed to the writer at once."""
        self.writer.db_many([Result(*entry) for entry in entries])

    def pending_result(self, job_id: str) -> bytes | None:
        """The pickled result of a ``record_success`` not yet committed (its file may not
        exist yet), else None."""
        return self._inflight.get(job_id)

    def record_stored(self, job_id: str, record: RunRecord, name: str, sum_: str,
                      stamp: tuple[int, int], timing: dict, logs: tuple[str, str]) -> None:
        """Commit a result whose file someone (an engine) already wrote."""
        self.writer.db(Result(job_id, record, name, sum_, stamp, timing, logs))

    def _commit_results(self, conn: sqlite3.Connection,
                        results: list[Result]) -> Callable[[], None]:
        """Record results in a few statements (the writer's hot path), and say what to do
        once committed: release the claims, remove the files they replace."""
        last = {r.job_id: r for r in results}  # a job recorded twice: its last run counts
        ids = list(last)
        before: dict[str, str] = {}  # the result files these records replace
        for chunk in _chunks(ids):
            before.update(conn.execute(
                f"SELECT job_id, r_file FROM outcomes INDEXED BY outcomes_files"
                f" WHERE job_id IN ({_marks(chunk)})"
                f" AND r_file IS NOT NULL AND r_file != '{INLINE}'", chunk))
        obsolete = [r.name for r in results if last[r.job_id] is not r and not is_inline(r.name)]
        obsolete += [old for jid, old in before.items() if old != last[jid].name]
        inline = [r for r in last.values() if is_inline(r.name)]
        _insert_rows(conn, "INSERT OR REPLACE INTO results VALUES", 2,
                     [(r.job_id, r.data) for r in inline])
        _where_in(conn, "DELETE FROM results WHERE job_id IN",
                  [j for j, r in last.items() if not is_inline(r.name)])
        _remember_code(conn, {r.record.code_fp: r.record.code_parts for r in last.values()})
        shared = _shared_texts()  # jobs of one function share their reasons to run
        _set_outcomes(conn, _RESULT_COLUMNS, _DONE, [
            (r.job_id, r.record.code_fp, r.record.args_fp, _parts_json(r.record.arg_fps, conn),
             json.dumps(dict(r.record.dep_fps)) if r.record.dep_fps else "{}",
             r.record.result_fp, r.name, r.sum_,
             r.stamp[0], r.stamp[1], r.timing.get("started"), r.timing.get("ended"),
             r.timing.get("duration"), r.timing.get("cpu"), r.timing.get("engine"),
             shared(tuple(r.timing.get("reasons", ())),
                    lambda: json.dumps(list(r.timing.get("reasons", ())))),
             r.timing.get("peak_rss"), _attempts_json(r.timing),
             json.dumps(dict(r.record.files)) if r.record.files else None)
            for r in last.values()])
        _insert_rows(conn, "INSERT OR REPLACE INTO logs VALUES", 4,
                     [(j, *r.logs, "") for j, r in last.items() if r.logs[0] or r.logs[1]])
        _where_in(conn, "DELETE FROM logs WHERE job_id IN",
                  [j for j, r in last.items() if not (r.logs[0] or r.logs[1])])

        def after() -> None:  # committed: others may now see the results, and run no more
            for r in results:
                if r.made_here:
                    self._inflight.pop(r.job_id, None)
                self._claims.release(r.job_id)
            for name in obsolete:
                blobs.remove_quietly(self.results_dir, name)
        return after

    def mark_unreadable(self, job_id: str) -> None:
        """The result file of a job failed its checksum (or vanished): the job has no
        usable result until it runs again. The file goes now, before a new run could write
        one of the same name; the record forgets it only if it still names that file."""
        row = self._conn.execute(
            "SELECT r_file, r_checksum FROM outcomes WHERE job_id=?", (job_id,)).fetchone()
        name, sum_ = row if row else (None, None)
        if name is None:
            return

        def forget(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE outcomes SET r_file=NULL, r_checksum=NULL"
                " WHERE job_id=? AND r_file=? AND r_checksum IS ?", (job_id, name, sum_))
            if cur.rowcount and is_inline(name):
                conn.execute("DELETE FROM results WHERE job_id=?", (job_id,))
        if not is_inline(name):
            blobs.remove_quietly(self.results_dir, name)
        self.writer.db(forget)

    def load_payload(self, job_id: str) -> bytes:
        row = self._conn.execute("SELECT payload FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        if row is None or row[0] is None:
            raise StoreError(f"job {job_id!r} has no stored arguments")
        return row[0]

    def record_failure(self, job_id: str, error: str, traceback: str, timing: dict,
                       logs: tuple[str, str], spec: JobSpec | None = None) -> None:
        """``spec`` is the definition that failed, so `why` can later say what changed."""
        self.writer.db(
            lambda conn: self._fail_row(conn, job_id, error, traceback, timing, logs, spec))

    def _fail_row(self, conn, job_id, error, traceback, timing, logs, spec=None) -> None:
        if spec is not None:
            _remember_code(conn, {spec.code_fp: spec.code_parts})
        _set_outcomes(conn, _FAILURE_COLUMNS, _FAILED, [(
            job_id, timing.get("started"), timing.get("ended"), timing.get("duration"),
            timing.get("cpu"), timing.get("engine"), error,
            json.dumps(list(timing.get("reasons", ()))),
            spec.code_fp if spec else None, spec.args_fp if spec else None,
            timing.get("peak_rss"), _attempts_json(timing))])
        _write_logs(conn, job_id, logs[0], logs[1], traceback)
        return lambda: self._claims.release(job_id)

    def record_blocked(self, job_id: str, by: str) -> None:
        self.writer.db(lambda conn: _set_outcomes(
            conn, ("blocked_by",), {"state": "'blocked'"}, [(job_id, by)]))

    def record_skipped(self, job_id: str, restored: bool = False) -> None:
        """A job found up to date by a make is `done`, whatever its last outcome was.
        ``restored``: that outcome was a failure (or a block), whose error and traceback go
        with it: the stored result is from an earlier run."""
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE outcomes SET state='done', forced=0, error=NULL, blocked_by=NULL"
                " WHERE job_id=? AND state!='done'", (job_id,))
            if restored:
                conn.execute("UPDATE logs SET traceback=NULL WHERE job_id=?", (job_id,))

        self.writer.db(write)


def _write_logs(conn: sqlite3.Connection, job_id: str, out: str, err: str, tb: str) -> None:
    if out or err or tb:
        conn.execute("INSERT OR REPLACE INTO logs VALUES (?,?,?,?)", (job_id, out, err, tb))
    else:
        conn.execute("DELETE FROM logs WHERE job_id=?", (job_id,))


def _shared_texts() -> Callable[[Any, Callable[[], str]], str]:
    """``shared(key, make)``: ``make()`` once per key, for the rows of one write."""
    texts: dict[Any, str] = {}

    def shared(key: Any, make: Callable[[], str]) -> str:
        text = texts.get(key)
        if text is None:
            text = texts[key] = make()
        return text
    return shared


_PLAIN = ("[]", None, None)  # (most jobs': one tuple)


def definition_texts(spec: JobSpec) -> tuple[str, str | None, str | None]:
    """What a job's row holds of its dependencies, options and input files (json)."""
    if not spec.deps and spec.options is NO_OPTIONS and not spec.inputs:
        return _PLAIN
    return (json.dumps(list(spec.deps)) if spec.deps else "[]",
            None if spec.options is NO_OPTIONS else options_json(spec.options),
            json.dumps(list(spec.inputs)) if spec.inputs else None)


def _write_definitions(conn: sqlite3.Connection,
                       entries: list[tuple[JobSpec, str, bytes | None, bytes]]) -> list[tuple]:
    """The rows of ``entries``, written; returns what each holds of ``definition_texts``."""
    blobs_ = {key: blob for _, key, blob, _ in entries if blob is not None}
    conn.executemany("INSERT OR IGNORE INTO functions VALUES (?, ?)", blobs_.items())
    _remember_code(conn, {s.code_fp: s.code_parts for s, _, _, _ in entries})
    texts = [definition_texts(s) for s, _, _, _ in entries]
    conn.executemany(
        "INSERT INTO jobs (job_id, function, parent, dynamic, code_fp,"
        " args_fp, deps, def_fp, func_key, payload, options, inputs)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT(job_id) DO UPDATE SET function=excluded.function,"
        " parent=excluded.parent, dynamic=excluded.dynamic, code_fp=excluded.code_fp,"
        " args_fp=excluded.args_fp, deps=excluded.deps,"
        " def_fp=excluded.def_fp, func_key=excluded.func_key, payload=excluded.payload,"
        " options=excluded.options, inputs=excluded.inputs",
        [(s.job_id, s.function, s.parent, int(s.dynamic), s.code_fp, s.args_fp, deps,
          s.def_fp, key, payload, options, inputs)
         for (s, key, _, payload), (deps, options, inputs) in zip(entries, texts)],
    )
    return texts


def _remember_code(conn: sqlite3.Connection, parts_of: dict[str, Any]) -> None:
    """Store what code fingerprints were made of, for those not stored yet (parts read
    from the store are stored already)."""
    conn.executemany("INSERT OR IGNORE INTO code VALUES (?, ?)", [
        (fp, _parts_json(parts, conn)) for fp, parts in parts_of.items()
        if fp is not None and not isinstance(parts, _Parts)])


def _parts_json(parts: Any, conn: sqlite3.Connection) -> str:
    if isinstance(parts, _Parts):
        return parts.text(conn) or "{}"
    if callable(parts):
        parts = parts()
    return parts if isinstance(parts, str) else json.dumps(dict(parts), sort_keys=True)


_DONE = {"state": "'done'", "forced": "0", "error": "NULL", "blocked_by": "NULL"}
_FAILED = {"state": "'failed'", "blocked_by": "NULL"}
_FAILURE_COLUMNS = ("started", "ended", "duration", "cpu", "engine", "error", "reasons",
                    "f_code_fp", "f_args_fp", "peak_rss", "attempts")
_RESULT_COLUMNS = ("r_code_fp", "r_args_fp", "r_arg_fps", "r_dep_fps",
                   "r_result_fp", "r_file", "r_checksum", "r_size", "r_mtime", "started",
                   "ended", "duration", "cpu", "engine", "reasons", "peak_rss", "attempts",
                   "r_files")


def _attempts_json(timing: dict) -> str | None:
    """The failed attempts before this one (job_retries), or None: most jobs have none."""
    earlier = timing.get("attempts")
    return json.dumps(earlier) if earlier else None


# Many rows per statement: the sqlite3 module lets other threads run during every step of
# a statement, so a statement per row hands the interpreter lock back and forth per row.

def _insert_rows(conn: sqlite3.Connection, head: str, width: int, rows: list[tuple]) -> None:
    per = 30000 // width
    for i in range(0, len(rows), per):
        chunk = rows[i:i + per]
        row = "(" + ",".join("?" * width) + ")"
        conn.execute(f"{head} {','.join([row] * len(chunk))}",
                     [v for r in chunk for v in r])


def _where_in(conn: sqlite3.Connection, head: str, ids: list[str]) -> None:
    for chunk in _chunks(ids, 30000):
        conn.execute(f"{head} ({_marks(chunk)})", chunk)


def _set_outcomes(conn: sqlite3.Connection, columns: tuple[str, ...], fixed: dict[str, str],
                  rows: list[tuple]) -> None:
    """Set the outcomes of many jobs (each row: job_id, then ``columns``; ``fixed``: the
    same SQL value for every row), leaving their other columns as they were. Jobs no
    longer defined (forgotten meanwhile) get none."""
    names = (*fixed, *columns)
    values = (*fixed.values(), *(f"n.column{k + 2}" for k in range(len(columns))))
    width = len(columns) + 1
    per = 30000 // width
    row = "(" + ",".join("?" * width) + ")"
    for i in range(0, len(rows), per):
        chunk = rows[i:i + per]
        conn.execute(
            f"INSERT INTO outcomes (job_id, {', '.join(names)})"
            f" SELECT n.column1, {', '.join(values)} FROM (VALUES {','.join([row] * len(chunk))}) AS n"
            " WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.job_id = n.column1)"
            f" ON CONFLICT(job_id) DO UPDATE SET {', '.join(f'{c}=excluded.{c}' for c in names)}",
            [v for r in chunk for v in r])


def _chunks(ids: list, size: int = 500):
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def _marks(ids: list) -> str:
    return ",".join("?" * len(ids))
