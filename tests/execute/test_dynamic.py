"""Dynamic jobs through the Python API (SPEC 1 comp_dynamic, 5 ls/details/clean)."""

from __future__ import annotations

import itertools
import linecache
import os
import sqlite3
import textwrap
from pathlib import Path

import pytest

import nbmake_ext
from nbmake_ext import Context, JobsFailed, NotDone, Promise
from nbmake_ext.context import set_current_context
from contexts import new_context

CALLS: list[tuple] = []
FLAGS: dict = {}


# -- jobs ---------------------------------------------------------------------------------


def square(x):
    CALLS.append(("square", x))
    if FLAGS.get("interrupt_at") == x:
        del FLAGS["interrupt_at"]
        raise KeyboardInterrupt
    return x * x


def boom(x):
    CALLS.append(("boom", x))
    raise ValueError(f"child says no to {x}")


def total(xs):
    CALLS.append(("total", xs))
    return sum(xs)


def fan_out(context, n):
    CALLS.append(("fan_out", n))
    return [context.comp(square, i) for i in range(n)]


def fan_out_dict(context, names):
    CALLS.append(("fan_out_dict", tuple(names)))
    return {name: {"sq": context.comp(square, len(name)), "tag": name} for name in names}


def fan_out_with_failure(context):
    CALLS.append(("fan_out_with_failure",))
    return [context.comp(square, 2), context.comp(boom, 3)]


def leaf_sum(v):
    """Sum of the ints in a nested value (promises must have been resolved)."""
    if not CALLS or CALLS[-1] != ("leaf_sum", v):
        CALLS.append(("leaf_sum", v))

    def walk(x):
        if isinstance(x, int):
            return x
        if isinstance(x, dict):
            return sum(walk(i) for i in x.values())
        if isinstance(x, (list, tuple)):
            return sum(walk(i) for i in x)
        raise TypeError(f"unresolved {x!r}")

    return walk(v)


def level3(context, x):
    CALLS.append(("level3", x))
    return [context.comp(square, x), context.comp(square, x + 1)]


def level2(context, x):
    CALLS.append(("level2", x))
    return {"l3": context.comp_dynamic(level3, x * 10)}


def level1(context, n):
    CALLS.append(("level1", n))
    return [context.comp_dynamic(level2, i) for i in range(n)]


def chain(context, n):
    """Children depending on each other and on a value from outside."""
    CALLS.append(("chain", n))
    p = context.comp(square, n)
    return context.comp(total, [p, p])


def plus(x, y):
    CALLS.append(("plus", x, y))
    return x + y


def uses_upstream(context, base):
    CALLS.append(("uses_upstream", base))
    return [context.comp(plus, base, i) for i in range(2)]


def picky(x):
    CALLS.append(("picky", x))
    if x == 1:
        raise ValueError("picky says no to 1")
    return x


def redefines_a_child(context, tag):
    """Defines k, a dependent of k, then k again with another argument."""
    CALLS.append(("redefines_a_child", tag))
    context.comp(picky, 1, job_id="k")
    m = context.comp(plus, Promise("k"), 10, job_id="m")
    k = context.comp(picky, 2, job_id="k")
    return [k, m]


# -- fixtures -----------------------------------------------------------------------------

_serial = itertools.count()


@pytest.fixture(autouse=True)
def _clean_calls():
    CALLS.clear()
    FLAGS.clear()
    yield
    CALLS.clear()
    FLAGS.clear()


def calls_of(name: str) -> list[tuple]:
    return [c for c in CALLS if c[0] == name]


def rows(ctx: Context) -> dict:
    return {r.job_id: r for r in ctx.ls()}


def results_held(store_path: Path) -> int:
    """Result files plus results kept as rows of the database."""
    conn = sqlite3.connect(store_path / "nbmake.db")
    try:
        (rows,) = conn.execute("SELECT count(*) FROM results").fetchone()
    finally:
        conn.close()
    return rows + len(os.listdir(store_path / "results"))


def stored_ids(store_path: Path) -> set[str]:
    """What the store holds, read by a context that registered nothing."""
    other = new_context(store_path)
    try:
        return {r.job_id for r in other.ls()}
    finally:
        other.close()


# -- tests --------------------------------------------------------------------------------


def test_dynamic_parent_defines_children_and_dependents_get_resolved_values(ctx):
    p = ctx.comp_dynamic(fan_out, 3)
    t = ctx.comp(total, p)
    assert isinstance(p, Promise) and p.job_id.startswith("fan_out-")
    assert CALLS == []
    ctx.make()
    assert p.result() == [0, 1, 4]
    assert t.result() == 5
    assert calls_of("total") == [("total", [0, 1, 4])]
    assert sorted(calls_of("square")) == [("square", 0), ("square", 1), ("square", 2)]
    assert ctx.lines[-1].startswith("make: 5 done")


def test_children_are_listed_with_their_parent(ctx, store_path):
    p = ctx.comp_dynamic(fan_out, 2)
    ctx.make()
    table = rows(ctx)
    children = [j for j, r in table.items() if r.parent == p.job_id]
    assert len(children) == 2 and all(j.startswith("square-") for j in children)
    assert table[p.job_id].parent is None
    assert all(table[c].state == "done" for c in children)
    assert sorted(ctx.details(p.job_id).children) == sorted(children)
    for c in children:
        assert ctx.details(c).parent == p.job_id
    # a child's id is not that of the same call made at top level
    top = ctx.comp(square, 0)
    assert top.job_id not in children
    # the store holds them: a second context sees parent and children
    assert {p.job_id, *children} <= stored_ids(store_path)


def test_values_with_promises_nested_in_dicts_are_resolved(ctx):
    p = ctx.comp_dynamic(fan_out_dict, ["ab", "xyz"])
    t = ctx.comp(total, [ctx.comp(square, 1), 1])
    ctx.make()
    assert p.result() == {"ab": {"sq": 4, "tag": "ab"}, "xyz": {"sq": 9, "tag": "xyz"}}
    assert t.result() == 2


def test_children_may_depend_on_each_other_and_on_outside_jobs(ctx):
    c = ctx.comp_dynamic(chain, 3)
    up = ctx.comp(square, 5)
    u = ctx.comp_dynamic(uses_upstream, up)
    after = ctx.comp(total, u)
    ctx.make()
    assert c.result() == 18
    assert u.result() == [25, 26]
    assert after.result() == 51


def test_nesting_three_levels(ctx):
    top = ctx.comp_dynamic(level1, 2)
    t = ctx.comp(leaf_sum, [top])  # a dependent of the outermost job
    ctx.make()
    assert top.result() == [{"l3": [0, 1]}, {"l3": [100, 121]}]
    table = rows(ctx)
    l2 = [j for j, r in table.items() if r.parent == top.job_id]
    assert len(l2) == 2 and all(j.startswith("level2-") for j in l2)
    l3 = [j for j, r in table.items() if r.parent in l2]
    assert len(l3) == 2 and all(j.startswith("level3-") for j in l3)
    leaves = [j for j, r in table.items() if r.parent in l3]
    assert len(leaves) == 4 and all(j.startswith("square-") for j in leaves)
    assert all(r.state == "done" for r in table.values())
    assert sorted(x for _, x in calls_of("square")) == [0, 1, 10, 11]
    assert t.result() == 222
    assert calls_of("leaf_sum") == [("leaf_sum", [[{"l3": [0, 1]}, {"l3": [100, 121]}]])]


def test_a_second_make_runs_nothing(ctx, store_path):
    p = ctx.comp_dynamic(level1, 2)
    ctx.make()
    CALLS.clear()
    ctx.make()
    assert CALLS == []
    assert p.state == "done"
    ctx.close()
    again = new_context(store_path)  # "kernel restart": same registration, nothing re-runs
    try:
        q = again.comp_dynamic(level1, 2)
        again.make()
        assert CALLS == []
        assert q.result() == [{"l3": [0, 1]}, {"l3": [100, 121]}]
        assert len(again.ls()) == 1 + 2 + 2 + 4
    finally:
        again.close()


def test_rerun_defining_fewer_children_forgets_the_rest(ctx, store_path):
    p = ctx.comp_dynamic(fan_out, 3, job_id="fan")
    ctx.make()
    first = {j for j, r in rows(ctx).items() if r.parent == "fan"}
    assert len(first) == 3
    held_before = results_held(store_path)
    ctx.comp_dynamic(fan_out, 1, job_id="fan")
    assert p.state == "stale"
    CALLS.clear()
    ctx.make()
    assert p.result() == [0]
    now = {j for j, r in rows(ctx).items() if r.parent == "fan"}
    assert len(now) == 1 and now < first
    gone = first - now
    assert not gone & stored_ids(store_path)
    assert results_held(store_path) == held_before - 2
    # the unchanged child was not run again
    assert CALLS == [("fan_out", 1)]


def test_unchanged_children_are_not_rerun_when_the_parent_reruns(ctx):
    p = ctx.comp_dynamic(fan_out, 2, job_id="fan")
    ctx.make()
    ctx.comp_dynamic(fan_out, 4, job_id="fan")
    CALLS.clear()
    ctx.make()
    assert p.result() == [0, 1, 4, 9]
    assert CALLS[0] == ("fan_out", 4)
    assert sorted(calls_of("square")) == [("square", 2), ("square", 3)]


def test_remake_of_the_parent_keeps_unchanged_children(ctx):
    p = ctx.comp_dynamic(fan_out, 2)
    t = ctx.comp(total, p)
    ctx.make()
    CALLS.clear()
    ctx.remake(p.job_id)
    assert CALLS == [("fan_out", 2)]
    assert t.state == "done" and t.result() == 1


def test_failing_child_fails_the_parent_and_blocks_its_dependents(ctx):
    p = ctx.comp_dynamic(fan_out_with_failure)
    t = ctx.comp(total, p)
    independent = ctx.comp(square, 7)
    with pytest.raises(JobsFailed) as info:
        ctx.make()
    table = rows(ctx)
    kids = {j: r for j, r in table.items() if r.parent == p.job_id}
    bad = next(j for j in kids if j.startswith("boom-"))
    good = next(j for j in kids if j.startswith("square-"))
    assert table[bad].state == "failed"
    assert table[good].state == "done"
    assert p.state == "failed"
    assert ctx.details(p.job_id).error == f"child {bad} failed"
    assert t.state == "blocked"
    assert independent.state == "done" and independent.result() == 49
    exc = info.value
    assert exc.failed.get(p.job_id) == f"child {bad} failed"
    assert exc.blocked == {t.job_id: p.job_id}
    assert "child says no to 3" in exc.failed.get(bad, "") or bad not in exc.failed
    with pytest.raises(nbmake_ext.JobFailed, match="child"):
        p.result()
    assert calls_of("total") == []


def test_clean_on_the_parent_forgets_its_children(ctx, store_path):
    p = ctx.comp_dynamic(level1, 1)
    other = ctx.comp(square, 3)
    ctx.make()
    assert len(ctx.ls()) == 1 + 1 + 1 + 2 + 1
    ctx.clean(p.job_id)
    assert {r.job_id for r in ctx.ls()} == {p.job_id, other.job_id}
    assert stored_ids(store_path) == {p.job_id, other.job_id}
    assert p.state == "todo" and other.state == "done"
    CALLS.clear()
    ctx.make()
    assert p.result() == [{"l3": [0, 1]}]
    assert sorted(c[0] for c in CALLS) == ["level1", "level2", "level3", "square", "square"]


def test_module_level_comp_dynamic_uses_the_current_context(ctx):
    set_current_context(ctx)
    try:
        p = nbmake_ext.comp_dynamic(fan_out, 2, job_id="modfan")
        assert p.job_id == "modfan"
        ctx.make()
        assert Promise("modfan").result() == [0, 1]
    finally:
        set_current_context(None)


def test_dynamic_job_defined_in_a_notebook_cell(ctx, store_path):
    src = textwrap.dedent("""
        def nb_child(x):
            return x + 100

        def nb_parent(context, n):
            return [context.comp(nb_child, i) for i in range(n)]
    """)
    filename = f"/tmp/ipykernel_{os.getpid()}/nbmake_dyn_cell{next(_serial)}.py"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    try:
        ns = {"__name__": "__main__"}
        exec(compile(src, filename, "exec"), ns)
        p = ctx.comp_dynamic(ns["nb_parent"], 3)
        t = ctx.comp(total, p)
        ctx.make()
        assert p.result() == [100, 101, 102]
        assert t.result() == 303
        assert {r.function for r in ctx.ls() if r.parent == p.job_id} == {"nb_child"}
        # the console re-runs them from the store alone
        ctx.clean(p.job_id)
        ctx.close()
        console = new_context(store_path)
        try:
            console.make()
            assert Promise(p.job_id, console).result() == [100, 101, 102]
            assert len([r for r in console.ls() if r.parent == p.job_id]) == 3
        finally:
            console.close()
    finally:
        linecache.cache.pop(filename, None)


def test_result_before_make_is_not_done(ctx):
    p = ctx.comp_dynamic(fan_out, 1)
    with pytest.raises(NotDone):
        p.result()


def define_then_raise(context):
    CALLS.append(("define_then_raise",))
    context.comp(square, 1)
    raise RuntimeError("parent broke after defining a child")


def deep_failure(context):
    return {"mid": context.comp_dynamic(mid_failure)}


def mid_failure(context):
    return [context.comp(square, 1), context.comp(boom, 2)]


def child_of_upstream(context, value):
    CALLS.append(("child_of_upstream", value))
    return context.comp(square, value)


def named_children(context, n):
    return [context.comp(square, i, job_id=f"named-{i}") for i in range(n)]


def keyword_child(context):
    return context.comp(echo_kwargs, func="f", self="s")


def echo_kwargs(**kwargs):
    return kwargs


def test_a_parent_that_raises_fails_and_make_goes_on(ctx):
    p = ctx.comp_dynamic(define_then_raise)
    t = ctx.comp(total, p)
    ok = ctx.comp(square, 9)
    with pytest.raises(JobsFailed) as info:
        ctx.make()
    assert info.value.failed[p.job_id] == "RuntimeError: parent broke after defining a child"
    assert info.value.blocked == {t.job_id: p.job_id}
    assert p.state == "failed" and t.state == "blocked"
    assert ok.result() == 81
    assert "define_then_raise" in ctx.details(p.job_id).traceback


def test_a_failure_deep_down_fails_every_ancestor(ctx):
    top = ctx.comp_dynamic(deep_failure)
    after = ctx.comp(total, top)
    with pytest.raises(JobsFailed) as info:
        ctx.make()
    table = rows(ctx)
    mid = next(j for j, r in table.items() if r.parent == top.job_id)
    leaves = {j: r for j, r in table.items() if r.parent == mid}
    bad = next(j for j in leaves if j.startswith("boom-"))
    good = next(j for j in leaves if j.startswith("square-"))
    assert table[bad].state == "failed" and table[good].state == "done"
    assert ctx.details(mid).error == f"child {bad} failed"
    assert ctx.details(top.job_id).error == f"child {mid} failed"
    assert after.state == "blocked"
    assert info.value.blocked == {after.job_id: top.job_id}


def test_a_dynamic_job_blocked_by_a_failed_upstream_does_not_run(ctx):
    bad = ctx.comp(boom, 1)
    p = ctx.comp_dynamic(child_of_upstream, bad)
    with pytest.raises(JobsFailed) as info:
        ctx.make()
    assert info.value.blocked == {p.job_id: bad.job_id}
    assert p.state == "blocked"
    assert calls_of("child_of_upstream") == []


def test_children_with_explicit_ids(ctx):
    p = ctx.comp_dynamic(named_children, 2)
    ctx.make()
    assert {j for j, r in rows(ctx).items() if r.parent == p.job_id} == {"named-0", "named-1"}
    assert p.result() == [0, 1]
    assert ctx.details("named-1").parent == p.job_id


def test_clean_everything_forgets_children_instead_of_orphaning_them(ctx, store_path):
    p = ctx.comp_dynamic(fan_out, 2)
    ctx.make()
    assert len(ctx.ls()) == 3
    ctx.clean()
    assert [r.job_id for r in ctx.ls()] == [p.job_id]
    assert stored_ids(store_path) == {p.job_id}
    CALLS.clear()
    ctx.make()
    assert p.result() == [0, 1] and len(ctx.ls()) == 3
    assert sorted(c[0] for c in CALLS) == ["fan_out", "square", "square"]


def test_clean_of_a_child_alone_reruns_only_that_child(ctx):
    p = ctx.comp_dynamic(fan_out, 2)
    t = ctx.comp(total, p)
    ctx.make()
    child = next(j for j, r in rows(ctx).items() if r.parent == p.job_id)
    ctx.clean(child)
    assert ctx.details(child).state == "todo" and p.state == "done"
    CALLS.clear()
    ctx.make()
    assert [c[0] for c in CALLS] == ["square"]
    assert t.result() == 1


def test_children_can_be_cleaned_and_made_by_glob(ctx):
    p = ctx.comp_dynamic(fan_out, 2)
    t = ctx.comp(total, p)
    ctx.make()
    assert sorted(ctx.clean("square-*")) == sorted(ctx.details(p.job_id).children)
    assert {r.job_id: r.state for r in ctx.ls("square-*")} == \
        dict.fromkeys(ctx.details(p.job_id).children, "todo")
    CALLS.clear()
    ctx.make("square-*")
    assert sorted(CALLS) == [("square", 0), ("square", 1)]  # the parent is up to date
    assert p.state == t.state == "done" and t.result() == 1


def test_child_keywords_named_func_and_self_go_to_the_child(ctx):
    p = ctx.comp_dynamic(keyword_child)
    ctx.make()
    assert p.result() == {"func": "f", "self": "s"}


def test_interrupt_in_a_child_puts_the_parent_back_and_keeps_finished_children(ctx):
    p = ctx.comp_dynamic(fan_out, 3)
    t = ctx.comp(total, p)
    FLAGS["interrupt_at"] = 1
    with pytest.raises(KeyboardInterrupt):
        ctx.make()
    table = rows(ctx)
    kids = {j: r.state for j, r in table.items() if r.parent == p.job_id}
    assert sorted(kids.values()) == ["done", "todo", "todo"]
    assert p.state == "todo" and t.state == "todo"
    assert not ctx.store.running_among(ctx.graph.specs)
    CALLS.clear()
    ctx.make()
    assert sorted(CALLS[1:-1]) == [("square", 1), ("square", 2)]  # square 0 is kept
    assert CALLS[0] == ("fan_out", 3) and CALLS[-1] == ("total", [0, 1, 4])
    assert t.result() == 5


def test_parent_code_edit_with_the_same_children_cuts_off(ctx, store_path):
    src = textwrap.dedent("""
        def nb_fan(context, n):
            CALLS.append(("nb_fan", n))
            return [context.comp(square, i) for i in range(n)]
    """)
    edited = src.replace("for i in range(n)]", "for i in list(range(n))]")
    ns = {"__name__": "__main__", "CALLS": CALLS, "square": square}
    for n, text in enumerate((src, edited)):
        filename = f"/tmp/ipykernel_{os.getpid()}/nbmake_dyn_edit{next(_serial)}.py"
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        try:
            exec(compile(text, filename, "exec"), ns)
            p = ctx.comp_dynamic(ns["nb_fan"], 2)
            t = ctx.comp(total, p)
            if n == 1:
                assert p.state == "stale"
                assert ctx.why(p.job_id) == ["code of nb_fan changed"]
                CALLS.clear()
            ctx.make()
        finally:
            linecache.cache.pop(filename, None)
    assert CALLS == [("nb_fan", 2)]  # children and the dependent are up to date
    assert t.state == "done" and t.result() == 1


def test_a_child_redefined_by_its_parent_runs_as_last_defined(ctx):
    """In-kernel, children start once their parent returned: the first definition of k is
    replaced before it starts, and never runs (the failure of a first definition before
    the redefinition needs children running alongside their parent: test_engines.py)."""
    p = ctx.comp_dynamic(redefines_a_child, "first", job_id="P")
    after = ctx.comp(total, p)
    report = ctx.make()
    assert (report.ran, report.failed, report.blocked) == (4, {}, {})
    assert p.result() == [2, 12] and after.result() == 14
    assert calls_of("picky") == [("picky", 2)]
    table = rows(ctx)
    assert {j: (table[j].state, table[j].parent) for j in ("k", "m")} == {
        "k": ("done", "P"), "m": ("done", "P")}
    CALLS.clear()
    again = ctx.make()
    assert (again.ran, again.skipped) == (0, 4) and CALLS == []
