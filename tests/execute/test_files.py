"""Files (SPEC 10) on the kernel's make and on engines: input files whose content counts in
a job's signature, declared outputs that are removed, checked and fingerprinted, and jobs
that depend on each other through files.

Every step looks from a fresh Context on the same store (a new process would see the same:
the console tests at the end run real ones), and what ran is counted by the events the
jobs log in the lab (enginejobs/filejobs.py), never guessed from timing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from enginejobs import filejobs as F  # noqa: E402
from enginejobs import jobs as J  # noqa: E402
from enginejobs.support import *  # noqa: E402,F401,F403
from enginejobs.support import make_or_parmake as run  # noqa: E402

from nbmake_ext import File, InvalidJob, JobsFailed  # noqa: E402

RUNNERS = ["make", "parmake"]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def here(tmp_path, monkeypatch):
    """The working directory of the test (relative paths are taken from it)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def runs(lab: str, event: str) -> int:
    return J.names(lab).count(event)


def states(ctx) -> dict[str, str]:
    return {r.job_id: r.state for r in ctx.ls()}


# -- input files ------------------------------------------------------------------------------

@pytest.mark.parametrize("how", RUNNERS)
def test_an_edited_input_file_makes_the_job_run_again_and_the_same_bytes_do_not(
        fresh, lab, here, how):
    Path("data").mkdir()
    Path("data/raw.csv").write_text("a,b\n1,2\n")

    def define():
        ctx = fresh()
        p = ctx.comp(F.count_lines, lab, File("data/raw.csv"), job_id="count")
        return ctx, p

    ctx, p = define()
    assert ctx.why("count") == ["never ran"]
    run(ctx, how)
    assert p.result() == 2 and runs(lab, "count") == 1

    ctx, p = define()
    assert states(ctx) == {"count": "done"} and ctx.why("count") == []
    run(ctx, how)
    assert runs(lab, "count") == 1  # unchanged: up to date

    Path("data/raw.csv").write_text("a,b\n1,2\n")  # the same bytes, written again
    ctx, p = define()
    assert states(ctx) == {"count": "done"}
    run(ctx, how)
    assert runs(lab, "count") == 1

    Path("data/raw.csv").write_text("a,b\n1,2\n3,4\n")
    ctx, p = define()
    assert states(ctx) == {"count": "stale"}
    assert ctx.why("count") == ["input file data/raw.csv changed"]
    run(ctx, how)
    assert p.result() == 3 and runs(lab, "count") == 2
    ctx, p = define()
    assert ctx.why("count") == [] and states(ctx) == {"count": "done"}


def test_the_function_receives_the_absolute_path_as_a_str(fresh, lab, here):
    Path("in.txt").write_text("x\n")
    f = File("in.txt")
    assert isinstance(f, str) and f == str(here / "in.txt") and repr(f) == "File('in.txt')"
    ctx = fresh()
    p = ctx.comp(F.count_lines, lab, f)
    ctx.make()
    assert p.result() == 1


def test_an_input_file_missing_at_registration_is_an_error_naming_job_and_path(
        fresh, lab, here):
    ctx = fresh()
    with pytest.raises(InvalidJob, match=r"job 'count'.*input file data/none\.csv does not exist"):
        ctx.comp(F.count_lines, lab, File("data/none.csv"), job_id="count")


@pytest.mark.parametrize("how", RUNNERS)
def test_an_input_file_missing_at_run_fails_the_job_naming_the_path(fresh, lab, here, how):
    Path("raw.csv").write_text("1\n")
    ctx = fresh()
    ctx.comp(F.count_lines, lab, File("raw.csv"), job_id="count")
    ctx.comp(J.work, lab, "other", job_id="other")
    ctx.sync()
    os.remove("raw.csv")
    failed = run(ctx, how)
    assert isinstance(failed, JobsFailed) and "count" in str(failed)
    assert ctx.details("count").error == "input file raw.csv is missing"
    assert states(ctx) == {"count": "failed", "other": "done"}
    assert runs(lab, "count") == 0


def test_a_file_in_several_places_of_the_arguments_counts_once(lab, here):
    from nbmake_ext.registration import comp_spec

    Path("a.txt").write_text("1\n")
    Path("b.txt").write_text("1\n2\n")
    spec = comp_spec(F.count_lines, (lab, File("a.txt")),
                     {"k": {"x": [File("b.txt"), File("a.txt")]}})
    assert spec.inputs == (str(here / "a.txt"), str(here / "b.txt"))
    assert spec.deps == ()


@pytest.mark.parametrize("how", RUNNERS)
def test_an_edit_of_the_same_size_right_after_a_make_is_seen(fresh, lab, here, how):
    """Written, made and edited within the same tick of the file system's clock: the size
    and the mtime may be what the cache holds, the content is not."""
    Path("n.txt").write_text("1\n2\n")
    ctx = fresh()
    ctx.comp(F.count_lines, lab, File("n.txt"), job_id="count")
    run(ctx, how)
    stat = os.stat("n.txt")
    Path("n.txt").write_text("3\n4\n")
    os.utime("n.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same mtime as before
    ctx = fresh()
    ctx.comp(F.count_lines, lab, File("n.txt"), job_id="count")
    assert ctx.why("count") == ["input file n.txt changed"]


def test_an_unchanged_file_is_hashed_once_then_looked_at_with_one_stat(fresh, lab, here):
    Path("old.txt").write_text("x\n" * 1000)
    old = os.stat("old.txt").st_mtime_ns - 5 * 10**9
    os.utime("old.txt", ns=(old, old))  # written a while ago (not racily clean)
    ctx = fresh()
    ctx.comp(F.count_lines, lab, File("old.txt"), job_id="count")
    ctx.make()
    assert ctx.files.cache.hashed == 1
    for _ in range(2):  # new processes would read the cache from the store
        ctx = fresh()
        ctx.comp(F.count_lines, lab, File("old.txt"), job_id="count")
        ctx.make()
        assert ctx.ls()[0].state == "done" and ctx.files.cache.hashed == 0
    os.utime("old.txt", ns=(old + 10**9, old + 10**9))  # touched: hashed again, not run
    ctx = fresh()
    ctx.comp(F.count_lines, lab, File("old.txt"), job_id="count")
    ctx.make()
    assert ctx.files.cache.hashed == 1 and runs(lab, "count") == 1


# -- declared outputs -------------------------------------------------------------------------

@pytest.mark.parametrize("how", RUNNERS)
def test_a_deleted_or_modified_output_makes_its_job_run_again(fresh, lab, here, how):
    def define():
        ctx = fresh()
        ctx.comp(F.write, lab, "hello", out="figs/a.txt", job_id="w",
                 job_outputs=["figs/a.txt"])
        return ctx

    ctx = define()
    run(ctx, how)
    assert Path("figs/a.txt").read_text() == "hello"  # its directory was made for it
    assert J.names(lab) == ["write-clean"]
    ctx = define()
    run(ctx, how)
    assert states(ctx) == {"w": "done"} and len(J.names(lab)) == 1

    os.remove("figs/a.txt")
    ctx = define()
    assert states(ctx) == {"w": "stale"}
    assert ctx.why("w") == ["output figs/a.txt was deleted"]
    run(ctx, how)
    assert Path("figs/a.txt").read_text() == "hello" and len(J.names(lab)) == 2

    Path("figs/a.txt").write_text("edited by hand")
    ctx = define()
    assert ctx.why("w") == ["output figs/a.txt was modified"]
    run(ctx, how)
    # The old output was removed before the job ran (it found none).
    assert J.names(lab) == ["write-clean"] * 3
    assert Path("figs/a.txt").read_text() == "hello"
    ctx = define()
    assert ctx.why("w") == [] and states(ctx) == {"w": "done"}


@pytest.mark.parametrize("how", RUNNERS)
def test_an_output_the_job_did_not_write_fails_it_naming_the_output(fresh, lab, here, how):
    ctx = fresh()
    ctx.comp(F.forgets, lab, "out/a.txt", "out/b.txt", job_id="half",
             job_outputs=["out/a.txt", "out/b.txt"])
    ctx.comp(F.count_lines, lab, File("out/b.txt"), job_id="reader")
    failed = run(ctx, how)
    assert isinstance(failed, JobsFailed)
    assert ctx.details("half").error == "it did not write its output out/b.txt"
    assert states(ctx) == {"half": "failed", "reader": "blocked"}
    assert not Path("out/a.txt").exists()  # a failed job's outputs are removed
    assert ctx.details("reader").dependencies == ["half"]


@pytest.mark.parametrize("how", RUNNERS)
def test_a_job_that_fails_leaves_no_output_behind(fresh, lab, here, how):
    ctx = fresh()
    ctx.comp(F.write, lab, "v1", "res.txt", job_id="w", job_outputs=["res.txt"])
    run(ctx, how)
    assert Path("res.txt").read_text() == "v1"
    ctx = fresh()
    ctx.comp(F.fails_after_writing, lab, "res.txt", job_id="w", job_outputs=["res.txt"])
    failed = run(ctx, how)
    assert isinstance(failed, JobsFailed)
    assert ctx.details("w").error == "ValueError: broken after writing"
    assert not Path("res.txt").exists()  # neither the old one nor the partial new one
    ctx = fresh()
    ctx.comp(F.write, lab, "v1", "res.txt", job_id="w", job_outputs=["res.txt"])
    why = ctx.why("w")
    assert why[0] == "its last run failed: ValueError: broken after writing"
    assert "output res.txt was deleted" in why
    run(ctx, how)
    assert Path("res.txt").read_text() == "v1" and states(ctx) == {"w": "done"}


@pytest.mark.parametrize("how", RUNNERS)
def test_outputs_named_from_keyword_arguments_and_a_directory_output(fresh, lab, here, how):
    ctx = fresh()
    for name in ("a", "b"):
        ctx.comp(F.write_named, lab, f"text {name}", name=name, job_id=f"w{name}",
                 job_outputs=["{folder}/{name}.txt"], folder="figs dir")
    ctx.comp(F.fill_dir, lab, "parts", 3, job_id="fill", job_outputs=["parts/"])
    assert ctx.definition("wa").options.outputs == (str(here / "figs dir/a.txt"),)
    run(ctx, how)
    assert Path("figs dir/b.txt").read_text() == "text b"
    assert sorted(os.listdir("parts")) == ["part-0.txt", "part-1.txt", "part-2.txt"]
    Path("parts/part-1.txt").write_text("changed")
    ctx = fresh()
    ctx.comp(F.fill_dir, lab, "parts", 3, job_id="fill", job_outputs=["parts/"])
    assert ctx.why("fill") == ["output parts/ was modified"]
    Path("parts/part-1.txt").write_text("1")
    Path("parts/extra.txt").write_text("not the job's")
    assert ctx.why("fill") == ["output parts/ was modified"]
    run(ctx, how, "fill")
    assert sorted(os.listdir("parts")) == ["part-0.txt", "part-1.txt", "part-2.txt"]


def test_bad_job_outputs_are_errors_naming_job_and_culprit(fresh, lab, here):
    ctx = fresh()
    with pytest.raises(InvalidJob, match=r"job 'w'.*job_outputs: '\{nope\}\.txt': \{nope\} "
                                         r"names no keyword argument"):
        ctx.comp(F.write, lab, "x", "a.txt", job_id="w", job_outputs=["{nope}.txt"])
    with pytest.raises(InvalidJob, match=r"job_outputs: needs paths"):
        ctx.comp(F.write, lab, "x", "a.txt", job_id="w", job_outputs=[3])
    ctx.comp(F.write, lab, "x", "a.txt", job_id="w", job_outputs=["a.txt"])
    with pytest.raises(InvalidJob, match=r"job 'v'.*output a\.txt is an output of job 'w'"):
        ctx.comp(F.write, lab, "y", "a.txt", job_id="v", job_outputs=["a.txt"])
    Path("a.txt").write_text("x")
    with pytest.raises(InvalidJob, match=r"a\.txt is both an input file and an output"):
        ctx.comp(F.upper, lab, File("a.txt"), "a.txt", job_id="u", job_outputs=["a.txt"])


def test_options_other_than_outputs_still_never_make_a_job_with_files_run(fresh, lab, here):
    ctx = fresh()
    ctx.comp(F.write, lab, "x", "a.txt", job_id="w", job_outputs=["a.txt"])
    ctx.make()
    ctx = fresh()
    ctx.comp(F.write, lab, "x", "a.txt", job_id="w", job_outputs=["a.txt"], job_timeout=60)
    ctx.make()
    assert len(J.names(lab)) == 1
    assert ctx.details("w").options == {"timeout": 60, "outputs": [str(here / "a.txt")]}


# -- dependencies through files ---------------------------------------------------------------

@pytest.mark.parametrize("how", RUNNERS)
def test_promise_outputs_make_the_producer_a_dependency_with_early_cutoff_on_content(
        fresh, lab, here, how):
    def define(text: str, salt: int):
        ctx = fresh()
        w = ctx.comp(F.write, lab, text, "mid/a.txt", salt, job_id="w",
                     job_outputs=["mid/a.txt"])
        u = ctx.comp(F.upper, lab, w.outputs[0], "up.txt", job_id="u",
                     job_outputs=["up.txt"])
        return ctx, w, u

    ctx, w, u = define("abc", 0)
    assert w.outputs == [File("mid/a.txt")] and ctx.definition("u").deps == ("w",)
    run(ctx, how)
    assert Path("up.txt").read_text() == "ABC" and runs(lab, "upper") == 1

    ctx, w, u = define("abc", 1)  # the producer runs again, and writes the same bytes
    assert states(ctx) == {"w": "stale", "u": "done"}
    run(ctx, how)
    assert runs(lab, "write-clean") == 2 and runs(lab, "upper") == 1  # early cutoff
    ctx, w, u = define("abc", 1)
    assert states(ctx) == {"w": "done", "u": "done"}

    ctx, w, u = define("xyz", 1)  # now it writes other bytes: its consumer runs
    run(ctx, how)
    assert Path("up.txt").read_text() == "XYZ" and runs(lab, "upper") == 2
    assert ctx.details("u").reasons_last_run == ["input file mid/a.txt changed"]


@pytest.mark.parametrize("how", RUNNERS)
def test_a_file_a_job_declares_makes_it_a_dependency_whatever_the_order(fresh, lab, here, how):
    Path("mid").mkdir()
    Path("mid/a.txt").write_text("old")  # there from an earlier run: no error now
    ctx = fresh()
    ctx.comp(F.upper, lab, File("mid/a.txt"), "up.txt", job_id="u", job_outputs=["up.txt"])
    ctx.comp(F.write, lab, "new", "mid/a.txt", job_id="w", job_outputs=["mid/a.txt"])
    ctx.comp(F.fill_dir, lab, "parts", 2, job_id="fill", job_outputs=["parts/"])
    ctx.comp(F.list_dir, lab, File("parts"), job_id="ls")  # (missing, but fill writes it)
    run(ctx, how)
    assert ctx.definition("u").deps == ("w",) and ctx.definition("ls").deps == ("fill",)
    assert Path("up.txt").read_text() == "NEW"
    assert J.names(lab).index("write-clean") < J.names(lab).index("upper")
    assert J.names(lab).index("fill") < J.names(lab).index("list")
    ctx = fresh()  # the console, or another kernel: the links are in the store
    assert ctx.definition("u").deps == ("w",)
    assert states(ctx) == {"u": "done", "w": "done", "ls": "done", "fill": "done"}


@pytest.mark.parametrize("how", RUNNERS)
def test_pypipegraphs_30_second_summary(fresh, lab, here, how):
    """pypipegraph's README: jobA writes sampleA.txt ("hello world"), jobB writes
    sampleB.txt from it (", once again" appended) and depends on jobA. A
    FileGeneratingJob runs again when its file is missing or its inputs changed."""
    def pipeline():
        ctx = fresh()
        job_a = ctx.comp(F.pypipegraph_a, "sampleA.txt", job_outputs=["sampleA.txt"])
        job_b = ctx.comp(F.pypipegraph_b, job_a.outputs[0], "sampleB.txt",
                         job_outputs=["sampleB.txt"])
        return ctx, job_a, job_b

    ctx, job_a, job_b = pipeline()
    assert ctx.definition(job_b.job_id).deps == (job_a.job_id,)  # jobB.depends_on(jobA)
    report = run(ctx, how)
    assert report.ran == 2
    assert Path("sampleA.txt").read_text() == "hello world"
    assert Path("sampleB.txt").read_text() == "hello world, once again"

    ctx, job_a, job_b = pipeline()  # the pipegraph is done: nothing to do
    assert run(ctx, how).ran == 0

    os.remove("sampleB.txt")  # its output is missing: jobB alone runs again
    ctx, job_a, job_b = pipeline()
    assert ctx.why(job_b.job_id) == ["output sampleB.txt was deleted"]
    report = run(ctx, how)
    assert report.ran == 1 and report.skipped == 1
    assert Path("sampleB.txt").read_text() == "hello world, once again"

    os.remove("sampleA.txt")  # jobA writes the same file again: jobB's input did not change
    ctx, job_a, job_b = pipeline()
    report = run(ctx, how)
    assert report.ran == 1 and Path("sampleA.txt").read_text() == "hello world"
    assert ctx.why(job_b.job_id) == []

    Path("sampleA.txt").write_text("hello")  # edited by hand: jobA writes it again ...
    ctx, job_a, job_b = pipeline()
    assert ctx.why(job_a.job_id) == ["output sampleA.txt was modified"]
    assert ctx.why(job_b.job_id) == ["input file sampleA.txt changed"]
    assert run(ctx, how).ran == 1  # ... as jobB read it: jobB is decided after jobA ran
    assert Path("sampleA.txt").read_text() == "hello world"
    assert ctx.why(job_b.job_id) == []

    Path("sampleB.txt").write_text("hello")  # and the other way round: jobB only
    ctx, job_a, job_b = pipeline()
    assert run(ctx, how).ran == 1
    assert Path("sampleB.txt").read_text() == "hello world, once again"


# -- details ----------------------------------------------------------------------------------

def test_details_show_the_files_of_a_job_and_what_became_of_them(fresh, lab, here):
    from nbmake_ext.ui import text, views

    Path("in.txt").write_text("a\n")
    ctx = fresh()
    ctx.comp(F.upper, lab, File("in.txt"), "out/up.txt", job_id="u",
             job_outputs=["out/up.txt"])
    d = ctx.details("u")
    assert d.input_files == [("in.txt", "not read yet")]
    assert d.output_files == [("out/up.txt", "not written yet")]
    assert d.command is None
    ctx.make()
    Path("in.txt").write_text("b\n")
    os.remove("out/up.txt")
    ctx = fresh()
    d = ctx.details("out/up.txt")  # (a file it declares names the job too)
    assert d.input_files == [("in.txt", "changed")]
    assert d.output_files == [("out/up.txt", "deleted")]
    rendered = text.render_details(d)
    assert "inputs     in.txt (changed)" in rendered
    assert "outputs    out/up.txt (deleted)" in rendered
    assert "out/up.txt (deleted)" in views.details_view(d).html
    ctx.make()
    d = fresh().details("u")
    assert (d.input_files, d.output_files) == ([("in.txt", "unchanged")],
                                               [("out/up.txt", "as written")])


def test_details_of_a_shell_step_show_its_command(fresh, lab, here):
    from nbmake_ext.ui import text

    ctx = fresh()
    ctx.sh("echo hi > {output}", outputs=["hi.txt", "b.txt"], job_id="hi")
    assert ctx.details("hi").command == f"echo hi > {here / 'hi.txt'}"
    rendered = text.render_details(fresh().details("hi"))  # read from the store
    assert f"command    echo hi > {here / 'hi.txt'}" in rendered
    assert "outputs    hi.txt (not written yet)\n           b.txt (not written yet)" in rendered
