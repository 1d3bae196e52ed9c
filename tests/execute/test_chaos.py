"""Engines killed at random while a make runs (SPEC 2 and 7).

A thread SIGKILLs one of the pool's engine processes every 50-200 ms while a parmake of a
few hundred short jobs runs. Whatever the timing, the make returns (it never hangs), no
job is left ``running`` in the store, every job is done with its right value unless it
was running on a killed engine (then it is ``failed``, naming that engine and SIGKILL) or
depends on such a job (``blocked``), and a fresh context on the store sees the same.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from enginejobs import jobs as J  # noqa: E402
from enginejobs.support import *  # noqa: E402,F401,F403
from enginejobs.support import guarded, is_engine, wait_ready  # noqa: E402

from nbmake_ext import Context, JobsFailed  # noqa: E402
from nbmake_ext.kernel.pool import EnginePool  # noqa: E402

DEATH = re.compile(r"^engine (\d+) died while running it: killed by SIGKILL")


class Killer(threading.Thread):
    """SIGKILLs a random engine (a child process of this one that runs the engine module)
    every ``low``-``high`` seconds until stopped; remembers the pids it killed."""

    def __init__(self, seed: int, low: float = 0.05, high: float = 0.2):
        super().__init__(daemon=True)
        self.rng = random.Random(seed)
        self.low, self.high = low, high
        self.stop = threading.Event()
        self.killed: list[int] = []

    def run(self) -> None:
        me = psutil.Process()
        while not self.stop.wait(self.rng.uniform(self.low, self.high)):
            try:
                pids = [p.pid for p in me.children() if is_engine(p.pid)]
            except psutil.Error:
                continue
            if not pids:
                continue
            pid = self.rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.killed.append(pid)


def chaos_graph(ctx, n: int) -> dict[str, int]:
    """``n`` short jobs: leaves, pairs summing two leaves, and chains of four (which the
    pool sends ahead to one engine). Returns each job's expected value."""
    expected: dict[str, int] = {}
    leaves = []
    for i in range(n // 2):
        # Now and then a longer one: the pool then moves the jobs queued behind it to an
        # idle engine (give_back), one more message that may meet a dead engine.
        pause = 0.15 if i % 8 == 0 else 0.005
        leaves.append(ctx.comp(J.chaos_job, i, pause=pause, job_id=f"leaf{i}"))
        expected[f"leaf{i}"] = i
    for i in range(n // 4):
        a, b = 2 * i % len(leaves), (2 * i + 1) % len(leaves)
        ctx.comp(J.chaos_job, 1000, leaves[a], leaves[b], job_id=f"pair{i}")
        expected[f"pair{i}"] = 1000 + expected[f"leaf{a}"] + expected[f"leaf{b}"]
    for c in range(n // 16):
        prev, value = None, 0
        for k in range(4):
            jid = f"chain{c}-{k}"
            prev = ctx.comp(J.chaos_job, k, *([prev] if prev is not None else []), job_id=jid)
            value += k
            expected[jid] = value
    return expected


def chaos_round(ctx, seed: int, n_jobs: int, engines: int,
                within: float) -> tuple[int, int, int]:
    """One parmake under a killer; checks the outcome; returns (jobs done, jobs failed,
    engines killed)."""
    expected = chaos_graph(ctx, n_jobs)
    killer = Killer(seed)
    killer.start()
    failed: dict[str, str] = {}
    blocked: dict[str, str] = {}
    try:
        guarded(ctx.parmake, n=engines, within=within)
    except JobsFailed as exc:
        failed, blocked = exc.failed, exc.blocked
    finally:
        killer.stop.set()
        killer.join(10)
    records = {r.job_id: r.state for r in ctx.ls()}
    assert "running" not in records.values(), \
        sorted(j for j, s in records.items() if s == "running")[:20]
    for jid, error in failed.items():
        m = DEATH.match(error)
        assert m, f"{jid} failed for another reason than a killed engine: {error}"
        assert int(m.group(1)) in killer.killed, (jid, error, killer.killed)
        assert records[jid] == "failed"
    for jid, by in blocked.items():
        assert records[jid] == "blocked" and by in failed, (jid, by)
    done = [j for j in expected if j not in failed and j not in blocked]
    assert all(records[j] == "done" for j in done), \
        {j: records[j] for j in done if records[j] != "done"}
    # Nothing finished is lost: every result is there, right, also for a fresh context.
    fresh = Context(store=ctx.store.path)
    try:
        fresh.report = lambda line: None
        again = {r.job_id: r.state for r in fresh.ls()}
        assert again == records
        for jid in done:
            assert fresh.result_of(jid) == expected[jid], jid
    finally:
        fresh.close()
    return len(done), len(failed), len(killer.killed)


@pytest.mark.timeout(150)
def test_engines_killed_at_random_never_hang_the_make_nor_lose_a_result(make_ctx):
    rounds, budget = 3, 60.0
    end = time.monotonic() + budget
    kills = 0
    for r in range(rounds):
        if r and time.monotonic() > end:
            break  # a slow machine: fewer rounds, each one still checked in full
        ctx = make_ctx(f"store{r}")
        kills += chaos_round(ctx, seed=r, n_jobs=240, engines=3, within=60)[2]
        ctx.close()
    assert kills, "no engine was killed: the test tested nothing"


@pytest.mark.timeout(60)
def test_asking_a_dead_engine_to_give_back_a_job_replaces_it(make_ctx):
    """The pool asks an engine with jobs queued behind a long one to give one back (an
    idle engine could take it). If that engine died since the pool last looked, the send
    fails and the dead engine is replaced there and then, while the pool is going through
    its engines: that must not break the loop (it raised "dictionary keys changed during
    iteration" out of parmake when engines were killed at random)."""
    import zmq
    from zmq.utils.monitor import recv_monitor_message

    ctx = make_ctx()
    pool = EnginePool(ctx.store.path, 3)
    try:
        wait_ready(pool)
        first, *others = pool.engines.values()
        first.queue.extend(["long", "behind"])  # as if sent: a long job, one behind it
        first.head_since = time.monotonic() - 10
        monitor = pool.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            os.kill(first.pid, signal.SIGKILL)
            assert monitor.poll(20_000), "the ROUTER never saw the engine go"
            assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
        finally:
            pool.socket.disable_monitor()
            monitor.close(0)
        # The ROUTER forgets the engine's route a moment after the disconnection: until
        # then a send to it is silently dropped. Probe (an empty frame, dropped by a dead
        # peer) until the route is gone, as it is when the pool meets a long-dead engine.
        deadline = time.monotonic() + 20
        while True:
            try:
                pool.socket.send_multipart([first.identity, b""])
            except zmq.ZMQError:
                break
            assert time.monotonic() < deadline, "the ROUTER kept the dead engine's route"
            time.sleep(0.01)
        pool._balance()  # sends give_back to the dead engine: it is replaced
        assert first.identity not in pool.engines and len(pool.engines) == 3
        assert all(e.identity in pool.engines for e in others)
        out = pool.poll(0)
        assert [(type(o).__name__, o.job_ids) for o in out] == [("Requeue", ["long", "behind"])]
    finally:
        pool.close()


@pytest.mark.timeout(60)
def test_an_engine_that_dies_before_reading_its_configuration_is_replaced(make_ctx,
                                                                          monkeypatch):
    """Killed (or out of memory) as it starts: the pool's write of its configuration
    meets a broken pipe. That engine is buried and replaced like any dead one, and the
    make goes on (it raised BrokenPipeError out of parmake)."""
    import subprocess

    real = subprocess.Popen
    killed = []

    def dies_at_once(*args, **kwargs):
        proc = real(*args, **kwargs)
        if not killed:
            proc.kill()
            proc.wait()
            killed.append(proc.pid)
        return proc

    monkeypatch.setattr(subprocess, "Popen", dies_at_once)
    ctx = make_ctx()
    jobs = [ctx.comp(J.chaos_job, i, job_id=f"j{i}") for i in range(6)]
    report = guarded(ctx.parmake, n=2, within=30)
    assert killed and report.ran == 6 and not report.failed
    assert [p.result() for p in jobs] == list(range(6))
    assert killed[0] not in ctx._pool.pids() and len(ctx._pool.pids()) == 2
