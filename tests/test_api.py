"""SPEC 8: the public names and the life cycle of a Context."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import nbmake_ext
from nbmake_ext.context import set_current_context

CALLS: list[tuple] = []


def load(i):
    CALLS.append(("load", i))
    return i * 10


def fan(context, n):
    return [context.comp(load, i) for i in range(n)]


@pytest.fixture(autouse=True)
def _clean_calls():
    CALLS.clear()
    yield
    CALLS.clear()


SPEC_NAMES = ["Context", "Promise", "comp", "comp_dynamic", "File", "sh", "NbmakeError",
              "JobsFailed", "JobFailed", "NotDone", "InvalidJob"]


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_spec_names_are_importable_from_the_package(name):
    ns: dict = {}
    exec(f"from nbmake_ext import {name}", ns)
    assert ns[name] is getattr(nbmake_ext, name)
    assert name in nbmake_ext.__all__


def test_star_import_gives_the_spec_names():
    ns: dict = {}
    exec("from nbmake_ext import *", ns)
    assert set(SPEC_NAMES) <= set(ns)


def test_error_hierarchy():
    from nbmake_ext import InvalidJob, JobFailed, JobsFailed, NbmakeError, NotDone

    assert issubclass(NbmakeError, Exception)
    for cls in (JobsFailed, JobFailed, NotDone, InvalidJob, nbmake_ext.UnknownTarget,
                nbmake_ext.StoreError):
        assert issubclass(cls, NbmakeError), cls
    # every error renders itself short in a notebook
    assert nbmake_ext.NotDone("x")._render_traceback_() == ["NotDone: x"]


def _breaks_an_invariant():
    from nbmake_ext.errors import InternalError

    raise InternalError("make stalled with jobs in flight: ['x']")


def test_an_internal_error_shows_its_whole_traceback_and_asks_for_a_report():
    from nbmake_ext.errors import InternalError

    with pytest.raises(InternalError) as info:
        _breaks_an_invariant()
    lines = info.value._render_traceback_()
    assert lines[0] == "Traceback (most recent call last):"
    assert any("in _breaks_an_invariant" in line for line in lines), lines
    assert lines[-1] == ("nbmake_ext.errors.InternalError: make stalled with jobs in flight: "
                         "['x'] (this is a bug in nbmake_ext, not in your jobs: please report "
                         "it with this traceback)")
    assert info.value.message == "make stalled with jobs in flight: ['x']"


def test_the_console_shows_an_internal_errors_traceback(tmp_path, monkeypatch, capsys):
    from nbmake_ext import Context
    from nbmake_ext.cli import main

    Context(tmp_path / "store").close()
    monkeypatch.setattr(Context, "ls", lambda self, *targets: _breaks_an_invariant())
    assert main(["--store", str(tmp_path / "store"), "ls"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):"), err
    assert "in _breaks_an_invariant" in err and "please report it" in err


def test_comp_and_comp_dynamic_are_callables_with_job_id_reserved():
    import inspect

    for f in (nbmake_ext.comp, nbmake_ext.comp_dynamic, nbmake_ext.Context.comp,
              nbmake_ext.Context.comp_dynamic):
        params = inspect.signature(f).parameters
        assert "job_id" in params and params["job_id"].kind is inspect.Parameter.KEYWORD_ONLY
        assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_context_is_a_context_manager_that_records_definitions(tmp_path):
    path = tmp_path / "s"
    with nbmake_ext.Context(path, durable=False) as ctx:
        assert isinstance(ctx, nbmake_ext.Context)
        p = ctx.comp(load, 1, job_id="one")
    assert CALLS == []
    with nbmake_ext.Context(path, durable=False) as other:
        rows = other.ls()
        assert [(r.job_id, r.state) for r in rows] == [("one", "todo")]
        assert rows[0].function.endswith("load")
    assert p.job_id == "one"


def test_context_manager_closes_on_error(tmp_path):
    path = tmp_path / "s"
    with pytest.raises(RuntimeError):
        with nbmake_ext.Context(path, durable=False) as ctx:
            ctx.comp(load, 2, job_id="two")
            raise RuntimeError("user code broke")
    with nbmake_ext.Context(path, durable=False) as other:
        assert [r.job_id for r in other.ls()] == ["two"]


def test_close_flushes_pending_definitions_and_a_second_context_can_make_them(tmp_path):
    path = tmp_path / "s"
    ctx = nbmake_ext.Context(path, durable=False)
    ctx.comp(load, 3, job_id="three")
    ctx.comp_dynamic(fan, 2, job_id="fan")
    ctx.close()
    ctx.close()  # a second close is harmless
    assert CALLS == []
    other = nbmake_ext.Context(path, durable=False)
    other.report = lambda line: None
    try:
        assert {r.job_id: r.state for r in other.ls()} == {"three": "todo", "fan": "todo"}
        assert other.why("three") == ["never ran"]
        other.make()  # from the stored definitions alone
        assert nbmake_ext.Promise("three", other).result() == 30
        assert nbmake_ext.Promise("fan", other).result() == [0, 10]
    finally:
        other.close()


def test_a_command_records_pending_definitions(tmp_path):
    path = tmp_path / "s"
    ctx = nbmake_ext.Context(path, durable=False)
    other = nbmake_ext.Context(path, durable=False)
    try:
        ctx.comp(load, 4, job_id="four")
        ctx.stats()  # any command
        assert [r.job_id for r in other.ls()] == ["four"]
    finally:
        ctx.close()
        other.close()


def test_definitions_reach_the_store_at_process_exit(tmp_path):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "nbm_exitmod.py").write_text("def work(x):\n    return x + 1\n")
    path = tmp_path / "s"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(mods)!r})
        import nbm_exitmod
        from nbmake_ext import Context
        ctx = Context({str(path)!r})
        ctx.comp(nbm_exitmod.work, 1, job_id="at-exit")
        # no close(): the process just ends
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, capture_output=True)
    sys.path.insert(0, str(mods))
    try:
        with nbmake_ext.Context(path, durable=False) as ctx:
            ctx.report = lambda line: None
            assert [r.job_id for r in ctx.ls()] == ["at-exit"]
            ctx.make()
            assert nbmake_ext.Promise("at-exit", ctx).result() == 2
    finally:
        sys.path.remove(str(mods))
        sys.modules.pop("nbm_exitmod", None)


def test_store_location_default_env_and_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBMAKE_STORE", raising=False)
    with nbmake_ext.Context() as ctx:
        assert ctx.store.path == tmp_path / ".nbmake"
    assert (tmp_path / ".nbmake").is_dir()
    with nbmake_ext.Context("rel/store") as ctx:
        assert ctx.store.path == tmp_path / "rel" / "store"
    monkeypatch.setenv("NBMAKE_STORE", str(tmp_path / "from-env"))
    with nbmake_ext.Context() as ctx:
        assert ctx.store.path == tmp_path / "from-env"
    assert (tmp_path / "from-env").is_dir()


def test_store_is_created_owner_only(tmp_path):
    with nbmake_ext.Context(tmp_path / "s"):
        pass
    assert (os.stat(tmp_path / "s").st_mode & 0o777) == 0o700


def test_module_level_comp_without_a_current_context_uses_the_default_store(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("NBMAKE_STORE", str(tmp_path / "default"))
    set_current_context(None)
    try:
        p = nbmake_ext.comp(load, 5)
        ctx = nbmake_ext.current_context()
        assert ctx.store.path == tmp_path / "default"
        assert nbmake_ext.current_context() is ctx  # one context, reused
        ctx.report = lambda line: None
        ctx.make()
        assert p.result() == 50
        ctx.close()
        # once closed, a new one is made on demand
        assert nbmake_ext.current_context() is not ctx
    finally:
        current = nbmake_ext.context._current
        set_current_context(None)
        if current is not None:
            current.close()


def test_context_repr_names_the_store(tmp_path):
    with nbmake_ext.Context(tmp_path / "s") as ctx:
        ctx.comp(load, 1)
        assert str(tmp_path / "s") in repr(ctx)


def test_version():
    assert isinstance(nbmake_ext.__version__, str) and nbmake_ext.__version__


def boom(x):
    raise ValueError(f"bad {x}")


def test_bulk_reads_for_views(tmp_path):
    """What a view (the job board) reads: ls rows carry the outcome of the last run, and
    why_many gives the reasons of many jobs from one read of the store."""
    from nbmake_ext.registration import make_spec

    with nbmake_ext.Context(tmp_path / "s") as ctx:
        a = ctx.comp(load, 1, job_id="a")
        b = ctx.register(make_spec(boom, (a,), {}, "b"))
        c = ctx.comp(load, b, job_id="c")
        assert ctx.definition("b").deps == ("a",)
        assert ctx.has_pending
        with pytest.raises(nbmake_ext.JobsFailed):
            ctx.make()
        assert not ctx.has_pending
        rows = {r.job_id: r for r in ctx.ls()}
        assert rows["a"].has_result and rows["a"].ended and rows["a"].error is None
        assert rows["b"].error == "ValueError: bad 10" and not rows["b"].has_result
        assert rows["c"].blocked_by == "b"
        ctx.comp(load, 2, job_id="a")  # a changes: stale
        why = ctx.why_many(["a", "b", "c"])
        assert why["a"] == ctx.why("a") and "argument" in " ".join(why["a"])
        assert why["b"][0].startswith("its last run failed")
        assert why["c"] == ["blocked by b, which failed", "never ran"]
        with pytest.raises(nbmake_ext.errors.UnknownTarget):
            ctx.why_many(["a", "nope"])
        assert c.job_id == "c"


def double(x):
    CALLS.append(("double", x))
    return 2 * x


def test_own_jobs_are_what_a_context_registered_and_what_they_need(tmp_path):
    """Two contexts on one store stand for two kernels. ``own_jobs`` is what a kernel's
    magics take for no targets; the API's commands take every job of the store."""
    from contexts import new_context

    a, b = new_context(tmp_path / "s"), new_context(tmp_path / "s")
    try:
        assert a.own_jobs() == [] and b.own_jobs() == []
        shared = a.comp(load, 1, job_id="shared")
        a.comp(load, 2, job_id="a-only")
        a.close()
        b.comp(double, nbmake_ext.Promise("shared"), job_id="b-double")
        b.comp_dynamic(fan, 2, job_id="b-fan")
        assert b.own_jobs(needs=False) == ["b-double", "b-fan"]
        assert sorted(b.own_jobs()) == ["b-double", "b-fan", "shared"]
        b.make("b-fan")
        children = b.graph.children("b-fan")
        assert len(children) == 2
        assert sorted(b.own_jobs()) == sorted(["b-double", "b-fan", "shared", *children])
        # What a kernel's board shows: the rows of the same jobs, from one read.
        assert [r.job_id for r in b.own_rows()] == [r.job_id for r in b.ls(*b.own_jobs())]
        # The API is unchanged: no targets is every job of the store, and so is `all`.
        assert b.stats()["by_state"]["todo"] == 3
        assert b.stats(*b.own_jobs())["by_state"] == {
            "todo": 2, "stale": 0, "running": 0, "done": 3, "failed": 0, "blocked": 0}
        assert b.stats("done")["by_state"]["done"] == 3 and b.stats("failed")["by_state"] \
            == dict.fromkeys(["todo", "stale", "running", "done", "failed", "blocked"], 0)
        CALLS.clear()
        b.make()
        assert sorted(CALLS) == [("double", 10), ("load", 1), ("load", 2)]
        assert {r.job_id for r in b.ls("all")} == {r.job_id for r in b.ls()}
        assert shared.job_id == "shared"
        c = new_context(tmp_path / "s")  # registered none: every job of the store
        try:
            assert [r.job_id for r in c.own_rows()] == [r.job_id for r in c.ls()]
        finally:
            c.close()
    finally:
        b.close()


def test_ls_reads_the_store_once_and_a_make_leaves_the_shown_columns_out(tmp_path):
    """A view of every job reads what it shows with the rest, in one read; a make reads
    only what it decides with."""
    with nbmake_ext.Context(tmp_path / "s", durable=False) as ctx:
        for i in range(3):
            ctx.comp(load, i, job_id=f"j{i}")
        ctx.make()
        reads: list[str] = []
        ctx.store._conn.set_trace_callback(reads.append)
        rows = ctx.ls()
        selects = [q for q in reads if "o.error" in q]
        assert len(selects) == 1 and "o.r_result_fp" in selects[0]  # (with the rest)
        assert {r.job_id for r in rows} == {"j0", "j1", "j2"}
        assert all(r.state == "done" and r.duration is not None for r in rows)
        reads.clear()
        ctx.make()
        assert not [q for q in reads if "o.error" in q]
        ctx.store._conn.set_trace_callback(None)
