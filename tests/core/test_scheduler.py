"""The scheduler, fed events directly: milliseconds per test, no I/O."""

import pytest

from nbmake_ext.core import events as ev
from nbmake_ext.core.graph import Graph
from nbmake_ext.core.jobspec import RunRecord
from nbmake_ext.core.scheduler import Scheduler
from nbmake_ext.errors import InternalError, InvalidJob

from sim import Sim, spec


def chain_sim():
    sim = Sim()
    for s in [spec("a"), spec("b", ["a"]), spec("c", ["b"]), spec("x")]:
        sim.graph.add(s)
    return sim


def test_first_make_runs_everything_in_dependency_order():
    sim = chain_sim()
    sched = sim.make()
    assert sim.ran.index("a") < sim.ran.index("b") < sim.ran.index("c")
    assert sorted(sim.ran) == ["a", "b", "c", "x"]
    assert sched.summary().ran == 4


def test_second_make_runs_nothing():
    sim = chain_sim()
    sim.make()
    sched = sim.make()
    assert sim.ran == []
    assert sched.summary().skipped == 4


def test_code_change_reruns_job_and_dependents_when_result_changes():
    sim = chain_sim()
    sim.make()
    sim.graph.add(spec("b", ["a"], code="c2"))
    sim.results["b"] = "new"
    sim.make()
    assert sim.ran == ["b", "c"]


def test_early_cutoff_equal_result_leaves_dependents_up_to_date():
    sim = chain_sim()
    sim.make()
    sim.graph.add(spec("a", code="c2"))  # a runs again, to the same result
    sim.make()
    assert sim.ran == ["a"]


def test_failure_blocks_dependents_only():
    sim = chain_sim()
    sim.fails = {"a"}
    sched = sim.make()
    assert sorted(sim.ran) == ["a", "x"]
    summary = sched.summary()
    assert summary.failed == {"a": "boom"}
    assert summary.blocked == {"b": "a", "c": "a"}
    blocks = [a for a in sim.log if type(a) is ev.Block]
    assert {(b.job_id, b.by) for b in blocks} == {("b", "a"), ("c", "a")}


def test_failed_job_runs_again_next_make_and_unblocks():
    sim = chain_sim()
    sim.fails = {"b"}
    sim.make()
    sim.fails = set()
    sim.make()
    assert sim.ran == ["b", "c"]


def test_targets_limit_the_make_to_what_they_need():
    sim = chain_sim()
    sim.make(targets=["b"])
    assert sim.ran == ["a", "b"]


def test_forced_job_runs_and_reason_is_given():
    sim = chain_sim()
    sim.make()
    sched = sim.make(targets=["b", "c"], forced={"b"})
    assert sim.ran == ["b"]  # same result: c stays up to date
    assert sched.reasons["b"] == ("forced by remake",)


def test_reasons_name_the_changed_code_and_dependency():
    sim = chain_sim()
    sim.make()
    sim.graph.add(spec("a", code="c2"))
    sim.results["a"] = "changed"
    sched = sim.make()
    assert sched.reasons["a"] == ("code of m.a changed",)
    assert sched.reasons["b"] == ("dependency a produced a new result",)


def test_missing_result_reruns_the_job():
    sim = chain_sim()
    sim.make()
    sim.records["a"].present = False
    sim.make()
    assert sim.ran == ["a"]


def test_result_lost_while_loading_reruns_the_dependency_first():
    sim = chain_sim()
    sim.make()
    sim.graph.add(spec("b", ["a"], code="c2"))
    sched = Scheduler(sim.graph, sim.records, ["b"], validate=True)
    actions = sched.start()
    assert actions[-1] == ev.Run("b", ("code of m.b changed",))
    # the driver could not read a's result while preparing b
    actions = sched.handle(ev.ResultLost("a", "b"))
    assert [type(a) for a in actions] == [ev.Run]
    assert actions[0].job_id == "a"
    actions = sched.handle(ev.Succeeded("a", "r-a"))
    assert actions == [ev.Run("b", ("code of m.b changed",))]


def test_a_lost_result_holds_back_dependents_still_waiting_for_another_input():
    # a: up to date; g: must run; b reads a (runs: code changed); h reads a and g.
    g = Graph([spec("a"), spec("g"), spec("b", ["a"], code="new"), spec("h", ["a", "g"])])
    records = {"a": RunRecord("c", {}, "a", {}, "ra"),
               "b": RunRecord("c", {}, "a", {"a": "ra"}, "rb"),
               "h": RunRecord("c", {}, "a", {"a": "ra", "g": "rg"}, "rh")}
    sched = Scheduler(g, records, ["b", "h"], validate=True)
    actions = sched.start()
    assert {a.job_id for a in actions if isinstance(a, ev.Run)} == {"g", "b"}
    sched.started("g")
    sched.handle(ev.ResultLost("a", "b"))          # h still waits for g: it must wait for a too
    actions = sched.handle(ev.Succeeded("g", "rg"))
    assert not [a for a in actions if isinstance(a, ev.Run)], actions
    actions = sched.handle(ev.Succeeded("a", "ra"))  # remade to the same result
    assert [type(a) for a in actions] == [ev.Run, ev.Skip] and ev.Skip("h") in actions


def test_rerun_to_new_result_reopens_dependents_judged_up_to_date():
    g = Graph([spec("a"), spec("b", ["a"])])
    records = {"a": RunRecord("c", {}, "a", {}, "r1"), "b": RunRecord("c", {}, "a", {"a": "r1"}, "rb")}
    sched = Scheduler(g, records, ["b"], validate=True)
    assert sched.start() == [ev.Skip("a"), ev.Skip("b")]
    sched.handle(ev.ResultLost("a", "b"))  # a must run again
    actions = sched.handle(ev.Succeeded("a", "r2"))  # ... to a different result
    assert ev.Run("b", ("dependency a produced a new result",)) in actions


def test_interrupted_run_leaves_unfinished_jobs_to_the_next_make():
    sim = chain_sim()
    sim.make(interrupt_after=1)
    assert len(sim.records) == 1
    sim.make()
    assert len(sim.ran) == 3


def test_dynamic_parent_waits_for_children_and_forgets_old_ones():
    sim = Sim()
    sim.graph.add(spec("p", dynamic=True))
    sim.graph.add(spec("after", ["p"]))
    sim.children["p"] = [spec("k1", parent="p"), spec("k2", ["k1"], parent="p")]
    sched = sim.make()
    assert sim.ran == ["p", "k1", "k2", "after"]
    assert sched.summary().ran == 4
    # p runs again (code changed) and defines k1 only: k2 is forgotten, k1 is up to date
    sim.graph.add(spec("p", code="c2", dynamic=True))
    sim.children["p"] = [spec("k1", parent="p")]
    sim.make()
    assert sim.ran == ["p"]
    assert "k2" not in sim.graph and "k2" not in sim.records
    forgets = [a for a in sim.log if type(a) is ev.Forget]
    assert forgets[-1].job_ids == ("k2",)


def test_failing_child_fails_the_parent_and_blocks_its_dependents():
    sim = Sim()
    sim.graph.add(spec("p", dynamic=True))
    sim.graph.add(spec("after", ["p"]))
    sim.children["p"] = [spec("k1", parent="p")]
    sim.fails = {"k1"}
    sched = sim.make()
    summary = sched.summary()
    assert summary.failed == {"k1": "boom", "p": "child k1 failed"}
    assert summary.blocked == {"after": "p"}


def test_nested_dynamic_jobs():
    sim = Sim()
    sim.graph.add(spec("p", dynamic=True))
    sim.children["p"] = [spec("q", parent="p", dynamic=True)]
    sim.children["q"] = [spec("r", parent="q")]
    sim.make()
    assert sim.ran == ["p", "q", "r"]
    sim.make()
    assert sim.ran == []


def test_up_to_date_parent_makes_a_cleaned_child_again():
    sim = Sim()
    sim.graph.add(spec("p", dynamic=True))
    sim.children["p"] = [spec("k", parent="p")]
    sim.make()
    del sim.records["k"]
    sim.make()
    assert sim.ran == ["k"]


def test_reconsider_skips_a_job_another_process_made():
    g = Graph([spec("a")])
    sched = Scheduler(g, {}, ["a"], validate=True)
    assert sched.start() == [ev.Run("a", ("never ran",))]
    actions = sched.handle(ev.Reconsider("a", RunRecord("c", {}, "a", {}, "r")))
    assert actions == [ev.Skip("a")]
    assert sched.finished


def test_unexpected_event_is_an_internal_error_with_the_job_named():
    g = Graph([spec("a")])
    sched = Scheduler(g, {}, ["a"])
    sched.start()
    with pytest.raises(InternalError, match="'b'"):
        sched.handle(ev.Succeeded("b", "x"))


def test_graph_rejects_cycles_on_redefinition_and_names_the_cycle():
    g = Graph([spec("a"), spec("b", ["a"])])
    with pytest.raises(InvalidJob, match="a -> b -> a"):
        g.add(spec("a", ["b"]))
    with pytest.raises(InvalidJob, match="depends on itself"):
        g.add(spec("c", ["c"]))


def test_select_ids_globs_and_state_words():
    g = Graph([spec("fit-1"), spec("fit-2"), spec("draw-1", ["fit-1"])])
    states = {"fit-1": "done", "fit-2": "failed", "draw-1": "todo"}.__getitem__
    assert g.select(["fit-*"], states) == ["fit-1", "fit-2"]
    assert g.select(["failed", "draw-1"], states) == ["fit-2", "draw-1"]
    assert g.select([], states) == ["fit-1", "fit-2", "draw-1"]
    from nbmake_ext.errors import UnknownTarget

    with pytest.raises(UnknownTarget, match="did you mean .*fit-1"):
        g.select(["fit-l"], states)
    # A state word is a query: one no job is in selects nothing, and is no error.
    assert g.select(["blocked"], states) == []
    assert g.select(["blocked", "failed"], states) == ["fit-2"]
    with pytest.raises(UnknownTarget, match="'nope'"):
        g.select(["blocked", "nope"], states)
    # `all` is every job, with or without other targets.
    assert g.select(["all"], states) == ["fit-1", "fit-2", "draw-1"]
    assert g.select(["draw-1", "all", "blocked"], states) == ["fit-1", "fit-2", "draw-1"]
    with pytest.raises(UnknownTarget, match="'nope'"):
        g.select(["all", "nope"], states)


def test_long_chains_need_no_recursion():
    sim = Sim()
    sim.graph.add(spec("j0"))
    for i in range(1, 1500):
        sim.graph.add(spec(f"j{i}", [f"j{i - 1}"]))
    sim.make()
    assert len(sim.ran) == 1500
    sim.make()
    assert sim.ran == []
    sim.graph.add(spec("j0", code="c2"))
    sim.fails = {"j0"}
    sched = sim.make()
    assert len(sched.summary().blocked) == 1499


def test_runs_whatever_names_waiting_jobs_with_no_early_cutoff():
    """A job waiting for its inputs runs whatever they bring when no stored result of it can
    be up to date: never ran, forced, its code or arguments changed, a dependency added."""
    sim = Sim()
    for s in [spec("a"), spec("b", ["a"]), spec("c", ["b"]), spec("d", ["b"]),
              spec("e", ["b"]), spec("f", ["b"])]:
        sim.graph.add(s)
    sched = Scheduler(sim.graph, {}, list(sim.graph.specs), validate=True)
    sched.start()
    assert not sched.runs_whatever("a"), "queued, not waiting"
    assert all(sched.runs_whatever(j) for j in "bcdef"), "none of them ever ran"
    assert sorted(sched.dependents("b")) == ["c", "d", "e", "f"]

    sim.make()
    sim.graph.add(spec("a", code="c2"))      # runs again: its result may stay the same
    sim.graph.add(spec("c", ["b"], code="c2"))
    sim.graph.add(spec("d", ["b"], args="a2"))
    sim.graph.add(spec("f", ["b", "a"]))
    sched = Scheduler(sim.graph, sim.records, list(sim.graph.specs), forced={"e": "forced"},
                      validate=True)
    sched.start()
    assert not sched.runs_whatever("b"), "b may be cut off if a makes the same result"
    assert [j for j in "cdef" if sched.runs_whatever(j)] == ["c", "d", "e", "f"]
    sim.records["c"].present = False
    sched = Scheduler(sim.graph, sim.records, ["c"], validate=True)
    sched.start()
    assert sched.runs_whatever("c") and not sched.runs_whatever("b")


def test_runs_whatever_leaves_a_child_behind_its_parents_gate():
    sim = Sim()
    sim.graph.add(spec("p", dynamic=True))
    sim.children["p"] = [spec("k", parent="p")]
    sim.make()
    sim.graph.add(spec("p", code="c2", dynamic=True))
    sim.graph.add(spec("k", code="c2", parent="p"))
    sched = Scheduler(sim.graph, sim.records, ["p", "k"], validate=True)
    sched.start()
    assert sched.state("k") == "waiting" and not sched.runs_whatever("k")


# -- a failed (or blocked) last run ---------------------------------------------------------


def _made_chain():
    """a <- b <- c, each with a stored result made from the current definitions."""
    g = Graph([spec("a"), spec("b", ["a"]), spec("c", ["b"])])
    records = {"a": RunRecord("c", {}, "a", {}, "ra"),
               "b": RunRecord("c", {}, "a", {"a": "ra"}, "rb"),
               "c": RunRecord("c", {}, "a", {"b": "rb"}, "rc")}
    return g, records


def test_a_failed_job_up_to_date_again_is_restored_with_what_it_blocked():
    # b failed (c blocked) after an edit that was then undone: their stored results are
    # up to date again, so they are taken back, and said to be.
    g, records = _made_chain()
    sched = Scheduler(g, records, ["c"], validate=True,
                      unsettled={"b": "failed", "c": "blocked"})
    assert sched.start() == [ev.Skip("a"), ev.Skip("b", restored=True),
                             ev.Skip("c", restored=True)]
    summary = sched.summary()
    assert (summary.ran, summary.skipped, summary.restored) == (0, 1, 2)


def test_a_restore_decided_after_a_dependency_ran_to_an_equal_result():
    g, records = _made_chain()
    g.add(spec("a", code="c2"))  # runs again, to the same result
    sched = Scheduler(g, records, ["c"], validate=True, unsettled={"b": "failed"})
    assert [(type(a), a.job_id) for a in sched.start()] == [(ev.Run, "a")]
    assert sched.handle(ev.Succeeded("a", "ra")) == [ev.Skip("b", restored=True), ev.Skip("c")]
    assert sched.summary().restored == 1 and sched.summary().skipped == 1


def test_a_restored_job_is_not_restored_when_another_process_made_it_meanwhile():
    g = Graph([spec("a")])
    sched = Scheduler(g, {}, ["a"], validate=True, unsettled={"a": "failed"})
    sched.start()
    made = RunRecord("c", {}, "a", {}, "r")
    assert sched.handle(ev.Reconsider("a", made, "done")) == [ev.Skip("a")]
    sched = Scheduler(g, {}, ["a"], validate=True, unsettled={"a": "failed"})
    sched.start()
    assert sched.handle(ev.Reconsider("a", made, "failed")) == [ev.Skip("a", restored=True)]


def test_a_failed_job_runs_again_because_its_last_run_failed():
    g = Graph([spec("a"), spec("b")])
    records = {"b": RunRecord("c0", {"m.b": "c0"}, "a", {}, "rb")}
    since = {"a": ["since then: code of m.a changed"]}
    sched = Scheduler(g, records, ["a", "b"], validate=True,
                      unsettled={"a": "failed", "b": "failed"},
                      since_failure=lambda jid: since.get(jid, []))
    actions = sched.start()
    # never "never ran": it did run, and failed; with no result, what changed since then
    assert ev.Run("a", ("its last run failed", "since then: code of m.a changed")) in actions
    assert ev.Run("b", ("its last run failed", "code of m.b changed")) in actions
    # a job that was only blocked never ran
    sched = Scheduler(Graph([spec("a")]), {}, ["a"], validate=True, unsettled={"a": "blocked"})
    assert sched.start() == [ev.Run("a", ("never ran",))]


# -- reasons, summarised --------------------------------------------------------------------


def test_many_dependencies_with_new_results_are_one_reason():
    sims = [spec(f"simulate-{i}") for i in range(49)]
    g = Graph([*sims, spec("collect", [s.job_id for s in sims])])
    records = {s.job_id: RunRecord("c", {}, "a", {}, f"new-{s.job_id}") for s in sims}
    records["collect"] = RunRecord("c", {}, "a", {s.job_id: "old" for s in sims}, "r")
    sched = Scheduler(g, records, ["collect"], validate=True)
    assert sched.start()[-1] == ev.Run("collect", (
        "49 dependencies (simulate-0, simulate-1, simulate-2, ...) produced new results",))
    # a few are named one by one
    records["collect"] = RunRecord("c", {}, "a", {s.job_id: f"new-{s.job_id}" for s in sims},
                                   "r")
    for i in (3, 7, 8):
        records["collect"].dep_fps[f"simulate-{i}"] = "old"
    sched = Scheduler(g, records, ["collect"], validate=True)
    assert sched.start()[-1] == ev.Run("collect", tuple(
        f"dependency simulate-{i} produced a new result" for i in (3, 7, 8)))


def test_many_changed_arguments_are_one_reason():
    from nbmake_ext.core.signature import argument_reasons

    old = {f"x{i}": "old" for i in range(10)}
    assert argument_reasons(old, {**old, "x1": "new", "x4": "new"}) == [
        "argument x1 changed", "argument x4 changed"]
    assert argument_reasons(old, {k: "new" for k in old}) == [
        "10 arguments (x0, x1, x2, ...) changed"]
    assert argument_reasons({}, {}) == ["arguments changed"]


def test_handle_many_applies_each_success_in_order_and_returns_all_their_actions():
    # a and b feed c; d follows a alone; e follows c.
    specs = [spec("a"), spec("b"), spec("c", ["a", "b"]), spec("d", ["a"]), spec("e", ["c"])]
    sched = Scheduler(Graph(specs), {}, ["d", "e"], validate=True)
    assert sched.start() == [ev.Run("a", ("never ran",)), ev.Run("b", ("never ran",))]
    actions = sched.handle_many([ev.Succeeded("a", "ra"), ev.Succeeded("b", "rb")])
    assert actions == [ev.Run("d", ("never ran",)), ev.Run("c", ("never ran",))]
    assert sched.state("a") == sched.state("b") == "done"
    assert sched.handle_many([]) == []


def test_handle_many_gives_what_handle_gives_one_by_one():
    def run(batched):
        specs = [spec("a"), spec("b", ["a"]), spec("c", ["a"]), spec("x"), spec("y", ["x"])]
        old = RunRecord("c", {"m.b": "c"}, "a", {"a": "ra"}, "rb")
        sched = Scheduler(Graph(specs), {"a": RunRecord("c", {"m.a": "c"}, "a", {}, "ra"),
                                         "b": old}, ["b", "c", "y"], forced={"a": "forced"},
                          validate=True)
        first = sched.start()
        events = [ev.Succeeded("x", "rx"), ev.Succeeded("a", "ra")]
        if batched:
            return first, sched.handle_many(events), dict(sched.status)
        return first, [a for e in events for a in sched.handle(e)], dict(sched.status)

    assert run(True) == run(False)
    first, actions, status = run(True)
    assert actions == [ev.Run("y", ("never ran",)), ev.Skip("b"), ev.Run("c", ("never ran",))]
    assert status == {"a": "done", "b": "skipped", "c": "queued", "x": "done", "y": "queued"}


def test_handle_many_stops_at_an_unexpected_event_with_the_job_named():
    sched = Scheduler(Graph([spec("a")]), {}, ["a"])
    sched.start()
    with pytest.raises(InternalError, match="'b'"):
        sched.handle_many([ev.Succeeded("a", "ra"), ev.Succeeded("b", "x")])
    assert sched.state("a") == "done"
