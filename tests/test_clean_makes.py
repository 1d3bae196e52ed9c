"""A make of jobs all as the last clean make left them is told so by the record that make
left (kernel/clean_makes.py, store/unchanged.py), without reading and judging every job.
Every test here checks that any change since (a definition, a write by anyone, a touched
result file, other targets, files or dynamic jobs, a failure, another store open) sends
the make the usual way, and that what it then does is right."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import logcheck
from contexts import new_context
from nbmake_ext import File, JobsFailed
from nbmake_ext.kernel import clean_makes
from nbmake_ext.store import blobs
from nbmake_ext.store import store as store_module
from nbmake_ext.store.store import Store
from nbmake_ext.store.unchanged import RECORD_KEY

N = 30


def double(i):
    return 2 * i


def total(*parts):
    return sum(parts)


def big(i):
    return bytes([i % 251]) * 100_000  # a result file of its own, not a row


def fails(i):
    raise ValueError(f"no {i}")


def size_of(path):
    return len(open(path).read())


def lengths(*parts):
    return sum(len(p) for p in parts)


def spawn(context, n):
    return [context.comp(double, i) for i in range(n)]


@pytest.fixture
def reads(monkeypatch):
    """How many times a store read every job (``Store.snapshot``)."""
    count = [0]
    snapshot = Store.snapshot

    def counted(self, *args, **kwargs):
        count[0] += 1
        return snapshot(self, *args, **kwargs)

    monkeypatch.setattr(Store, "snapshot", counted)
    return count


def define(ctx, n=N, func=double):
    parts = [ctx.comp(func, i, job_id=f"d{i}") for i in range(n)]
    return ctx.comp(lengths if func is big else total, *parts, job_id="total")


def after_a_clean_make(store_path, n=N, func=double):
    """A Context that made every job, then a new kernel running the notebook again."""
    ctx = new_context(store_path)
    define(ctx, n, func)
    ctx.make("total")
    return restart(ctx, store_path, n, func)


def restart(ctx, store_path, n=N, func=double):
    """A new kernel running the notebook again: a fresh Context, the same definitions."""
    ctx.close()
    fresh = new_context(store_path)
    return fresh, define(fresh, n, func)


def test_a_make_after_a_clean_one_reads_no_job_and_says_what_the_usual_way_says(
        store_path, reads):
    ctx = new_context(store_path)
    define(ctx)
    assert ctx.make("total").ran == N + 1
    ctx, sink = restart(ctx, store_path)
    reads[0] = 0
    report = ctx.make("total")
    assert reads[0] == 0  # told by the record
    assert (report.ran, report.skipped, report.failed, report.blocked) == (0, N + 1, {}, {})
    assert ctx.lines[-1] == f"make: 0 done, {N + 1} up to date in {report.seconds:.2f}s"
    assert sink.result() == sum(2 * i for i in range(N))
    # The usual way (without the record) says the same.
    ctx, sink = restart(ctx, store_path)
    with sqlite3.connect(store_path / "nbmake.db") as conn:
        conn.execute("DELETE FROM meta WHERE key=?", (RECORD_KEY,))
    reads[0] = 0
    usual = ctx.make("total")
    assert reads[0] == 1
    assert (usual.ran, usual.skipped, usual.targets) == (0, N + 1, report.targets)
    # ...and leaves the record again: parmake is told by it too, and starts no engine.
    ctx, sink = restart(ctx, store_path)
    reads[0] = 0
    assert ctx.parmake("total", n=2).skipped == N + 1
    assert reads[0] == 0 and ctx._pool is None
    # A make of everything: the same report either way too.
    usual = ctx.make()
    assert reads[0] == 1
    ctx, sink = restart(ctx, store_path)
    told = ctx.make()
    assert reads[0] == 1
    assert (told.ran, told.skipped, told.targets) == (usual.ran, usual.skipped, usual.targets)
    assert told.skipped == N + 1 and sorted(told.targets) == sorted(ctx.graph.specs)
    ctx.close()


def _remake_elsewhere(store_path, ctx):
    other = new_context(store_path)
    define(other)
    other.remake("d3")
    other.close()


def _clean_elsewhere(store_path, ctx):
    other = new_context(store_path)
    define(other)
    other.clean("d3")
    other.close()


def _forced_by_hand(store_path, ctx):
    with sqlite3.connect(store_path / "nbmake.db") as conn:
        conn.execute("UPDATE outcomes SET forced=1 WHERE job_id='d3'")


def _definition_replaced(store_path, ctx):
    with sqlite3.connect(store_path / "nbmake.db") as conn:
        conn.execute("UPDATE jobs SET args_fp='something else' WHERE job_id='d3'")


@pytest.mark.parametrize("write", [_remake_elsewhere, _clean_elsewhere, _forced_by_hand,
                                   _definition_replaced])
def test_any_write_since_sends_the_make_the_usual_way(store_path, reads, write):
    ctx = new_context(store_path)
    define(ctx)
    ctx.make("total")
    ctx.close()
    write(store_path, ctx)
    ctx = new_context(store_path)
    sink = define(ctx)
    reads[0] = 0
    report = ctx.make("total")
    assert reads[0] == 1
    # Whatever the write, the make leaves every job up to date and right.
    assert sink.result() == sum(2 * i for i in range(N))
    assert ctx.make("total").ran == 0
    assert {j: ctx.state_of(j) for j in ["d3", "total"]} == {"d3": "done", "total": "done"}
    if write in (_clean_elsewhere, _forced_by_hand):
        assert report.ran == 1  # d3; its result is the same, total's inputs are too
    ctx.close()


def test_a_changed_definition_runs_what_changed(store_path, reads):
    ctx, sink = after_a_clean_make(store_path)
    ctx.comp(double, 100, job_id="d3")  # a new argument
    reads[0] = 0
    report = ctx.make("total")
    assert reads[0] == 1 and report.ran == 2  # d3 and total
    assert sink.result() == sum(2 * i for i in range(N)) - 6 + 200


def test_a_make_of_some_of_the_jobs_registered_leaves_its_record_too(store_path, reads):
    ctx = new_context(store_path)
    define(ctx)
    ctx.comp(double, -1, job_id="elsewhere")  # registered, not needed by total
    ctx.make("total")
    ctx.close()
    for attempt in range(2):
        ctx = new_context(store_path)
        define(ctx)
        ctx.comp(double, -1, job_id="elsewhere")
        reads[0] = 0
        report = ctx.make("total")
        assert (report.ran, report.skipped, reads[0]) == (0, N + 1, 0)
        ctx.close()
    # "elsewhere" never ran: a make of it is not told by the record, and runs it.
    ctx = new_context(store_path)
    define(ctx)
    ctx.comp(double, -1, job_id="elsewhere")
    assert ctx.make("elsewhere").ran == 1 and reads[0] == 1
    ctx.close()


def test_another_target_is_made_the_usual_way(store_path, reads, monkeypatch):
    ctx, _ = after_a_clean_make(store_path)
    digests = []
    monkeypatch.setattr(clean_makes, "definitions_digest",
                        lambda *args: digests.append(args) or "not asked for")
    reads[0] = 0
    report = ctx.make("d3")
    assert reads[0] == 1 and (report.ran, report.skipped) == (0, 1)
    # The record is of other targets: every definition's digest was not taken to look at
    # it. (The record this make leaves takes it too, from a dict: not counted.)
    assert [args for args in digests if isinstance(args[0], list)] == []
    ctx.close()


def test_the_record_of_a_make_is_not_written_when_a_make_of_other_targets_follows_at_once(
        store_path, reads, monkeypatch):
    """The writer writes a make's record after the make returns. Another make before then,
    of other targets, would replace the record or make it wrong: it is dropped, without
    taking the digest of every definition (a make of a thousand jobs right after a make of
    one waited for that). The record of the second make is written as usual, and serves."""
    monkeypatch.setattr(store_module.Writer, "_late_writes", lambda self: None)  # no aging
    ctx = new_context(store_path)
    define(ctx)
    warm = ctx.comp(double, 99, job_id="warm")
    digests = []
    digest = clean_makes.definitions_digest

    def counted(own, *args):  # (only this store's: another test's writer may write late)
        if "warm" in own:
            digests.append(own)
        return digest(own, *args)

    monkeypatch.setattr(clean_makes, "definitions_digest", counted)
    ctx.make(warm.job_id)
    assert digests == []  # (not written yet)
    report = ctx.make("total")
    assert report.ran == N + 1 and digests == []  # the record of the first was dropped
    ctx.store.flush()
    assert len(digests) == 1  # the second's, written
    with sqlite3.connect(store_path / "nbmake.db") as conn:
        assert f'"jobs": {N + 1}' in dict(conn.execute("SELECT * FROM meta"))[RECORD_KEY]
    ctx, _ = restart(ctx, store_path)
    ctx.comp(double, 99, job_id="warm")
    reads[0] = 0
    assert ctx.make("total").skipped == N + 1 and reads[0] == 0  # the record served
    ctx.close()


@pytest.mark.parametrize("touch", ["deleted", "rewritten"])
def test_a_touched_result_file_is_seen(store_path, reads, touch):
    ctx = new_context(store_path)
    define(ctx, 5, big)
    ctx.make("total")
    ctx.close()
    results = store_path / "results"
    prefix = blobs.file_name("d2", "0" * 12).split("-")[0]
    name = next(n for n in blobs.stamps(results) if n.startswith(prefix))
    if touch == "deleted":
        (results / name).unlink()
    else:
        data = (results / name).read_bytes()
        (results / name).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    ctx = new_context(store_path)
    define(ctx, 5, big)
    reads[0] = 0
    with logcheck.warns("missing" if touch == "deleted" else "corrupt"):
        report = ctx.make("total")
    assert reads[0] == 1 and report.ran == 1  # d2: total takes a result equal to the last
    assert ctx.result_of("d2") == bytes([2]) * 100_000
    ctx.close()


def test_a_make_that_failed_leaves_no_record(store_path, reads):
    ctx = new_context(store_path)
    define(ctx)
    ctx.comp(fails, 1, job_id="bad")
    with pytest.raises(JobsFailed):
        ctx.make()
    ctx.close()
    ctx = new_context(store_path)
    define(ctx)
    ctx.comp(fails, 1, job_id="bad")
    reads[0] = 0
    with pytest.raises(JobsFailed):
        ctx.make()
    assert reads[0] == 1
    ctx.close()


def test_no_record_while_another_store_was_open(store_path, reads):
    ctx = new_context(store_path)
    other = Store(store_path)  # another process, as far as the store can tell
    define(ctx)
    ctx.make("total")
    other.close()
    ctx, _ = restart(ctx, store_path)
    reads[0] = 0
    assert ctx.make("total").skipped == N + 1
    assert reads[0] == 1
    ctx.close()


def test_jobs_with_files_or_dynamic_jobs_are_always_made_the_usual_way(store_path, reads,
                                                                        tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("four")
    ctx = new_context(store_path)
    ctx.comp(size_of, File(str(data)), job_id="size")
    ctx.make()
    ctx.close()
    ctx = new_context(store_path)
    ctx.comp(size_of, File(str(data)), job_id="size")
    data.write_text("seven !")
    reads[0] = 0
    assert ctx.make().ran == 1 and reads[0] == 1
    assert ctx.result_of("size") == 7
    ctx.close()

    dynamic_store = tmp_path / "dynamic"
    for attempt in range(2):
        ctx = new_context(dynamic_store)
        ctx.comp_dynamic(spawn, 3, job_id="parent")
        reads[0] = 0
        report = ctx.make()
        assert reads[0] == 1 and report.ran == (4 if attempt == 0 else 0)
        ctx.close()


def test_a_make_followed_by_a_view_goes_the_usual_way(store_path, reads):
    from nbmake_ext.kernel.observer import NoObserver

    ctx, _ = after_a_clean_make(store_path)
    seen = []

    class Watching(NoObserver):
        def job_changed(self, job_id, state, info):
            seen.append(job_id)

    reads[0] = 0
    ctx.make("total", observer=Watching())
    assert reads[0] == 1 and len(seen) == N + 1  # the view is told of every job
    ctx.close()


def test_writes_are_counted_in_every_table_that_decides(store_path):
    Store(store_path).close()

    def writes():
        with sqlite3.connect(store_path / "nbmake.db") as conn:
            return int(conn.execute("SELECT value FROM meta WHERE key='writes'").fetchone()[0])
    with sqlite3.connect(store_path / "nbmake.db") as conn:
        counted = []
        for statement in [
                "INSERT INTO jobs (job_id, function, code_fp, args_fp, deps, def_fp)"
                " VALUES ('a', 'f', 'c', 'x', '[]', 'd')",
                "UPDATE jobs SET args_fp='y'",
                "INSERT INTO outcomes (job_id, state) VALUES ('a', 'done')",
                "UPDATE outcomes SET forced=1",
                "DELETE FROM outcomes", "DELETE FROM jobs"]:
            before = writes()
            conn.execute(statement)
            conn.commit()
            counted.append(writes() - before)
    assert counted == [1] * 6
    # ... and each names its job in ``changes`` (what a snapshot reads again: snapshots.py)
    with sqlite3.connect(store_path / "nbmake.db") as conn:
        logged = [jid for (jid,) in conn.execute("SELECT job_id FROM changes ORDER BY seq")]
    assert logged == ["a"] * 6
    # Reopened (as every store is, by every version): the triggers are there once.
    Store(store_path).close()
    with sqlite3.connect(store_path / "nbmake.db") as conn:
        triggers = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='trigger'")]
    assert len([t for t in triggers if t.startswith("counted_")]) == 6
    assert len([t for t in triggers if t.startswith("logged_")]) == 8
    assert len(triggers) == 14


def test_an_unreadable_record_is_no_record(store_path, reads):
    ctx = new_context(store_path)
    define(ctx)
    ctx.make("total")
    ctx.close()
    with sqlite3.connect(store_path / "nbmake.db") as conn:
        conn.execute("UPDATE meta SET value='{not json' WHERE key=?", (RECORD_KEY,))
    ctx = new_context(store_path)
    define(ctx)
    reads[0] = 0
    assert ctx.make("total").skipped == N + 1 and reads[0] == 1
    ctx.close()


def test_the_record_survives_in_a_path_with_results_files_elsewhere(store_path: Path, reads):
    """Result files (large results) are part of what the record checks: untouched, the
    make is told by the record."""
    ctx = new_context(store_path)
    define(ctx, 4, big)
    ctx.make("total")
    ctx.close()
    ctx = new_context(store_path)
    define(ctx, 4, big)
    reads[0] = 0
    assert ctx.make("total").skipped == 5 and reads[0] == 0
    assert ctx.result_of("d1") == bytes([1]) * 100_000
    ctx.close()


def test_a_change_by_hand_before_a_make_s_last_records_are_committed_is_seen(
        store_path, reads, monkeypatch):
    """A make of small results returns before its last records are committed
    (``Store.end_run``); the record of that clean make is written after them. A change by
    hand in between (another connection's write) must not be taken for the make's own."""
    monkeypatch.setattr(store_module, "DEFERRED_FROM", 1)  # (as for a make of many jobs)
    ctx = new_context(store_path)
    define(ctx, 4)
    assert ctx.make("total").ran == 5
    assert ctx.store._run_ending  # (the case at hand: its records wait)
    with sqlite3.connect(store_path / "nbmake.db") as conn:  # (its outcome: not yet)
        conn.execute("DELETE FROM jobs WHERE job_id='d2'")
    reads[0] = 0
    assert ctx.make("total").ran == 1 and reads[0] == 1  # d2 again
    reads[0] = 0
    assert ctx.make("total").ran == 0 and reads[0] == 0  # that make left its record
    ctx.close()


def test_what_changes_right_after_a_make_is_seen_by_the_next_in_the_same_process(
        store_path, reads):
    """The record is written by the store's writer a little later: it holds the store as
    the make left it, and is not written at all once anything was written since."""
    ctx = new_context(store_path)
    define(ctx, 4, big)
    ctx.make("total")
    results = store_path / "results"
    prefix = blobs.file_name("d1", "0" * 12).split("-")[0]
    (results / next(n for n in blobs.stamps(results) if n.startswith(prefix))).unlink()
    reads[0] = 0
    with logcheck.warns("missing"):
        assert ctx.make("total").ran == 1
    assert reads[0] == 1
    with sqlite3.connect(store_path / "nbmake.db") as conn:
        conn.execute("UPDATE outcomes SET forced=1 WHERE job_id='d2'")
    reads[0] = 0
    assert ctx.make("total").ran == 1 and reads[0] == 1
    reads[0] = 0
    assert ctx.make("total").ran == 0 and reads[0] == 0  # that make left its record
    ctx.close()
