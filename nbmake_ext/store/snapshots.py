"""Reading the store's rows back as ``StoredJob``s: every job at once (a command's start),
a few again (after a claim or a wait), or those whose outcome changed since a snapshot. A
mixin of ``Store`` (store.py): it uses its connection, its results folder and the results
its writer has not committed yet.

Every command starts with a snapshot, and most jobs did not change since the last one:
the last is kept, and brought up to date by reading only the rows of the jobs written to
since (``db.changes``, whoever wrote), of those whose result file changed on disk, and
not even those of the jobs this store defined anew (known as written)."""

from __future__ import annotations

import functools
import json
import logging
from typing import Callable, Iterable

from ..core.jobspec import NO_FILES, RunRecord
from ..shared.gc_pause import gc_paused
from . import blobs, db
from .parts import _ARG_FPS, _CODE_PARTS, _Parts
from .recording import _chunks, _marks
from .results import INLINE
from .stored_job import FORCED_REASONS, ShownLater, StoredJob, loads_json

logger = logging.getLogger(__name__)
# A record naming this many inputs or more keeps their texts from the inputs' own rows.
SHARED_FROM = 64


class Snapshots:
    _ROWS = "SELECT j.job_id, j.parent, j.dynamic, j.code_fp, j.args_fp," \
        " CASE j.deps WHEN '[]' THEN 1 ELSE j.deps END, j.func_key," \
        " COALESCE(o.state, 'todo'), COALESCE(o.forced, 0)," \
        " CASE WHEN o.r_code_fp = j.code_fp THEN 1 ELSE o.r_code_fp END," \
        " CASE WHEN o.r_args_fp = j.args_fp THEN 1 ELSE o.r_args_fp END," \
        " CASE o.r_dep_fps WHEN '{}' THEN 1 ELSE o.r_dep_fps END, o.r_result_fp," \
        " CASE o.r_file WHEN ':db' THEN 1 ELSE o.r_file END, o.r_checksum, o.r_size," \
        " o.r_mtime, j.options, j.inputs, o.r_files"
    # What is only shown (stored_job.py, Shown): a whole snapshot reads it when first asked
    # for (a fifth of the read's time, which a no-op make never needs), unless it is for a
    # view of every job; a re-read of a few jobs reads it with the rest.
    _SHOWN = ", j.function, o.error, o.blocked_by, o.duration, o.ended"
    _FROM = " FROM jobs AS j LEFT JOIN outcomes AS o ON o.job_id = j.job_id"
    _BASE_COLUMNS = 20

    def _keep_no_snapshot(self) -> None:
        """(From ``Store.__init__``, and as it closes.) The last whole snapshot is kept and
        brought up to date: what ``changes`` held then and the result files then. Jobs
        whose result file it found missing or changed are read again by every snapshot,
        which warns of them again, as a whole read does."""
        self._kept: dict[str, StoredJob] | None = None
        self._kept_at = 0
        self._kept_files: dict[str, tuple[int, int]] = {}
        self._kept_bad: list[str] = []
        self._found_bad: list[str] = []
        # Definitions this store wrote since: the entries of ``changes`` they made, the
        # new jobs among them as written (spec, function key, ``definition_texts``), and
        # the other jobs they name.
        self._defined_since: list[tuple[int, int, list[tuple], list[str]]] = []

    def snapshot(self, shown: bool = False) -> dict[str, StoredJob]:
        """Every stored job, with what its result was made from and whether the file is
        there; ``shown``: with what only views show, read now (a view of every job).

        The dict is the store's, and the next snapshot updates it: only the rows of the jobs
        written to since (by anyone, ``db.changes``), and of those whose result file changed
        on disk, are read again, unless many are (then every row is)."""
        main = self._conn  # (first: the files of this process's last writes are written)
        files = blobs.stamps(self.results_dir)
        # One read transaction: every row is of the same moment.
        with db.one_moment(main) as conn, gc_paused():
            last, pruned = db.changes_mark(conn)
            self._found_bad = []
            defined, self._defined_since = self._defined_since, []
            out = self._updated(conn, last, pruned, files, defined)
            if out is None:
                # (the old snapshot goes before the new one is read)
                self._kept = defined = None
                if shown:
                    out = self._decode(conn.execute(self._ROWS + self._SHOWN + self._FROM),
                                       files.get, None)
                else:
                    out = self._decode(conn.execute(self._ROWS + self._FROM), files.get,
                                       ShownLater(self._shown_rows))
            # A result of this process not committed yet counts as there without its file:
            # such rows are not kept (the next snapshot reads every row).
            self._kept = None if self._inflight else out
            self._kept_at, self._kept_files, self._kept_bad = last, files, self._found_bad
            return out

    def _updated(self, conn, last: int, pruned: int, files: dict[str, tuple[int, int]],
                 defined: list[tuple[int, int, list[tuple], list[str]]],
                 ) -> dict[str, StoredJob] | None:
        """The kept snapshot, brought up to date; None if it must be read whole."""
        kept, since = self._kept, self._kept_at
        if kept is None or since < pruned or last < since:
            return None
        # The entries of this store's definitions: the rows of its new jobs are known as
        # written, the other jobs they name are read (a redefinition keeps its outcome).
        if len(defined) > 8:  # (each is a term of the query below)
            defined = []
        ranges = [(first, end) for first, end, _, _ in defined]
        others = last - since - sum(end - first for first, end in ranges)
        known = sum(len(new) for _, _, new, _ in defined)
        if others + sum(len(rest) for *_, rest in defined) > (len(kept) + known) // 4 + 64:
            return None  # many changed: one read of every row costs less
        ids = db.changed_since(conn, since, ranges) if others else []
        shown = ShownLater(self._shown_rows)
        for _, _, new, rest in defined:
            for spec, key, (deps, options, inputs) in new:
                kept[spec.job_id] = StoredJob(
                    spec.job_id, None, "todo", None, key, None, None, shown, spec.parent,
                    int(spec.dynamic), spec.code_fp, spec.args_fp, deps, options, inputs, self)
            ids += rest
        ids += self._kept_bad
        before = self._kept_files
        if files != before:  # a result file came, went or changed: who names it is read
            moved = {name for name in files.keys() | before.keys()
                     if files.get(name) != before.get(name)}
            ids += [jid for jid, st in kept.items() if st.r_file in moved]
        if ids:
            ids = list(dict.fromkeys(ids))
            fresh: dict[str, StoredJob] = {}
            for chunk in _chunks(ids):
                fresh.update(self._decode(conn.execute(
                    self._ROWS + self._SHOWN + self._FROM +
                    f" WHERE j.job_id IN ({_marks(chunk)})", chunk), files.get, None))
            for jid in ids:  # (in the order written first: new jobs come in their order)
                st = fresh.get(jid)
                if st is None:
                    kept.pop(jid, None)
                else:
                    kept[jid] = st
        return kept

    def _note_definitions(self, conn, first: int, entries: list[tuple],
                          texts: list[tuple]) -> tuple | None:
        """Inside the transaction of ``define``, after its writes, which made the entries
        of ``changes`` after ``first``: its new jobs, whose rows the next snapshot knows
        without reading them (no outcome: todo). A job kept already, or with an outcome
        (left by a job of that id deleted by hand), is read back instead."""
        kept = self._kept
        if kept is None:
            return None
        ids = [spec.job_id for spec, *_ in entries if spec.job_id not in kept]
        with_outcome = set()
        if len(ids) > len(kept):  # (more new jobs than outcomes, but for a few left alone)
            wanted = set(ids)
            with_outcome.update(jid for (jid,) in conn.execute("SELECT job_id FROM outcomes")
                                if jid in wanted)
        else:
            for chunk in _chunks(ids):
                with_outcome.update(jid for (jid,) in conn.execute(
                    f"SELECT job_id FROM outcomes WHERE job_id IN ({_marks(chunk)})", chunk))
        new, rest = [], []
        for (spec, key, _, _), text in zip(entries, texts):
            jid = spec.job_id
            if jid in kept or jid in with_outcome:
                rest.append(jid)
            else:
                new.append((spec, key, text))
        return first, db.changes_mark(conn)[0], new, rest

    def snapshot_of(self, job_ids: Iterable[str]) -> dict[str, StoredJob]:
        """The same for a few jobs (re-reads after a claim or a wait)."""
        out: dict[str, StoredJob] = {}
        stamp_of = functools.partial(blobs.stamp, self.results_dir)
        with db.one_moment(self._conn) as conn, gc_paused():
            for chunk in _chunks(list(job_ids)):
                rows = conn.execute(self._ROWS + self._SHOWN + self._FROM +
                                    f" WHERE j.job_id IN ({_marks(chunk)})", chunk)
                out.update(self._decode(rows, stamp_of, None))
        return out

    def _shown_rows(self) -> dict[str, tuple]:
        """What every job's row holds only to be shown (stored_job.py, ShownLater)."""
        share = {None: None}.setdefault
        with gc_paused():
            return {jid: (share(function, function), error, blocked_by, duration, ended)
                    for jid, function, error, blocked_by, duration, ended
                    in self._conn.execute("SELECT j.job_id" + self._SHOWN + self._FROM)}

    def _intact(self, job_id: str, name: str | None, found: tuple | None, recorded: tuple) -> bool:
        """A result file counts only as it was written: missing or modified since (a
        different size or time) means the job runs again, and the user is told."""
        if name is None:
            return False
        if found is None:
            logger.warning("the result file of %r is missing; the job will run again", job_id)
            self._found_bad.append(job_id)
            return False
        if recorded[0] is not None and recorded[1] is not None and found != recorded:
            logger.warning("the result file of %r is corrupt (changed since it was "
                           "written); the job will run again", job_id)
            self._found_bad.append(job_id)
            return False
        return True

    def job(self, job_id: str) -> StoredJob | None:
        return self.snapshot_of([job_id]).get(job_id)

    def _decode(self, rows: Iterable[tuple],
                stamp_of: Callable[[str], tuple[int, int] | None],
                shown_later: ShownLater | None) -> dict[str, StoredJob]:
        """StoredJobs from rows of ``_ROWS``, with what is only shown read later
        (``shown_later``) or at the end of each row (None: ``_SHOWN``).

        Each row comes with strings of its own even where all rows hold the same text (the
        function, its code's fingerprint, the state, ``[]``): one object is kept per text
        instead, and one ``_Parts`` per code fingerprint. Texts unique to a job (its id, its
        result's fingerprint) are kept as read, and a record of many inputs names them with
        those texts of theirs (``_shared_texts``)."""
        out = {}
        inflight = self._inflight
        share = {None: None}.setdefault
        code_parts: dict[str, _Parts] = {}
        no_deps = loads_json("{}")  # (the one dict every record without dependencies shares)
        base = self._BASE_COLUMNS
        shown = shown_later
        fan_ins = []
        for row in rows:
            if shown_later is None:
                function, *rest = row[base:]
                shown = (share(function, function), *rest)
                row = row[:base]
            (jid, parent, dynamic, code_fp, args_fp, deps, func_key, state, forced, r_code_fp,
             r_args_fp, r_dep_fps, r_result_fp, r_file, r_checksum, r_size, r_mtime, options,
             inputs, r_files) = row
            # (the common values first: inline results, no dependencies, no options)
            code_fp = share(code_fp, code_fp)
            if r_file == 1:
                r_file = INLINE
            elif r_file is not None:
                r_file = share(r_file, r_file)
            record = None
            if r_result_fp is not None:
                present = r_file is INLINE or jid in inflight or (r_file is not None and (
                    self._intact(jid, r_file, stamp_of(r_file), (r_size, r_mtime))))
                r_code_fp = code_fp if r_code_fp == 1 else share(r_code_fp, r_code_fp)
                parts = code_parts.get(r_code_fp)
                if parts is None:
                    parts = code_parts[r_code_fp] = _Parts(self, _CODE_PARTS, r_code_fp)
                record = RunRecord(r_code_fp, parts, args_fp if r_args_fp == 1 else r_args_fp,
                                   no_deps if r_dep_fps == 1 else loads_json(r_dep_fps),
                                   r_result_fp, _Parts(self, _ARG_FPS, jid), present, NO_FILES)
                if len(record.dep_fps) >= SHARED_FROM:
                    fan_ins.append(record)
                if r_files is not None:
                    record.files = json.loads(r_files)
            out[jid] = StoredJob(jid, record, share(state, state),
                                 FORCED_REASONS.get(forced) if forced else None,
                                 share(func_key, func_key), r_file, r_checksum, shown,
                                 parent and share(parent, parent), dynamic, code_fp, args_fp,
                                 "[]" if deps == 1 else share(deps, deps),
                                 options and share(options, options), inputs, self)
        for record in fan_ins:
            record.dep_fps = _shared_texts(record.dep_fps, out)
        return out

    def changed(self, known: dict[str, StoredJob], job_ids: list[str]) -> dict[str, StoredJob]:
        """Of ``job_ids``, those whose stored outcome differs from ``known``, reread.
        (A cheap look at three columns; full rows only for what changed.)"""
        # The comparison runs in SQLite, so that only the rows that differ come back (the
        # ended times compare exactly: they travel as bound doubles, not as text).
        was = []
        for jid in job_ids:
            k = known.get(jid)
            was.append((jid, "todo", None, None) if k is None else (jid, k.state, k.r_file, k.ended))
        differ = []
        for i in range(0, len(was), 4000):
            chunk = was[i:i + 4000]
            differ += [jid for (jid,) in self._conn.execute(
                "SELECT j.job_id FROM jobs AS j JOIN (VALUES "
                + ",".join(["(?,?,?,?)"] * len(chunk)) + ") AS k ON j.job_id = k.column1"
                " LEFT JOIN outcomes AS o ON o.job_id = j.job_id"
                " WHERE coalesce(o.state, 'todo') IS NOT k.column2"
                " OR o.r_file IS NOT k.column3 OR o.ended IS NOT k.column4",
                [v for row in chunk for v in row])]
        return self.snapshot_of(differ) if differ else {}


def _shared_texts(dep_fps: dict[str, str], read: dict[str, StoredJob]) -> dict[str, str]:
    """The inputs a fan-in's result was made from, with their ids and fingerprints the very
    texts of the inputs' rows read with it: at 100,000 inputs, 13 MB not kept twice."""
    shared = {}
    for dep, fp in dep_fps.items():
        st = read.get(dep)
        if st is not None:
            dep = st.job_id
            record = st.record
            if record is not None and record.result_fp == fp:
                fp = record.result_fp
        shared[dep] = fp
    return shared
