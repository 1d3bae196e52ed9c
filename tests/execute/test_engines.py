"""parmake on real engine processes over real ZeroMQ sockets (SPEC 5 and 7).

Jobs live in ``enginejobs.jobs`` (importable, so they pickle by reference and engines
import them; the ``engine_env`` fixture puts tests/execute on the engines' PYTHONPATH) or,
notebook-style, in the ``__main__`` of a subprocess script (pickled by value).

Nothing here depends on timing for correctness: concurrency is proven by jobs that each
wait until the other has started (a rendezvous on files), what ran by O_APPEND event lines
written by the jobs, and every wait is bounded. Every test has a hard timeout, and the
``engine_leaks`` fixture fails a test that leaves an engine process, a ZeroMQ context or
an ipc directory behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from enginejobs import jobs as J  # noqa: E402
from enginejobs.support import *  # noqa: E402,F401,F403
from enginejobs.support import (  # noqa: E402
    PYTHON, guarded, is_engine, wait_gone, wait_ready, wait_until)

import logcheck  # noqa: E402
from nbmake_ext import JobsFailed  # noqa: E402


def states(ctx) -> dict[str, str]:
    return {r.job_id: r.state for r in ctx.ls()}


def started_pids(lab, name: str) -> list[int]:
    return [pid for event, pid, _ in J.events(lab) if event == f"{name}-start"]


# -- 1. real engines: concurrency, caching, reuse, resizing ---------------------------------

@pytest.mark.timeout(90)
def test_two_engines_run_two_jobs_at_once(make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(J.work, lab, "warm", job_id="warm")
    guarded(ctx.parmake, n=2)
    pool = ctx._pool
    wait_ready(pool)  # see test_no_job_waits_behind_another_while_an_engine_is_idle
    pids = pool.pids()
    assert len(pids) == 2 and len(set(pids)) == 2 and os.getpid() not in pids
    assert all(is_engine(p) for p in pids)

    a = ctx.comp(J.rendezvous, lab, "a", "b", job_id="a")
    b = ctx.comp(J.rendezvous, lab, "b", "a", job_id="b")
    report = guarded(ctx.parmake, n=2)
    assert report.ran == 2 and not report.failed

    ra, rb = a.result(), b.result()
    # Each waited until the other had started: they ran at once, on two engines.
    assert {ra["pid"], rb["pid"]} == set(pids)
    assert os.getpid() not in (ra["pid"], rb["pid"])
    # The recorded windows overlap (a consequence of the rendezvous, checked as well).
    assert max(ra["start"], rb["start"]) <= min(ra["end"], rb["end"])


@pytest.mark.timeout(90)
def test_results_are_cached_and_engines_reused(make_ctx, lab):
    ctx = make_ctx()
    raw = [ctx.comp(J.work, lab, f"load{i}", i, job_id=f"load{i}") for i in range(4)]
    top = ctx.comp(J.work, lab, "sum", raw, job_id="sum")
    first = guarded(ctx.parmake, n=2)
    assert first.ran == 5 and first.skipped == 0
    assert top.result()["inputs"][0][2]["name"] == "load2"  # dependencies resolved
    pids = sorted(ctx._pool.pids())
    ran = J.names(lab)

    again = guarded(ctx.parmake, n=2)
    assert again.ran == 0 and again.skipped == 5
    assert J.names(lab) == ran, "a second parmake ran jobs"
    assert sorted(ctx._pool.pids()) == pids, "the second parmake did not reuse the engines"
    assert all(is_engine(p) for p in pids)

    serial = ctx.make()
    assert serial.ran == 0 and serial.skipped == 5
    assert J.names(lab) == ran, "make after parmake ran jobs"
    assert set(states(ctx).values()) == {"done"}

    # A fresh context on the same store sees the engines' results as done too.
    other = make_ctx()
    assert set(states(other).values()) == {"done"}
    assert other.make().ran == 0


@pytest.mark.parametrize("size", [0, 40_000], ids=["row", "file"])
def test_engines_read_inputs_a_serial_make_stored(make_ctx, lab, size):
    # Small results are rows of the store's database, large ones files: an engine reads both.
    ctx = make_ctx()
    raw = [ctx.comp(J.work, lab, f"load{i}", "x" * size, job_id=f"load{i}") for i in range(2)]
    assert ctx.make().ran == 2
    kinds = {ctx.store.details(r.job_id)["r_file"] == ":db" for r in raw}
    assert kinds == {size == 0}
    top = ctx.comp(J.work, lab, "sum", raw, job_id="sum")
    report = guarded(ctx.parmake, n=2)
    assert report.ran == 1 and report.skipped == 2
    got = top.result()
    assert got["pid"] in ctx._pool.pids()
    assert [x["inputs"] for x in got["inputs"][0]] == [["x" * size], ["x" * size]]


@pytest.mark.timeout(90)
def test_a_job_of_many_inputs_reads_their_rows_together_and_a_corrupt_one_is_remade(
        make_ctx, lab):
    # From a few inputs on, an engine reads the rows of a job's inputs in one query
    # (engine/main.py _prefetch); a row that no longer matches its checksum is not taken
    # from that query: read alone, it is reported lost, and its job runs again.
    ctx = make_ctx()
    raw = [ctx.comp(J.work, lab, f"load{i}", i, job_id=f"load{i}") for i in range(30)]
    assert ctx.make().ran == 30
    ctx.store.flush()  # (the make's last writes land)
    import sqlite3
    with sqlite3.connect(ctx.store.path / "nbmake.db") as conn:
        (data,) = conn.execute("SELECT data FROM results WHERE job_id='load7'").fetchone()
        conn.execute("UPDATE results SET data=? WHERE job_id='load7'",
                     (data.replace(b"load7", b"lxad7"),))
    top = ctx.comp(J.work, lab, "sum", raw, job_id="sum")
    with logcheck.warns("'load7' is unreadable: checksum mismatch"):
        guarded(ctx.parmake, n=2)
    got = top.result()
    assert [x["inputs"] for x in got["inputs"][0]] == [[i] for i in range(30)]
    assert [x["name"] for x in got["inputs"][0]] == [f"load{i}" for i in range(30)]
    assert [e for e, _, _ in J.events(lab)].count("load7-start") == 2
    assert [e for e, _, _ in J.events(lab)].count("load8-start") == 1


@pytest.mark.timeout(120)
def test_n_resizes_the_pool(make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(J.work, lab, "one", job_id="one")
    guarded(ctx.parmake, n=2)
    two = set(ctx._pool.pids())
    assert len(two) == 2

    ctx.comp(J.work, lab, "two", job_id="two")
    guarded(ctx.parmake, n=3)
    three = set(ctx._pool.pids())
    assert len(three) == 3 and two < three, "growing must keep the running engines"
    assert all(is_engine(p) for p in three)
    wait_ready(ctx._pool)

    # Three jobs that each wait for the two others: only three engines at once can do it.
    for me, others in (("x", "yz"), ("y", "xz"), ("z", "xy")):
        ctx.comp(J.rendezvous, lab, me, *others, job_id=me)
    report = guarded(ctx.parmake, n=3)
    assert report.ran == 3
    assert {started_pids(lab, j)[0] for j in "xyz"} == three

    ctx.comp(J.work, lab, "three", job_id="three")
    guarded(ctx.parmake, n=1)
    one = set(ctx._pool.pids())
    assert len(one) == 1 and one < three
    assert wait_gone(three - one) == [], "engines beyond n=1 were not stopped"
    assert started_pids(lab, "three")[0] in one


@pytest.mark.timeout(60)
def test_no_job_waits_behind_another_while_an_engine_is_idle(make_ctx, lab):
    """Two ready engines; "shared" ran on one of them. a1 and c3 both use its result and
    each runs until the other has started. A parallel make can run them at once on the
    two engines; the pool sends both to the engine holding "shared" (up to DEPTH=2 jobs
    per engine), so whichever starts first waits in vain (5 s here) and fails, while the
    other engine idles. The first parmake of a fresh pool is the common case: the first
    engine to say hello gets two jobs while the others start (two such jobs on a fresh
    parmake(n=2) ran one after the other in 6 of 6 trials)."""
    ctx = make_ctx()
    shared = ctx.comp(J.work, lab, "shared", job_id="shared")
    guarded(ctx.parmake, n=2)
    wait_ready(ctx._pool)
    ctx.comp(J.rendezvous, lab, "a1", "c3", job_id="a1", timeout=5, after=shared)
    ctx.comp(J.rendezvous, lab, "c3", "a1", job_id="c3", timeout=5, after=shared)
    report = guarded(ctx.parmake, n=2)
    assert report.ran == 2 and not report.failed


@pytest.mark.timeout(60)
def test_engines_outlive_the_thread_that_started_them(make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(J.work, lab, "a", job_id="a")
    thread = threading.Thread(target=ctx.parmake, kwargs={"n": 1}, daemon=True)
    thread.start()
    thread.join(60)
    (pid,) = ctx._pool.pids()
    assert started_pids(lab, "a") == [pid]
    # Until the OS thread is gone (PR_SET_PDEATHSIG acts when it is).
    wait_until(lambda: not os.path.exists(f"/proc/self/task/{thread.native_id}"), 30,
               "the thread to exit")
    b = ctx.comp(J.work, lab, "b", job_id="b")
    guarded(ctx.parmake, n=1)
    assert b.result()["pid"] == pid


# -- 2. jobs that crash their engine --------------------------------------------------------
#
# Two races of the pool are kept out of these tests (each has its own xfail test below):
# - the crashing job is the first job its engine runs in the make: a message an engine
#   sends just before it dies can be lost (ZeroMQ sends from an I/O thread), and a lost
#   notice about an earlier job hangs the make. So the pool is warm, every engine ready,
#   and the crashing job and a gate job are the only jobs ready at first: one goes to
#   each engine;
# - the other jobs depend on the gate, which returns only once the crashing job's engine
#   has died and been reaped by the kernel (so the pool has noticed): a job
#   sent to a dead engine the pool has not noticed yet makes parmake raise ZMQError.

def _warm_pool(ctx, lab, n: int) -> set[int]:
    ctx.comp(J.work, lab, "warm", job_id="warm")
    guarded(ctx.parmake, n=n)
    wait_ready(ctx._pool)
    return set(ctx._pool.pids())


def _crash_graph(ctx, lab, crash, *args, name: str = "bad"):
    bad = ctx.comp(crash, lab, *args, job_id="bad")
    dep = ctx.comp(J.work, lab, "dep", bad, job_id="dep")
    ctx.comp(J.work, lab, "dep2", dep, job_id="dep2")
    gate = ctx.comp(J.wait_reaped, lab, name, job_id="gate")
    oks = [ctx.comp(J.work, lab, f"ok{i}", gate, job_id=f"ok{i}") for i in range(6)]
    return ctx.comp(J.work, lab, "fan_in", oks, job_id="fan_in")


def _check_crash(ctx, lab, info, start_event: str, death: str, before: set[int]):
    """The job failed naming its engine and how it died; its dependents are blocked; every
    other job completed; a fresh engine took its place."""
    assert list(info.value.failed) == ["bad"]
    assert info.value.blocked == {"dep": "bad", "dep2": "bad"}
    engine_pid = started_pids(lab, start_event)[0]
    assert engine_pid in before
    error = info.value.failed["bad"]
    assert f"engine {engine_pid}" in error and death in error, error
    assert started_pids(lab, "gate")[0] != engine_pid
    d = ctx.details("bad")
    assert d.state == "failed" and d.error == error
    assert ctx.why("bad")[0] == f"its last run failed: {error}"

    st = states(ctx)
    assert st["dep"] == "blocked" and st["dep2"] == "blocked"
    assert all(st[f"ok{i}"] == "done" for i in range(6)), st
    assert st["gate"] == "done" and st["fan_in"] == "done"
    assert "dep-start" not in J.names(lab)

    after = set(ctx._pool.pids())
    assert len(after) == len(before), "the pool did not keep its size"
    assert engine_pid not in after and after != before, "no fresh engine took its place"
    assert wait_gone([engine_pid]) == []
    assert all(is_engine(p) for p in after)

    # Not retried on its own; a later parmake runs on the new engines.
    ctx.comp(J.work, lab, "later", job_id="later")
    guarded(ctx.parmake, "later", n=len(before))
    assert started_pids(lab, "later")[0] in after
    assert J.names(lab).count(f"{start_event}-start") == 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("crash, event, death", [
    (J.exit_code_3, "exit3", "exited with code 3"),
    (J.segfault, "segv", "killed by SIGSEGV"),
])
def test_a_job_that_crashes_its_engine_fails_and_the_rest_goes_on(make_ctx, lab, crash,
                                                                   event, death):
    ctx = make_ctx()
    before = _warm_pool(ctx, lab, 2)
    fan_in = _crash_graph(ctx, lab, crash)
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=2)
    _check_crash(ctx, lab, info, event, death, before)
    assert [r["name"] for r in fan_in.result()["inputs"][0]] == [f"ok{i}" for i in range(6)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("crash, death, said", [
    (J.segfault, "killed by SIGSEGV", ["Fatal Python error: Segmentation fault", "in segfault"]),
    (J.c_library_gives_up, "exited with code 134", ["libfrob: fatal: out of frobs (errno 28)"]),
])
def test_what_a_dying_engine_says_on_stderr_is_kept_with_the_job(make_ctx, lab, crash, death,
                                                                  said):
    """A crash's own words (Python's faulthandler dump of a segfault, a C library's last
    message on file descriptor 2) are the failed job's stderr; an engine's start-up
    chatter is not."""
    ctx = make_ctx()
    ctx.comp(J.work, lab, "warm", job_id="warm")
    guarded(ctx.parmake, n=1)
    ctx.comp(crash, lab, job_id="bad")
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=1)
    assert death in info.value.failed["bad"]
    stderr = ctx.details("bad").stderr
    for text in said:
        assert text in stderr, stderr
    assert "RuntimeWarning" not in stderr, stderr  # printed by every engine as it starts
    assert not [f for f in os.listdir(ctx._pool._dir) if f.endswith(".log")
                and f.split(".")[0].encode() not in ctx._pool.engines], "a dead engine's log"


@pytest.mark.timeout(60)
def test_engines_that_cannot_start_are_an_error_not_a_hang(make_ctx, lab, tmp_path,
                                                           monkeypatch):
    """Every engine exits as it starts (here: its environment imports a broken
    nbmake_ext). parmake stops with an error that says so and what the last engine
    wrote to stderr, instead of starting engines for ever; nothing is left running."""
    from nbmake_ext import NbmakeError

    broken = tmp_path / "broken" / "nbmake_ext"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("nbmake_ext is broken here")\n')
    monkeypatch.setenv("PYTHONPATH", f"{broken.parent}{os.pathsep}{os.environ['PYTHONPATH']}")
    monkeypatch.chdir(tmp_path)  # engines start here: its nbmake_ext is the first found
    ctx = make_ctx()
    ctx.comp(J.work, lab, "a", job_id="a")
    with pytest.raises(NbmakeError) as info:
        guarded(ctx.parmake, n=2, within=30)
    message = str(info.value)
    assert message.startswith("engines cannot start: the last 7 exited before they "
                              "connected"), message
    assert "exited with code 1" in message and "nbmake_ext is broken here" in message
    assert states(ctx) == {"a": "todo"}


@pytest.mark.timeout(60)
def test_an_engine_that_died_while_idle_is_replaced(make_ctx, lab):
    """Between two parmakes the one engine is killed (say, by the OOM killer). The next
    parmake dispatches before it polls, so it sends the job to the dead engine. Made
    deterministic by waiting for the ROUTER's own disconnect event."""
    import zmq
    from zmq.utils.monitor import recv_monitor_message

    ctx = make_ctx()
    ctx.comp(J.work, lab, "first", job_id="first")
    guarded(ctx.parmake, n=1)
    pool = ctx._pool
    monitor = pool.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)
        assert monitor.poll(20_000), "the ROUTER never saw the engine go"
        assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
    finally:
        pool.socket.disable_monitor()
        monitor.close(0)
    ctx.comp(J.work, lab, "second", job_id="second")
    report = guarded(ctx.parmake, n=1)
    assert report.ran == 1
    assert started_pids(lab, "second")[0] != pid


@pytest.mark.timeout(120)
def test_a_job_killed_with_sigkill_fails_and_the_rest_goes_on(make_ctx, lab):
    ctx = make_ctx()
    before = _warm_pool(ctx, lab, 2)
    _crash_graph(ctx, lab, J.wait_to_be_killed, "victim", name="victim")
    killed = []

    def killer():
        pid_file = Path(lab, "victim.pid")
        try:
            wait_until(pid_file.exists, 60, "the victim's pid file")
        except AssertionError:
            return
        pid = int(pid_file.read_text())
        if is_engine(pid):  # never kill anything but an engine
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=2)
    thread.join(10)
    assert killed == started_pids(lab, "victim")
    assert "victim-end" not in J.names(lab)
    _check_crash(ctx, lab, info, "victim", "killed by SIGKILL", before)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [0, 200_000], ids=["small", "large"])
def test_crash_right_after_a_result_does_not_hang(make_ctx, lab, size):
    """One engine runs an ok job, then "b-bad", which exits at once. The engine says "done"
    for the ok job, fsyncs its file in a thread and says "durable" between jobs. Here the
    disk is slow (the ok job makes the engine's fsync wait until b-bad has started), so
    the notice is still unsent when the engine dies, and the driver loop
    ``if self.sched.finished and not self.pending_durable: break`` never ends.
    (When the pool sends c-ok to the dead engine before it notices the death, parmake
    raises the ZMQError of test_an_engine_that_died_while_idle_is_replaced instead.)
    It happens without a slow disk too (most trials of a job crashing right after another
    on one engine hung; with durable=False as well, because the notice, sent just before
    the next job starts, may still be in ZeroMQ's I/O thread when the process exits). The
    same loss can hit the "done" message itself: the pool would then blame the finished
    job, the first in the dead engine's queue, and send the crashing one to another
    engine."""
    ctx = make_ctx()  # durable, the default
    # "b-bad" in the middle, by registration and by name: whichever way the scheduler
    # orders them, an ok job runs right before it on the one engine.
    ctx.comp(J.holds_back_fsync, lab, "ok", size, job_id="a-ok")
    ctx.comp(J.releases_fsync_and_exits, lab, job_id="b-bad")
    ctx.comp(J.holds_back_fsync, lab, "ok", size, job_id="c-ok")
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=1, within=10)
    assert list(info.value.failed) == ["b-bad"]
    assert states(ctx)["a-ok"] == "done" and states(ctx)["c-ok"] == "done"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("durable", [True, False])
def test_small_and_large_results_reach_dependents_on_both_engines_and_persist(
        make_ctx, lab, durable):
    """A small result travels to the kernel, which stores it (and hands it to dependents
    until its file is written); a large one is a file its engine writes. Either way every
    dependent, on whichever engine, gets the very bytes, and the store keeps them."""
    ctx = make_ctx(durable=durable)
    small = ctx.comp(J.sized, lab, "small", 100, job_id="small")
    large = ctx.comp(J.sized, lab, "large", 300_000, job_id="large")
    users = [ctx.comp(J.digests, small, large, i, job_id=f"use{i}") for i in range(6)]
    guarded(ctx.parmake, n=2)
    expected = J.digests(small.result(), large.result())[:2]
    assert all(u.result()[:2] == expected for u in users)
    again = make_ctx(name="store", durable=durable)  # a fresh process's view of the store
    small = again.comp(J.sized, lab, "small", 100, job_id="small")
    large = again.comp(J.sized, lab, "large", 300_000, job_id="large")
    for i in range(6):
        again.comp(J.digests, small, large, i, job_id=f"use{i}")
    assert again.make().ran == 0
    assert J.digests(small.result(), large.result())[:2] == expected
    assert J.names(lab).count("small-start") == 1 and J.names(lab).count("large-start") == 1


@pytest.mark.timeout(90)
def test_large_results_are_pickled_into_their_files_as_before_and_persist(make_ctx, lab):
    """A large result is pickled straight into its file, hashed as it is written: the file
    holds the bytes ``dumps_value`` gives (its arrays' data after the pickle), its name
    carries its checksum, and dependents on either engine get the value."""
    from nbmake_ext.store import blobs
    from nbmake_ext.store.pickles import dumps_value

    kinds = ["bytes", "array", "fortran"]
    ctx = make_ctx()
    made = {k: ctx.comp(J.large, lab, k, job_id=f"large-{k}") for k in kinds}
    users = [ctx.comp(J.describe, made[k], job_id=f"use-{k}-{i}")
             for k in kinds for i in range(2)]
    guarded(ctx.parmake, n=2)
    for k in kinds:
        value = made[k].result()
        d = ctx.store.details(f"large-{k}")
        data = (ctx.store.results_dir / d["r_file"]).read_bytes()
        assert data == dumps_value(value), k
        assert d["r_checksum"] == blobs.checksum(data)
        assert d["r_file"] == blobs.file_name(f"large-{k}", d["r_checksum"])
    assert all(u.result() == J.describe(made[u.job_id.split("-")[1]].result()) for u in users)
    assert not [p for p in ctx.store.results_dir.iterdir() if p.name.startswith(".")]
    again = make_ctx(name="store")  # a fresh process's view of the store
    reread = {k: again.comp(J.large, lab, k, job_id=f"large-{k}") for k in kinds}
    assert again.make().ran == 0
    assert all(J.describe(reread[k].result()) == J.describe(made[k].result()) for k in kinds)


@pytest.mark.timeout(90)
def test_an_array_read_from_its_file_is_writable_and_the_file_stays_as_it_was(make_ctx, lab):
    """Arrays loaded from a result file are views of the bytes read, not copies: still
    writable, as a copy was, and the stored result is not changed."""
    ctx = make_ctx()
    made = ctx.comp(J.floats, lab, "a", 1 << 18, job_id="a")
    assert ctx.make().ran == 1  # in the kernel: the engine reads it from its file
    bumped = ctx.comp(J.bump_and_sum, made, job_id="bump")
    guarded(ctx.parmake, n=1)
    expected = float((1 << 18) * ((1 << 18) + 1) / 2)
    assert bumped.result() == expected
    assert float(make_ctx(name="store").comp(J.floats, lab, "a", 1 << 18, job_id="a")
                 .result().sum()) == expected - (1 << 18)


@pytest.mark.timeout(90)
def test_a_job_of_many_input_files_reads_them_ahead_and_a_corrupt_one_is_remade(make_ctx, lab):
    # Input files are read and checked ahead of their loading, on the engine's threads
    # (engine/read_ahead.py): every input arrives, in order, and a file that no longer
    # matches its checksum is reported lost from that thread too, and made again.
    ctx = make_ctx()
    raw = [ctx.comp(J.sized, lab, f"file{i}", 40_000 + i, job_id=f"file{i}") for i in range(8)]
    assert ctx.make().ran == 8
    bad = ctx.store.results_dir / ctx.store.details("file3")["r_file"]
    data = bytearray(bad.read_bytes())
    data[-100] ^= 0xFF
    stamp = bad.stat()
    bad.write_bytes(bytes(data))
    os.utime(bad, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # as only a checksum can tell
    top = ctx.comp(J.describe_all, raw, job_id="all")
    with logcheck.warns("'file3' is unreadable: checksum mismatch"):
        guarded(ctx.parmake, n=1)
    assert top.result() == J.describe_all([r.result() for r in raw])
    assert [len(x) for x in [r.result() for r in raw]] == [40_000 + i for i in range(8)]
    assert [e for e, _, _ in J.events(lab)].count("file3-start") == 2
    assert [e for e, _, _ in J.events(lab)].count("file4-start") == 1


def bytes_read(pid: int) -> int:
    """What the process has read so far, files and sockets (Linux: /proc/PID/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar in /proc/{pid}/io")


@pytest.mark.timeout(120)
def test_a_fan_in_takes_the_inputs_its_engine_holds_though_loading_the_others_fills_its_cache(
        make_ctx, lab):
    """Inputs made on the engine are in its memory; the others are read from disk, and
    each one read goes into the same cache. The ones held are taken before, so none is
    pushed out and read back from disk (the engine keeps 128 MB: four 20 MB results made
    there and four read are more than that)."""
    from nbmake_ext.engine.main import VALUES_BYTES

    size = 20 << 20
    assert 4 * size < VALUES_BYTES < 8 * size
    ctx = make_ctx()
    stored = [ctx.comp(J.sized, lab, f"stored{i}", size, job_id=f"stored{i}") for i in range(4)]
    assert ctx.make().ran == 4  # in the kernel: on disk only
    warm = ctx.comp(J.add, lab, "warm", 1, 2, job_id="warm")
    guarded(ctx.parmake, warm.job_id, n=1)
    (engine,) = ctx._pool.engines.values()
    made = [ctx.comp(J.sized, lab, f"made{i}", size, job_id=f"made{i}") for i in range(4)]
    # The inputs read from disk come first: they fill the cache before the others are used.
    top = ctx.comp(J.describe_all, stored + made, job_id="all")
    before = bytes_read(engine.pid)
    guarded(ctx.parmake, top.job_id, n=1)
    read = bytes_read(engine.pid) - before
    assert top.result() == J.describe_all([x.result() for x in stored + made])
    assert 4 * size <= read < 5 * size, f"the engine read {read / size:.2f} inputs' worth"


@pytest.mark.timeout(90)
def test_a_large_result_that_fails_to_pickle_half_way_fails_its_job_and_leaves_no_file(
        make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(J.large, lab, "unpicklable", job_id="bad")
    with pytest.raises(JobsFailed):
        guarded(ctx.parmake, n=1)
    assert "its result cannot be pickled" in ctx.store.details("bad")["error"]
    assert list(ctx.store.results_dir.iterdir()) == []


# -- 3. what does not pickle ----------------------------------------------------------------

@pytest.mark.timeout(90)
def test_a_function_only_the_kernel_can_import_fails_on_the_engine(make_ctx, lab, tmp_path,
                                                                   monkeypatch):
    # A module on the test process's path only (engines have their cwd and PYTHONPATH).
    name = f"kernel_only_{uuid.uuid4().hex[:8]}"
    where = tmp_path / "kernel_only"
    where.mkdir()
    (where / f"{name}.py").write_text("def only_here(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(where))
    mod = __import__(name)
    try:
        ctx = make_ctx()
        job = ctx.comp(mod.only_here, 41, job_id="only_here")
        ctx.comp(J.work, lab, "fine", job_id="fine")
        with pytest.raises(JobsFailed) as info:
            guarded(ctx.parmake, n=2)
        error = info.value.failed["only_here"]
        assert re.search(r"cannot load the job on engine \d+", error), error
        assert f"No module named '{name}'" in error
        assert states(ctx)["fine"] == "done"
        assert len(ctx._pool.pids()) == 2
        # The kernel itself can run it.
        assert ctx.make("only_here").ran == 1 and job.result() == 42
    finally:
        sys.modules.pop(name, None)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("func, what", [(J.make_generator, "generator"),
                                        (J.make_lock, "lock")])
def test_a_result_that_cannot_be_pickled_fails_with_that_message(make_ctx, lab, func, what):
    ctx = make_ctx()
    ctx.comp(func, lab, job_id="bad")
    ctx.comp(J.work, lab, "fine", job_id="fine")
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=2)
    error = info.value.failed["bad"]
    assert "cannot be pickled" in error and what in error, error
    assert states(ctx) == {"bad": "failed", "fine": "done"}
    assert ctx.details("bad").error == error


@pytest.mark.timeout(90)
@pytest.mark.parametrize("func, text", [
    (J.raise_lambda_error, "LambdaError: an error carrying a lambda"),
    (J.raise_local_error, "LocalError: an error of a class local to the job"),
])
def test_an_exception_that_cannot_be_pickled_arrives_as_text(make_ctx, lab, func, text):
    ctx = make_ctx()
    ctx.comp(func, lab, job_id="bad")
    ctx.comp(J.work, lab, "fine", job_id="fine")
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=2)
    assert info.value.failed["bad"] == text
    d = ctx.details("bad")
    assert d.error == text
    assert func.__name__ in d.traceback and text in d.traceback
    assert states(ctx)["fine"] == "done"


@pytest.mark.timeout(90)
def test_an_exception_that_cannot_be_printed_fails_its_job_only(make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(J.raise_bad_str, lab, job_id="bad")
    ctx.comp(J.work, lab, "warm", job_id="warm")
    guarded(ctx.parmake, "warm", n=1)
    before = set(ctx._pool.pids())
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=1)
    assert "BadStrError" in info.value.failed["bad"], info.value.failed
    assert set(ctx._pool.pids()) == before, "the engine died"


def _one_engine(ctx, lab) -> int:
    ctx.comp(J.work, lab, "warm", job_id="warm")
    guarded(ctx.parmake, "warm", n=1)
    wait_ready(ctx._pool)
    (pid,) = ctx._pool.pids()
    return pid


@pytest.mark.timeout(90)
def test_an_argument_that_cannot_be_loaded_on_the_engine_fails_its_job_only(make_ctx, lab):
    """The argument pickles in the kernel, but loading it on the engine raises (its
    ``__reduce__`` gives a callable that raises). That job fails naming the argument and
    the exception; its dependent is blocked; the other jobs, before and after it on the
    same engine, are done; the engine lives on."""
    ctx = make_ctx()
    pid = _one_engine(ctx, lab)
    bad = ctx.comp(J.work, lab, "bad", 1, {"cfg": [J.LoadsNowhere()]}, job_id="bad")
    ctx.comp(J.work, lab, "dep", bad, job_id="dep")
    oks = [ctx.comp(J.work, lab, f"ok{i}", i, job_id=f"ok{i}") for i in range(4)]
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=1, within=30)
    assert list(info.value.failed) == ["bad"] and info.value.blocked == {"dep": "bad"}
    error = info.value.failed["bad"]
    assert error == (f"its argument args[3]['cfg'][0] cannot be loaded on engine {pid}: "
                     f"ValueError: this object refuses to be loaded"), error
    assert "refuse_to_load" in ctx.details("bad").traceback
    st = states(ctx)
    assert st["bad"] == "failed" and st["dep"] == "blocked"
    assert all(st[f"ok{i}"] == "done" for i in range(4)), st
    assert {p.result()["pid"] for p in oks} == {pid}
    assert "bad-start" not in J.names(lab)
    assert ctx._pool.pids() == [pid], "the engine died"
    ctx.comp(J.work, lab, "later", job_id="later")
    guarded(ctx.parmake, "later", n=1, within=30)
    assert started_pids(lab, "later") == [pid]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["OSError", "ValueError"])
def test_an_input_that_cannot_be_loaded_on_the_engine_fails_its_dependent_and_stays_stored(
        make_ctx, lab, kind):
    """The input's bytes are whole (they match their checksum), but loading them raises:
    the dependent fails, naming the input and the error. Not the input's fault: it is not
    made again, and its stored result stays (an OSError too: raised by loading, not by
    reading the file)."""
    ctx = make_ctx()
    made = ctx.comp(J.unloadable, lab, kind, job_id="made")
    assert ctx.make().ran == 1  # in the kernel: the engine loads it from the store
    stored = ctx.store.details("made")["r_checksum"]
    pid = _one_engine(ctx, lab)
    ctx.comp(J.work, lab, "use", made, job_id="use")
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=1, within=30)
    assert info.value.failed == {"use": f"the result of its input 'made' cannot be loaded on "
                                        f"engine {pid}: {kind}: no loading this ({kind})"}
    assert J.names(lab).count("unloadable-start") == 1 and "use-start" not in J.names(lab)
    assert states(ctx)["made"] == "done" and ctx.store.details("made")["r_checksum"] == stored
    assert "refuse_to_load_with" in ctx.details("use").traceback


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind, error", [
    ("KeyboardInterrupt", "KeyboardInterrupt"),
    ("GeneratorExit", "GeneratorExit: closed"),
    ("DeepTrouble", "DeepTrouble: from the deep"),
])
def test_a_job_raising_a_base_exception_fails_on_its_engine(make_ctx, lab, kind, error):
    """Like SystemExit: the job is failed with that exception (not left running, nor
    taken for an interrupt of the make); its dependent is blocked, the rest is done."""
    ctx = make_ctx()
    pid = _one_engine(ctx, lab)
    bad = ctx.comp(J.raise_base, lab, "bad", kind, job_id="bad")
    ctx.comp(J.work, lab, "dep", bad, job_id="dep")
    oks = [ctx.comp(J.work, lab, f"ok{i}", i, job_id=f"ok{i}") for i in range(4)]
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=1, within=30)
    assert info.value.failed == {"bad": error}
    assert info.value.blocked == {"dep": "bad"}
    d = ctx.details("bad")
    assert d.state == "failed" and d.error == error
    assert "raise_base" in d.traceback and d.stdout == f"bad about to raise {kind}\n"
    assert all(p.result()["pid"] == pid for p in oks)
    assert ctx._pool.pids() == [pid], "the engine died"
    assert not ctx.store.running_among(ctx.graph.specs)


@pytest.mark.timeout(90)
def test_an_error_inside_parmake_leaves_no_job_running(make_ctx, lab, monkeypatch):
    """Something breaks in the run loop while a job runs on an engine: the error reaches
    the caller, the running job goes back to todo (stopped on its engine), what finished
    stays done, and nothing is left ``running`` in the store, for this context or another."""
    from nbmake_ext.kernel.pool import EnginePool

    ctx = make_ctx()
    ctx.comp(J.work, lab, "first", job_id="first")
    ctx.comp(J.wait_to_be_killed, lab, "held", job_id="held")
    poll = EnginePool.poll
    broken = []

    def breaks_once_held_runs(self, timeout):
        if not broken and Path(lab, "held.pid").exists() and "first-end" in J.names(lab):
            broken.append(True)
            raise RuntimeError("broken on purpose")
        return poll(self, timeout)

    monkeypatch.setattr(EnginePool, "poll", breaks_once_held_runs)
    with pytest.raises(RuntimeError, match="broken on purpose"):
        guarded(ctx.parmake, n=2, within=30)
    monkeypatch.setattr(EnginePool, "poll", poll)
    assert states(ctx) == {"first": "done", "held": "todo"}
    assert not ctx.store.running_among(ctx.graph.specs)
    other = make_ctx()
    assert states(other) == {"first": "done", "held": "todo"}
    assert "held-end" not in J.names(lab)


@pytest.mark.timeout(90)
def test_a_dependent_gets_the_new_result_of_its_dependency(make_ctx, lab):
    """n=1, so both makes run on the same engine: a=1, b=a; then a is redefined to 2 and
    both run again. b must be 2; the engine hands b its cached a=1, and b is stored as up
    to date with the wrong value."""
    ctx = make_ctx()
    a = ctx.comp(J.consume, lab, 1, job_id="a")
    b = ctx.comp(J.consume, lab, a, job_id="b")
    guarded(ctx.parmake, n=1)
    assert (a.result(), b.result()) == (1, 1)
    a = ctx.comp(J.consume, lab, 2, job_id="a")
    report = guarded(ctx.parmake, n=1)
    assert report.ran == 2
    assert a.result() == 2
    assert b.result() == 2


# -- 4. dynamic jobs on engines -------------------------------------------------------------

@pytest.mark.timeout(90)
def test_children_reach_the_kernel_and_are_listed_with_their_parent(make_ctx, lab):
    ctx = make_ctx()
    parent = ctx.comp_dynamic(J.dyn_parent, lab, 3, job_id="par")
    cons = ctx.comp(J.consume, lab, parent, job_id="cons")
    report = guarded(ctx.parmake, n=2)
    assert report.ran == 5
    rows = {r.job_id: r for r in ctx.ls()}
    assert {j: (r.state, r.parent) for j, r in rows.items()} == {
        "par": ("done", None), "cons": ("done", None),
        "kid-0": ("done", "par"), "kid-1": ("done", "par"), "kid-2": ("done", "par")}
    assert ctx.details("par").children == ["kid-0", "kid-1", "kid-2"]
    # The dependent received the parent's value with the children's promises resolved.
    kids = cons.result()
    assert [k["name"] for k in kids] == ["kid-0", "kid-1", "kid-2"]
    engine_pids = set(ctx._pool.pids())
    assert {k["pid"] for k in kids} <= engine_pids
    assert started_pids(lab, "parent3")[0] in engine_pids
    # Another process on the store sees them too.
    other = make_ctx()
    assert {r.job_id: r.parent for r in other.ls()}["kid-1"] == "par"
    assert guarded(ctx.parmake, n=2).ran == 0


@pytest.mark.timeout(90)
def test_a_child_starts_on_another_engine_before_its_parent_returns(make_ctx, lab):
    """The parent defines a child and then waits (bounded) until the child has started:
    that can only happen if the kernel received the child while the parent ran and
    started it on the other engine. Events are O_APPEND lines, in the order they happened."""
    ctx = make_ctx()
    ctx.comp(J.work, lab, "warm", job_id="warm")
    guarded(ctx.parmake, n=2)
    wait_ready(ctx._pool)  # a starting engine cannot take the child (see the xfail above)
    parent = ctx.comp_dynamic(J.dyn_waits_for_child, lab, job_id="eager")
    guarded(ctx.parmake, n=2)
    names = J.names(lab)
    assert "eager-parent-gave-up" not in names, names
    assert names.index("eager-kid-start") < names.index("eager-parent-return")
    assert started_pids(lab, "eager-parent") != started_pids(lab, "eager-kid")
    assert parent.result()["kid"]["name"] == "eager-kid"


@pytest.mark.timeout(120)
def test_a_failed_child_redefined_by_its_running_parent_runs_again_with_its_dependent(
        make_ctx, lab, tmp_path):
    """The parent defines picky (to fail) and plus on it, waits until picky failed on the
    other engine (plus is blocked by then), and defines picky again: picky and plus run,
    and nothing stays failed or blocked. The next time the parent runs the same, picky
    fails again, then, redefined, is up to date: both take their results back."""
    ctx = make_ctx()
    ctx.comp(J.work, lab, "warm", job_id="warm")
    guarded(ctx.parmake, n=2)
    wait_ready(ctx._pool)  # a starting engine cannot take the child (see the xfail above)
    store = str(tmp_path / "store")
    parent = ctx.comp_dynamic(J.dyn_redefines_failed_child, lab, store, "a", job_id="P")
    use = ctx.comp(J.consume, lab, parent, job_id="use")
    report = guarded(ctx.parmake, n=2)
    names = J.names(lab)
    assert "redefiner-a-saw-failure" in names, names
    assert names.count("picky1-start") == 1 and names.count("picky2-start") == 1
    assert (report.ran, report.failed, report.blocked) == (4, {}, {})
    assert use.result() == [2, 12]
    assert states(ctx) == {"warm": "done", "P": "done", "use": "done", "picky": "done",
                           "plus": "done"}
    assert ctx.details("picky").error is None and ctx.details("plus").blocked_by is None
    assert guarded(ctx.parmake, n=2).ran == 0

    parent = ctx.comp_dynamic(J.dyn_redefines_failed_child, lab, store, "b", job_id="P")
    before = len(J.names(lab))
    report = guarded(ctx.parmake, n=2)
    names = J.names(lab)[before:]
    assert "redefiner-b-saw-failure" in names, names
    assert "picky2-start" not in names and "plus-start" not in names
    assert (report.ran, report.restored, report.failed, report.blocked) == (1, 2, {}, {})
    assert states(ctx) == {"warm": "done", "P": "done", "use": "done", "picky": "done",
                           "plus": "done"}
    assert ctx.details("picky").error is None and ctx.details("plus").blocked_by is None
    assert use.result() == [2, 12]
    before = len(J.names(lab))
    assert guarded(ctx.parmake, n=2).ran == 0
    assert J.names(lab)[before:] == []


@pytest.mark.timeout(90)
def test_dynamic_jobs_nest_and_one_engine_is_enough(make_ctx, lab):
    """n=1: a parent never holds its engine while its children run (it returns promises),
    so three levels of dynamic jobs complete on a single engine."""
    ctx = make_ctx()
    top = ctx.comp_dynamic(J.dyn_top, lab, job_id="top")
    use = ctx.comp(J.consume, lab, top, job_id="use")
    report = guarded(ctx.parmake, n=1)
    assert report.ran == 6 and not report.failed
    (pid,) = ctx._pool.pids()
    value = use.result()
    assert value == {"top": pid, "mid": {"mid": pid, "bottom": {
        "bottom": pid, "leaves": [{"name": f"leaf-{i}", "pid": pid, "inputs": []}
                                  for i in range(2)]}}}
    assert {r.job_id: r.parent for r in ctx.ls()} == {
        "top": None, "use": None, "mid": "top", "bottom": "mid",
        "leaf-0": "bottom", "leaf-1": "bottom"}
    assert set(states(ctx).values()) == {"done"}
    assert guarded(ctx.parmake, n=1).ran == 0
    assert J.names(lab).count("top-start") == 1


@pytest.mark.timeout(90)
def test_children_no_longer_defined_are_forgotten(make_ctx, lab):
    ctx = make_ctx()
    ctx.comp_dynamic(J.dyn_parent, lab, 3, job_id="par")
    guarded(ctx.parmake, n=2)
    assert sorted(r.job_id for r in ctx.ls()) == ["kid-0", "kid-1", "kid-2", "par"]
    # The same job, redefined: it now defines one child.
    parent = ctx.comp_dynamic(J.dyn_parent, lab, 1, job_id="par")
    assert states(ctx)["par"] == "stale"
    guarded(ctx.parmake, n=2)
    assert {r.job_id: (r.state, r.parent) for r in ctx.ls()} == {
        "par": ("done", None), "kid-0": ("done", "par")}
    assert [k["name"] for k in parent.result()] == ["kid-0"]
    assert ctx.details("par").children == ["kid-0"]
    other = make_ctx()
    assert sorted(r.job_id for r in other.ls()) == ["kid-0", "par"]
    from nbmake_ext.errors import UnknownTarget
    with pytest.raises(UnknownTarget):
        other.details("kid-2")
    # kid-0 had an up-to-date result: it did not run again.
    assert J.names(lab).count("kid-0-start") == 1


@pytest.mark.timeout(90)
def test_ctrl_c_while_outcomes_are_recorded_keeps_every_job_that_ended(make_ctx, lab, monkeypatch):
    """Ctrl-C may land while the kernel records one of several outcomes that reached it
    together (the store holds it back while it commits a batch, and raises it after): the
    outcomes after that one are recorded all the same. Two jobs run at once, and the
    engines' outcomes are held back here until both have ended, so that they do arrive
    together."""
    from nbmake_ext.kernel import driver as driver_module
    from nbmake_ext.kernel.pool import EnginePool

    ctx = make_ctx()
    a = ctx.comp(J.rendezvous, lab, "a", "b", job_id="a")
    b = ctx.comp(J.rendezvous, lab, "b", "a", job_id="b")
    ctx.comp(J.work, lab, "after", a, b, job_id="after")
    handle, poll = driver_module.Driver._handle, EnginePool.poll
    ended_names = ("JobStored", "JobReturned")
    held: list = []

    def poll_together(runner, timeout):
        held.extend(poll(runner, timeout))
        if sum(type(o).__name__ in ended_names for o in held) >= 2 or not runner.busy:
            out, held[:] = list(held), []
            return out
        return []

    seen: list[str] = []

    def interrupted_after_the_first(driver, outcomes):
        ended = [o.job_id for o in outcomes if type(o).__name__ in ended_names]
        seen.extend(ended)
        if len(ended) >= 2 and not hasattr(driver, "_interrupted"):
            driver._interrupted = True
            tell = driver.tell

            def told_then_interrupt(*args, **kwargs):  # the first outcome is recorded
                tell(*args, **kwargs)
                driver.tell = tell
                raise KeyboardInterrupt
            driver.tell = told_then_interrupt
        handle(driver, outcomes)

    monkeypatch.setattr(EnginePool, "poll", poll_together)
    monkeypatch.setattr(driver_module.Driver, "_handle", interrupted_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        guarded(ctx.parmake, n=2)
    assert {"a", "b"} <= set(seen)
    monkeypatch.undo()
    done = {j for j, state in states(ctx).items() if state == "done"}
    assert set(seen) <= done, sorted(set(seen) - done)


# -- 5. interrupt, and 6. the kernel killed: scripts with notebook-style jobs ---------------
#
# The jobs of these scripts are defined in their __main__, as in a notebook: they travel
# by value (cloudpickle). Their side effects go to the same O_APPEND event log.

PRELUDE = '''
import os, sys, time
from pathlib import Path

from nbmake_ext import Context

LAB = os.environ["LAB"]


def log(event):
    fd = os.open(os.path.join(LAB, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{event} {os.getpid()} {time.time():.6f}\\n".encode())
    finally:
        os.close(fd)


def wait_file(name, timeout=60):
    end = time.monotonic() + timeout
    while not Path(LAB, name).exists():
        if time.monotonic() > end:
            raise TimeoutError(name)
        time.sleep(0.01)


def quick(i):
    log(f"q{i}-start")
    log(f"q{i}-end")
    return i


def slow(name, *inputs):
    log(f"{name}-start")
    wait_file("release")
    log(f"{name}-end")
    return name


def warm_pool(ctx, n):
    ctx.comp(quick, -1, job_id="warm")
    ctx.parmake(n=n)
    pool = ctx._pool
    end = time.monotonic() + 30
    while not all(e.ready for e in pool.engines.values()):
        assert time.monotonic() < end, "engines never said hello"
        pool.poll(0.05)
    Path(LAB, "pool.txt").write_text(" ".join(map(str, pool.pids())))
    Path(LAB, "pooldir.txt").write_text(pool._dir)


ctx = Context(store=os.environ["STORE"])
ctx.report = lambda line: print(line, flush=True)
'''

INTERRUPT = PRELUDE + '''
warm_pool(ctx, 2)
qs = [ctx.comp(quick, i, job_id=f"q{i}") for i in range(2)]
ws = [ctx.comp(slow, f"w{i}", qs[i], job_id=f"w{i}") for i in range(2)]
print("READY", flush=True)
try:
    ctx.parmake(n=2)
except KeyboardInterrupt:
    print("CAUGHT KeyboardInterrupt", flush=True)
    for r in ctx.ls():
        print("STATE", r.job_id, r.state, flush=True)
    print("POOL", *ctx._pool.pids(), flush=True)
    Path(LAB, "release").touch()  # a job still running after the interrupt would now end
    ctx.parmake(n=2)
    for r in ctx.ls():
        print("AFTER", r.job_id, r.state, flush=True)
    print("POOL", *ctx._pool.pids(), flush=True)
    raise
print("NOT INTERRUPTED", flush=True)
'''

QUEUED = PRELUDE + '''
warm_pool(ctx, 1)
ctx.comp(slow, "w", job_id="w")
for i in range(3):
    ctx.comp(quick, i, job_id=f"q{i}")
try:
    ctx.parmake(n=1)
except KeyboardInterrupt:
    print("POOL", *ctx._pool.pids(), flush=True)
    raise
'''

KILLED = PRELUDE + '''
warm_pool(ctx, 2)
ctx.comp(slow, "w", job_id="w")
ctx.parmake(n=2)
print("NOT KILLED", flush=True)
'''


def _start_script(tmp_path, lab, body: str) -> subprocess.Popen:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    env = dict(os.environ, LAB=lab, STORE=str(tmp_path / "store"), PYTHONUNBUFFERED="1")
    return subprocess.Popen([PYTHON, str(path)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)


def _wait_events(proc, lab, wanted: set[str], timeout: float = 60):
    def seen():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"script exited ({proc.returncode}) early:\n{out}\n{err}")
        return wanted <= set(J.names(lab))
    wait_until(seen, timeout, f"events {sorted(wanted)}")


@pytest.fixture
def script_procs():
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        try:
            p.communicate(timeout=10)
        except Exception:  # noqa: BLE001
            pass


@pytest.mark.timeout(120)
def test_interrupt_stops_engine_jobs_and_reaches_the_script(tmp_path, lab, script_procs):
    proc = _start_script(tmp_path, lab, INTERRUPT)
    script_procs.append(proc)
    # Both slow jobs are running, one per engine (each depends on a quick job that ran
    # there), when the script gets SIGINT.
    _wait_events(proc, lab, {"w0-start", "w1-start", "q0-end", "q1-end"})
    first_pool = set(map(int, Path(lab, "pool.txt").read_text().split()))
    assert {started_pids(lab, "w0")[0], started_pids(lab, "w1")[0]} == first_pool
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)

    # The interrupt reached the script: caught there, then re-raised to the top.
    assert "CAUGHT KeyboardInterrupt" in out, (out, err)
    assert proc.returncode in (-signal.SIGINT, 130), (proc.returncode, out, err)
    assert "KeyboardInterrupt" in err
    assert "(interrupted)" in out
    # Finished jobs stayed done; interrupted ones went back to todo.
    before = dict(line.split()[1:] for line in out.splitlines() if line.startswith("STATE"))
    assert before == {"warm": "done", "q0": "done", "q1": "done", "w0": "todo", "w1": "todo"}
    after = dict(line.split()[1:] for line in out.splitlines() if line.startswith("AFTER"))
    assert set(after.values()) == {"done"} and set(after) == set(before)

    names = J.names(lab)
    # Each slow job started twice (interrupted, then again) and ended once: the first
    # attempts were stopped; had one kept running, the release would have ended it too.
    for w in ("w0", "w1"):
        assert names.count(f"{w}-start") == 2 and names.count(f"{w}-end") == 1, names
    assert names.count("q0-start") == 1 and names.count("q1-start") == 1
    pools = [set(map(int, line.split()[1:])) for line in out.splitlines()
             if line.startswith("POOL")]
    assert all(len(p) == 2 for p in pools)
    # No engine process outlives the script.
    every_engine = first_pool.union(*pools, {pid for _, pid, _ in J.events(lab)})
    assert wait_gone(every_engine, 15) == []


@pytest.mark.timeout(90)
def test_an_interrupt_keeps_an_engine_that_had_jobs_queued(tmp_path, lab, script_procs):
    """Short jobs are sent ahead to the engine; an interrupt drops the queued ones there
    and the engine says so, so it is kept rather than killed as if it did not stop."""
    proc = _start_script(tmp_path, lab, QUEUED)
    script_procs.append(proc)
    _wait_events(proc, lab, {"w-start"})
    assert not [n for n in J.names(lab) if n.startswith("q") and n != "q-1-start"
                and n != "q-1-end"], "the quick jobs were to wait behind w"
    pool = set(map(int, Path(lab, "pool.txt").read_text().split()))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in err, (out, err)
    after = [set(map(int, line.split()[1:])) for line in out.splitlines()
             if line.startswith("POOL")]
    assert after == [pool], (out, err)


@pytest.mark.timeout(90)
def test_engines_exit_when_the_kernel_is_killed(tmp_path, lab, script_procs):
    proc = _start_script(tmp_path, lab, KILLED)
    script_procs.append(proc)
    _wait_events(proc, lab, {"w-start"})
    pids = set(map(int, Path(lab, "pool.txt").read_text().split()))
    busy = started_pids(lab, "w")[0]
    assert len(pids) == 2 and busy in pids and all(is_engine(p) for p in pids)
    proc.kill()
    proc.wait(10)
    # The busy engine and the idle one both go (PR_SET_PDEATHSIG, else getppid polling).
    assert wait_gone(pids, 10) == []
    assert "w-end" not in J.names(lab)
    # A killed kernel cannot remove its ipc directory (socket, engine logs): tidy up.
    pool_dir = Path(lab, "pooldir.txt").read_text()
    assert pool_dir.startswith(tempfile.gettempdir()) and "nbm-" in pool_dir
    shutil.rmtree(pool_dir, ignore_errors=True)
