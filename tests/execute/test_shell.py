"""Shell steps (SPEC 10): ``sh(command, inputs=, outputs=)`` on the kernel's make and on
engines, across fresh contexts on one store and in the console; a step that is timed out
or interrupted leaves no process of it behind (looked for in /proc by process group); and
the first steps of DynaMake's tutorial, ported.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))

import proctools as pt  # noqa: E402
from enginejobs.support import *  # noqa: E402,F401,F403
from enginejobs.support import make_or_parmake as run  # noqa: E402
from enginejobs.support import wait_until  # noqa: E402

from nbmake_ext import File, InvalidJob, JobsFailed  # noqa: E402
from nbmake_ext.files.shell import format_command, group_members  # noqa: E402

RUNNERS = ["make", "parmake"]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def here(tmp_path, monkeypatch):
    work = tmp_path / "work dir"  # (a space in every path of these tests)
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def proc_lab(tmp_path):
    """(directory, log, store, env) for tests that run scripts and the console."""
    log = tmp_path / "jobs.log"
    store = tmp_path / "store"
    env = pt.env_for(log, NBMAKE_TEST_STORE=str(store))
    return tmp_path, log, store, env


def states(ctx) -> dict[str, str]:
    return {r.job_id: r.state for r in ctx.ls()}


# -- the command ------------------------------------------------------------------------------

def test_placeholders_are_filled_with_quoted_paths_and_other_braces_are_left_alone():
    ins, outs = ["/d/a b.txt", "/d/c.txt"], ["/o/x's.txt"]
    assert format_command("sort {input} > {output}", ins, outs) == \
        "sort '/d/a b.txt' > '/o/x'\"'\"'s.txt'"
    assert format_command("cat {inputs} | wc -l > {outputs}", ins, outs) == \
        "cat '/d/a b.txt' /d/c.txt | wc -l > '/o/x'\"'\"'s.txt'"
    assert format_command("cp {inputs[1]} {inputs[-1]}", ins, outs) == "cp /d/c.txt /d/c.txt"
    assert format_command("awk '{print $1}' ${HOME} {{input}}", ins, outs) == \
        "awk '{print $1}' ${HOME} {input}"
    with pytest.raises(ValueError, match=r"\{output\}: the step has no output"):
        format_command("cat > {output}", ins, [])
    with pytest.raises(ValueError, match=r"\{inputs\[2\]\}: the step has 2 inputs"):
        format_command("cat {inputs[2]}", ins, outs)


@pytest.mark.parametrize("how", RUNNERS)
def test_a_shell_step_writes_its_outputs_and_its_output_is_its_log(fresh, here, how):
    Path("data in").mkdir()
    Path("data in/raw list.txt").write_text("pear\napple\nfig\n")

    def define(command="sort {input} > {output}; echo sorted; echo note >&2"):
        ctx = fresh()
        step = ctx.sh(command, inputs=[File("data in/raw list.txt")],
                      outputs=["out put/sorted list.txt"], job_id="sort")
        count = ctx.sh("wc -l < {input} > {output}", inputs=[step], outputs=["n.txt"],
                       job_id="count")
        return ctx, step, count

    ctx, step, count = define()
    assert ctx.definition("count").deps == ("sort",)
    assert [r.function for r in ctx.ls()] == ["sh", "sh"]
    run(ctx, how)
    assert Path("out put/sorted list.txt").read_text() == "apple\nfig\npear\n"
    assert Path("n.txt").read_text().strip() == "3"
    d = ctx.details("sort")
    assert (d.state, d.stdout, d.stderr) == ("done", "sorted\n", "note\n")

    ctx, step, count = define()
    assert states(ctx) == {"sort": "done", "count": "done"}
    assert run(ctx, how).ran == 0

    # Another command that writes the same file: its consumer does not run again.
    ctx, step, count = define("sort -u {input} > {output}")
    assert ctx.why("sort") == ["shell command changed"]
    report = run(ctx, how)
    assert report.ran == 1 and report.skipped == 1

    Path("data in/raw list.txt").write_text("kiwi\n")
    ctx, step, count = define("sort -u {input} > {output}")
    assert ctx.why("sort") == ["input file data in/raw list.txt changed"]
    assert run(ctx, how).ran == 2
    assert Path("n.txt").read_text().strip() == "1"


@pytest.mark.parametrize("how", RUNNERS)
def test_a_failing_command_fails_with_its_exit_code_and_the_end_of_its_stderr(
        fresh, here, how):
    ctx = fresh()
    ctx.sh("echo partial > {output}; echo one >&2; echo 'cannot frob: no such frob' >&2; "
           "exit 3", outputs=["res.txt"], job_id="bad")
    ctx.sh("cat {input}", inputs=["res.txt"], job_id="after")
    ctx.sh("echo fine", job_id="other")
    failed = run(ctx, how)
    assert isinstance(failed, JobsFailed)
    d = ctx.details("bad")
    assert d.error == "CommandFailed: command exited with code 3: cannot frob: no such frob"
    assert d.traceback.rstrip().endswith("--- last lines of stderr:\none\n"
                                         "cannot frob: no such frob")
    assert d.stderr == "one\ncannot frob: no such frob\n"
    assert states(ctx) == {"bad": "failed", "after": "blocked", "other": "done"}
    assert not Path("res.txt").exists()  # a failed step's outputs are removed


@pytest.mark.parametrize("how", RUNNERS)
def test_a_step_that_does_not_write_an_output_fails_naming_it(fresh, here, how):
    ctx = fresh()
    ctx.sh("touch {outputs[0]}", outputs=["a.txt", "b.txt"], job_id="half")
    assert isinstance(run(ctx, how), JobsFailed)
    assert ctx.details("half").error == "it did not write its output b.txt"
    assert not Path("a.txt").exists()


def test_bad_steps_are_errors_at_registration(fresh, here):
    ctx = fresh()
    with pytest.raises(InvalidJob, match=r"job 'x'.*\{input\}: the step has no input"):
        ctx.sh("cat {input}", job_id="x")
    with pytest.raises(InvalidJob, match=r"input file nothing\.txt does not exist"):
        ctx.sh("cat {input}", inputs=["nothing.txt"], job_id="y")
    with pytest.raises(InvalidJob, match=r"job 'z': sh\(\) takes no keyword 'colour'"):
        ctx.sh("true", job_id="z", colour="red")
    with pytest.raises(InvalidJob, match=r"sh\(\) takes no keyword 'job_outputs'"):
        ctx.sh("true", job_id="z", job_outputs=["a"])
    with pytest.raises(InvalidJob, match="needs a command"):
        ctx.sh(["ls"])
    ctx.sh("true", job_id="t", timeout=5, retries=1)
    assert ctx.definition("t").options.timeout == 5
    assert ctx.definition("t").options.retries == 1


# -- stopping a step: nothing of it is left behind ----------------------------------------------

SLEEPER = ("echo $$ > {output}; (trap '' TERM; sleep 60) & sleep 60 & "
           "echo started > started.flag; wait")


def pgid_of(path: Path) -> int:
    wait_until(lambda: path.exists() and path.read_text().strip(), 20, "the step to start")
    return int(path.read_text())


def assert_group_gone(pgid: int) -> None:
    """No process of the step's group runs (zombies do not count: they are dead)."""
    wait_until(lambda: group_members(pgid) == [], 10, f"process group {pgid} to end")


@pytest.mark.parametrize("how", RUNNERS)
def test_a_timed_out_step_ends_with_its_whole_process_group(fresh, here, how):
    ctx = fresh()
    ctx.sh(SLEEPER, outputs=["pid.txt"], job_id="sleeper", job_timeout=1)
    t0 = time.monotonic()
    failed = run(ctx, how)
    assert isinstance(failed, JobsFailed)
    assert time.monotonic() - t0 < 20
    assert ctx.details("sleeper").error == "timed out after 1 s"
    assert Path("started.flag").exists()
    assert not Path("pid.txt").exists()  # (removed: the job failed)


@pytest.mark.parametrize("how", RUNNERS)
def test_no_process_of_a_timed_out_step_is_left(fresh, here, how):
    ctx = fresh()
    ctx.sh(SLEEPER.replace("{output}", "pgid.txt"), job_id="sleeper", job_timeout=1)
    assert isinstance(run(ctx, how), JobsFailed)
    # Each process of the group, the one ignoring SIGTERM too, is gone.
    assert_group_gone(int(Path("pgid.txt").read_text()))


SCRIPT = '''
import os, sys
from nbmake_ext import Context, sh
ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
ctx.sh("echo $$ > pgid.txt; (trap '' TERM; sleep 60) & sleep 60 & wait", job_id="sleeper")
ctx.sh("echo ok > {output}", outputs=["ok.txt"], job_id="quick")
try:
    if sys.argv[1] == "make":
        ctx.make()
    else:
        ctx.parmake(n=2)
except BaseException as exc:
    print("RAISED", type(exc).__name__)
    raise
'''


@pytest.mark.parametrize("how", RUNNERS)
def test_an_interrupted_step_ends_with_its_whole_process_group(proc_lab, procs, how):
    tmp, log, store, env = proc_lab
    path = pt.script(tmp / "steps.py", SCRIPT)
    p = procs.start([pt.PYTHON, str(path), how], cwd=tmp, env=env)
    pgid = pgid_of(tmp / "pgid.txt")
    assert group_members(pgid)  # it runs
    pt.interrupt(p)
    code, out, err = procs.finish(p, timeout=30)
    assert "RAISED KeyboardInterrupt" in out, out + err
    assert_group_gone(pgid)
    states = pt.ls_states(store, cwd=tmp, env=env)
    assert states["sleeper"] == "todo"  # put back: it never finished


# -- in the console -----------------------------------------------------------------------------

DEFINE = '''
import os
from nbmake_ext import Context
ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
ctx.sh(os.environ["COMMAND"], inputs=["in.txt"], outputs=["out.txt"], job_id="step")
ctx.close()
'''


def test_the_console_makes_and_explains_a_shell_step(proc_lab):
    tmp, log, store, env = proc_lab
    (tmp / "in.txt").write_text("b\na\n")
    path = pt.script(tmp / "define.py", DEFINE)
    env = dict(env, COMMAND="sort {input} > {output}")
    assert pt.run_script(path, cwd=tmp, env=env).returncode == 0
    r = pt.console("--store", str(store), "make", cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp / "out.txt").read_text() == "a\nb\n"
    (tmp / "out.txt").write_text("tampered")
    r = pt.console("--store", str(store), "why", "step", cwd=tmp, env=env)
    assert "output out.txt was modified" in r.stdout
    r = pt.console("--store", str(store), "parmake", "2", cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp / "out.txt").read_text() == "a\nb\n"
    env["COMMAND"] = "sort -r {input} > {output}"
    assert pt.run_script(path, cwd=tmp, env=env).returncode == 0
    r = pt.console("--store", str(store), "why", "step", cwd=tmp, env=env)
    assert "shell command changed" in r.stdout
    assert pt.console("--store", str(store), "make", cwd=tmp, env=env).returncode == 0
    assert (tmp / "out.txt").read_text() == "b\na\n"


# -- DynaMake's tutorial, its first steps -------------------------------------------------------

FAKE_YACC = """#!/bin/sh
# yacc -d GRAMMAR: writes y.tab.c and y.tab.h (a stand-in for the real yacc)
[ "$1" = "-d" ] || exit 2
echo "/* parser of $2 */" > y.tab.c
cat "$2" >> y.tab.c
echo "#define TOKENS $(wc -l < "$2")" > y.tab.h
"""


@pytest.mark.parametrize("how", RUNNERS)
def test_dynamakes_tutorial_copy_step(fresh, here, how):
    """``@step(output='foo') async def copy_bar_to_foo(): require('bar'); await
    shell('cp bar foo')`` -- "DynaMake will only execute the shell command cp bar foo if
    the foo file is missing or is older than the bar file". Here: missing, or bar's
    content is not what foo was made from."""
    def build(command="cp bar foo"):
        ctx = fresh()
        ctx.sh(command, inputs=["bar"], outputs=["foo"], job_id="copy_bar_to_foo")
        return ctx

    Path("bar").write_text("bar v1\n")
    ctx = build()
    assert run(ctx, how).ran == 1 and Path("foo").read_text() == "bar v1\n"
    assert run(build(), how).ran == 0  # foo is there and bar did not change

    os.remove("foo")  # "if the foo file is missing"
    ctx = build()
    assert ctx.why("copy_bar_to_foo") == ["output foo was deleted"]
    assert run(ctx, how).ran == 1 and Path("foo").read_text() == "bar v1\n"

    later = time.time() + 10  # bar newer than foo, with the same bytes: make and DynaMake
    os.utime("bar", (later, later))  # would copy again; its content is what counts here
    assert run(build(), how).ran == 0

    Path("bar").write_text("bar v2\n")  # changed: copied again
    ctx = build()
    assert ctx.why("copy_bar_to_foo") == ["input file bar changed"]
    assert run(ctx, how).ran == 1 and Path("foo").read_text() == "bar v2\n"

    # A step whose command changed runs again (DynaMake's persistent actions state,
    # --rebuild_changed_actions): and its stale output is removed before it runs.
    ctx = build("test ! -e foo && cp -p bar foo")
    assert ctx.why("copy_bar_to_foo") == ["shell command changed"]
    assert run(ctx, how).ran == 1 and Path("foo").read_text() == "bar v2\n"
    assert ctx.details("copy_bar_to_foo").reasons_last_run == ["shell command changed"]

    # --remove_failed_outputs: a step whose action fails leaves no output.
    ctx = build("cp bar foo && false")
    assert isinstance(run(ctx, how), JobsFailed)
    assert not Path("foo").exists()
    assert ctx.details("copy_bar_to_foo").error == "CommandFailed: command exited with code 1"


@pytest.mark.parametrize("how", RUNNERS)
def test_dynamakes_tutorial_pattern_and_multiple_outputs(fresh, here, how, monkeypatch):
    """Pattern steps (``@step(output='{*name}.o')``, ``cc -o {output} {input}``) are a
    loop that registers one step per name; multiple outputs (``@step(output=['y.tab.c',
    'y.tab.h'])``, ``yacc -d {input()}``) are a list."""
    bin_dir = here / "bin"
    bin_dir.mkdir()
    (bin_dir / "yacc").write_text(FAKE_YACC)
    (bin_dir / "yacc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    Path("grammar.yacc").write_text("expr: NUMBER\n")
    Path("main.c").write_text("int helper(void);\nint main(void) { return helper(); }\n")
    Path("util.c").write_text("int helper(void) { return 0; }\n")

    def build():
        ctx = fresh()
        objects = [ctx.sh("cc -c -o {output} {input}", inputs=[f"{name}.c"],
                          outputs=[f"{name}.o"], job_id=f"compile_object-{name}")
                   for name in ("main", "util")]
        ctx.sh("cc -o {output} {inputs}", inputs=objects, outputs=["prog"], job_id="link")
        ctx.sh("yacc -d {input}", inputs=["grammar.yacc"], outputs=["y.tab.c", "y.tab.h"],
               job_id="yacc")
        return ctx

    ctx = build()
    assert ctx.definition("link").deps == ("compile_object-main", "compile_object-util")
    assert run(ctx, how).ran == 4
    assert os.access("prog", os.X_OK) and Path("y.tab.h").read_text() == "#define TOKENS 1\n"
    assert run(build(), how).ran == 0

    os.remove("y.tab.h")  # one of two outputs gone: the step makes both again
    ctx = build()
    assert states(ctx)["yacc"] == "stale" and ctx.why("yacc") == ["output y.tab.h was deleted"]
    assert run(ctx, how).ran == 1 and Path("y.tab.h").exists()

    # util.c edited in a comment only: util.o is made again; if cc writes the same object,
    # the program is not linked again (early cutoff on the file's content).
    before = Path("util.o").read_bytes()
    Path("util.c").write_text("int helper(void) { return 0; }\n/* a comment */\n")
    report = run(build(), how)
    linked = Path("util.o").read_bytes() != before
    assert report.ran == (2 if linked else 1)  # compile_object-util, and link if util.o changed
    ctx = build()
    assert all(state == "done" for state in states(ctx).values())
    assert ctx.details("compile_object-util").reasons_last_run == ["input file util.c changed"]
    if linked:
        assert ctx.details("link").reasons_last_run == ["input file util.o changed"]


# -- targets by file name -----------------------------------------------------------------------

FIGURES = '''
import os
from nbmake_ext import Context
ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
for name in ("a", "b"):
    ctx.sh("echo " + name + " > {output}", outputs=[f"figs/{name}.png"], job_id=f"draw-{name}")
ctx.sh("ls {inputs} > {output}", inputs=["figs/a.png"], outputs=["index.txt"], job_id="index")
ctx.sh("mkdir -p {output}; echo 1 > {output}/part.txt", outputs=["parts/"], job_id="parts")
ctx.close()
'''


@pytest.mark.parametrize("how", ["make", "parmake 2"])
def test_a_target_naming_a_declared_output_selects_the_job_that_writes_it(proc_lab, how):
    tmp, log, store, env = proc_lab
    path = pt.script(tmp / "figures.py", FIGURES)
    assert pt.run_script(path, cwd=tmp, env=env).returncode == 0

    def console(*args):
        r = pt.console("--store", str(store), *args, cwd=tmp, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    console(*how.split(), "figs/b.png")
    assert (tmp / "figs/b.png").exists() and not (tmp / "figs/a.png").exists()
    assert pt.ls_states(store, cwd=tmp, env=env) == {
        "draw-a": "todo", "draw-b": "done", "index": "todo", "parts": "todo"}
    console(*how.split(), "index.txt")  # and what it needs
    assert (tmp / "figs/a.png").exists() and (tmp / "index.txt").exists()
    console(*how.split(), str(tmp / "parts/part.txt"))  # inside a directory output, absolute
    assert (tmp / "parts/part.txt").read_text() == "1\n"
    assert "draw-a" in console("ls", "figs/*.png") and "draw-b" in console("ls", "figs/*.png")
    assert "index" not in console("ls", "figs/*.png")
    os.remove(tmp / "figs/a.png")
    assert "output figs/a.png was deleted" in console("why", "figs/a.png")
    assert "job        draw-a" in console("details", "figs/a.png")
    r = pt.console("--store", str(store), "make", "figs/c.png", cwd=tmp, env=env)
    assert r.returncode != 0 and "no job matches 'figs/c.png'" in r.stderr


@pytest.mark.parametrize("how", RUNNERS)
def test_a_dynamic_job_defines_shell_steps(fresh, here, how):
    from enginejobs import filejobs as F

    ctx = fresh()
    top = ctx.comp_dynamic(F.shell_children, ["x", "y"], job_id="top")
    run(ctx, how)
    assert Path("made/all.txt").read_text() == "x\ny\n"
    children = ctx.graph.children("top")
    assert len(children) == 3 and all(ctx.definition(c).function == "sh" for c in children)
    assert sorted(ctx.definition(children[-1]).deps) == sorted(children[:2])
    assert top.result() == [None, None, None]
    os.remove("made/y.txt")
    ctx = fresh()
    ctx.comp_dynamic(F.shell_children, ["x", "y"], job_id="top")
    assert run(ctx, how).ran == 1  # the child whose output was deleted (the same bytes again)
