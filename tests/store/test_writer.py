"""The store's writer: who commits a batch, and when, on a real store."""

import signal
import sqlite3
import threading
import time

import pytest

from nbmake_ext.core.jobspec import JobSpec, RunRecord
from nbmake_ext.errors import StoreError
from nbmake_ext.store import Store, blobs
from nbmake_ext.store import store as store_module
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


def slowed_commits(store, monkeypatch, seconds: float) -> threading.Event:
    """Each batch of results takes ``seconds`` longer to write; the event is set when the
    first begins."""
    began = threading.Event()
    commit_results = store._commit_results

    def slow(conn, results):
        began.set()
        time.sleep(seconds)
        return commit_results(conn, results)
    monkeypatch.setattr(store.writer, "_commit_results", slow)
    return began


def test_a_run_ends_without_waiting_for_its_last_writes(tmp_path, monkeypatch):
    """``end_run``: the make's thread goes on, and the background thread commits what
    waits (once it is ``MAX_AGE`` old); the claims of those results are held until they
    are committed, so another store does not run them."""
    n = 5
    monkeypatch.setattr(store_module, "DEFERRED_FROM", 1)  # (a make of many results)
    store, appliers = store_noting_appliers(tmp_path, monkeypatch, n)
    began = slowed_commits(store, monkeypatch, 0.5)
    assert store.run_alone()
    assert store.claim([f"j{i}" for i in range(n)])[0] == [f"j{i}" for i in range(n)]
    for i in range(n):
        store.record_success(f"j{i}", record(), dumps_value(i), {}, ("", ""))
    other = Store(tmp_path / "s")  # another process's view (its claims: locks from now)
    t0 = time.monotonic()
    store.end_run()
    assert time.monotonic() - t0 < 0.4  # (its batch waits MAX_AGE, then takes 0.5 s)
    assert began.wait(5) and not committed(store)
    assert other.claimed_elsewhere(["j0", f"j{n - 1}"]) == {"j0", f"j{n - 1}"}
    assert committed_within(store, n, 5) == {f"j{i}" for i in range(n)}
    deadline = time.monotonic() + 5
    while other.claimed_elsewhere(["j0"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not other.claimed_elsewhere([f"j{i}" for i in range(n)])
    assert appliers == {"nbmake-writer"}
    other.close()
    store.close()


@pytest.mark.parametrize("read", ["snapshot", "load_result", "running_among", "run_alone"])
def test_what_a_run_left_to_its_writer_is_read_back_by_its_own_process(
        tmp_path, monkeypatch, read):
    """After ``end_run``, a read of the store, of its claims, or the next run, waits for
    the run's last writes: this process never sees its own results as missing, nor its
    finished jobs as running."""
    monkeypatch.setattr(store_module, "DEFERRED_FROM", 1)
    store, _ = store_noting_appliers(tmp_path, monkeypatch, 2)
    began = slowed_commits(store, monkeypatch, 0.3)
    store.run_alone()
    store.claim(["j0", "j1"])
    store.record_success("j0", record(), dumps_value(10), {}, ("", ""))
    store.record_success("j1", record(), dumps_value(11), {}, ("", ""))
    store.end_run()
    assert began.wait(5)
    if read == "snapshot":
        stored = store.snapshot()
        assert stored["j0"].state == stored["j1"].state == "done"
    elif read == "load_result":
        store._inflight.clear()  # (as if read from the database, not from memory)
        assert store.load_result("j1") == 11
    elif read == "running_among":
        assert store.running_among(["j0", "j1"]) == set()
    else:
        assert store.run_alone()
        assert not store._claims.held
    assert committed(store) == {"j0", "j1"}
    store.close()


def test_a_run_that_leaves_a_few_writes_waits_for_them(tmp_path, monkeypatch):
    """Fewer than ``DEFERRED_FROM`` writes: committed before the run ends (their commit
    is about its flush to disk; the next command would pay it, and other processes see
    them at once)."""
    monkeypatch.setattr(writer_module, "MAX_AGE", 60.0)  # the background thread never steps in
    n = store_module.DEFERRED_FROM - 1
    store, appliers = store_noting_appliers(tmp_path, monkeypatch, n)
    store.run_alone()
    store.claim([f"j{i}" for i in range(n)])
    for i in range(n):
        store.record_success(f"j{i}", record(), dumps_value(i), {}, ("", ""))
    store.end_run()
    assert committed(store) == {f"j{i}" for i in range(n)} and not store._run_ending
    assert appliers == {"MainThread"} and not store._claims.held
    store.close()


def test_a_write_that_fails_after_the_run_ended_is_raised_by_the_next_read(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(store_module, "DEFERRED_FROM", 1)
    store, _ = store_noting_appliers(tmp_path, monkeypatch, 1)
    commit_results = store._commit_results

    def broken(conn, results):
        raise sqlite3.OperationalError("disk I/O error")
    monkeypatch.setattr(store.writer, "_commit_results", broken)
    store.run_alone()
    store.claim(["j0"])
    store.record_success("j0", record(), dumps_value(1), {}, ("", ""))
    store.end_run()
    with pytest.raises(StoreError, match="disk I/O error"):
        store.snapshot()
    monkeypatch.setattr(store.writer, "_commit_results", commit_results)
    assert store.snapshot()["j0"].state == "todo"  # (told once; nothing is committed)
    assert not store._claims._in_memory  # the run is over (its claim stays: not recorded)
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
