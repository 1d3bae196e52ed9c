"""The store on a real directory: atomic results, checksums, claims, permissions."""

import os
import pickle
import stat
import subprocess
import sys
import time
import warnings

import pytest

from nbmake_ext.core.jobspec import JobSpec, RunRecord
from nbmake_ext.errors import StoreError
from nbmake_ext.store import ResultUnavailable, Store
from nbmake_ext.store.store import dumps_value

import logcheck


def spec(job_id, deps=()):
    return JobSpec(job_id, "m.f", "code", {"m.f": "code"}, "args", tuple(deps))


def define(store, *specs):
    store.define([(s, "key", b"blob", b"payload") for s in specs])


def record(result_fp="r"):
    return RunRecord("code", {"m.f": "code"}, "args", {}, result_fp)


def test_store_directory_is_owner_only(tmp_path):
    store = Store(tmp_path / "s")
    mode = stat.S_IMODE(os.stat(tmp_path / "s").st_mode)
    assert mode == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "s" / "nbmake.db").st_mode) == 0o600
    store.close()


def test_existing_store_readable_by_others_warns(tmp_path):
    Store(tmp_path / "s").close()
    os.chmod(tmp_path / "s", 0o755)
    with logcheck.warns("readable by other users"):
        Store(tmp_path / "s").close()


def test_unwritable_store_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(tmp_path / "file" / "s")


def test_result_round_trip_and_state(tmp_path):
    store = Store(tmp_path / "s")
    define(store, spec("a"))
    store.record_success("a", record("fp1"), dumps_value({"x": 1}), {"duration": 0.5}, ("out\n", ""))
    store.flush()
    assert store.load_result("a") == {"x": 1}
    st = store.snapshot()["a"]
    assert st.state == "done" and st.record.result_fp == "fp1" and st.record.present
    assert st.duration == 0.5
    assert store.logs("a")[0] == "out\n"
    store.close()


BIG = b"x" * 40_000  # pickled, above the size kept inline


def files_of(tmp_path):
    return os.listdir(tmp_path / "s" / "results")


def rows_of(store):
    return [j for (j,) in store._conn.execute("SELECT job_id FROM results ORDER BY job_id")]


def test_small_results_are_rows_large_ones_files(tmp_path):
    store = Store(tmp_path / "s")
    define(store, spec("small"), spec("large"))
    store.record_success("small", record(), dumps_value(1), {}, ("", ""))
    store.record_success("large", record(), dumps_value(BIG), {}, ("", ""))
    store.flush()
    assert rows_of(store) == ["small"] and len(files_of(tmp_path)) == 1
    assert store.load_result("small") == 1 and store.load_result("large") == BIG
    store.close()
    again = Store(tmp_path / "s")  # as a new process reads them
    snap = again.snapshot()
    assert snap["small"].record.present and snap["large"].record.present
    assert again.load_result("small") == 1 and again.load_result("large") == BIG
    again.close()


def test_a_result_that_grows_or_shrinks_moves_and_leaves_nothing_behind(tmp_path):
    store = Store(tmp_path / "s")
    define(store, spec("a"))
    for value, rows, files in [(1, ["a"], 0), (BIG, [], 1), (2, ["a"], 0), (BIG + b"y", [], 1)]:
        store.record_success("a", record(), dumps_value(value), {}, ("", ""))
        store.flush()
        assert store.load_result("a") == value
        assert rows_of(store) == rows and len(files_of(tmp_path)) == files
    store.clean(["a"])
    assert rows_of(store) == [] and files_of(tmp_path) == []
    store.close()


def test_a_tampered_inline_result_is_unavailable_and_forgotten(tmp_path):
    store = Store(tmp_path / "s")
    define(store, spec("a"), spec("b"))
    for j in "ab":
        store.record_success(j, record(), dumps_value(list(range(100))), {}, ("", ""))
    store.flush()
    (data,) = store._conn.execute("SELECT data FROM results WHERE job_id='a'").fetchone()
    store._conn.execute("UPDATE results SET data=? WHERE job_id='a'", (data[:-1] + b"!",))
    store._conn.execute("DELETE FROM results WHERE job_id='b'")
    with pytest.raises(ResultUnavailable, match="corrupt"):
        store.load_result("a")
    with pytest.raises(ResultUnavailable, match="missing"):
        store.load_result("b")
    for j in "ab":
        store.mark_unreadable(j)
    store.flush()
    snap = store.snapshot()
    assert not snap["a"].record.present and not snap["b"].record.present
    assert rows_of(store) == []
    store.close()


def test_new_result_replaces_old_file(tmp_path):
    store = Store(tmp_path / "s")
    store.inline_max = 0
    define(store, spec("a"))
    store.record_success("a", record("1"), dumps_value(1), {}, ("", ""))
    store.flush()
    store.record_success("a", record("2"), dumps_value(2), {}, ("", ""))
    store.flush()
    assert store.load_result("a") == 2
    assert len(os.listdir(tmp_path / "s" / "results")) == 1
    store.close()


def test_corrupt_or_missing_result_is_detected(tmp_path):
    store = Store(tmp_path / "s")
    store.inline_max = 0
    define(store, spec("a"), spec("b"))
    for j in "ab":
        store.record_success(j, record(), dumps_value(list(range(100))), {}, ("", ""))
    store.flush()
    files = {j: store.details(j)["r_file"] for j in "ab"}
    path_a = tmp_path / "s" / "results" / files["a"]
    data = bytearray(path_a.read_bytes())
    data[10] ^= 0xFF
    path_a.write_bytes(bytes(data))
    os.unlink(tmp_path / "s" / "results" / files["b"])
    with pytest.raises(ResultUnavailable, match="corrupt"):
        store.load_result("a")
    with pytest.raises(ResultUnavailable, match="missing"):
        store.load_result("b")
    with logcheck.library_warnings() as caught:
        snap = store.snapshot()
    messages = " ".join(logcheck.messages(caught))
    assert "'a' is corrupt" in messages and "'b' is missing" in messages
    assert not snap["a"].record.present and not snap["b"].record.present
    store.close()


def test_unreadable_result_is_forgotten(tmp_path):
    store = Store(tmp_path / "s")
    define(store, spec("a"))
    store.record_success("a", record(), dumps_value(1), {}, ("", ""))
    store.flush()
    store.mark_unreadable("a")
    store.flush()
    snap = store.snapshot()  # no warning: nothing is expected of the file any more
    assert not snap["a"].record.present
    assert os.listdir(tmp_path / "s" / "results") == []
    store.close()


def test_redefinition_keeps_the_stored_result(tmp_path):
    store = Store(tmp_path / "s")
    define(store, spec("a"))
    store.record_success("a", record(), dumps_value(1), {}, ("", ""))
    store.flush()
    changed = JobSpec("a", "m.f", "code2", {"m.f": "code2"}, "args", ())
    store.define([(changed, "key", None, b"p")])
    st = store.snapshot()["a"]
    assert st.spec.code_fp == "code2" and st.record.code_fp == "code"
    assert store.load_result("a") == 1
    store.close()


def test_claims_are_exclusive_between_stores_and_released(tmp_path):
    one, two = Store(tmp_path / "s"), Store(tmp_path / "s")
    define(one, spec("a"), spec("b"))
    mine, elsewhere = one.claim(["a"])
    assert mine == ["a"] and not elsewhere
    mine, elsewhere = two.claim(["a", "b"])
    assert mine == ["b"] and list(elsewhere) == ["a"]
    assert two.claimed_elsewhere(["a", "b"]) == {"a"}
    assert one.running_among(["a", "b"]) == {"a", "b"}
    one.release(["a"])
    assert two.claim(["a"])[0] == ["a"]
    one.close()
    two.close()


def test_a_store_alone_on_its_directory_looks_for_no_claims_of_others(tmp_path, monkeypatch):
    one = Store(tmp_path / "s")
    define(one, spec("a"), spec("b"))
    one.claim(["a"])
    with monkeypatch.context() as m:  # alone: one look, not one per job
        m.setattr(one._claims, "held_elsewhere", lambda job_id: 1 / 0)
        assert one.running_among(["a", "b"]) == {"a"}
    two = Store(tmp_path / "s")
    two.claim(["b"])
    assert one.running_among(["a", "b"]) == {"a", "b"} == two.running_among(["a", "b"])
    two.close()
    assert one.running_among(["a", "b"]) == {"a"}
    one.close()


def test_claims_of_a_killed_process_vanish_with_it(tmp_path):
    store = Store(tmp_path / "s")
    define(store, spec("a"))
    code = ("import sys, time; from nbmake_ext.store import Store;"
            "s = Store(sys.argv[1]); s.claim(['a']); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "s")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert store.claim(["a"]) == ([], {"a": "another process"})
        proc.kill()
        proc.wait()
        assert store.claim(["a"]) == (["a"], {})
    finally:
        proc.kill()
        proc.wait()
    store.close()


def test_clean_forgets_result_and_forget_deletes(tmp_path):
    store = Store(tmp_path / "s")
    define(store, spec("a"), spec("b"))
    for j in "ab":
        store.record_success(j, record(), dumps_value(j), {}, ("", ""))
    store.flush()
    store.clean(["a"])
    store.forget(["b"])
    snap = store.snapshot()
    assert snap["a"].record is None and snap["a"].state == "todo"
    assert "b" not in snap
    assert os.listdir(tmp_path / "s" / "results") == []
    store.close()


def test_failure_is_recorded_with_traceback(tmp_path):
    store = Store(tmp_path / "s")
    define(store, spec("a"))
    store.record_failure("a", "ValueError: bad", "Traceback ...", {"duration": 1.0}, ("", "err"))
    store.flush()
    d = store.details("a")
    assert d["state"] == "failed" and d["error"] == "ValueError: bad"
    assert d["traceback"] == "Traceback ..." and d["stderr"] == "err"
    store.close()


def test_unpicklable_in_result_bytes_is_reported_on_load(tmp_path):
    store = Store(tmp_path / "s")
    define(store, spec("a"))
    store.record_success("a", record(), b"not a pickle", {}, ("", ""))
    store.flush()
    with warnings.catch_warnings():
        with pytest.raises(ResultUnavailable, match="cannot be loaded"):
            store.load_result("a")
    store.close()


class _OneThreadConnection:
    """Forwards to a connection, noting every thread that uses it."""

    def __init__(self, conn):
        self._conn, self.threads = conn, set()

    def __getattr__(self, name):
        import threading
        self.threads.add(threading.get_ident())
        return getattr(self._conn, name)


def test_the_writer_thread_never_reads_through_the_main_connection(tmp_path):
    """Lazily read parts (code parts of a job loaded from the store, as the console makes
    it) are written by the writer thread through its own connection: the main connection
    is busy while the main thread waits for the write lock, so the two would deadlock
    until the busy timeout."""
    import threading
    first = Store(tmp_path / "s")
    define(first, spec("a"), spec("b"))
    first.close()
    store = Store(tmp_path / "s")
    probe = _OneThreadConnection(store._conn)
    store._db_conn = probe
    stored = store.snapshot()
    lazy = stored["a"].spec.code_parts
    store.record_success("a", RunRecord("code", lazy, "args", {}, "r", arg_fps=lazy),
                         dumps_value(1), {}, ("", ""))
    store.record_failure("b", "boom", "tb", {}, ("", ""), spec=stored["b"].spec)
    store.flush()
    assert probe.threads == {threading.get_ident()}
    assert store.job("a").record.code_parts() == {"m.f": "code"}
    assert store.details("b")["error"] == "boom"
    store.close()


_OPEN_AT_ONCE = """
import sys
from pathlib import Path
from nbmake_ext.store import Store
go = Path(sys.argv[2])
while not go.exists():  # spin: every process opens within microseconds of the others
    pass
Store(sys.argv[1]).close()
"""


@pytest.mark.timeout(120)
def test_processes_creating_one_store_at_once_all_open_it(tmp_path):
    """The first opening of a store switches its database to WAL, which SQLite may refuse
    at once (not after a wait) while another process is doing the same."""
    failures = []
    for attempt in range(12):
        store, go = tmp_path / f"s{attempt}", tmp_path / f"go{attempt}"
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT_ONCE, str(store), str(go)],
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        time.sleep(0.4)  # both started and waiting
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=60)
            if p.returncode:
                failures.append(err.strip().splitlines()[-1])
    assert not failures, failures


def test_plain_results_pickle_to_the_bytes_cloudpickle_writes_and_others_go_by_value():
    import cloudpickle

    for value in (7, 2.5, "x", b"y", None, True, 3 + 4j, (1, "a", None), [1.5, 2], 10**40):
        assert dumps_value(value) == cloudpickle.dumps(value, protocol=5), value

    class Local:  # the standard pickler refuses it; cloudpickle takes it by value
        def __init__(self, n):
            self.n = n

    back = pickle.loads(dumps_value([Local(3)]))
    assert back[0].n == 3 and type(back[0]).__name__ == "Local"


def test_a_store_whose_directory_vanished_says_so_at_flush_instead_of_hanging(tmp_path):
    import shutil

    store = Store(tmp_path / "s")
    define(store, spec("a"))
    shutil.rmtree(tmp_path / "s")  # the writer thread starts with the first write, after this
    store.record_success("a", record("fp1"), dumps_value(1), {"duration": 0.1}, ("", ""))
    with pytest.raises(StoreError, match="cannot open the store's database"):
        store.flush()
    store.close()


def test_a_store_knows_whether_another_store_was_open_since_a_mark(tmp_path):
    a = Store(tmp_path / "s")
    mark = a.activity()
    assert a.quiet_since(mark)
    b = Store(tmp_path / "s")  # open now
    assert not a.quiet_since(mark) and not b.quiet_since(b.activity())
    b.close()
    assert not a.quiet_since(mark)  # was open since the mark, though closed now
    assert a.quiet_since(a.activity())
    a.close()


def test_results_checksummed_by_an_earlier_version_still_read_and_are_still_checked(tmp_path):
    import hashlib

    store = Store(tmp_path / "s")
    define(store, spec("a"), spec("b"))
    store.record_success("a", record(), dumps_value(list(range(100))), {}, ("", ""))
    store.record_success("b", record(), dumps_value(BIG), {}, ("", ""))
    store.flush()
    for job, data in (("a", store._conn.execute(
            "SELECT data FROM results WHERE job_id='a'").fetchone()[0]),
            ("b", (tmp_path / "s" / "results" / store.details("b")["r_file"]).read_bytes())):
        old = hashlib.blake2b(data, digest_size=16).hexdigest()  # the earlier checksums
        store._conn.execute("UPDATE outcomes SET r_checksum=? WHERE job_id=?", (old, job))
    assert store.load_result("a") == list(range(100)) and store.load_result("b") == BIG
    store._conn.execute("UPDATE results SET data=? WHERE job_id='a'", (dumps_value(7),))
    with pytest.raises(ResultUnavailable, match="corrupt"):
        store.load_result("a")
    store.close()


def test_snapshot_rows_read_back_as_written_one_object_per_repeated_text(tmp_path):
    """A large store's snapshot keeps one object per text that its rows repeat; what is
    read back is the same (values, not identity, are the contract elsewhere)."""
    store = Store(tmp_path / "s")
    define(store, spec("a"), spec("b"), spec("c", deps=["a", "b"]), spec("todo"))
    store.record_success("a", record("fa"), dumps_value(1), {"duration": 0.5}, ("", ""))
    store.record_success("b", record("fb"), dumps_value(2), {}, ("", ""))
    other = RunRecord("old code", {"m.f": "old"}, "old args", {"a": "fa", "b": "fb"}, "fc")
    store.record_success("c", other, dumps_value(3), {}, ("", ""))
    store.flush()
    for snap in (store.snapshot(), store.snapshot_of(["a", "b", "c", "todo", "a"])):
        a, b, c, todo = snap["a"], snap["b"], snap["c"], snap["todo"]
        assert not hasattr(a, "__dict__")
        assert (a.state, a.forced, a.record.code_fp, a.record.args_fp, a.record.dep_fps,
                a.record.result_fp, a.record.present, a.duration) \
            == ("done", None, "code", "args", {}, "fa", True, 0.5)
        assert a.state is b.state and a.spec.function is b.spec.function
        assert a.record.code_fp is b.record.code_fp and a.record.args_fp is a.spec.args_fp
        assert (c.record.code_fp, c.record.args_fp, c.record.dep_fps) \
            == ("old code", "old args", {"a": "fa", "b": "fb"})
        assert c.spec.deps == ("a", "b") and a.spec.deps == ()
        assert dict(c.record.code_parts()) == {"m.f": "old"}
        assert (todo.state, todo.forced, todo.record) == ("todo", None, None)
        assert a.same_definition(spec("a")) and not a.same_definition(spec("a", deps=["b"]))
        assert c.same_definition(spec("c", deps=["a", "b"]))
    store.close()


def test_a_fan_in_record_keeps_the_texts_of_its_inputs_rows(tmp_path):
    """A record of many inputs names each with its result's fingerprint: the texts its
    inputs' rows hold already, kept once (a fan-in of 100,000: 13 MB)."""
    from nbmake_ext.store.snapshots import SHARED_FROM

    store = Store(tmp_path / "s")
    parts = [f"part{i}" for i in range(SHARED_FROM)]
    define(store, *[spec(p) for p in parts], spec("few", deps=parts[:2]),
           spec("all", deps=[*parts, "gone"]))
    for p in parts:
        store.record_success(p, record(f"fp-{p}"), dumps_value(p), {}, ("", ""))
    consumed = {p: f"fp-{p}" for p in parts}
    consumed[parts[0]] = "an older result"  # (not the row's: its own text)
    consumed["gone"] = "fp-gone"            # (no row of its own)
    store.record_success("all", RunRecord("code", {}, "args", consumed, "fa"),
                         dumps_value(0), {}, ("", ""))
    store.record_success("few", RunRecord("code", {}, "args", {p: f"fp-{p}" for p in parts[:2]},
                                          "ff"), dumps_value(0), {}, ("", ""))
    store.flush()
    for snap in (store.snapshot(), store.snapshot_of([*parts, "few", "all"])):
        kept = snap["all"].record.dep_fps
        assert kept == consumed
        for p in parts[1:]:
            (key,) = [k for k in kept if k == p]
            assert key is snap[p].job_id and kept[p] is snap[p].record.result_fp
        assert kept[parts[0]] == "an older result"
        assert snap["few"].record.dep_fps == {p: f"fp-{p}" for p in parts[:2]}
    store.close()


def test_what_is_only_shown_is_read_for_every_job_at_once_when_first_asked(tmp_path):
    """A snapshot's read leaves out what only views show (a no-op make never needs it);
    the first job asked for it reads it for all jobs, in one query."""
    store = Store(tmp_path / "s")
    define(store, spec("a"), spec("b"), spec("c"))
    store.record_success("a", record("fa"), dumps_value(1), {"duration": 0.5, "ended": 9.0},
                         ("", ""))
    store.record_failure("b", "ValueError: bad", "Traceback ...", {"duration": 1.5}, ("", ""))
    store.flush()
    queries: list[str] = []
    store._conn.set_trace_callback(queries.append)
    snap = store.snapshot()
    assert not any("o.error" in q for q in queries)
    queries.clear()
    a, b, c = snap["a"], snap["b"], snap["c"]
    assert (a.function, a.error, a.duration, a.ended) == ("m.f", None, 0.5, 9.0)
    assert (b.error, b.duration, b.blocked_by) == ("ValueError: bad", 1.5, None)
    assert (c.error, c.duration, c.ended, c.function) == (None, None, None, "m.f")
    assert len([q for q in queries if q.lstrip().upper().startswith("SELECT")]) == 1
    # a re-read of a few jobs has it at once, and so has a snapshot for a view of them all
    # (read whole: by another store, which has none to bring up to date)
    other = Store(tmp_path / "s")
    for conn, read in ((store._conn, lambda: store.snapshot_of(["b"])),
                       (other._conn, lambda: other.snapshot(shown=True))):
        conn.set_trace_callback(queries.append)
        queries.clear()
        again = read()
        assert again["b"].error == "ValueError: bad" and again["b"].function == "m.f"
        assert again["b"].duration == 1.5
        assert len([q for q in queries if "FROM jobs" in q]) == 1
        conn.set_trace_callback(None)
    other.close()
    store.close()
