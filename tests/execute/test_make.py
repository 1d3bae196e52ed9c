"""The Python API of defining and making jobs (SPEC 1-3, 5, 8) on a real store.

Jobs are real functions run in this process by ``make``; "did (not) run" is proved by the
``CALLS`` list every job appends to, never by timing.
"""

from __future__ import annotations

import itertools
import linecache
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nbmake_ext
from nbmake_ext import Context, JobFailed, JobsFailed, NotDone, Promise, UnknownTarget
from nbmake_ext.context import set_current_context
from contexts import new_context

CALLS: list[tuple] = []
PROBE: dict = {}
ID_RE = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*-[0-9a-f]{8}$")


# -- jobs ---------------------------------------------------------------------------------


def load(i):
    CALLS.append(("load", i))
    return i * 10


def process(x, k=3):
    CALLS.append(("process", x))
    return x + k


def summarize(xs):
    CALLS.append(("summarize", xs))
    return sum(xs)


def boom(x):
    CALLS.append(("boom", x))
    raise ValueError(f"bad input {x}")


def chatty(x):
    CALLS.append(("chatty", x))
    print(f"hello from chatty {x}")
    print(f"warning from chatty {x}", file=sys.stderr)
    return x


def chatty_then_fail(x):
    print(f"before failing {x}")
    raise RuntimeError("chatty failure")


def snooze(x):
    CALLS.append(("snooze", x))
    time.sleep(0.05)
    return x


def read_text(path):
    CALLS.append(("read_text", path))
    return Path(path).read_text()


def shout(text):
    CALLS.append(("shout", text))
    return text.upper()


def echo_back(*args, **kwargs):
    CALLS.append(("echo_back", args, kwargs))
    return (args, kwargs)


def observe_state():
    """Reads its own state (and a second context's view of it) while it runs."""
    CALLS.append(("observe_state",))
    PROBE["seen"] = [PROBE["promise"].state, Promise(PROBE["promise"].job_id, PROBE["other"]).state]
    return "observed"


def other_func(x):
    CALLS.append(("other_func", x))
    return -x


# -- fixtures -----------------------------------------------------------------------------

_serial = itertools.count()


@pytest.fixture(autouse=True)
def _clean_calls():
    CALLS.clear()
    PROBE.clear()
    yield
    CALLS.clear()
    PROBE.clear()


@pytest.fixture
def run_cell():
    """Execute source like a notebook cell: a ``__main__`` namespace, a temporary cell file
    whose source is in linecache. Returns the namespace."""
    registered: list[str] = []

    def run(src: str, ns: dict | None = None) -> dict:
        src = textwrap.dedent(src)
        filename = f"/tmp/ipykernel_{os.getpid()}/nbmake_test_cell{next(_serial)}.py"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        registered.append(filename)
        if ns is None:
            ns = {"__name__": "__main__", "CALLS": CALLS}
        exec(compile(src, filename, "exec"), ns)
        return ns

    yield run
    for filename in registered:
        linecache.cache.pop(filename, None)


def calls_of(name: str) -> list[tuple]:
    return [c for c in CALLS if c[0] == name]


# -- Promise, states, results -------------------------------------------------------------


def test_comp_returns_a_promise_and_runs_nothing(ctx):
    p = ctx.comp(load, 1)
    assert isinstance(p, Promise)
    assert ID_RE.match(p.job_id) and p.job_id.startswith("load-")
    assert CALLS == []
    assert p.state == "todo"
    assert repr(p) == f"<Promise {p.job_id}: todo>"
    with pytest.raises(NotDone, match=re.escape(p.job_id)):
        p.result()


def test_make_makes_the_promise_done_with_its_value(ctx):
    p = ctx.comp(load, 4)
    report = ctx.make()
    assert CALLS == [("load", 4)]
    assert p.state == "done"
    assert repr(p) == f"<Promise {p.job_id}: done>"
    assert p.result() == 40
    assert report.ran == 1 and report.skipped == 0
    # the result is read from the store, also by a second context on it
    other = new_context(ctx.store.path)
    try:
        assert Promise(p.job_id, other).result() == 40
        assert Promise(p.job_id, other).state == "done"
    finally:
        other.close()


def test_failed_job_result_raises_job_failed_with_its_traceback(ctx):
    p = ctx.comp(boom, 2)
    with pytest.raises(JobsFailed):
        ctx.make()
    assert p.state == "failed"
    assert repr(p) == f"<Promise {p.job_id}: failed>"
    with pytest.raises(JobFailed) as info:
        p.result()
    exc = info.value
    assert exc.job_id == p.job_id
    assert "ValueError: bad input 2" in exc.error
    assert "bad input 2" in str(exc) and p.job_id in str(exc)
    assert "in boom" in exc.traceback and 'raise ValueError(f"bad input {x}")' in exc.traceback
    rendered = "\n".join(exc._render_traceback_())
    assert "in boom" in rendered


def test_blocked_job_state_and_result(ctx):
    bad = ctx.comp(boom, 1)
    down = ctx.comp(process, bad)
    with pytest.raises(JobsFailed):
        ctx.make()
    assert down.state == "blocked"
    assert repr(down) == f"<Promise {down.job_id}: blocked>"
    with pytest.raises(NotDone):
        down.result()
    assert calls_of("process") == []


def test_running_state_is_seen_while_the_job_runs(ctx):
    p = ctx.comp(observe_state)
    other = new_context(ctx.store.path)
    PROBE.update(promise=p, other=other)
    try:
        ctx.make()
        assert PROBE["seen"] == ["running", "running"]
        assert p.state == "done"
    finally:
        other.close()


def test_a_second_context_sees_states_change(ctx):
    p = ctx.comp(load, 3)
    ctx.ls()  # a command records the definition in the store
    other = new_context(ctx.store.path)
    try:
        seen = Promise(p.job_id, other)
        assert seen.state == "todo"
        ctx.make()
        # Until the make's last writes land, its process holds their claims: running.
        assert seen.state in ("running", "done")
        ctx.store.flush()
        assert seen.state == "done"
        assert seen.result() == 30
    finally:
        other.close()


def test_redefined_job_is_stale_until_made(ctx):
    p = ctx.comp(process, 1, k=3, job_id="p")
    ctx.make()
    q = ctx.comp(process, 1, k=5, job_id="p")
    assert q == p and q.job_id == "p"
    assert p.state == "stale"
    with pytest.raises(NotDone):
        p.result()
    ctx.make()
    assert p.state == "done" and p.result() == 6


# -- ids and registration -----------------------------------------------------------------


def test_default_ids_are_deterministic_across_contexts(tmp_path):
    a, b = new_context(tmp_path / "a"), new_context(tmp_path / "b")
    try:
        pa = a.comp(process, [1, 2], k={"x": 1, "y": (2, 3)})
        pb = b.comp(process, [1, 2], k={"y": (2, 3), "x": 1})
        assert pa.job_id == pb.job_id and pa.job_id.startswith("process-")
        assert ID_RE.match(pa.job_id)
        assert a.comp(process, [1, 3], k={"x": 1, "y": (2, 3)}).job_id != pa.job_id
        assert a.comp(other_func, [1, 2]).job_id.startswith("other_func-")
        # a Promise counts by its job id
        ua, ub = a.comp(load, 1), b.comp(load, 1)
        assert a.comp(process, ua).job_id == b.comp(process, ub).job_id
        assert a.comp(process, ua).job_id != a.comp(process, a.comp(load, 2)).job_id
    finally:
        a.close()
        b.close()


def test_default_ids_are_the_same_in_another_process(tmp_path, monkeypatch):
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / "nbm_idmod.py").write_text(
        "def work(x, k=1):\n    return x * k\n\ndef first(i):\n    return i\n")
    monkeypatch.syspath_prepend(str(mod_dir))
    import nbm_idmod

    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(mod_dir)!r})
        import nbm_idmod
        from nbmake_ext import Context
        ctx = Context({str(tmp_path / "other")!r})
        up = ctx.comp(nbm_idmod.first, 7)
        print(ctx.comp(nbm_idmod.work, [1, 2.5, "x"], k={{"a": {{3, 4}}, "b": None}}).job_id)
        print(ctx.comp(nbm_idmod.work, up).job_id)
        ctx.close()
    """)
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, check=True, timeout=60).stdout.split()
    ctx = new_context(tmp_path / "here")
    try:
        up = ctx.comp(nbm_idmod.first, 7)
        mine = [ctx.comp(nbm_idmod.work, [1, 2.5, "x"], k={"b": None, "a": {4, 3}}).job_id,
                ctx.comp(nbm_idmod.work, up).job_id]
    finally:
        ctx.close()
        sys.modules.pop("nbm_idmod", None)
    assert out == mine
    assert all(j.startswith("work-") for j in mine)


def test_reregistering_the_same_definition_is_a_no_op(ctx, store_path):
    p1 = ctx.comp(load, 3)
    p2 = ctx.comp(load, 3)
    assert p1 == p2
    ctx.make()
    assert CALLS == [("load", 3)]
    p3 = ctx.comp(load, 3)
    assert p3.job_id == p1.job_id
    assert [r.job_id for r in ctx.ls()] == [p1.job_id]
    assert p3.state == "done"
    ctx.make()
    assert CALLS == [("load", 3)]
    assert ctx.lines[-1].startswith("make: 0 done, 1 up to date")
    # a "kernel restart": a new context on the same store registers the same id again
    ctx.close()
    again = new_context(store_path)
    try:
        p4 = again.comp(load, 3)
        assert p4.job_id == p1.job_id and p4.state == "done" and p4.result() == 30
        again.make()
        assert CALLS == [("load", 3)]
        assert len(again.ls()) == 1
    finally:
        again.close()


def test_explicit_id_redefinition_with_other_arguments(ctx):
    p = ctx.comp(process, 1, k=3, job_id="proc")
    ctx.make()
    assert p.result() == 4
    ctx.comp(process, 1, k=5, job_id="proc")
    assert p.state == "stale"
    assert ctx.why("proc") == ["argument k changed"]
    ctx.make()
    assert calls_of("process") == [("process", 1), ("process", 1)]
    assert p.state == "done" and p.result() == 6
    assert ctx.why("proc") == []
    # a positional argument
    ctx.comp(process, 2, k=5, job_id="proc")
    why = ctx.why("proc")
    assert len(why) == 1 and why[0].startswith("argument ") and why[0].endswith(" changed")
    ctx.make()
    assert p.result() == 7


def test_why_names_the_argument_of_a_one_argument_call_and_an_added_one(store_path):
    """A call of one argument records no digest of it (its arguments' fingerprint says
    it all); `why` still names it, across a restart, and an argument added later."""
    ctx = new_context(store_path)
    ctx.comp(process, 1, job_id="proc")
    ctx.make()
    ctx.close()
    again = new_context(store_path)
    try:
        again.comp(process, 2, job_id="proc")
        assert again.why("proc") == ["argument #1 changed"]
        again.comp(process, 1, k=7, job_id="proc")
        assert again.why("proc") == ["argument k added"]
        again.make()
        again.comp(process, 1, k=8, job_id="proc")
        assert again.why("proc") == ["argument k changed"]
    finally:
        again.close()


def test_explicit_id_redefinition_with_other_code(ctx, run_cell):
    ns = run_cell("""
        def f(x):
            CALLS.append(("f", x))
            return x + 1
    """)
    p = ctx.comp(ns["f"], 1, job_id="j")
    ctx.make()
    assert p.result() == 2
    run_cell("""
        def f(x):
            CALLS.append(("f", x))
            return x + 2
    """, ns)
    ctx.comp(ns["f"], 1, job_id="j")
    assert p.state == "stale"
    assert ctx.why("j") == ["code of f changed"]
    ctx.make()
    assert calls_of("f") == [("f", 1), ("f", 1)]
    assert p.result() == 3 and p.state == "done"


def test_explicit_id_redefinition_with_another_function(ctx):
    p = ctx.comp(process, 1, job_id="j")
    ctx.make()
    ctx.comp(other_func, 1, job_id="j")
    assert p.state == "stale"
    assert ctx.why("j")  # says something changed
    assert ctx.ls("j")[0].function.endswith("other_func")
    ctx.make()
    assert p.result() == -1
    assert calls_of("other_func") == [("other_func", 1)]


def test_reexecuting_an_edited_cell_keeps_the_default_id_and_reruns(ctx, run_cell):
    ns = run_cell("def step(x):\n    CALLS.append(('step', x))\n    return x * 2\n")
    p = ctx.comp(ns["step"], 5)
    ctx.make()
    run_cell("def step(x):\n    CALLS.append(('step', x))\n    return x * 3\n", ns)
    q = ctx.comp(ns["step"], 5)
    assert q.job_id == p.job_id
    assert len(ctx.ls()) == 1
    assert ctx.why(p.job_id) == ["code of step changed"]
    ctx.make()
    assert p.result() == 15 and len(calls_of("step")) == 2


def test_comment_and_whitespace_edits_do_not_count(ctx, run_cell):
    ns = run_cell("def g(x):\n    CALLS.append(('g', x))\n    return x - 1\n")
    p = ctx.comp(ns["g"], 5)
    ctx.make()
    run_cell('def g(x):\n    "A docstring."\n    # a comment\n    CALLS.append(( "g",x ))\n\n'
             '    return   x - 1   # same\n', ns)
    ctx.comp(ns["g"], 5)
    assert p.state == "done"
    assert ctx.why(p.job_id) == []
    ctx.make()
    assert calls_of("g") == [("g", 5)]


def test_helper_edit_makes_the_caller_stale(ctx, run_cell):
    ns = run_cell("""
        def helper(x):
            return x + 1

        def job(x):
            CALLS.append(("job", x))
            return helper(x) * 10
    """)
    p = ctx.comp(ns["job"], 1)
    ctx.make()
    assert p.result() == 20
    run_cell("def helper(x):\n    return x + 2\n", ns)
    ctx.comp(ns["job"], 1)
    assert p.state == "stale"
    assert ctx.why(p.job_id) == ["code of helper changed"]
    ctx.make()
    assert p.result() == 30 and len(calls_of("job")) == 2


def test_notebook_function_runs_and_is_read_back_by_another_context(ctx, store_path, run_cell):
    ns = run_cell("def nb_square(x):\n    return x * x\n")
    p = ctx.comp(ns["nb_square"], 9)
    assert p.job_id.startswith("nb_square-")
    ctx.make()
    assert p.result() == 81
    row = ctx.ls()[0]
    assert row.function == "nb_square"  # __main__ is not shown
    # A console (no function objects of its own) runs the job from the stored definition.
    ctx.clean()
    ctx.close()
    console = new_context(store_path)
    try:
        console.make()
        assert Promise(p.job_id, console).result() == 81
    finally:
        console.close()


def test_promises_nested_in_containers_are_dependencies_resolved_at_run_time(ctx):
    a, b, c, d, e = (ctx.comp(load, i) for i in range(1, 6))
    p = ctx.comp(echo_back, [a, (b, [c])], {d: "key", "v": {"deep": e}}, s={a, b},
                 fs=frozenset([c]))
    deps = ctx.details(p.job_id).dependencies
    assert set(deps) == {a.job_id, b.job_id, c.job_id, d.job_id, e.job_id}
    assert all(p.job_id in ctx.details(x.job_id).dependents for x in (a, b, c, d, e))
    ctx.make(p.job_id)
    args, kwargs = p.result()
    assert args == ([10, (20, [30])], {40: "key", "v": {"deep": 50}})
    assert isinstance(args[0][1], tuple)
    assert kwargs == {"s": {10, 20}, "fs": frozenset([30])}
    assert isinstance(kwargs["fs"], frozenset)
    # the function itself was called with the values
    assert calls_of("echo_back")[0][1] == args


def test_promise_equality_hash_and_pickle(ctx):
    import pickle

    p = ctx.comp(load, 1)
    assert p == Promise(p.job_id) and hash(p) == hash(Promise(p.job_id))
    assert p != ctx.comp(load, 2)
    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q, Promise) and q.job_id == p.job_id


def test_module_level_comp_uses_the_current_context(ctx):
    set_current_context(ctx)
    try:
        assert nbmake_ext.current_context() is ctx
        p = nbmake_ext.comp(load, 11)
        q = nbmake_ext.comp(process, p, k=1, job_id="mod-level")
        assert q.job_id == "mod-level"
        assert {r.job_id for r in ctx.ls()} == {p.job_id, "mod-level"}
        ctx.make()
        assert q.result() == 111
        # a Promise without a context also reads from the current one
        assert Promise("mod-level").result() == 111
        assert Promise("mod-level").state == "done"
    finally:
        set_current_context(None)


# -- make ---------------------------------------------------------------------------------


def _diamond(ctx):
    a = ctx.comp(load, 1, job_id="a")
    bad = ctx.comp(boom, 2, job_id="bad")
    c = ctx.comp(process, bad, job_id="c")
    d = ctx.comp(process, c, job_id="d")
    e = ctx.comp(process, a, job_id="e")
    return a, bad, c, d, e


def test_make_keeps_going_past_failures(ctx):
    a, bad, c, d, e = _diamond(ctx)
    with pytest.raises(JobsFailed) as info:
        ctx.make()
    exc = info.value
    assert set(exc.failed) == {"bad"} and "ValueError: bad input 2" in exc.failed["bad"]
    assert exc.blocked == {"c": "bad", "d": "bad"}
    assert "bad" in str(exc) and "c" in str(exc) and "2 blocked" in str(exc)
    assert "raise ValueError" in exc.tracebacks["bad"]
    assert a.state == e.state == "done" and e.result() == 13
    assert bad.state == "failed" and c.state == "blocked" and d.state == "blocked"
    assert sorted(CALLS) == [("boom", 2), ("load", 1), ("process", 10)]
    line = ctx.lines[-1]
    assert re.match(r"make: 2 done, 1 failed, 2 blocked, 0 up to date in \d+\.\d\ds$", line), line
    rendered = "\n".join(exc._render_traceback_())
    assert "raise ValueError" in rendered


def test_make_of_unaffected_targets_does_not_raise(ctx):
    a, bad, c, d, e = _diamond(ctx)
    report = ctx.make("e")
    assert report.ran == 2 and not report.failed
    assert sorted(CALLS) == [("load", 1), ("process", 10)]
    assert bad.state == "todo"


def test_failed_target_raises_once_more_after_nothing_changed(ctx):
    _diamond(ctx)
    with pytest.raises(JobsFailed):
        ctx.make()
    CALLS.clear()
    with pytest.raises(JobsFailed) as info:
        ctx.make("d")
    assert info.value.blocked == {"d": "bad"} and set(info.value.failed) == {"bad"}
    assert CALLS == [("boom", 2)]  # a failed job runs again; the done ones do not


def test_make_targets_by_id_glob_and_state_word(ctx):
    loads = [ctx.comp(load, i) for i in range(3)]
    procs = [ctx.comp(process, p) for p in loads]
    ctx.make(loads[0].job_id)
    assert CALLS == [("load", 0)]
    CALLS.clear()
    ctx.make("load-*")
    assert sorted(CALLS) == [("load", 1), ("load", 2)]
    assert all(p.state == "todo" for p in procs)
    CALLS.clear()
    ctx.make("todo")
    assert sorted(CALLS) == [("process", 0), ("process", 10), ("process", 20)]
    CALLS.clear()
    ctx.make("done")
    assert CALLS == []
    assert ctx.lines[-1].startswith("make: 0 done, 6 up to date")


def test_make_pulls_in_what_the_target_needs(ctx):
    a = ctx.comp(load, 1)
    b = ctx.comp(process, a)
    c = ctx.comp(summarize, [b, b])
    other = ctx.comp(load, 99)
    ctx.make(c.job_id)
    assert c.result() == 26
    assert ("load", 99) not in CALLS and other.state == "todo"


def test_make_with_a_failed_state_word_reruns_failed_jobs(ctx):
    _diamond(ctx)
    with pytest.raises(JobsFailed):
        ctx.make()
    CALLS.clear()
    with pytest.raises(JobsFailed) as info:
        ctx.make("failed")
    assert set(info.value.failed) == {"bad"} and CALLS == [("boom", 2)]


def test_unknown_target_is_an_error_and_runs_nothing(ctx):
    ctx.comp(load, 1)
    with pytest.raises(UnknownTarget, match="nope"):
        ctx.make("nope")
    with pytest.raises(UnknownTarget):
        ctx.make("zzz*")
    with pytest.raises(UnknownTarget, match="nope"):
        ctx.make("failed", "nope")
    assert CALLS == []


def test_a_state_word_no_job_is_in_selects_nothing(ctx):
    lines = []
    ctx.report = lines.append
    ctx.comp(load, 1, job_id="one")
    assert ctx.ls("failed") == [] and ctx.ls("failed", "blocked", "running") == []
    report = ctx.make("failed", "blocked")
    assert CALLS == [] and report.ran == 0 and report.skipped == 0
    assert lines == [report.line()] and lines[0].startswith("make: 0 done, 0 up to date")
    assert ctx.clean("done") == [] and ctx.remake("stale").ran == 0
    assert [r.job_id for r in ctx.ls("todo")] == ["one"]
    ctx.make("todo", "failed")
    assert CALLS == [("load", 1)] and [r.job_id for r in ctx.ls("done")] == ["one"]


def test_all_means_every_job(ctx):
    ctx.comp(load, 1, job_id="one")
    ctx.comp(load, 2, job_id="two")
    assert [r.job_id for r in ctx.ls("all")] == ["one", "two"]
    ctx.make("all")
    assert sorted(CALLS) == [("load", 1), ("load", 2)]


def test_summary_line_is_printed_by_default(tmp_path, capsys):
    ctx = Context(tmp_path / "s", durable=False)
    try:
        ctx.comp(load, 1)
        ctx.make()
        assert re.search(r"^make: 1 done, 0 up to date in \d+\.\d\ds$", capsys.readouterr().out, re.M)
    finally:
        ctx.close()


def test_captured_output_is_stored_and_not_leaked(ctx, capsys):
    p = ctx.comp(chatty, 1)
    ctx.make()
    captured = capsys.readouterr()
    assert "chatty" not in captured.out and "chatty" not in captured.err
    d = ctx.details(p.job_id)
    assert d.stdout == "hello from chatty 1\n"
    assert d.stderr == "warning from chatty 1\n"


def test_captured_output_is_echoed_when_asked(ctx, capsys):
    p = ctx.comp(chatty, 2)
    ctx.make(echo=True)
    captured = capsys.readouterr()
    assert "hello from chatty 2" in captured.out
    assert "warning from chatty 2" in captured.err
    assert ctx.details(p.job_id).stdout == "hello from chatty 2\n"


def test_output_of_a_failed_job_is_kept_with_its_traceback(ctx, capsys):
    p = ctx.comp(chatty_then_fail, 3)
    with pytest.raises(JobsFailed) as info:
        ctx.make()
    assert "before failing" not in capsys.readouterr().out
    d = ctx.details(p.job_id)
    assert d.stdout == "before failing 3\n"
    assert d.state == "failed" and d.error == "RuntimeError: chatty failure"
    assert "chatty_then_fail" in d.traceback and "RuntimeError: chatty failure" in d.traceback
    assert info.value.tracebacks[p.job_id] == d.traceback


def test_timings_are_recorded(ctx):
    before = time.time()
    p = ctx.comp(snooze, 1)
    ctx.make()
    after = time.time()
    d = ctx.details(p.job_id)
    assert before <= d.started <= d.ended <= after
    assert d.duration >= 0.05
    assert d.cpu is not None and d.cpu >= 0
    assert d.engine == "kernel"
    row = ctx.ls(p.job_id)[0]
    assert row.duration == pytest.approx(d.duration)


# -- remake and clean ---------------------------------------------------------------------


def test_remake_forces_a_run_and_cuts_off_an_equal_result(ctx):
    a = ctx.comp(load, 1)
    b = ctx.comp(process, a)
    ctx.make()
    CALLS.clear()
    ctx.remake(a.job_id)
    assert CALLS == [("load", 1)]  # b got an equal result: not run again
    assert a.state == b.state == "done"
    assert ctx.details(a.job_id).reasons_last_run == ["forced by remake"]
    assert ctx.lines[-1].startswith("remake: 1 done, 1 up to date")


def test_remake_reruns_dependents_when_the_result_changes(ctx, tmp_path):
    src = tmp_path / "input.txt"
    src.write_text("one")
    a = ctx.comp(read_text, str(src))
    b = ctx.comp(shout, a)
    unrelated = ctx.comp(load, 5)
    ctx.make()
    src.write_text("two")
    CALLS.clear()
    ctx.make()  # the file is not tracked: nothing to do
    assert CALLS == []
    ctx.remake(a.job_id)
    assert CALLS == [("read_text", str(src)), ("shout", "two")]
    assert b.result() == "TWO"
    assert unrelated.state == "done"


def test_remake_by_glob_and_forced_reason_survives_a_failed_remake(ctx, tmp_path):
    src = tmp_path / "input.txt"
    src.write_text("x")
    a = ctx.comp(read_text, str(src))
    ctx.make()
    src.unlink()
    with pytest.raises(JobsFailed):
        ctx.remake("read_text-*")
    assert a.state == "failed"
    why = ctx.why(a.job_id)
    assert why[0].startswith("its last run failed: FileNotFoundError")
    assert "forced by remake" in why
    src.write_text("y")
    ctx.make()
    assert a.result() == "y"


def test_clean_forgets_results_and_dependents_keep_theirs(ctx):
    a = ctx.comp(load, 1)
    b = ctx.comp(process, a)
    ctx.make()
    assert ctx.clean(a.job_id) == [a.job_id]
    assert a.state == "todo" and b.state == "done"
    with pytest.raises(NotDone):
        a.result()
    assert b.result() == 13
    assert ctx.why(a.job_id) == ["never ran"]
    CALLS.clear()
    ctx.make()
    assert CALLS == [("load", 1)]  # equal result: b keeps its result
    assert a.result() == 10 and b.state == "done"


def test_clean_then_a_different_result_reruns_dependents(ctx, tmp_path):
    src = tmp_path / "input.txt"
    src.write_text("old")
    a = ctx.comp(read_text, str(src))
    b = ctx.comp(shout, a)
    ctx.make()
    ctx.clean(a.job_id)
    src.write_text("new")
    CALLS.clear()
    ctx.make()
    assert CALLS == [("read_text", str(src)), ("shout", "new")]
    assert b.result() == "NEW"


def test_clean_without_targets_cleans_everything(ctx):
    ps = [ctx.comp(load, i) for i in range(3)]
    ctx.make()
    assert sorted(ctx.clean()) == sorted(p.job_id for p in ps)
    assert all(p.state == "todo" for p in ps)
    assert os.listdir(ctx.store.path / "results") == []


def test_clean_by_state_word(ctx):
    _diamond(ctx)
    with pytest.raises(JobsFailed):
        ctx.make()
    assert ctx.clean("failed") == ["bad"]
    assert ctx.details("bad").state == "todo"
    assert ctx.details("a").state == "done"


# -- inspecting ---------------------------------------------------------------------------


def test_ls_rows(ctx):
    a, bad, c, d, e = _diamond(ctx)
    with pytest.raises(JobsFailed):
        ctx.make()
    rows = {r.job_id: r for r in ctx.ls()}
    assert set(rows) == {"a", "bad", "c", "d", "e"}
    assert {j: r.state for j, r in rows.items()} == {
        "a": "done", "bad": "failed", "c": "blocked", "d": "blocked", "e": "done"}
    assert rows["a"].function.endswith("load") and rows["c"].function.endswith("process")
    assert rows["a"].parent is None
    assert rows["a"].duration is not None and rows["a"].duration >= 0
    assert rows["c"].duration is None  # never ran
    assert [r.job_id for r in ctx.ls("done")] in (["a", "e"], ["e", "a"])
    assert {r.job_id for r in ctx.ls("blocked", "bad")} == {"c", "d", "bad"}
    assert [r.job_id for r in ctx.ls("e")] == ["e"]


def test_details_fields(ctx):
    a, bad, c, d, e = _diamond(ctx)
    with pytest.raises(JobsFailed):
        ctx.make()
    da = ctx.details("a")
    assert da.job_id == "a" and da.state == "done" and da.function.endswith("load")
    assert da.dependencies == [] and da.dependents == ["e"]
    assert da.why == [] and da.error is None and da.traceback == ""
    assert da.parent is None and da.children == []
    dbad = ctx.details("bad")
    assert dbad.state == "failed" and dbad.error == "ValueError: bad input 2"
    assert "raise ValueError" in dbad.traceback and dbad.dependents == ["c"]
    dc = ctx.details("c")
    assert dc.state == "blocked" and dc.blocked_by == "bad" and dc.dependencies == ["bad"]
    assert dc.dependents == ["d"]
    assert dc.why and "bad" in dc.why[0]


def test_why_words(ctx, run_cell, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a")
    up = ctx.comp(read_text, str(src), job_id="up")
    down = ctx.comp(shout, up, job_id="down")
    assert ctx.why("up") == ["never ran"]
    ctx.make()
    assert ctx.why("up") == [] and ctx.why("down") == []
    # the dependency produced a new result, the dependent has not run yet
    src.write_text("b")
    ctx.remake("up")  # its dependent is re-made too ...
    assert ctx.why("down") == []
    ctx.clean("up")
    src.write_text("c")
    ctx.make("up")  # ... but not when only the dependency is made
    assert down.state == "stale"
    assert ctx.why("down") == ["dependency up produced a new result"]
    ctx.make()
    assert ctx.why("down") == [] and down.result() == "C"


def test_why_for_failed_and_blocked_jobs(ctx):
    _diamond(ctx)
    with pytest.raises(JobsFailed):
        ctx.make()
    assert ctx.why("bad") == ["its last run failed: ValueError: bad input 2"]
    why_c = ctx.why("c")
    assert why_c[0] == "blocked by bad, which failed"
    assert ctx.why("a") == []


def test_stats_shape(ctx):
    _diamond(ctx)
    with pytest.raises(JobsFailed):
        ctx.make()
    ctx.comp(load, 42)  # todo
    s = ctx.stats()
    assert set(s) == {"by_state", "by_function"}
    assert s["by_state"] == {"todo": 1, "stale": 0, "running": 0, "done": 2, "failed": 1,
                             "blocked": 2}
    by_fn = {k.rsplit(".", 1)[-1]: v for k, v in s["by_function"].items()}
    assert by_fn == {"load": {"done": 1, "todo": 1}, "boom": {"failed": 1},
                     "process": {"blocked": 2, "done": 1}}


# -- early cutoff -------------------------------------------------------------------------


def test_upstream_code_edit_with_an_equal_result_leaves_dependents_alone(ctx, run_cell):
    ns = run_cell("""
        def up(x):
            CALLS.append(("up", x))
            return x * 2
    """)
    u = ctx.comp(ns["up"], 21)
    d = ctx.comp(process, u)
    dd = ctx.comp(process, d)
    ctx.make()
    assert dd.result() == 48
    run_cell("""
        def up(x):
            CALLS.append(("up", x))
            return x + x
    """, ns)
    assert ctx.comp(ns["up"], 21) == u
    assert u.state == "stale" and d.state == "done"
    CALLS.clear()
    ctx.make()
    assert CALLS == [("up", 21)]
    assert u.state == d.state == dd.state == "done"
    assert ctx.lines[-1].startswith("make: 1 done, 2 up to date")


def test_upstream_code_edit_with_a_new_result_reruns_dependents(ctx, run_cell):
    ns = run_cell("def up(x):\n    return x * 2\n")
    u = ctx.comp(ns["up"], 21)
    d = ctx.comp(process, u)
    dd = ctx.comp(process, d)
    ctx.make()
    run_cell("def up(x):\n    return x * 3\n", ns)
    ctx.comp(ns["up"], 21)
    CALLS.clear()
    ctx.make()
    assert CALLS == [("process", 63), ("process", 66)]
    assert dd.result() == 69


def test_why_is_empty_for_a_done_job_whose_dependency_was_cleaned(ctx):
    a = ctx.comp(load, 1)
    b = ctx.comp(process, a)
    ctx.make()
    ctx.clean(a.job_id)
    assert b.state == "done"
    assert ctx.why(b.job_id) == []


# -- more ways to call comp -----------------------------------------------------------------


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def scale(self, x):
        CALLS.append(("scale", x))
        return x * self.factor

    def __call__(self, x):
        CALLS.append(("Scaler.__call__", x))
        return x + self.factor


def test_any_callable_can_be_a_job(ctx):
    import functools

    jobs = {
        "partial": ctx.comp(functools.partial(process, k=100), 1),
        "builtin": ctx.comp(sum, [1, 2, 3]),
        "bound method": ctx.comp(Scaler(3).scale, 2),
        "callable object": ctx.comp(Scaler(5), 2),
        "class": ctx.comp(Scaler, 7),
    }
    assert jobs["partial"].job_id.startswith("process-")
    assert jobs["builtin"].job_id.startswith("sum-")
    assert jobs["bound method"].job_id.startswith("scale-")
    assert len({p.job_id for p in jobs.values()}) == 5
    ctx.make()
    assert jobs["partial"].result() == 101
    assert jobs["builtin"].result() == 6
    assert jobs["bound method"].result() == 6
    assert jobs["callable object"].result() == 7
    assert jobs["class"].result().factor == 7
    assert sorted(c[0] for c in CALLS) == ["Scaler.__call__", "process", "scale"]


@pytest.mark.parametrize("keyword", ["func", "self"])
def test_keywords_other_than_job_id_all_go_to_the_function(ctx, keyword):
    p = ctx.comp(echo_back, 1, **{keyword: "v"})
    set_current_context(ctx)
    try:
        q = nbmake_ext.comp(echo_back, 2, **{keyword: "w"})
    finally:
        set_current_context(None)
    ctx.make()
    assert p.result() == ((1,), {keyword: "v"})
    assert q.result() == ((2,), {keyword: "w"})


def test_keywords_named_like_the_call_go_to_the_function(ctx):
    p = ctx.comp(echo_back, 1, args=2, kwargs=3, context=4)
    ctx.make()
    assert p.result() == ((1,), {"args": 2, "kwargs": 3, "context": 4})


def test_commands_on_an_empty_store(ctx):
    assert ctx.ls() == []
    assert ctx.stats() == {"by_state": {s: 0 for s in ("todo", "stale", "running", "done",
                                                        "failed", "blocked")},
                           "by_function": {}}
    report = ctx.make()
    assert report.ran == 0 and not report.failed
    assert ctx.lines[-1].startswith("make: 0 done, 0 up to date")
    assert ctx.clean() == []


def test_none_results_are_results(ctx):
    p = ctx.comp(echo_back, job_id="unused")  # returns ((), {})
    n = ctx.comp(print, "printed", job_id="none")  # returns None
    d = ctx.comp(echo_back, n)
    ctx.make()
    assert n.state == "done" and n.result() is None
    assert d.result() == ((None,), {})
    assert ctx.details("none").stdout == "printed\n"
    assert p.result() == ((), {})


def test_results_of_notebook_classes_survive_a_new_context(ctx, store_path, run_cell):
    ns = run_cell("""
        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y

            def __eq__(self, other):
                return (self.x, self.y) == (other.x, other.y)

        def make_point(i):
            return Point(i, -i)

        def norm1(p):
            return abs(p.x) + abs(p.y)
    """)
    p = ctx.comp(ns["make_point"], 3)
    n = ctx.comp(ns["norm1"], p)
    ctx.make()
    assert n.result() == 6
    assert p.result() == ns["Point"](3, -3)
    ctx.close()
    again = new_context(store_path)
    try:
        value = Promise(p.job_id, again).result()
        assert (value.x, value.y) == (3, -3)
    finally:
        again.close()


def test_fixing_a_failed_job(ctx, run_cell):
    ns = run_cell("def fragile(x):\n    raise ValueError('oops')\n")
    p = ctx.comp(ns["fragile"], 1)
    d = ctx.comp(process, p)
    with pytest.raises(JobsFailed):
        ctx.make()
    run_cell("def fragile(x):\n    return x\n", ns)
    ctx.comp(ns["fragile"], 1)
    # failed and blocked stay until the next make reaches them; why says what changed
    assert p.state == "failed" and d.state == "blocked"
    assert ctx.why(p.job_id) == ["its last run failed: ValueError: oops",
                                 "since then: code of fragile changed"]
    ctx.make()
    assert p.state == d.state == "done" and d.result() == 4
    det = ctx.details(p.job_id)
    assert det.error is None and det.traceback == "" and det.why == []
    assert ctx.details(d.job_id).blocked_by is None


def where_am_i():
    import threading

    return os.getpid(), threading.current_thread() is threading.main_thread()


def test_make_runs_jobs_in_this_process_and_thread(ctx):
    p = ctx.comp(where_am_i)
    ctx.make()
    assert p.result() == (os.getpid(), True)


def test_failed_and_blocked_stay_until_a_make_reaches_them(ctx):
    a, bad, c, d, e = _diamond(ctx)
    with pytest.raises(JobsFailed):
        ctx.make()
    ctx.comp(load, 50, job_id="a")  # redefine an unrelated job and make only it
    assert a.state == "stale"
    CALLS.clear()
    ctx.make("a")
    assert CALLS == [("load", 50)]
    assert bad.state == "failed" and c.state == "blocked" and d.state == "blocked"
    assert repr(c) == "<Promise c: blocked>"
    assert e.state == "stale" and repr(e) == "<Promise e: stale>"


def test_jobs_failed_carries_the_tracebacks_of_the_failed_jobs(ctx):
    bads = [ctx.comp(boom, i) for i in range(5)]
    with pytest.raises(JobsFailed) as info:
        ctx.make()
    exc = info.value
    assert set(exc.failed) == {b.job_id for b in bads}
    assert len(exc.tracebacks) >= 3 and set(exc.tracebacks) <= set(exc.failed)
    for job_id, tb in exc.tracebacks.items():
        i = int(ctx.details(job_id).error.rsplit(" ", 1)[-1])
        assert f"ValueError: bad input {i}" in tb and tb == ctx.details(job_id).traceback
    assert "5 failed" in str(exc)


# -- a failed job, fixed or not -------------------------------------------------------------

WORKS = "def fragile(x):\n    CALLS.append(('fragile', x))\n    return x\n"
BREAKS = "def fragile(x):\n    CALLS.append(('fragile', x))\n    raise ValueError('oops')\n"


def test_undoing_the_edit_that_broke_a_job_restores_it_and_why_says_so(ctx, run_cell):
    from nbmake_ext.ui import text

    ns = run_cell(WORKS)
    p = ctx.comp(ns["fragile"], 1, job_id="fragile")
    d = ctx.comp(process, p, job_id="d")
    ctx.comp(load, 5, job_id="e")
    ctx.make()
    run_cell(BREAKS, ns)
    ctx.comp(ns["fragile"], 1, job_id="fragile")
    with pytest.raises(JobsFailed):
        ctx.make()
    run_cell(WORKS, ns)  # the breaking edit undone: the stored results match again
    ctx.comp(ns["fragile"], 1, job_id="fragile")
    assert p.state == "failed" and d.state == "blocked"  # until a make reaches them
    restores = "its stored result matches again: the next make restores it"
    assert ctx.why("fragile") == [f"its last run failed (ValueError: oops), but {restores}",
                                  "since then: code of fragile changed"]
    assert ctx.why("d") == [f"blocked by fragile, which failed, but {restores}"]
    rows = {r.job_id: r for r in ctx.ls()}
    assert rows["fragile"].restorable and rows["d"].restorable and not rows["e"].restorable
    tally = text.render_ls(list(rows.values())).splitlines()[-1]
    assert tally.endswith("the next make restores 2 of them, whose stored result matches "
                          "again: fragile, d"), tally
    CALLS.clear()
    report = ctx.make()
    assert CALLS == []  # taken back, not run
    assert (report.ran, report.restored, report.skipped) == (0, 2, 1)
    assert ctx.lines[-1].startswith("make: 0 done, 2 restored, 1 up to date")
    assert p.state == d.state == "done" and d.result() == 4
    assert ctx.why("fragile") == ctx.why("d") == []
    det = ctx.details("fragile")
    assert det.error is None and det.traceback == "" and det.why == []
    # and the next make has nothing to restore
    ctx.make()
    assert ctx.lines[-1].startswith("make: 0 done, 3 up to date")


def test_a_blocked_job_restored_only_if_its_blocker_makes_the_same_result(ctx, run_cell):
    ns = run_cell(WORKS)
    p = ctx.comp(ns["fragile"], 1, job_id="fragile")
    ctx.comp(process, p, job_id="d")
    ctx.make()
    run_cell(BREAKS, ns)
    ctx.comp(ns["fragile"], 1, job_id="fragile")
    with pytest.raises(JobsFailed):
        ctx.make()
    why = ctx.why("d")
    assert why[0] == ("blocked by fragile, which failed; its stored result matches its inputs "
                      "as they are: the next make restores it if fragile succeeds with an "
                      "equal result"), why
    run_cell("def fragile(x):\n    CALLS.append(('fragile', x))\n    return x + 0\n", ns)
    ctx.comp(ns["fragile"], 1, job_id="fragile")
    CALLS.clear()
    report = ctx.make()
    assert CALLS == [("fragile", 1)]
    assert (report.ran, report.restored) == (1, 1)


def test_details_of_a_job_that_failed_again_says_why_it_ran(ctx, run_cell):
    bad = ctx.comp(boom, 2, job_id="bad")
    for _ in range(4):
        with pytest.raises(JobsFailed):
            ctx.make()
    assert bad.state == "failed"
    assert ctx.details("bad").reasons_last_run == ["its last run failed"]
    # an edit since the failure is named too, and so is it for a job with an older result
    ns = run_cell(BREAKS.replace("'oops'", "'still'"))
    ctx.comp(ns["fragile"], 2, job_id="bad")
    with pytest.raises(JobsFailed):
        ctx.make()
    assert ctx.details("bad").reasons_last_run == [
        "its last run failed", "since then: now calls fragile",
        "since then: no longer calls test_make.boom"]
    ns = run_cell(WORKS)
    ctx.comp(ns["fragile"], 1, job_id="fine")
    ctx.make("fine")
    run_cell(BREAKS, ns)
    ctx.comp(ns["fragile"], 1, job_id="fine")
    for _ in range(2):
        with pytest.raises(JobsFailed):
            ctx.make("fine")
    assert ctx.details("fine").reasons_last_run == ["its last run failed",
                                                     "code of fragile changed"]


def test_a_blocked_job_names_the_failed_job_at_the_root(ctx, run_cell):
    from nbmake_ext.ui import text, views
    from nbmake_ext.ui.board import Board

    ns = run_cell("def first(x):\n    raise ValueError('first')\n"
                  "def second(x):\n    return x\n")
    a = ctx.comp(ns["first"], 1, job_id="a")
    b = ctx.comp(ns["second"], a, job_id="b")
    c = ctx.comp(process, b, job_id="c")
    with pytest.raises(JobsFailed):
        ctx.make()
    assert ctx.details("c").blocked_by == "a"
    # a is fixed and b broken, and only b is made: c was blocked through b, which failed
    run_cell("def first(x):\n    return x\n"
             "def second(x):\n    raise ValueError('second')\n", ns)
    ctx.comp(ns["first"], 1, job_id="a")
    ctx.comp(ns["second"], a, job_id="b")
    with pytest.raises(JobsFailed):
        ctx.make("b")
    assert (a.state, b.state, c.state) == ("done", "failed", "blocked")
    assert ctx.why("c")[0] == "blocked by b, which failed"
    assert ctx.details("c").blocked_by == "b"
    assert "blocked by b" in text.render_details(ctx.details("c"))
    assert {r.job_id: r.blocked_by for r in ctx.ls("blocked")} == {"c": "b"}
    lines = views.board_text(Board.from_context(ctx)).splitlines()
    assert any(line.split() == ["blocked", "c", "test_make.process", "blocked", "by", "b"]
               for line in lines), lines
