"""parmake sends a waiting job ahead to the engine that makes its inputs (real engines, real
sockets; see pool.py's docstring).

A job the core has not decided yet, but that will run whatever its inputs bring, goes to
the engine making its input, right behind it, and runs there without waiting for the
kernel; its outcome counts once the core decides it. What is proven here, by side effects
of the jobs (O_APPEND event lines, marker files) and by what the kernel does while it
waits: the links of a chain start on the engine before the kernel has recorded the link
before them; a job sent ahead of a failure never runs and ends blocked; a job that may be
cut off is not sent ahead; an interrupt or a killed engine leaves no claim behind and no
wrong result. The ``engine_leaks`` fixture checks that no engine process outlives a test.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contexts import record_elsewhere_when_claimed  # noqa: E402
from enginejobs import jobs as J  # noqa: E402
from enginejobs.support import *  # noqa: E402,F401,F403
from enginejobs.support import guarded, is_engine, wait_ready, wait_until  # noqa: E402

from nbmake_ext import JobsFailed  # noqa: E402
from nbmake_ext.kernel.driver import Driver  # noqa: E402


def states(ctx) -> dict[str, str]:
    return {r.job_id: r.state for r in ctx.ls()}


def started(lab, name: str) -> list[int]:
    """Pids of the processes that started job ``name`` (one entry per start)."""
    return [pid for event, pid, _ in J.events(lab) if event == f"{name}-start"]


def warm(ctx, lab, n: int = 2) -> set[int]:
    ctx.comp(J.work, lab, "warm", job_id="warm")
    guarded(ctx.parmake, n=n)
    wait_ready(ctx._pool)
    return set(ctx._pool.pids())


def claims_free(make_ctx, job_ids) -> bool:
    """Another store on the same directory can claim every one of these jobs."""
    other = make_ctx()
    mine, elsewhere = other.store.claim(job_ids)
    other.store.release(mine)
    return sorted(mine) == sorted(job_ids) and not elsewhere


def release_when(lab: str, name: str, ready, then=None) -> threading.Thread:
    """In a thread: once ``ready()`` holds (bounded wait), touch release-<name> (after
    ``then()``, if given)."""
    def go():
        try:
            wait_until(ready, 30, f"the condition to release {name}")
            if then is not None:
                then()
        finally:
            Path(lab, f"release-{name}").touch()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


# -- a chain ----------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_a_chain_runs_ahead_on_one_engine_before_the_kernel_records_its_links(
        make_ctx, lab, monkeypatch):
    ctx = make_ctx()
    warm(ctx, lab)
    n = 40
    links = [ctx.comp(J.leaf, lab, "c0", 0, job_id="c0")]
    for i in range(1, n):
        links.append(ctx.comp(J.add, lab, f"c{i}", links[-1], i, job_id=f"c{i}"))
    ids = [f"c{i}" for i in range(n)]

    # The kernel does not record c0's result until c1 and c2 have started: they can only
    # start that early if they were on the engine already, sent ahead of the kernel's
    # decision (which needs c0's result recorded).
    seen: dict[str, bool] = {}
    record = Driver._stored_many

    def slow_record(self, unhandled):  # the results at the head of unhandled
        if unhandled[0].job_id == "c0" and "c0" not in seen:
            try:
                wait_until(lambda: {"c1-start", "c2-start"} <= set(J.names(lab)), 10)
                seen["c0"] = True
            except AssertionError:
                seen["c0"] = False
        return record(self, unhandled)

    monkeypatch.setattr(Driver, "_stored_many", slow_record)
    before = ctx._pool.sent_ahead
    report = guarded(ctx.parmake, n=2)
    assert report.ran == n and not report.failed
    assert seen == {"c0": True}, "c1 and c2 did not start before the kernel recorded c0"
    head = started(lab, "c0")
    assert len(head) == 1 and started(lab, "c1") == head and started(lab, "c2") == head
    # Nearly every link went ahead (the first cannot: it has no input being made).
    assert ctx._pool.sent_ahead - before >= n - 3, ctx._pool.sent_ahead - before
    assert all(len(started(lab, j)) == 1 for j in ids), "a link ran twice"

    # Results end to end, as recorded.
    assert [link.result() for link in links] == [sum(range(i + 1)) for i in range(n)]
    assert set(states(ctx).values()) == {"done"}
    assert claims_free(make_ctx, ids)
    ran = J.names(lab)
    again = guarded(ctx.parmake, n=2)
    assert again.ran == 0 and again.skipped == n + 1
    assert J.names(lab) == ran
    other = make_ctx()
    assert set(states(other).values()) == {"done"} and other.make().ran == 0


@pytest.mark.timeout(120)
def test_jobs_sent_ahead_of_a_failure_are_blocked_and_never_run(make_ctx, lab):
    ctx = make_ctx()
    warm(ctx, lab)
    bad = ctx.comp(J.hold_then_fail, lab, "bad", job_id="bad")
    dep0 = ctx.comp(J.work, lab, "dep0", bad, job_id="dep0")
    ctx.comp(J.work, lab, "dep1", dep0, job_id="dep1")
    ctx.comp(J.work, lab, "ok", 1, job_id="ok")
    pool = ctx._pool
    before = pool.sent_ahead
    # bad fails only once both of its dependents are on its engine, behind it.
    thread = release_when(lab, "bad", lambda: pool.sent_ahead - before >= 2)
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=2)
    thread.join(10)
    assert pool.sent_ahead - before == 2
    assert info.value.failed == {"bad": "ValueError: bad is broken"}
    assert info.value.blocked == {"dep0": "bad", "dep1": "bad"}
    st = states(ctx)
    assert (st["bad"], st["dep0"], st["dep1"], st["ok"]) == ("failed", "blocked", "blocked",
                                                            "done")
    names = J.names(lab)
    assert "dep0-start" not in names and "dep1-start" not in names, names
    assert claims_free(make_ctx, ["bad", "dep0", "dep1"])
    # The engine is still good for work.
    ctx.comp(J.work, lab, "later", job_id="later")
    assert guarded(ctx.parmake, "later", n=2).ran == 1


@pytest.mark.timeout(120)
def test_a_job_that_may_be_cut_off_is_not_sent_ahead(make_ctx, lab):
    """a's code changes but it makes the same result: b and c stay up to date, so they
    must not run on an engine ahead of that decision."""
    ctx = make_ctx()
    warm(ctx, lab)
    a = ctx.comp(J.leaf, lab, "a", 1, job_id="a")
    b = ctx.comp(J.add, lab, "b", a, 1, job_id="b")
    ctx.comp(J.add, lab, "c", b, 1, job_id="c")
    assert guarded(ctx.parmake, n=2).ran == 3
    ctx.comp(J.leaf_again, lab, "a", 1, job_id="a")
    before = ctx._pool.sent_ahead
    report = guarded(ctx.parmake, n=2)
    assert (report.ran, report.skipped) == (1, 3)
    assert ctx._pool.sent_ahead == before
    assert [n for n in J.names(lab) if n != "warm-start" and n != "warm-end"] == \
        ["a-start", "b-start", "c-start", "a-start"]
    assert set(states(ctx).values()) == {"done"}


@pytest.mark.timeout(120)
def test_a_job_sent_ahead_stays_on_its_engine_while_another_is_idle(make_ctx, lab):
    """The pool moves a job waiting behind a long one to an idle engine; not a job sent
    ahead: its input is made (and kept) where it is."""
    ctx = make_ctx()
    warm(ctx, lab)
    long = ctx.comp(J.hold, lab, "long", job_id="long")
    after = ctx.comp(J.work, lab, "after", long, job_id="after")
    pool = ctx._pool
    before = pool.sent_ahead
    # Released well after the pool would have moved a job waiting behind it (STEAL_AFTER).
    thread = release_when(lab, "long", lambda: pool.sent_ahead > before,
                          then=lambda: time.sleep(0.5))
    report = guarded(ctx.parmake, n=2, within=30)
    thread.join(10)
    assert report.ran == 2 and pool.sent_ahead == before + 1
    assert after.result()["pid"] == long.result()["pid"]
    assert after.result()["inputs"][0]["name"] == "long"


@pytest.mark.timeout(120)
def test_jobs_sent_ahead_do_not_keep_other_jobs_from_an_idle_engine(make_ctx, lab):
    """Engines start cold: fa goes to the first one ready, a and c (sent ahead) behind it.
    fb must not queue behind them there (a runs until b has started) but wait for the
    other engine: a and b each wait until the other has started."""
    ctx = make_ctx()
    fa = ctx.comp(J.work, lab, "fa", job_id="fa")
    fb = ctx.comp(J.work, lab, "fb", job_id="fb")
    a = ctx.comp(J.rendezvous, lab, "a", "b", timeout=10, after=fa, job_id="a")
    b = ctx.comp(J.rendezvous, lab, "b", "a", timeout=10, after=fb, job_id="b")
    ctx.comp(J.work, lab, "c", a, job_id="c")
    report = guarded(ctx.parmake, n=2)
    assert report.ran == 5 and not report.failed
    assert a.result()["pid"] != b.result()["pid"]
    assert ctx._pool.sent_ahead >= 1


# -- interrupts and crashes -------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_an_interrupt_puts_jobs_sent_ahead_back_and_leaves_no_claim(make_ctx, lab):
    ctx = make_ctx()
    pids = warm(ctx, lab)
    head = ctx.comp(J.hold, lab, "head", job_id="head")
    l0 = ctx.comp(J.work, lab, "l0", head, job_id="l0")
    l1 = ctx.comp(J.work, lab, "l1", l0, job_id="l1")
    pool = ctx._pool
    before = pool.sent_ahead
    sent: list[bool] = []

    def interrupt():
        try:
            wait_until(lambda: Path(lab, "started-head").exists()
                       and pool.sent_ahead - before >= 2, 30, "l0 and l1 sent ahead")
            sent.append(True)
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        ctx.parmake(n=2)
        time.sleep(5)  # (not reached when the interrupt comes during parmake)
    thread.join(10)
    assert sent == [True]
    assert states(ctx) == {"warm": "done", "head": "todo", "l0": "todo", "l1": "todo"}
    assert claims_free(make_ctx, ["head", "l0", "l1"])
    names = J.names(lab)
    assert "l0-start" not in names and "l1-start" not in names and "head-end" not in names
    assert set(pool.pids()) == pids and all(is_engine(p) for p in pids)

    Path(lab, "release-head").touch()
    report = guarded(ctx.parmake, n=2)
    assert report.ran == 3 and not report.failed
    assert l1.result()["inputs"][0]["inputs"][0]["name"] == "head"
    assert l0.result()["inputs"][0]["name"] == "head"
    assert started(lab, "l0") == started(lab, "head")[1:]  # sent ahead again, behind head
    assert guarded(ctx.parmake, n=2).ran == 0


def _killer(lab: str, name: str, ready) -> tuple[threading.Thread, list[int]]:
    """In a thread: once <name>.pid exists and ``ready()`` holds, SIGKILL that engine."""
    killed: list[int] = []

    def kill():
        pid_file = Path(lab, f"{name}.pid")
        wait_until(lambda: pid_file.exists() and ready(), 30, f"{name} running")
        pid = int(pid_file.read_text())
        if is_engine(pid):  # never kill anything but an engine
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread, killed


@pytest.mark.timeout(120)
def test_an_engine_killed_with_a_job_waiting_ahead_blocks_it_and_frees_its_claim(make_ctx,
                                                                                lab):
    ctx = make_ctx()
    warm(ctx, lab)
    victim = ctx.comp(J.wait_to_be_killed, lab, "victim", job_id="victim")
    ctx.comp(J.work, lab, "dep", victim, job_id="dep")
    ctx.comp(J.work, lab, "other", job_id="other")
    pool = ctx._pool
    before = pool.sent_ahead
    thread, killed = _killer(lab, "victim", lambda: pool.sent_ahead > before)
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=2)
    thread.join(10)
    assert killed == started(lab, "victim")
    assert list(info.value.failed) == ["victim"]
    error = info.value.failed["victim"]
    assert f"engine {killed[0]}" in error and "killed by SIGKILL" in error, error
    assert info.value.blocked == {"dep": "victim"}
    assert "dep-start" not in J.names(lab)
    assert states(ctx)["other"] == "done"
    assert claims_free(make_ctx, ["victim", "dep"])
    assert len(pool.pids()) == 2 and killed[0] not in pool.pids()


@pytest.mark.timeout(120)
def test_a_job_sent_ahead_behind_one_that_never_ran_is_released_and_runs_later(make_ctx,
                                                                              lab):
    """One engine holds [victim (running), y, x sent ahead after y]. victim is killed: it
    fails, y did not run (sent again), x is let go and runs once y is made."""
    ctx = make_ctx()
    warm(ctx, lab, n=1)
    ctx.comp(J.wait_to_be_killed, lab, "victim", job_id="victim")
    y = ctx.comp(J.work, lab, "y", job_id="y")
    x = ctx.comp(J.work, lab, "x", y, job_id="x")
    pool = ctx._pool
    before = pool.sent_ahead
    thread, killed = _killer(lab, "victim", lambda: pool.sent_ahead > before)
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, "victim", "y", "x", n=1)
    thread.join(10)
    assert killed == started(lab, "victim")
    assert list(info.value.failed) == ["victim"] and not info.value.blocked
    assert "killed by SIGKILL" in info.value.failed["victim"]
    st = states(ctx)
    assert (st["y"], st["x"]) == ("done", "done")
    assert x.result()["inputs"] == [y.result()]
    assert len(started(lab, "y")) == 1 and len(started(lab, "x")) == 1
    assert started(lab, "y")[0] != killed[0]
    assert claims_free(make_ctx, ["victim", "y", "x"])


@pytest.mark.timeout(120)
def test_a_job_sent_ahead_that_crashes_its_engine_fails_and_blocks_what_follows(
        make_ctx, lab, monkeypatch):
    """mid, sent ahead behind head, is killed while it runs, before the kernel has even
    recorded head's result: it fails (it is not run again), tail is blocked."""
    ctx = make_ctx()
    warm(ctx, lab)
    head = ctx.comp(J.hold, lab, "head", job_id="head")
    mid = ctx.comp(J.wait_to_be_killed, lab, "mid", head, job_id="mid")
    ctx.comp(J.work, lab, "tail", mid, job_id="tail")
    pool = ctx._pool
    before = pool.sent_ahead
    release = release_when(lab, "head", lambda: pool.sent_ahead - before >= 2)
    thread, killed = _killer(lab, "mid", lambda: True)
    record = Driver._stored_many

    def record_once_mid_is_dead(self, unhandled):  # the results at the head of unhandled
        if unhandled[0].job_id == "head":
            wait_until(lambda: killed and not is_engine(killed[0]), 30, "mid killed")
        return record(self, unhandled)

    monkeypatch.setattr(Driver, "_stored_many", record_once_mid_is_dead)
    with pytest.raises(JobsFailed) as info:
        guarded(ctx.parmake, n=2)
    release.join(10)
    thread.join(10)
    assert killed == started(lab, "mid") == started(lab, "head")
    assert list(info.value.failed) == ["mid"]
    assert "killed by SIGKILL" in info.value.failed["mid"]
    assert info.value.blocked == {"tail": "mid"}
    assert "tail-start" not in J.names(lab)
    assert states(ctx)["head"] == "done"
    assert claims_free(make_ctx, ["head", "mid", "tail"])


# -- another process on the same store ---------------------------------------------------------

@pytest.mark.timeout(120)
def test_a_job_sent_ahead_on_an_input_another_process_replaced_runs_again(make_ctx, lab,
                                                                        monkeypatch):
    """D and J never ran; D waits for H, J for D: both are sent ahead, J behind D. Just
    then another process stores D's result (made from the same H): the core takes that one
    (D is up to date), so what J made on the engine from this run's D must not be
    recorded: J runs again, on the other process's D."""
    ctx = make_ctx()
    warm(ctx, lab)
    h = ctx.comp(J.leaf, lab, "H", 1, job_id="H")
    d = ctx.comp(J.work, lab, "D", h, job_id="D")
    j = ctx.comp(J.work, lab, "J", d, job_id="J")
    ctx.sync()
    other = make_ctx()  # the same store, opened again
    stored = record_elsewhere_when_claimed(ctx, other, "D", {"H": 1}, monkeypatch)
    before = ctx._pool.sent_ahead
    report = guarded(ctx.parmake, n=2)
    assert stored == ["D"], "D was not sent ahead"
    assert ctx._pool.sent_ahead - before >= 2
    assert (report.ran, report.skipped) == (2, 2) and not report.failed
    assert d.result() == "made elsewhere"
    assert j.result()["inputs"] == ["made elsewhere"]
    assert ctx.why("J") == []
    assert claims_free(make_ctx, ["H", "D", "J"])


# -- random graphs: parmake with jobs sent ahead against a model ----------------------------

def _model(graph: dict, stored: dict) -> dict:
    """Per job: (state, value, ran) as the contract says. ``graph``: job -> (function name,
    base, fail, inputs) in dependency order; ``stored``: job -> (its definition, its
    inputs' values, its value) of its last successful run, updated here."""
    out: dict[str, tuple] = {}
    for jid, (func, base, fail, inputs) in graph.items():
        if any(out[d][0] in ("failed", "blocked") for d in inputs):
            out[jid] = ("blocked", None, False)
            continue
        values = [out[d][1] for d in inputs]
        last = stored.get(jid)
        if last is not None and last[:2] == (graph[jid], values):
            out[jid] = ("done", last[2], False)
        elif fail:
            out[jid] = ("failed", None, True)
        else:
            out[jid] = ("done", base + sum(values), True)
            stored[jid] = (graph[jid], values, base + sum(values))
    return out


def _define(ctx, lab, graph: dict) -> dict:
    promises: dict = {}
    for jid, (func, base, fail, inputs) in graph.items():
        promises[jid] = ctx.comp(getattr(J, func), lab, jid, base,
                                 *[promises[d] for d in inputs], fail=fail, job_id=jid)
    return promises


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_graphs_with_jobs_sent_ahead_end_as_the_model_says(make_ctx, lab, seed):
    import random

    rng = random.Random(seed)
    ctx = make_ctx()
    warm(ctx, lab)
    graph: dict[str, tuple] = {}
    for i in range(30):
        jid = f"j{i:02d}"
        earlier = list(graph)
        inputs: list[str] = []
        if earlier and rng.random() < 0.8:
            inputs.append(earlier[-1])  # mostly chains
        for _ in range(rng.choice([0, 0, 1, 2])):
            if earlier:
                inputs.append(rng.choice(earlier))
        graph[jid] = ("combine", rng.randrange(10), rng.random() < 0.08,
                      tuple(dict.fromkeys(inputs)))
    stored: dict[str, tuple] = {}
    sent = ctx._pool.sent_ahead
    for step in range(4):
        model = _model(graph, stored)
        promises = _define(ctx, lab, graph)
        starts = len(J.names(lab))
        try:
            report = guarded(ctx.parmake, *graph, n=2)
            failed = {}
        except JobsFailed as exc:
            report, failed = None, exc.failed
        ran = [n[:-len("-start")] for n in J.names(lab)[starts:]]
        assert sorted(ran) == sorted(j for j, m in model.items() if m[2]), (seed, step)
        assert set(failed) == {j for j, m in model.items() if m[0] == "failed"}
        if report is not None:
            assert report.ran == len(ran)
        st = states(ctx)
        for jid, m in model.items():
            assert st[jid] == m[0], (seed, step, jid, st[jid], m)
            if m[0] == "done":
                assert promises[jid].result() == m[1], (seed, step, jid)
        assert claims_free(make_ctx, list(graph))
        # Edits for the next make: new arguments, fixed or new failures, and code that
        # changes but keeps its result (its dependents may be cut off).
        for jid in rng.sample(list(graph), 4):
            func, base, fail, inputs = graph[jid]
            change = rng.choice(["base", "fail", "code"])
            if change == "base":
                graph[jid] = (func, base + 1, fail, inputs)
            elif change == "fail":
                graph[jid] = (func, base, not fail, inputs)
            else:
                other = "combine_again" if func == "combine" else "combine"
                graph[jid] = (other, base, fail, inputs)
    assert ctx._pool.sent_ahead > sent, "nothing was sent ahead"
