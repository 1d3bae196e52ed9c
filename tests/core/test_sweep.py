"""The sweep at a make's start (core/sweep.py): which jobs are up to date with their whole
upstream, dependencies first."""

from nbmake_ext.core import sweep
from nbmake_ext.core.graph import Graph
from nbmake_ext.core.jobspec import RunRecord
from nbmake_ext.core.states import SKIPPED

from sim import spec


def made(deps=None, result="r"):
    """The record of a run of ``spec(...)``'s default code and arguments."""
    return RunRecord("c", {}, "a", deps or {}, result)


def judge(graph, records, among=None, status=None, forced=None, defined=None):
    results = {j: r.result_fp for j, r in records.items()}
    among = dict.fromkeys(among or graph.specs)
    return sweep.fresh(among, graph.specs, records, results, forced or {}, status or {},
                       defined or {}, None)


def test_a_fan_out_is_fresh_leaves_first():
    g = Graph([spec(f"d{i}") for i in range(5)] + [spec("t", [f"d{i}" for i in range(5)])])
    records = {f"d{i}": made(result=f"r{i}") for i in range(5)}
    records["t"] = made({f"d{i}": f"r{i}" for i in range(5)})
    order = judge(g, records, among=["t", *(f"d{i}" for i in range(5))])
    assert order == ["d0", "d1", "d2", "d3", "d4", "t"]


def test_a_stale_job_keeps_everything_downstream_out_and_nothing_upstream():
    # a -> b -> c, a -> d; b's code changed.
    g = Graph([spec("a"), spec("b", ["a"], code="new"), spec("c", ["b"]), spec("d", ["a"])])
    records = {"a": made(result="ra"), "b": made({"a": "ra"}, "rb"),
               "c": made({"b": "rb"}, "rc"), "d": made({"a": "ra"}, "rd")}
    assert judge(g, records, among=["c", "d", "b", "a"]) == ["a", "d"]


def test_a_missing_record_forced_job_or_other_dependency_result_is_not_fresh():
    g = Graph([spec("a"), spec("b", ["a"]), spec("x"), spec("y")])
    records = {"a": made(result="ra"), "b": made({"a": "old"}, "rb"), "x": made()}
    assert judge(g, records, forced={"x": "forced by remake"}) == ["a"]


def test_a_dependency_outside_the_sweep_counts_only_when_already_skipped():
    g = Graph([spec("a"), spec("b", ["a"])])
    records = {"a": made(result="ra"), "b": made({"a": "ra"}, "rb")}
    assert judge(g, records, among=["b"], status={"a": SKIPPED}) == ["b"]
    assert judge(g, records, among=["b"], status={"a": "queued"}) == []


def test_a_long_chain_is_walked_without_recursion():
    n = 20_000
    g = Graph([spec("c0")] + [spec(f"c{i}", [f"c{i - 1}"]) for i in range(1, n)])
    records = {"c0": made(result="r0")}
    records.update({f"c{i}": made({f"c{i - 1}": f"r{i - 1}"}, f"r{i}") for i in range(1, n)})
    order = judge(g, records, among=[f"c{i}" for i in reversed(range(n))])
    assert order == [f"c{i}" for i in range(n)]


def test_a_dynamic_child_waits_for_its_parent_until_defined_in_this_run():
    g = Graph([spec("p", dynamic=True), spec("k", parent="p")])
    records = {"k": made(result="rk")}  # the parent has no result: it must run
    assert judge(g, records) == []
    assert judge(g, records, defined={"p": {"k"}}) == ["k"]
