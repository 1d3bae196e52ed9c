"""A snapshot read again reads only the rows of the jobs written to since it was read (by
this store, another store, another process), and of those whose result file changed on
disk (store/snapshots.py, ``db.changes``). Whatever happened in between, it must equal a
snapshot read whole. Real stores on a real directory; the other process is a real one."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys

import pytest

from nbmake_ext.core.jobspec import JobSpec, RunRecord
from nbmake_ext.store import Store, db
from nbmake_ext.store.store import dumps_value
from nbmake_ext.store.stored_job import FORCED_UNFINISHED

import logcheck


def spec(job_id, deps=(), code="code"):
    return JobSpec(job_id, "m.f", code, {"m.f": code}, "args", tuple(deps))


def define(store, *specs):
    store.define([(s, "key", b"blob", b"payload") for s in specs])


def record(result_fp, deps=None):
    return RunRecord("code", {"m.f": "code"}, "args", dict(deps or {}), result_fp)


def view(snapshot: dict) -> dict:
    """Everything a snapshot says of each job, comparable."""
    out = {}
    for jid, st in snapshot.items():
        r = st.record
        s = st.spec
        out[jid] = (st.state, st.forced, st.r_file, st.r_checksum, st.function, st.error,
                    st.blocked_by, st.duration, st.ended,
                    None if r is None else (r.code_fp, r.args_fp, dict(r.dep_fps), r.result_fp,
                                            r.present, dict(r.files)),
                    (s.code_fp, s.args_fp, s.deps, s.parent, s.dynamic, s.options, s.inputs),
                    st.func_key)
    return out


def whole(path) -> dict:
    """The snapshot of a store that has none to bring up to date."""
    other = Store(path)
    try:
        return view(other.snapshot())
    finally:
        other.close()


def rows_read(store, read) -> list[str]:
    """The queries of ``read()`` that read jobs' rows."""
    queries: list[str] = []
    store._conn.set_trace_callback(queries.append)
    try:
        read()
    finally:
        store._conn.set_trace_callback(None)
    return [q for q in queries if "FROM jobs AS j" in q]


def test_a_snapshot_read_again_reads_only_the_rows_written_to_since(tmp_path):
    path = tmp_path / "s"
    store = Store(path)
    define(store, *[spec(f"j{i}") for i in range(200)])
    store.snapshot()
    store.record_success("j7", record("r7"), dumps_value(7), {"duration": 0.1}, ("", ""))
    store.flush()
    queries = rows_read(store, store.snapshot)
    assert len(queries) == 1 and queries[0].endswith("WHERE j.job_id IN ('j7')")
    snap = store.snapshot()
    assert snap["j7"].state == "done" and snap["j7"].record.result_fp == "r7"
    assert view(snap) == whole(path)
    # nothing written since: no row is read at all
    assert rows_read(store, store.snapshot) == []
    store.close()


def test_new_jobs_defined_here_are_not_read_back(tmp_path):
    """The rows of jobs this store defined anew are known as written; a redefinition, and
    a new job another store gave an outcome meanwhile, are read (their outcome is kept)."""
    path = tmp_path / "s"
    store = Store(path)
    other = Store(path)
    define(store, spec("old"))
    store.record_success("old", record("r"), dumps_value(0), {}, ("", ""))
    store.flush()
    store.snapshot()
    define(store, *[spec(f"n{i}", deps=("old",)) for i in range(300)])
    assert rows_read(store, store.snapshot) == []
    assert view(store.snapshot()) == whole(path)
    # another store gives "x" an outcome before this one defines it
    define(other, spec("x"))
    other.record_failure("x", "E", "tb", {}, ("", ""))
    other.flush()
    define(store, spec("old", code="new code"), spec("x"), spec("fresh"))
    queries = rows_read(store, store.snapshot)
    assert len(queries) == 1 and queries[0].endswith("WHERE j.job_id IN ('x','old')")
    snap = store.snapshot()
    assert snap["x"].state == "failed" and snap["old"].record.result_fp == "r"
    assert snap["old"].spec.code_fp == "new code" and snap["fresh"].state == "todo"
    assert view(snap) == whole(path)
    # an outcome left without its job (a row deleted by hand) is the new job's again,
    # whether it comes alone or among more new jobs than the store holds
    for among in ([], [spec(f"m{i}") for i in range(500)]):
        with sqlite3.connect(path / "nbmake.db") as conn:
            conn.execute("DELETE FROM jobs WHERE job_id='x'")
        store.snapshot()
        define(store, spec("x"), *among)
        assert store.snapshot()["x"].state == "failed"
        assert view(store.snapshot()) == whole(path)
    other.close()
    store.close()


def test_a_snapshot_with_many_rows_written_to_since_is_read_whole(tmp_path):
    path = tmp_path / "s"
    store = Store(path)
    define(store, *[spec(f"j{i}") for i in range(200)])
    store.snapshot()
    store.record_successes([(f"j{i}", record(f"r{i}"), dumps_value(i), {}, ("", ""), "")
                            for i in range(150)])
    store.flush()
    queries = rows_read(store, store.snapshot)
    assert len(queries) == 1 and "WHERE" not in queries[0]
    assert view(store.snapshot()) == whole(path)
    store.close()


def test_writes_of_another_process_are_read_again(tmp_path):
    path = tmp_path / "s"
    store = Store(path)
    define(store, spec("a"), spec("b"))
    before = store.snapshot()
    assert before["a"].state == "todo"
    code = (
        "import sys; from nbmake_ext.store import Store\n"
        "from nbmake_ext.core.jobspec import RunRecord\n"
        "from nbmake_ext.store.store import dumps_value\n"
        "s = Store(sys.argv[1])\n"
        "s.record_success('a', RunRecord('code', {'m.f': 'code'}, 'args', {}, 'ra'),"
        " dumps_value(1), {}, ('', ''))\n"
        "s.record_failure('b', 'ValueError: no', 'Traceback ...', {}, ('', ''))\n"
        "s.close()\n")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    snap = store.snapshot()
    assert snap["a"].state == "done" and snap["a"].record.result_fp == "ra"
    assert snap["b"].state == "failed" and snap["b"].error == "ValueError: no"
    assert view(snap) == whole(path)
    store.close()


def test_a_result_file_removed_or_changed_by_hand_is_seen_by_the_next_snapshot(tmp_path):
    path = tmp_path / "s"
    store = Store(path)
    store.inline_max = 0  # every result a file
    define(store, spec("a"), spec("b"), spec("c"))
    for jid in "abc":
        store.record_success(jid, record("r" + jid), dumps_value(jid * 100), {}, ("", ""))
    store.flush()
    snap = store.snapshot()
    assert all(snap[j].record.present for j in "abc")
    os.remove(path / "results" / snap["a"].r_file)
    with open(path / "results" / snap["b"].r_file, "ab") as f:
        f.write(b"more")
    with logcheck.warns("is missing"):
        again = store.snapshot()
    assert not again["a"].record.present and not again["b"].record.present
    assert again["c"].record.present
    with logcheck.warns("is missing") as records:  # each snapshot says so again
        again = store.snapshot()
    assert len(records) == 2 and not again["a"].record.present
    with logcheck.library_warnings():
        assert view(again) == whole(path)
    store.close()


def test_a_snapshot_older_than_the_changes_kept_is_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "CHANGES_KEPT", 5)
    monkeypatch.setattr(db, "CHANGES_PRUNED", 10)
    path = tmp_path / "s"
    store = Store(path)
    define(store, *[spec(f"j{i}") for i in range(400)])
    store.snapshot()
    for i in range(20):  # one write each: the oldest changes go meanwhile
        store.record_success(f"j{i}", record(f"r{i}"), dumps_value(i), {}, ("", ""))
        store.flush()
    conn = store._conn
    last, pruned = db.changes_mark(conn)
    assert pruned > 0 and conn.execute("SELECT count(*) FROM changes").fetchone()[0] < 20
    queries = rows_read(store, store.snapshot)
    assert len(queries) == 1 and "WHERE" not in queries[0]
    assert view(store.snapshot()) == whole(path)
    store.close()


@pytest.mark.parametrize("seed", range(6))
def test_a_snapshot_brought_up_to_date_equals_one_read_whole(tmp_path, seed):
    """Random writes of every kind, by this store and another, and files removed by hand;
    after each, the snapshot kept up to date says what a whole read says."""
    rnd = random.Random(seed)
    path = tmp_path / "s"
    store = Store(path)
    other = Store(path)
    ids = [f"j{i}" for i in range(60)]
    define(store, *[spec(j) for j in ids])
    store.snapshot()
    for step in range(40):
        who = rnd.choice([store, other])
        who.inline_max = rnd.choice([0, 1 << 20])
        pick = rnd.sample(ids, rnd.randint(1, 4))
        kind = rnd.choice(["define", "success", "failure", "blocked", "forced", "clean",
                           "forget", "remove file", "dependent"])
        if kind == "define":
            define(who, *[spec(j, code=f"code{step}") for j in pick])
        elif kind == "success":
            who.record_successes([(j, record(f"r{j}-{step}"), dumps_value((j, step) * 50), {},
                                   ("", ""), "") for j in pick])
        elif kind == "failure":
            who.record_failure(pick[0], f"E{step}", "tb", {"duration": step}, ("", ""))
        elif kind == "blocked":
            who.record_blocked(pick[0], pick[-1])
        elif kind == "forced":
            who.set_forced(pick, rnd.choice([1, FORCED_UNFINISHED]))
        elif kind == "clean":
            who.clean(pick)
        elif kind == "forget":
            who.forget(pick)
            ids = [j for j in ids if j not in pick] or ["again"]
            define(who, *[spec(j) for j in ids if j == "again"])
        elif kind == "remove file":
            files = sorted(os.listdir(path / "results"))
            if files:
                os.remove(path / "results" / rnd.choice(files))
        else:
            new = f"d{step}"
            define(who, spec(new, deps=pick))
            ids.append(new)
            who.record_success(new, record(f"r{new}", {d: f"r{d}" for d in pick}),
                               dumps_value(step), {}, ("", ""))
        who.flush()
        with logcheck.library_warnings():  # (a result file removed by hand: warned of)
            assert view(store.snapshot()) == whole(path), (step, kind, pick)
    other.close()
    store.close()
