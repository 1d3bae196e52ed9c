"""Stores written by an earlier version of the schema open, migrated, losing nothing."""

from __future__ import annotations

import sqlite3
import warnings

import pytest

from nbmake_ext import Context, JobsFailed, Promise
from nbmake_ext.core.options import JobOptions
from nbmake_ext.store import db

import logcheck

CALLS: list[int] = []

# The jobs table of schema version 1: each job's outcome lived in its definition's row.
VERSION_1_JOBS = """
CREATE TABLE jobs (
  job_id TEXT PRIMARY KEY, function TEXT NOT NULL, parent TEXT,
  dynamic INTEGER NOT NULL DEFAULT 0, code_fp TEXT NOT NULL, code_parts TEXT NOT NULL,
  args_fp TEXT NOT NULL, deps TEXT NOT NULL, def_fp TEXT NOT NULL, func_key TEXT, payload BLOB,
  state TEXT NOT NULL DEFAULT 'todo', forced INTEGER NOT NULL DEFAULT 0,
  r_code_fp TEXT, r_code_parts TEXT, r_args_fp TEXT, r_arg_fps TEXT, r_dep_fps TEXT,
  r_result_fp TEXT, r_file TEXT, r_checksum TEXT, r_size INTEGER, r_mtime INTEGER,
  started REAL, ended REAL, duration REAL, cpu REAL, engine TEXT,
  error TEXT, blocked_by TEXT, reasons TEXT,
  f_code_fp TEXT, f_code_parts TEXT, f_args_fp TEXT
);
CREATE INDEX jobs_parent ON jobs(parent)
"""


def square(x):
    CALLS.append(x)
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * x


def total(values):
    CALLS.append(-1000)
    return sum(values)


def as_version_1(path, lacking: tuple[str, ...]) -> None:
    """Rewrite a store as version 1 wrote it: one jobs table, no outcomes (and, as its
    early releases did, without the columns ``lacking``)."""
    conn = sqlite3.connect(path / "nbmake.db", isolation_level=None)
    try:
        kept = [c for c in db.OUTCOME[2:] if c not in lacking]
        conn.execute("BEGIN")
        conn.execute("ALTER TABLE jobs RENAME TO jobs_version_2")
        for statement in VERSION_1_JOBS.split(";"):
            conn.execute(statement)
        for column in lacking:
            conn.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
        conn.execute(f"INSERT INTO jobs ({', '.join(db.DEFINITION)}, code_parts, state, forced,"
                     f" r_code_parts, f_code_parts, {', '.join(kept)})"
                     f" SELECT {', '.join('j.' + c for c in db.DEFINITION)}, c.parts,"
                     f" coalesce(o.state, 'todo'), coalesce(o.forced, 0), r.parts, f.parts,"
                     f" {', '.join('o.' + c for c in kept)}"
                     " FROM jobs_version_2 AS j LEFT JOIN outcomes AS o USING (job_id)"
                     " JOIN code AS c ON c.code_fp = j.code_fp"
                     " LEFT JOIN code AS r ON r.code_fp = o.r_code_fp"
                     " LEFT JOIN code AS f ON f.code_fp = o.f_code_fp")
        conn.execute("DROP TABLE jobs_version_2")
        conn.execute("DROP TABLE outcomes")
        conn.execute("DROP TABLE code")
        conn.execute("UPDATE meta SET value='1' WHERE key='schema'")
        conn.execute("COMMIT")
    finally:
        conn.close()


def graph(ctx):
    parts = [ctx.comp(square, x, job_id=f"sq{x}") for x in (1, 2, 3, -1)]
    ctx.comp(square, 5, job_id="forced")
    return ctx.comp(total, parts[:3], job_id="total"), parts


@pytest.mark.parametrize("lacking", [(), ("r_size", "r_mtime")], ids=["latest", "early"])
def test_a_version_1_store_keeps_its_results_states_and_reasons(tmp_path, lacking):
    path = tmp_path / "store"
    with Context(path) as ctx:
        graph(ctx)
        with pytest.raises(JobsFailed):
            ctx.make()
        ctx.remake("forced")
        ctx.store.set_forced(["forced"])  # as a remake interrupted before it ran would leave it
        before = {r.job_id: r.state for r in ctx.ls()}
        failure = ctx.details("sq-1").error
        code_parts = ctx.store.snapshot()["sq1"].record.code_parts()
        assert "square" in str(code_parts)
    as_version_1(path, lacking)
    CALLS.clear()

    with Context(path) as ctx:
        top, _ = graph(ctx)
        assert {r.job_id: r.state for r in ctx.ls()} == before
        assert before["sq-1"] == "failed" and ctx.details("sq-1").error == failure
        assert top.result() == 1 + 4 + 9
        assert ctx.store.snapshot()["sq1"].record.code_parts() == code_parts
        assert ctx.store.snapshot()["sq1"].spec.code_parts() == code_parts
        assert ctx.why("forced") == ["forced by remake"]
        with warnings.catch_warnings(), logcheck.library_warnings() as logged:
            warnings.simplefilter("error")
            with pytest.raises(JobsFailed):
                ctx.make()
        assert logcheck.messages(logged) == []
        assert sorted(CALLS) == [-1, 5]  # the failed job and the forced one, nothing else
    conn = sqlite3.connect(path / "nbmake.db")
    try:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (
            db.SCHEMA_VERSION,)
    finally:
        conn.close()


def as_version_2(path) -> None:
    """Rewrite a store as version 2 wrote it: definitions without options."""
    conn = sqlite3.connect(path / "nbmake.db", isolation_level=None)
    try:
        conn.execute("ALTER TABLE jobs DROP COLUMN options")
        conn.execute("ALTER TABLE outcomes DROP COLUMN peak_rss")
        conn.execute("ALTER TABLE outcomes DROP COLUMN attempts")
        conn.execute("UPDATE meta SET value='2' WHERE key='schema'")
    finally:
        conn.close()


def test_a_version_2_store_opens_with_no_options_and_takes_new_ones(tmp_path):
    path = tmp_path / "store"
    with Context(path) as ctx:
        top, _ = graph(ctx)
        with pytest.raises(JobsFailed):
            ctx.make()
        before = {r.job_id: r.state for r in ctx.ls()}
    as_version_2(path)
    CALLS.clear()

    with Context(path) as ctx:
        assert {r.job_id: r.state for r in ctx.ls()} == before
        assert ctx.definition("sq1").options == JobOptions()
        ctx.comp(square, 1, job_id="sq1", job_timeout=30, job_resources={"mem": "1GB"})
        ctx.make("sq1")
        assert CALLS == []  # options are no reason to run again
        assert ctx.details("sq1").options == {"timeout": 30, "resources": {"mem": 10**9}}
    with Context(path) as ctx:
        assert ctx.definition("sq1").options == JobOptions(30, 0, {"mem": 10**9})
        assert ctx.definition("sq2").options == JobOptions()
        assert Promise("total", ctx).result() == 1 + 4 + 9
    conn = sqlite3.connect(path / "nbmake.db")
    try:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (
            db.SCHEMA_VERSION,)
        assert conn.execute("SELECT options FROM jobs WHERE job_id='sq2'").fetchone() == (None,)
    finally:
        conn.close()


def test_a_version_3_store_opens_and_keeps_peak_memory_and_attempts_from_then_on(tmp_path):
    path = tmp_path / "store"
    with Context(path) as ctx:
        top, _ = graph(ctx)
        with pytest.raises(JobsFailed):
            ctx.make()
        before = {r.job_id: r.state for r in ctx.ls()}
    conn = sqlite3.connect(path / "nbmake.db", isolation_level=None)
    conn.execute("ALTER TABLE outcomes DROP COLUMN peak_rss")
    conn.execute("ALTER TABLE outcomes DROP COLUMN attempts")
    conn.execute("UPDATE meta SET value='3' WHERE key='schema'")
    conn.close()
    CALLS.clear()
    with Context(path) as ctx:
        assert {r.job_id: r.state for r in ctx.ls()} == before
        assert Promise("total", ctx).result() == 1 + 4 + 9
        ctx.comp(square, 5, job_id="sq5")
        ctx.make("sq5")
        assert CALLS == [5]
        assert ctx.details("sq5").peak_rss > 0
    conn = sqlite3.connect(path / "nbmake.db")
    try:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (
            db.SCHEMA_VERSION,)
    finally:
        conn.close()


def test_a_version_4_store_opens_and_takes_jobs_with_files(tmp_path, monkeypatch):
    from nbmake_ext import File

    path = tmp_path / "store"
    with Context(path) as ctx:
        top, _ = graph(ctx)
        with pytest.raises(JobsFailed):
            ctx.make()
        before = {r.job_id: r.state for r in ctx.ls()}
    conn = sqlite3.connect(path / "nbmake.db", isolation_level=None)
    conn.execute("ALTER TABLE jobs DROP COLUMN inputs")
    conn.execute("ALTER TABLE outcomes DROP COLUMN r_files")
    conn.execute("DROP TABLE file_stats")
    conn.execute("UPDATE meta SET value='4' WHERE key='schema'")
    conn.close()
    CALLS.clear()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "n.txt").write_text("7")
    with Context(path) as ctx:
        assert {r.job_id: r.state for r in ctx.ls()} == before
        assert Promise("total", ctx).result() == 1 + 4 + 9
        ctx.comp(square, File("n.txt"), job_id="sq_file")
        assert ctx.definition("sq_file").inputs == (str(tmp_path / "n.txt"),)
    with Context(path) as ctx:
        assert ctx.definition("sq_file").inputs == (str(tmp_path / "n.txt"),)
        assert ctx.why("sq_file") == ["never ran"]
    conn = sqlite3.connect(path / "nbmake.db")
    try:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (
            db.SCHEMA_VERSION,)
        assert conn.execute("SELECT count(*) FROM file_stats").fetchone() == (0,)
    finally:
        conn.close()


def test_a_store_of_the_version_before_the_gate_opens_as_this_version(tmp_path):
    """Version 6 changed how stores claim jobs (store/claims.py), not the tables."""
    path = tmp_path / "s"
    Context(path).close()
    conn = sqlite3.connect(path / "nbmake.db", isolation_level=None)
    conn.execute("UPDATE meta SET value='5' WHERE key='schema'")
    conn.close()
    Context(path).close()
    conn = sqlite3.connect(path / "nbmake.db")
    try:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() \
            == (db.SCHEMA_VERSION,) == ("6",)
    finally:
        conn.close()


def test_a_store_of_a_later_version_is_refused_untouched(tmp_path):
    path = tmp_path / "store"
    Context(path).close()
    conn = sqlite3.connect(path / "nbmake.db", isolation_level=None)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema'")
    conn.close()
    with pytest.raises(Exception, match="schema version 99"):
        Context(path)
