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
