"""The store's writer: who commits a batch, and when, on a real store."""

import signal
import sqlite3
import threading
import time

import pytest

from nbmake_ext.core.jobspec import JobSpec, RunRecord
from nbmake_ext.store import Store, blobs
from nbmake_ext.store import writer as writer_module
from nbmake_ext.store.store import dumps_value


def spec(job_id):
    return JobSpec(job_id, "m.f", "code", {"m.f": "code"}, "args", ())


def record():
    return RunRecord("code", {"m.f": "code"}, "args", {}, "r")


def committed(store) -> set[str]:
    """Jobs whose result another connection (another process) can see."""
    conn = sqlite3.connect(store.path / "nbmake.db")
    try:
        return {j for (j,) in conn.execute("SELECT job_id FROM outcomes WHERE state='done'")}
    finally:
        conn.close()


def committed_within(store, n: int, seconds: float) -> set[str]:
    """``committed(store)`` once ``n`` are, or when ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while len(committed(store)) < n and time.monotonic() < deadline:
        time.sleep(0.005)
    return committed(store)


def test_a_result_is_committed_soon_while_the_make_is_busy_elsewhere(tmp_path):
    """A make inside a long job records nothing more: the background thread commits
    what waits, so other processes see the result and may use it."""
    store = Store(tmp_path / "s")
    store.define([(spec("a"), "key", b"blob", b"payload")])
    assert store.claim(["a"])[0] == ["a"]
    store.record_success("a", record(), dumps_value(1), {}, ("", ""))
    deadline = time.monotonic() + 5
    # The make's thread "runs a long job", never calling flush. The writer's thread commits,
    # then lets the claim go: wait for both (the second a moment after the first).
    while ("a" not in committed(store) or store._claims.held) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert "a" in committed(store)
    assert not store._claims.held  # and the claim went with the commit
    store.close()


def store_noting_appliers(tmp_path, monkeypatch, n: int) -> tuple[Store, set[str]]:
    """A store of ``n`` defined jobs, and the names of the threads that apply its batches."""
    store = Store(tmp_path / "s")
    store.define([(spec(f"j{i}"), "key", b"blob", b"payload") for i in range(n)])
    appliers: set[str] = set()
    apply_batch = writer_module.Writer._apply_batch

    def noting(self, batch):
        appliers.add(threading.current_thread().name)
        apply_batch(self, batch)
    monkeypatch.setattr(writer_module.Writer, "_apply_batch", noting)
    return store, appliers


def test_a_quick_make_commits_on_its_own_thread_once_enough_writes_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "MAX_AGE", 60.0)  # the background thread never steps in
    n = writer_module.MAX_BACKLOG
    store, appliers = store_noting_appliers(tmp_path, monkeypatch, n)
    for i in range(n - 1):
        store.record_success(f"j{i}", record(), dumps_value(i), {}, ("", ""))
    assert not committed(store) and not appliers  # quick writes wait for company...
    store.record_success(f"j{n - 1}", record(), dumps_value(n), {}, ("", ""))
    assert committed(store) == {f"j{i}" for i in range(n)}  # ...until a batch is full
    assert appliers == {threading.current_thread().name}
    store.close()


def test_a_quick_make_leaves_batches_due_by_age_to_the_background_thread(tmp_path,
                                                                         monkeypatch):
    """Writes that waited long enough are committed, but not by the make's thread: it goes
    on handing out jobs while the background thread commits (below a full backlog)."""
    monkeypatch.setattr(writer_module, "MAX_AGE", 0.0)  # every write is due at once
    n = 50
    store, appliers = store_noting_appliers(tmp_path, monkeypatch, n)
    for i in range(n):
        store.record_success(f"j{i}", record(), dumps_value(i), {}, ("", ""))
    assert committed_within(store, n, 10) == {f"j{i}" for i in range(n)}
    assert appliers == {"nbmake-writer"}
    store.close()


def test_results_held_in_memory_are_committed_once_they_add_up(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "MAX_AGE", 60.0)
    monkeypatch.setattr(writer_module, "MAX_BYTES", 100_000)
    store = Store(tmp_path / "s")
    store.define([(spec(j), "key", b"blob", b"payload") for j in "abc"])
    store.record_success("a", record(), dumps_value(b"x" * 40_000), {}, ("", ""))
    store.record_success("b", record(), dumps_value(b"x" * 40_000), {}, ("", ""))
    assert not committed(store)
    store.record_success("c", record(), dumps_value(b"x" * 40_000), {}, ("", ""))
    assert committed(store) == {"a", "b", "c"}
    assert not store._inflight
    store.close()


def test_ctrl_c_while_the_make_commits_a_batch_comes_after_the_commit(tmp_path):
    store = Store(tmp_path / "s")
    store.define([(spec(j), "key", b"blob", b"payload") for j in "ab"])
    store.claim(["a", "b"])
    commit_results = store._commit_results

    def interrupted(conn, results):  # Ctrl-C arrives halfway through the batch
        after = commit_results(conn, results)
        signal.raise_signal(signal.SIGINT)
        return after
    store._commit_results = interrupted
    store.record_success("a", record(), dumps_value(1), {}, ("", ""))
    store.record_failure("b", "boom", "tb", {}, ("", ""))
    with pytest.raises(KeyboardInterrupt):
        store.flush()
    assert committed(store) == {"a"}
    assert store.details("b")["error"] == "boom"  # the rest of the batch too
    assert not store._claims.held and not store._inflight
    store._commit_results = commit_results
    store.close()


def test_results_recorded_together_are_committed_in_one_batch_small_and_large(tmp_path,
                                                                             monkeypatch):
    """``record_successes``: the small results handed over at once, a large one written to
    its file first; all committed, readable, their claims let go."""
    store, _ = store_noting_appliers(tmp_path, monkeypatch, 4)
    ids = ["j0", "j1", "j2", "j3"]
    assert store.claim(ids)[0] == ids
    big = "x" * (store.inline_max + 10)
    values = {"j0": 0, "j1": big, "j2": 2, "j3": 3}
    store.record_successes([(j, record(), dumps_value(v), {}, ("", ""), "")
                            for j, v in values.items()])
    assert store.pending_result("j2") == dumps_value(2)
    store.flush()
    assert committed(store) == set(ids)
    assert not store._claims.held
    assert {j: store.load_result(j) for j in ids} == values
    store.close()


def test_results_an_engine_stored_are_committed_together(tmp_path):
    store = Store(tmp_path / "s")
    store.define([(spec(j), "key", b"blob", b"payload") for j in ("a", "b")])
    entries = []
    for j, v in (("a", 1), ("b", 2)):
        data = dumps_value(v)
        sum_ = blobs.checksum(data)
        name = blobs.file_name(j, sum_)
        stamp = blobs.write_atomic(store.results_dir, name, data, durable=False)
        entries.append((j, record(), name, sum_, stamp, {}, ("", "")))
    store.record_stored_many(entries)
    store.record_stored_many([])
    store.flush()
    assert committed(store) == {"a", "b"}
    assert store.load_result("a") == 1 and store.load_result("b") == 2
    store.close()


def test_writes_soon_go_on_the_background_thread_once_enough_wait(tmp_path, monkeypatch):
    """A make with nothing to hand out (``write_soon``): what waits is committed by the
    background thread now, if there is enough of it; a few writes keep waiting."""
    monkeypatch.setattr(writer_module, "MAX_AGE", 60.0)  # only a hurry can start a batch
    n = writer_module.HURRIED_FROM
    store, appliers = store_noting_appliers(tmp_path, monkeypatch, n)
    for i in range(n - 1):
        store.record_success(f"j{i}", record(), dumps_value(i), {}, ("", ""))
    store.write_soon()
    time.sleep(0.2)  # (nothing is to happen: no deadline to poll for)
    assert not committed(store) and not appliers
    store.record_success(f"j{n - 1}", record(), dumps_value(n), {}, ("", ""))
    store.write_soon()
    assert committed_within(store, n, 5) == {f"j{i}" for i in range(n)}
    assert appliers == {"nbmake-writer"}
    store.close()


def test_a_batch_of_results_is_written_a_few_at_a_time_in_order(tmp_path, monkeypatch):
    store, _ = store_noting_appliers(tmp_path, monkeypatch, 150)
    writes: list[list[str]] = []
    commit_results = store._commit_results

    def noting(conn, results):
        writes.append([r.job_id for r in results])
        return commit_results(conn, results)
    store.writer._commit_results = noting
    for i in range(150):
        store.record_success(f"j{i}", record(), dumps_value(i), {}, ("", ""))
    store.flush()
    per = writer_module.RESULTS_PER_WRITE
    assert [len(w) for w in writes] == [per, per, 150 - 2 * per]
    assert [j for w in writes for j in w] == [f"j{i}" for i in range(150)]
    assert committed(store) == {f"j{i}" for i in range(150)}
    store.close()
