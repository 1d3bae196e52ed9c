"""The scheduler as a table: for each scenario, the events fed in turn and the exact
actions each one returns, with the per-run status of every job after it. Every move is
checked against the transition table (validate=True keeps each job's story)."""

from __future__ import annotations

import pytest

from nbmake_ext.core import events as ev
from nbmake_ext.core.graph import Graph
from nbmake_ext.core.jobspec import RunRecord
from nbmake_ext.core.scheduler import Scheduler
from nbmake_ext.core.states import (
    BLOCKED, DONE, FAILED, LEGAL, QUEUED, RETURNED, SKIPPED, STATUSES, TRANSITIONS, WAITING,
    legal_from,
)
from nbmake_ext.errors import InternalError

from sim import spec


def rec(job_id, deps=None, result=None, code="c"):
    """The record of a stored result of ``spec(job_id)`` made from ``deps`` (id -> fp)."""
    return RunRecord(code, {f"m.{job_id}": code}, "a", dict(deps or {}), result or "r" + job_id)


START = "start"

# name -> (jobs, records, targets, options, steps); a step is (event or START, actions,
# statuses after it: {job: status}, only the jobs listed).
def retrying(job_spec, retries):
    """``job_spec`` with ``job_retries=retries``."""
    from dataclasses import replace
    from nbmake_ext.core.options import JobOptions
    return replace(job_spec, options=JobOptions(retries=retries))


SCENARIOS = {
    "a job with retries runs again until its attempts are spent": (
        [retrying(spec("a"), 2), spec("b", ["a"])], {}, ["b"], {},
        [
            (START, [ev.Run("a", ("never ran",))], {"a": QUEUED, "b": WAITING}),
            (ev.Failed("a", "e1"), [ev.Retry("a", 2, "e1")], {"a": QUEUED, "b": WAITING}),
            (ev.Failed("a", "e2"), [ev.Retry("a", 3, "e2")], {"a": QUEUED, "b": WAITING}),
            (ev.Failed("a", "e3"), [ev.Block("b", "a")], {"a": FAILED, "b": BLOCKED}),
        ],
    ),
    "a retried job that succeeds lets its dependents run": (
        [retrying(spec("a"), 1), spec("b", ["a"])], {}, ["b"], {},
        [
            (START, [ev.Run("a", ("never ran",))], {"a": QUEUED}),
            (ev.Failed("a", "e1"), [ev.Retry("a", 2, "e1")], {"a": QUEUED}),
            (ev.Succeeded("a", "ra"), [ev.Run("b", ("never ran",))], {"a": DONE, "b": QUEUED}),
            (ev.Succeeded("b", "rb"), [], {"b": DONE}),
        ],
    ),
    "a dynamic job that defined children is not retried": (
        [retrying(spec("p", dynamic=True), 3)], {}, ["p"], {},
        [
            (START, [ev.Run("p", ("never ran",))], {"p": QUEUED}),
            (ev.ChildDefined(spec("k", parent="p")), [ev.Run("k", ("never ran",))],
             {"p": QUEUED, "k": QUEUED}),
            (ev.Failed("p", "boom"), [], {"p": FAILED, "k": QUEUED}),
            (ev.Succeeded("k", "rk"), [], {"k": DONE}),
        ],
    ),
    "chain with early cutoff": (
        [spec("a", code="c2"), spec("b", ["a"]), spec("c", ["b"]), spec("d", ["c"])],
        {"a": rec("a"), "b": rec("b", {"a": "ra"}), "c": rec("c", {"b": "rb"}),
         "d": rec("d", {"c": "rc"})},
        ["d"], {},
        [
            (START, [ev.Run("a", ("code of m.a changed",))],
             {"a": QUEUED, "b": WAITING, "c": WAITING, "d": WAITING}),
            # a ran to a new result: b runs; b to its old result: c and d are up to date
            (ev.Succeeded("a", "ra2"), [ev.Run("b", ("dependency a produced a new result",))],
             {"a": DONE, "b": QUEUED, "c": WAITING}),
            (ev.Succeeded("b", "rb"), [ev.Skip("c"), ev.Skip("d")],
             {"b": DONE, "c": SKIPPED, "d": SKIPPED}),
        ],
    ),
    "a failure blocks its dependents, not the others": (
        [spec("a"), spec("b", ["a"]), spec("c", ["b"]), spec("x"), spec("y", ["x", "b"])],
        {}, ["c", "y"], {},
        [
            (START, [ev.Run("x", ("never ran",)), ev.Run("a", ("never ran",))],
             {"a": QUEUED, "x": QUEUED, "b": WAITING, "c": WAITING, "y": WAITING}),
            (ev.Succeeded("x", "rx"), [], {"x": DONE, "y": WAITING}),
            (ev.Failed("a", "boom"),
             [ev.Block("b", "a"), ev.Block("c", "a"), ev.Block("y", "a")],
             {"a": FAILED, "b": BLOCKED, "c": BLOCKED, "y": BLOCKED}),
        ],
    ),
    "a lost result is made again before its consumer runs": (
        [spec("a"), spec("b", ["a"]), spec("c", ["b"], code="c2")],
        {"a": rec("a"), "b": rec("b", {"a": "ra"}), "c": rec("c", {"b": "rb"})},
        ["c"], {},
        [
            (START, [ev.Skip("a"), ev.Skip("b"), ev.Run("c", ("code of m.c changed",))],
             {"a": SKIPPED, "b": SKIPPED, "c": QUEUED}),
            # the driver could not read b's result while preparing c
            (ev.ResultLost("b", "c"), [ev.Run("b", ("result file missing or corrupt",))],
             {"b": QUEUED, "c": WAITING}),
            (ev.Succeeded("b", "rb"), [ev.Run("c", ("code of m.c changed",))],
             {"b": DONE, "c": QUEUED}),
            (ev.Succeeded("c", "rc2"), [], {"c": DONE}),
        ],
    ),
    "a lost result made again to another value reopens a skipped dependent": (
        [spec("a"), spec("b", ["a"]), spec("c", ["a"], code="c2")],
        {"a": rec("a"), "b": rec("b", {"a": "ra"}), "c": rec("c", {"a": "ra"})},
        ["b", "c"], {},
        [
            (START, [ev.Skip("a"), ev.Skip("b"), ev.Run("c", ("code of m.c changed",))],
             {"a": SKIPPED, "b": SKIPPED, "c": QUEUED}),
            (ev.ResultLost("a", "c"), [ev.Run("a", ("result file missing or corrupt",))],
             {"a": QUEUED, "b": SKIPPED, "c": WAITING}),
            (ev.Succeeded("a", "ra2"),
             [ev.Run("b", ("dependency a produced a new result",)),
              ev.Run("c", ("code of m.c changed", "dependency a produced a new result"))],
             {"a": DONE, "b": QUEUED, "c": QUEUED}),
            (ev.Succeeded("b", "rb"), [], {"b": DONE}),
            (ev.Succeeded("c", "rc"), [], {"c": DONE}),
        ],
    ),
    "a dynamic parent defines children, forgets an old one, then completes": (
        [spec("p", code="c2", dynamic=True), spec("k0", parent="p"), spec("after", ["p"])],
        {"p": rec("p"), "k0": rec("k0"), "after": rec("after", {"p": "rp"})},
        ["after"], {},
        [
            (START, [ev.Run("p", ("code of m.p changed",))],
             {"p": QUEUED, "k0": WAITING, "after": WAITING}),
            (ev.ChildDefined(spec("k1", parent="p")), [ev.Run("k1", ("never ran",))],
             {"p": QUEUED, "k1": QUEUED}),
            (ev.ChildDefined(spec("k2", ["k1"], parent="p")), [], {"k2": WAITING}),
            (ev.Returned("p"), [ev.Forget(("k0",))], {"p": RETURNED, "k0": None}),
            (ev.Succeeded("k1", "rk1"), [ev.Run("k2", ("never ran",))],
             {"k1": DONE, "k2": QUEUED, "p": RETURNED}),
            (ev.Succeeded("k2", "rk2"), [ev.Complete("p")], {"k2": DONE, "p": RETURNED}),
            # its value resolves to the one stored before: after is up to date
            (ev.Succeeded("p", "rp"), [ev.Skip("after")], {"p": DONE, "after": SKIPPED}),
        ],
    ),
    "a failing child fails its dynamic parent and blocks what needs the parent": (
        [spec("p", dynamic=True), spec("after", ["p"])],
        {}, ["after"], {},
        [
            (START, [ev.Run("p", ("never ran",))], {"p": QUEUED, "after": WAITING}),
            (ev.ChildDefined(spec("k", parent="p")), [ev.Run("k", ("never ran",))],
             {"k": QUEUED}),
            (ev.Returned("p"), [], {"p": RETURNED}),
            (ev.Failed("k", "boom"), [ev.Block("after", "p"), ev.Fail("p", "child k failed")],
             {"k": FAILED, "p": FAILED, "after": BLOCKED}),
        ],
    ),
    "a failed job whose result is up to date again is restored, with what it blocked": (
        [spec("a"), spec("b", ["a"]), spec("c", ["b"])],
        {"a": rec("a"), "b": rec("b", {"a": "ra"}), "c": rec("c", {"b": "rb"})},
        ["c"], {"unsettled": {"b": "failed", "c": "blocked"}},
        [
            (START, [ev.Skip("a"), ev.Skip("b", restored=True), ev.Skip("c", restored=True)],
             {"a": SKIPPED, "b": SKIPPED, "c": SKIPPED}),
        ],
    ),
    "a restore decided once a dependency ran again to an equal result": (
        [spec("a", code="c2"), spec("b", ["a"]), spec("c", ["b"])],
        {"a": rec("a"), "b": rec("b", {"a": "ra"}), "c": rec("c", {"b": "rb"})},
        ["c"], {"unsettled": {"a": "failed", "b": "blocked", "c": "blocked"}},
        [
            (START, [ev.Run("a", ("its last run failed", "code of m.a changed"))],
             {"a": QUEUED, "b": WAITING, "c": WAITING}),
            (ev.Succeeded("a", "ra"),
             [ev.Skip("b", restored=True), ev.Skip("c", restored=True)],
             {"a": DONE, "b": SKIPPED, "c": SKIPPED}),
        ],
    ),
    "another process made a queued job: reconsidered and skipped": (
        [spec("a"), spec("b", ["a"])],
        {}, ["b"], {},
        [
            (START, [ev.Run("a", ("never ran",))], {"a": QUEUED, "b": WAITING}),
            (ev.Reconsider("a", rec("a"), "done"), [ev.Skip("a"), ev.Run("b", ("never ran",))],
             {"a": SKIPPED, "b": QUEUED}),
            (ev.Succeeded("b", "rb"), [], {"b": DONE}),
        ],
    ),
    "another process failed a queued job: reconsidered, it runs here": (
        [spec("a"), spec("b", ["a"])],
        {}, ["b"], {},
        [
            (START, [ev.Run("a", ("never ran",))], {"a": QUEUED, "b": WAITING}),
            (ev.Reconsider("a", None, "failed"), [ev.Run("a", ("its last run failed",))],
             {"a": QUEUED, "b": WAITING}),
            (ev.Succeeded("a", "ra"), [ev.Run("b", ("never ran",))], {"a": DONE, "b": QUEUED}),
            (ev.Succeeded("b", "rb"), [], {"b": DONE}),
        ],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name):
    jobs, records, targets, options, steps = SCENARIOS[name]
    sched = Scheduler(Graph(jobs), records, targets, validate=True, **options)
    for i, (event, actions, statuses) in enumerate(steps):
        got = sched.start() if event is START else sched.handle(event)
        assert got == actions, f"step {i} ({event}): {got}"
        now = {j: sched.state(j) for j in statuses}
        assert now == statuses, f"step {i} ({event}): {now}"
    assert sched.finished


def test_every_move_in_the_scenarios_is_one_of_the_table():
    # the stories of a scenario replayed: each move named is a legal pair
    for jobs, records, targets, options, steps in SCENARIOS.values():
        sched = Scheduler(Graph(jobs), records, targets, validate=True, **options)
        for event, _, _ in steps:
            sched.start() if event is START else sched.handle(event)
        for jid in list(sched.status) + ["k0"]:
            for line in sched.story(jid):
                move = line.split(" (")[0]
                old, new = move.split(" -> ")
                pair = (None if old == "new" else old, None if new == "forgotten" else new)
                assert pair[1] is None or pair in LEGAL, line


def test_the_table_names_only_known_statuses_and_every_status_is_reachable():
    for old, new in TRANSITIONS:
        assert old is None or old in STATUSES
        assert new in STATUSES
    assert {new for _, new in TRANSITIONS} == set(STATUSES)
    # what is final stays final unless the job is remade or redefined
    assert legal_from(DONE) == [WAITING] and legal_from(FAILED) == [WAITING]
    assert set(legal_from(None)) == {WAITING, SKIPPED}


# -- illegal moves raise, with the job's story ------------------------------------------


def test_succeeded_for_a_job_never_queued_is_an_illegal_move_with_its_story():
    g = Graph([spec("a"), spec("b", ["a"])])
    sched = Scheduler(g, {"a": rec("a")}, ["b"], validate=True)
    assert sched.start() == [ev.Skip("a"), ev.Run("b", ("never ran",))]
    with pytest.raises(InternalError) as info:
        sched.handle(ev.Succeeded("a", "ra"))
    message = str(info.value)
    assert "job 'a': illegal move skipped -> done" in message
    assert "it may only go to waiting" in message
    assert "on Succeeded(a)" in message
    assert "its story: new -> skipped (start)" in message
    # nothing changed
    assert sched.state("a") == SKIPPED and sched.results["a"] == "ra"


def test_the_story_tells_every_move_and_what_caused_it():
    g = Graph([spec("a"), spec("b", ["a"])])
    sched = Scheduler(g, {}, ["b"], validate=True)
    sched.start()
    sched.handle(ev.Succeeded("a", "ra"))
    sched.handle(ev.Succeeded("b", "rb"))
    assert sched.story("b") == ["new -> waiting (start)", "waiting -> queued (Succeeded(a))",
                                "queued -> done (Succeeded(b))"]
    with pytest.raises(InternalError, match=r"illegal move done -> done.*"
                       r"its story: new -> waiting \(start\); waiting -> queued"):
        sched.handle(ev.Succeeded("b", "rb"))


def test_an_event_for_a_job_not_in_the_run_and_a_second_failure_are_illegal():
    g = Graph([spec("a")])
    sched = Scheduler(g, {}, ["a"], validate=True)
    sched.start()
    with pytest.raises(InternalError, match="job 'zz': illegal move new -> failed"):
        sched.handle(ev.Failed("zz", "boom"))
    sched.handle(ev.Failed("a", "boom"))
    with pytest.raises(InternalError, match="illegal move failed -> returned.*"
                       "queued -> failed \\(Failed\\(a\\)\\)"):
        sched.handle(ev.Returned("a"))


def test_without_validate_an_illegal_move_raises_too_but_keeps_no_story():
    sched = Scheduler(Graph([spec("a")]), {"a": rec("a")}, ["a"])
    assert sched.start() == [ev.Skip("a")]
    assert sched.story("a") == [] and sched._story is None
    with pytest.raises(InternalError, match="illegal move skipped -> done.*validate=True"):
        sched.handle(ev.Succeeded("a", "ra"))


def test_the_story_is_short():
    from nbmake_ext.core.scheduler import STORY

    g = Graph([spec("a"), spec("b", ["a"], code="c2")])
    sched = Scheduler(g, {"a": rec("a"), "b": rec("b", {"a": "ra"})}, ["b"], validate=True)
    sched.start()
    sched.started("b")
    for _ in range(STORY):  # lost and made again, over and over
        sched.handle(ev.ResultLost("a", "b"))
        sched.handle(ev.Succeeded("a", "ra"))
    assert len(sched.story("a")) == STORY


def test_a_failed_child_redefined_by_its_running_parent_reopens_what_it_blocked():
    sched = Scheduler(Graph([spec("p", dynamic=True)]), {}, ["p"], validate=True)
    sched.start()
    sched.handle(ev.ChildDefined(spec("k", parent="p")))
    sched.handle(ev.ChildDefined(spec("m", ["k"], parent="p")))
    assert sched.handle(ev.Failed("k", "boom")) == [ev.Block("m", "k")]
    # the move failed -> waiting is legal; m, blocked by k, must wait for k again
    assert sched.handle(ev.ChildDefined(spec("k", parent="p", code="c2"))) == [
        ev.Run("k", ("its last run failed",))]
    assert sched.state("m") == WAITING


def test_a_reopened_failed_child_reopens_its_chain_and_not_what_another_failure_blocks():
    sched = Scheduler(Graph([spec("p", dynamic=True), spec("z", ["p"])]), {}, ["z"],
                      validate=True)
    assert sched.start() == [ev.Run("p", ("never ran",))]
    for child in (spec("k", parent="p"), spec("f", parent="p"), spec("m", ["k"], parent="p"),
                  spec("n", ["m"], parent="p"), spec("j", ["k", "f"], parent="p")):
        sched.handle(ev.ChildDefined(child))
    sched.started("k")
    sched.started("f")
    assert sched.handle(ev.Failed("k", "boom")) == [
        ev.Block("m", "k"), ev.Block("j", "k"), ev.Block("n", "k")]
    assert sched.handle(ev.Failed("f", "bang")) == []  # j stays blocked by k
    # k redefined: m and n wait for it again; j is blocked now by f, which still failed
    assert sched.handle(ev.ChildDefined(spec("k", parent="p", code="c2"))) == [
        ev.Block("j", "f"), ev.Run("k", ("its last run failed",))]
    assert {j: sched.state(j) for j in "kmnjf"} == {
        "k": QUEUED, "m": WAITING, "n": WAITING, "j": BLOCKED, "f": FAILED}
    assert sched.blocked_by["j"] == "f"
    assert "blocked -> waiting (ChildDefined(k))" in sched.story("m")
    assert sched.handle(ev.Succeeded("k", "rk")) == [ev.Run("m", ("never ran",))]
    assert sched.handle(ev.Succeeded("m", "rm")) == [ev.Run("n", ("never ran",))]
    assert sched.handle(ev.Returned("p")) == []
    # the parent fails through f, its dependent z is blocked by it
    assert sched.handle(ev.Succeeded("n", "rn")) == [
        ev.Block("z", "p"), ev.Fail("p", "child f failed")]
    s = sched.summary()
    assert s.ran == 3 and s.failed == {"f": "bang", "p": "child f failed"}
    assert s.blocked == {"j": "f", "z": "p"}


def test_a_reopened_failed_child_up_to_date_again_takes_back_what_it_blocked():
    # k and m were made before; k is redefined (to code c2, which fails), then back
    records = {"k": rec("k"), "m": rec("m", {"k": "rk"})}
    sched = Scheduler(Graph([spec("p", dynamic=True)]), records, ["p"], validate=True)
    sched.start()
    assert sched.handle(ev.ChildDefined(spec("k", parent="p", code="c2"))) == [
        ev.Run("k", ("code of m.k changed",))]
    assert sched.handle(ev.ChildDefined(spec("m", ["k"], parent="p"))) == []
    assert sched.handle(ev.Failed("k", "boom")) == [ev.Block("m", "k")]
    # both take their stored results back: the store says failed and blocked by now
    assert sched.handle(ev.ChildDefined(spec("k", parent="p"))) == [
        ev.Skip("k", restored=True), ev.Skip("m", restored=True)]
    assert sched.handle(ev.Returned("p")) == [ev.Complete("p")]
    assert sched.handle(ev.Succeeded("p", "rp")) == []
    s = sched.summary()
    assert (s.ran, s.restored, s.skipped, s.blocked, s.failed) == (1, 2, 0, {}, {})


def test_a_child_redefined_before_it_started_waits_again_and_runs_once():
    # the parent defines k twice while it runs (the in-kernel runner starts children only
    # once their parent returned): the last definition runs
    sched = Scheduler(Graph([spec("p", dynamic=True)]), {}, ["p"], validate=True)
    sched.start()
    sched.started("p")
    assert sched.handle(ev.ChildDefined(spec("k", parent="p"))) == [
        ev.Run("k", ("never ran",))]
    assert sched.handle(ev.ChildDefined(spec("m", ["k"], parent="p"))) == []
    assert sched.handle(ev.ChildDefined(spec("k", parent="p", args="a2"))) == [
        ev.Run("k", ("never ran",))]
    assert "queued -> waiting (ChildDefined(k))" in sched.story("k")
    sched.started("k")  # once handed to a runner, it may not be redefined any more
    with pytest.raises(InternalError, match="redefined while it runs"):
        sched.handle(ev.ChildDefined(spec("k", parent="p", args="a3")))


def test_a_reopened_blocked_child_reopens_only_what_nothing_else_blocks():
    # k was blocked by r; redefined without r, k and m wait again; y, which needs r
    # itself, stays blocked by r (and is not told so twice)
    sched = Scheduler(Graph([spec("p", dynamic=True)]), {}, ["p"], validate=True)
    sched.start()
    for child in (spec("r", parent="p"), spec("k", ["r"], parent="p"),
                  spec("m", ["k"], parent="p"), spec("y", ["m", "r"], parent="p")):
        sched.handle(ev.ChildDefined(child))
    assert sched.handle(ev.Failed("r", "boom")) == [
        ev.Block("k", "r"), ev.Block("y", "r"), ev.Block("m", "r")]
    assert sched.handle(ev.ChildDefined(spec("k", parent="p"))) == [
        ev.Run("k", ("never ran",))]
    assert {j: sched.state(j) for j in "rkmy"} == {
        "r": FAILED, "k": QUEUED, "m": WAITING, "y": BLOCKED}
    assert sched.handle(ev.Succeeded("k", "rk")) == [ev.Run("m", ("never ran",))]
    assert sched.handle(ev.Succeeded("m", "rm")) == []
    assert sched.handle(ev.Returned("p")) == [ev.Fail("p", "child r failed")]
