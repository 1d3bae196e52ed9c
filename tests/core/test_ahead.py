"""Which waiting job may be sent ahead, and where (nbmake_ext.core.ahead): pure, no I/O."""

from nbmake_ext.core import events as ev
from nbmake_ext.core.ahead import MAX_INPUTS, consumed_as_decided, place_ahead
from nbmake_ext.core.scheduler import Scheduler

from sim import Sim, spec


def started(specs, records=None, forced=None):
    sim = Sim()
    for s in specs:
        sim.graph.add(s)
    sched = Scheduler(sim.graph, records or {}, list(sim.graph.specs), forced=forced,
                      validate=True)
    sched.start()
    return sim, sched


def test_a_link_goes_behind_the_input_being_made_and_no_further():
    _, sched = started([spec("a"), spec("b", ["a"]), spec("c", ["b"])])
    making = {"a": "E1"}
    assert place_ahead(sched, "b", making.get) == ("E1", ("a",))
    assert place_ahead(sched, "c", making.get) is None, "b is not being made anywhere"
    making["b"] = "E1"  # b sent ahead to E1
    assert place_ahead(sched, "c", making.get) == ("E1", ("b",))
    assert place_ahead(sched, "a", making.get) is None, "a is decided: queued"


def test_inputs_made_at_two_places_or_not_at_all_keep_it_waiting():
    _, sched = started([spec("a"), spec("x"), spec("b", ["a", "x"])])
    assert place_ahead(sched, "b", {"a": "E1", "x": "E2"}.get) is None
    assert place_ahead(sched, "b", {"a": "E1"}.get) is None
    assert place_ahead(sched, "b", {"a": "E1", "x": "E1"}.get) == ("E1", ("a", "x"))


def test_final_inputs_need_no_place_and_all_final_is_not_ahead():
    _, sched = started([spec("s"), spec("m", ["s"]), spec("b", ["s", "m"])])
    sched.handle(ev.Succeeded("s", "r-s"))
    assert sched.state("s") == "done" and sched.state("m") == "queued"
    assert place_ahead(sched, "b", {"m": "E1"}.get) == ("E1", ("m",)), "s is final"
    sched.handle(ev.Succeeded("m", "r-m"))
    assert sched.state("b") == "queued"
    assert place_ahead(sched, "b", {"m": "E1"}.get) is None


def test_only_jobs_that_run_whatever_their_inputs_bring():
    sim = Sim()
    for s in [spec("a"), spec("b", ["a"]), spec("c", ["b"])]:
        sim.graph.add(s)
    sim.make()
    sim.graph.add(spec("a", code="c2"))  # a runs again; b may be cut off
    sched = Scheduler(sim.graph, sim.records, list(sim.graph.specs), validate=True)
    sched.start()
    assert sched.state("b") == "waiting" and not sched.runs_whatever("b")
    assert place_ahead(sched, "b", {"a": "E1"}.get) is None
    sched = Scheduler(sim.graph, sim.records, list(sim.graph.specs), forced={"b": "forced"},
                      validate=True)
    sched.start()
    assert place_ahead(sched, "b", {"a": "E1"}.get) == ("E1", ("a",))


def test_no_dynamic_job_and_no_dynamic_input():
    _, sched = started([spec("p", dynamic=True), spec("d", ["p"]), spec("a"),
                        spec("q", ["a"], dynamic=True)])
    assert place_ahead(sched, "d", {"p": "E1"}.get) is None, "p's value is made in the kernel"
    assert place_ahead(sched, "q", {"a": "E1"}.get) is None, "q is dynamic"


def test_a_fan_in_waits_for_the_core():
    heads = [spec(f"h{i}") for i in range(MAX_INPUTS + 1)]
    _, sched = started([*heads, spec("sum", [h.job_id for h in heads])])
    everywhere = dict.fromkeys([h.job_id for h in heads], "E1")
    assert place_ahead(sched, "sum", everywhere.get) is None
    assert place_ahead(sched, "sum", everywhere.get, max_inputs=MAX_INPUTS + 1) is not None


def test_an_outcome_counts_only_if_it_took_what_the_core_recorded():
    assert consumed_as_decided({"a": "s1", "b": "s2"}, {"a": "s1", "b": "s2", "x": "s9"})
    assert not consumed_as_decided({"a": "s1", "b": "s2"}, {"a": "s1", "b": "other"})
    assert not consumed_as_decided({"a": "s1"}, {}), "an input it did not report taking"
    assert consumed_as_decided({}, {})


# -- the kernel's side: stimuli in, instructions out (Ahead) -----------------------------------

from nbmake_ext.core.ahead import Ahead, DropAhead, SendAhead  # noqa: E402


def chain(n, per_place=2, records=None, forced=None):
    specs = [spec("j0")] + [spec(f"j{i}", [f"j{i - 1}"]) for i in range(1, n)]
    _, sched = started(specs, records, forced)
    return sched, Ahead(sched, per_place)


def test_a_chain_goes_ahead_behind_the_place_making_its_head_two_links_at_most():
    sched, ahead = chain(5)
    ahead.handed("j0")
    assert ahead.plan({"j0": "E1"}.get) == [SendAhead("j1", "E1", ("j0",)),
                                             SendAhead("j2", "E1", ("j1",))]
    assert ahead.plan({"j0": "E1"}.get) == [], "j3 waits for room on E1"
    for jid in ("j1", "j2"):
        ahead.sent_with(jid, {})
    sched.handle(ev.Succeeded("j0", "r0"))
    assert sched.state("j1") == "queued"
    assert ahead.adopt("j1", {"j0": "s0"}) is None
    assert ahead.plan({}.get) == [SendAhead("j3", "E1", ("j2",))], "room again on E1"
    assert ahead.ended("j1", {"j0": "s0"}) is None, "it took what the core recorded"


def test_room_bounds_what_is_planned_and_the_rest_waits_on_the_frontier():
    sched, ahead = chain(4, per_place=100)
    ahead.handed("j0")
    assert ahead.plan({"j0": "C"}.get, room=1) == [SendAhead("j1", "C", ("j0",))]
    assert ahead.plan({}.get, room=5) == [SendAhead("j2", "C", ("j1",)),
                                          SendAhead("j3", "C", ("j2",))]


def test_a_failed_input_drops_every_job_sent_ahead_behind_it_and_releases_their_claims():
    sched, ahead = chain(4)
    ahead.handed("j0")
    ahead.plan({"j0": "E1"}.get)
    assert ahead.settle() is None, "nothing decided yet"
    sched.handle(ev.Failed("j0", "ValueError"))
    assert sched.state("j1") == "blocked"
    assert ahead.settle() == DropAhead(("j2", "j1"), ("j2", "j1"))
    assert ahead.held == {} and ahead.plan({"j0": "E1"}.get) == []


def test_other_stored_inputs_than_recorded_drop_it_but_keep_its_claim():
    sched, ahead = chain(3)
    ahead.handed("j0")
    ahead.plan({"j0": "E1"}.get)
    ahead.sent_with("j1", {})
    ahead.sent_with("j2", {})
    sched.handle(ev.Succeeded("j0", "r0"))
    # j1 was sent behind j0 and with no stored input: what the core records for j0 does
    # not matter here; a stored input it was given with another checksum does
    ahead.held["j1"].stored = {"x": "old"}
    assert ahead.adopt("j1", {"j0": "s0", "x": "new"}) == DropAhead(("j1", "j2"), ("j2",))


def test_an_outcome_on_other_results_runs_again_and_drops_what_followed():
    sched, ahead = chain(3)
    ahead.handed("j0")
    ahead.plan({"j0": "E1"}.get)
    sched.handle(ev.Succeeded("j0", "r0"))
    assert ahead.adopt("j1", {"j0": "s0"}) is None
    assert ahead.ended("j1", {"j0": "elsewhere"}) == DropAhead(("j1", "j2"), ("j2",))


def test_a_handed_back_input_drops_what_was_sent_behind_it():
    sched, ahead = chain(3)
    ahead.handed("j0")
    ahead.plan({"j0": "E1"}.get)
    assert ahead.requeued("j0") == DropAhead(("j1", "j2"), ("j1", "j2"))
    assert ahead.requeued("j0") is None


def test_the_end_of_a_run_drops_all_and_releases_only_the_undecided():
    sched, ahead = chain(3)
    ahead.handed("j0")
    ahead.plan({"j0": "E1"}.get)
    sched.handle(ev.Succeeded("j0", "r0"))
    ahead.adopt("j1", {"j0": "s0"})
    assert ahead.stop() == DropAhead(("j1", "j2"), ("j2",))
    assert ahead.held == {} and not ahead.frontier


def test_planning_keeps_the_rules_of_place_ahead():
    _, sched = started([spec("a"), spec("x"), spec("b", ["a", "x"]), spec("p", dynamic=True),
                        spec("d", ["p"])])
    ahead = Ahead(sched, 2)
    for jid in ("a", "x", "p"):
        ahead.handed(jid)
    assert ahead.plan({"a": "E1", "x": "E2", "p": "E1"}.get) == [], \
        "two places; a dynamic input"
    ahead.handed("a")
    assert ahead.plan({"a": "E1", "x": "E1"}.get) == [SendAhead("b", "E1", ("a", "x"))]
