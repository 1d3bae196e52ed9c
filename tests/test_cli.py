"""The console, `python -m nbmake_ext` / `nbmake`, on stores prepared by real scripts.

Exit codes: 0 ok, 1 a target failed or is blocked, 2 bad usage (unknown target or job,
store that cannot be opened), 130 interrupted (tests/execute/test_interrupt.py).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "execute" / "scripts"))

import proctools as pt  # noqa: E402

pytestmark = pytest.mark.timeout(60)

COMMANDS = ["make", "remake", "clean", "ls", "details", "why", "stats"]

# Eleven jobs: 9 done (3 loads, 3 processes, a dynamic job `fan` and 2 children), `boom`
# failed, `after` blocked by it.
PREP = '''
from nbmake_ext import JobsFailed, comp, comp_dynamic, current_context


def load(i):
    note(f"load-{i}")
    return i * 2


def process(x, i, k=3):
    note(f"process-{i}")
    print("processing", x)
    return x + k


def boom(x):
    note("boom")
    print("about to fail", x)
    print("warning: bad", file=sys.stderr)
    raise ValueError("bad input " + str(x))


def after(x):
    note("after")
    return x


def child(v):
    note(f"child-{v}")
    return v


def fan(context, n):
    note("fan")
    return [context.comp(child, i, job_id=f"child-{i}") for i in range(n)]


raw = [comp(load, i, job_id=f"load-{i}") for i in range(3)]
clean = [comp(process, r, i, k=3, job_id=f"process-{i}") for i, r in enumerate(raw)]
b = comp(boom, raw[1], job_id="boom")
comp(after, b, job_id="after")
comp_dynamic(fan, 2, job_id="fan")
if "--define-only" not in sys.argv:
    try:
        current_context().make()
    except JobsFailed as exc:
        print("JOBSFAILED", exc)
'''

PREPARED = {
    "load-0": "done", "load-1": "done", "load-2": "done",
    "process-0": "done", "process-1": "done", "process-2": "done",
    "boom": "failed", "after": "blocked", "fan": "done", "child-0": "done", "child-1": "done",
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A store made by running PREP once (copied per test by `lab`)."""
    tmp = tmp_path_factory.mktemp("prep")
    store = tmp / "store"
    env = pt.env_for(tmp / "prep.log", NBMAKE_STORE=str(store))
    path = pt.script(tmp / "prep.py", PREP)
    r = pt.run_script(path, cwd=tmp, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "JOBSFAILED" in r.stdout, r.stdout
    return store


class Lab:
    def __init__(self, tmp: Path, store: Path):
        self.tmp = tmp
        self.store = store
        self.log = tmp / "jobs.log"
        self.env = pt.env_for(self.log)

    def nb(self, *args: str, env: dict | None = None, cwd: Path | None = None,
           store: bool = True):
        pre = ("--store", str(self.store)) if store else ()
        return pt.console(*pre, *args, cwd=cwd or self.tmp, env=env or self.env)

    def ran(self) -> list[str]:
        return pt.names(self.log)

    def states(self) -> dict[str, str]:
        r = self.nb("ls")
        assert r.returncode == 0, r.stderr
        return pt.parse_ls(r.stdout)


@pytest.fixture
def lab(prepared, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(prepared, store)
    os.chmod(store, 0o700)
    return Lab(tmp_path, store)


# -- help and usage -------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["module", "script"])
def test_help_lists_every_command(tmp_path, entry):
    cmd = [pt.PYTHON, "-m", "nbmake_ext"] if entry == "module" else [pt.NBMAKE]
    r = pt.run(cmd + ["--help"], cwd=tmp_path, env=pt.env_for(tmp_path / "log"))
    assert r.returncode == 0, r.stderr
    for name in COMMANDS + ["--store"]:
        assert name in r.stdout
    assert not (tmp_path / ".nbmake").exists()  # help opens no store


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(tmp_path, command):
    r = pt.run([pt.NBMAKE, command, "--help"], cwd=tmp_path, env=pt.env_for(tmp_path / "l"))
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout and command in r.stdout


def test_no_command_or_unknown_command_is_usage_error(lab):
    r = lab.nb()
    assert r.returncode == 2 and "usage" in r.stderr
    r = lab.nb("frobnicate")
    assert r.returncode == 2 and "frobnicate" in r.stderr


def test_remake_needs_targets(lab):
    r = lab.nb("remake")
    assert r.returncode == 2
    assert lab.ran() == []


# -- ls -------------------------------------------------------------------------------------


def test_ls_prints_a_table_of_every_job(lab):
    r = lab.nb("ls")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = lines[0].split()
    assert header[0] in ("id", "job")
    assert header[1:] == ["state", "function", "duration", "parent"]
    assert pt.parse_ls(r.stdout) == PREPARED
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows["child-0"].split()[-1] == "fan"   # parent column
    assert rows["child-1"].split()[-1] == "fan"
    assert rows["process-2"].split()[2] == "process"  # function column
    assert re.search(r"\d(\.\d+)?(ms|s)\b", rows["load-0"])  # a duration
    assert "11 jobs" in r.stdout


def test_module_and_script_print_the_same(lab):
    a = lab.nb("ls")
    b = pt.run([pt.NBMAKE, "--store", str(lab.store), "ls"], cwd=lab.tmp, env=lab.env)
    assert a.returncode == b.returncode == 0
    strip = lambda s: re.sub(r"\d+(\.\d+)?(ms|s)\b", "T", s)  # noqa: E731
    assert strip(a.stdout) == strip(b.stdout)


@pytest.mark.parametrize("targets,expected", [
    (["boom"], {"boom"}),
    (["load-*"], {"load-0", "load-1", "load-2"}),
    (["*-1"], {"load-1", "process-1", "child-1"}),
    (["failed"], {"boom"}),
    (["blocked"], {"after"}),
    (["done"], set(PREPARED) - {"boom", "after"}),
    (["child-?", "after"], {"child-0", "child-1", "after"}),
    (["failed", "blocked", "load-0"], {"boom", "after", "load-0"}),
])
def test_ls_targets(lab, targets, expected):
    r = lab.nb("ls", *targets)
    assert r.returncode == 0, r.stderr
    assert set(pt.parse_ls(r.stdout)) == expected


@pytest.mark.parametrize("target", ["nope", "zz*"])
def test_ls_target_matching_nothing_is_error_2(lab, target):
    r = lab.nb("ls", target)
    assert r.returncode == 2, r.stdout + r.stderr
    assert target.rstrip("*") in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("targets", [["todo"], ["stale"], ["todo", "stale", "running"]])
def test_ls_state_word_matching_nothing_lists_nothing(lab, targets):
    r = lab.nb("ls", *targets)
    assert r.returncode == 0, r.stdout + r.stderr
    assert pt.parse_ls(r.stdout) == {} and "no jobs" in r.stdout


def test_ls_all_lists_every_job(lab):
    r = lab.nb("ls", "all")
    assert r.returncode == 0, r.stderr
    assert pt.parse_ls(r.stdout) == PREPARED


def test_unknown_target_suggests_close_ids(lab):
    r = lab.nb("ls", "proces-1")
    assert r.returncode == 2
    assert "process-1" in r.stderr


# -- details and why ------------------------------------------------------------------------


def test_details_of_a_failed_job_shows_traceback_and_output(lab):
    r = lab.nb("details", "boom")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "failed" in out
    assert "ValueError: bad input 2" in out
    assert "Traceback (most recent call last)" in out
    assert 'raise ValueError("bad input " + str(x))' in out  # the job's own frame
    assert "nbmake_ext" not in out.split("Traceback", 1)[1].split("---", 1)[0]
    assert "about to fail 2" in out          # captured stdout
    assert "warning: bad" in out             # captured stderr
    assert "load-1" in out and "after" in out  # dependency and dependent


def test_details_of_done_blocked_and_dynamic_jobs(lab):
    r = lab.nb("details", "process-0")
    assert r.returncode == 0
    assert "done" in r.stdout and "processing 0" in r.stdout and "load-0" in r.stdout
    r = lab.nb("details", "after")
    assert r.returncode == 0
    assert "blocked" in r.stdout and "boom" in r.stdout
    r = lab.nb("details", "fan")
    assert r.returncode == 0
    assert "child-0" in r.stdout and "child-1" in r.stdout
    r = lab.nb("details", "child-1")
    assert r.returncode == 0
    assert re.search(r"parent\s+fan", r.stdout), r.stdout


def test_why_in_words(lab):
    r = lab.nb("why", "boom")
    assert r.returncode == 0
    assert "failed" in r.stdout and "ValueError: bad input 2" in r.stdout
    r = lab.nb("why", "after")
    assert r.returncode == 0
    assert "blocked by boom" in r.stdout
    r = lab.nb("why", "load-0")
    assert r.returncode == 0
    assert "up to date" in r.stdout


@pytest.mark.parametrize("command", ["details", "why"])
def test_details_and_why_of_unknown_job_is_error_2(lab, command):
    r = lab.nb(command, "nosuchjob")
    assert r.returncode == 2
    assert "nosuchjob" in r.stderr and "Traceback" not in r.stderr
    r = lab.nb(command)
    assert r.returncode == 2  # a job is required


def test_why_names_what_changed(tmp_path):
    store = tmp_path / "store"
    env = pt.env_for(tmp_path / "log", NBMAKE_TEST_STORE=str(store))
    body = '''
        from nbmake_ext import Context

        ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
        K = int(os.environ.get("K", "3"))
        SEED = int(os.environ.get("SEED", "1"))


        def source(seed):
            return seed


        def process(x, k=3):
            return x + k


        a = ctx.comp(source, SEED, job_id="src")
        b = ctx.comp(process, a, k=K, job_id="proc")
        ctx.comp(process, 1, job_id="never")
        if os.environ.get("MAKE"):
            ctx.make(*os.environ["MAKE"].split())
    '''
    path = pt.script(tmp_path / "w.py", body)

    def run(**extra):
        r = pt.run_script(path, cwd=tmp_path, env=dict(env, **extra))
        assert r.returncode == 0, r.stdout + r.stderr

    def why(job):
        r = pt.console("--store", str(store), "why", job, cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        return r.stdout

    run(MAKE="src proc")
    assert "up to date" in why("proc") and "not" not in why("proc")
    assert "never ran" in why("never")
    run(K="4")
    assert "argument k changed" in why("proc")
    run(K="4", SEED="2", MAKE="src")
    text = why("proc")
    assert "argument k changed" in text and "dependency src produced a new result" in text
    path.write_text(path.read_text().replace("return x + k", "return x + k + 0"))
    run(K="4", SEED="2")
    assert "code of process changed" in why("proc")


def test_a_failed_job_whose_breaking_edit_was_undone_is_restored(tmp_path):
    store = tmp_path / "store"
    log = tmp_path / "log"
    env = pt.env_for(log, NBMAKE_TEST_STORE=str(store))
    body = '''
        from nbmake_ext import Context, JobsFailed

        ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])

        if os.environ.get("BREAK"):
            def fragile(x):
                note("fragile")
                raise ValueError("oops")
        else:
            def fragile(x):
                note("fragile")
                return x


        def after(x):
            note("after")
            return x + 1


        ctx.comp(after, ctx.comp(fragile, 1, job_id="fragile"), job_id="after")
        if os.environ.get("MAKE"):
            try:
                ctx.make()
            except JobsFailed as exc:
                print("JOBSFAILED", exc)
    '''
    path = pt.script(tmp_path / "w.py", body)

    def run(**extra):
        r = pt.run_script(path, cwd=tmp_path, env=dict(env, **extra))
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def nb(*args):
        return pt.console("--store", str(store), *args, cwd=tmp_path, env=env)

    run(MAKE="1")
    assert "JOBSFAILED" in run(MAKE="1", BREAK="1")
    run()  # the edit undone; defined, not made
    log.unlink()
    r = nb("why", "fragile")
    assert r.returncode == 0, r.stderr
    assert "its last run failed (ValueError: oops), but its stored result matches again: " \
        "the next make restores it" in r.stdout, r.stdout
    r = nb("why", "after")
    assert "blocked by fragile, which failed, but its stored result matches again" in r.stdout
    r = nb("ls")
    assert pt.parse_ls(r.stdout) == {"fragile": "failed", "after": "blocked"}
    assert "the next make restores 2 of them" in r.stdout.splitlines()[-1], r.stdout
    r = nb("make")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"make: 0 done, 2 restored, 0 up to date", r.stdout), r.stdout
    assert not log.exists() or pt.names(log) == []
    assert pt.parse_ls(nb("ls").stdout) == {"fragile": "done", "after": "done"}
    assert "is up to date" in nb("why", "fragile").stdout


# -- stats ----------------------------------------------------------------------------------


def test_stats_counts_per_state_and_function(lab):
    r = lab.nb("stats")
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert "11 jobs" in first and "9 done" in first and "1 failed" in first \
        and "1 blocked" in first
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()[3:]}
    assert rows["load"][0] == "3" and rows["child"][0] == "2" and rows["boom"][0] == "1"


def test_stats_of_targets(lab):
    r = lab.nb("stats", "failed", "blocked", "load-*")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "5 jobs: 3 done, 1 failed, 1 blocked"
    assert lab.nb("stats", "all").stdout == lab.nb("stats").stdout
    assert lab.nb("stats", "stale").stdout.strip() == "no jobs"
    r = lab.nb("stats", "nope")
    assert r.returncode == 2 and "nope" in r.stderr


# -- make -----------------------------------------------------------------------------------


def test_make_of_up_to_date_targets_runs_nothing_and_exits_0(lab):
    r = lab.nb("make", "load-*", "process-1", "fan")
    assert r.returncode == 0, r.stderr
    assert lab.ran() == []
    assert re.search(r"make: 0 done, \d+ up to date", r.stdout), r.stdout


def test_make_with_a_failing_target_exits_1_with_traceback(lab):
    r = lab.nb("make")
    assert r.returncode == 1, r.stdout + r.stderr
    assert sorted(lab.ran()) == ["boom"]  # failed jobs run again; 'after' stays blocked
    assert "1 failed" in r.stdout and "1 blocked" in r.stdout
    err = r.stderr
    assert "boom" in err and "after" in err
    assert "ValueError: bad input 2" in err
    assert "Traceback (most recent call last)" in err
    assert 'raise ValueError("bad input " + str(x))' in err


def test_make_of_a_blocked_target_exits_1(lab):
    r = lab.nb("make", "after")
    assert r.returncode == 1
    assert "after" in r.stderr and "boom" in r.stderr
    assert lab.ran() == ["boom"]


def test_make_by_state_word(lab):
    r = lab.nb("make", "failed")
    assert r.returncode == 1
    assert lab.ran() == ["boom"]


@pytest.mark.parametrize("word", ["todo", "stale", "running"])
def test_make_of_a_state_word_no_job_is_in_does_nothing_and_exits_0(lab, word):
    r = lab.nb("make", word)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^make: 0 done, 0 up to date", r.stdout, re.M), r.stdout
    assert lab.ran() == [] and lab.states() == PREPARED
    r = lab.nb("parmake", "2", word)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^parmake: 0 done, 0 up to date", r.stdout, re.M), r.stdout
    r = lab.nb("clean", word)
    assert r.returncode == 0 and "cleaned 0 jobs" in r.stdout, r.stdout + r.stderr
    r = lab.nb("remake", word)
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.ran() == [] and lab.states() == PREPARED


@pytest.mark.parametrize("words, bad", [
    (["0"], "'0'"), (["-3"], "'-3'"), (["n=0"], "'0'"), (["n=-3"], "'-3'"),
    (["n=abc"], "'abc'"), (["1.5"], "'1.5'"), (["n=1.5", "boom"], "'1.5'"), (["-n", "0"], "0"),
])
def test_parmake_n_that_is_not_a_whole_number_from_1_is_usage_error_2(lab, words, bad):
    r = lab.nb("parmake", *words)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "whole number >= 1" in r.stderr and bad in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and lab.ran() == [] and lab.states() == PREPARED


def test_make_unknown_target_is_error_2_and_runs_nothing(lab):
    r = lab.nb("make", "load-0", "nope")
    assert r.returncode == 2 and "nope" in r.stderr
    assert lab.ran() == []


def test_make_echo_shows_job_output(lab):
    lab.nb("clean", "process-2")
    r = lab.nb("make", "--echo", "process-2")
    assert r.returncode == 0, r.stderr
    assert "processing 4" in r.stdout
    r = lab.nb("details", "process-2")
    assert "processing 4" in r.stdout  # still captured


# -- clean and remake -----------------------------------------------------------------------


def test_clean_targets_then_make_runs_only_those(lab):
    r = lab.nb("clean", "process-*")
    assert r.returncode == 0, r.stderr
    assert "3" in r.stdout
    states = lab.states()
    assert all(states[f"process-{i}"] == "todo" for i in range(3))
    assert all(states[f"load-{i}"] == "done" for i in range(3))
    r = lab.nb("make", "process-*")
    assert r.returncode == 0, r.stderr
    assert sorted(lab.ran()) == ["process-0", "process-1", "process-2"]


def test_clean_keeps_dependents_results(lab):
    r = lab.nb("clean", "load-0")
    assert r.returncode == 0
    assert lab.states()["process-0"] == "done"
    r = lab.nb("make", "process-0")
    assert r.returncode == 0
    # load-0 re-made the same result, so process-0 does not run again.
    assert lab.ran() == ["load-0"]


def test_clean_a_dynamic_job_forgets_its_children(lab):
    r = lab.nb("clean", "fan")
    assert r.returncode == 0, r.stderr
    states = lab.states()
    assert states["fan"] == "todo"
    assert "child-0" not in states and "child-1" not in states
    r = lab.nb("make", "fan")
    assert r.returncode == 0, r.stderr
    assert sorted(lab.ran()) == ["child-0", "child-1", "fan"]
    assert lab.states() == PREPARED


@pytest.mark.parametrize("targets", [(), ("*",), ("fan", "child-*")])
def test_clean_everything_forgets_dynamic_children_too(lab, targets):
    r = lab.nb("clean", *targets)
    assert r.returncode == 0, r.stderr
    states = lab.states()
    assert "child-0" not in states and "child-1" not in states, states


def test_clean_without_targets_forgets_every_result(lab):
    r = lab.nb("clean")
    assert r.returncode == 0, r.stderr
    assert set(lab.states().values()) <= {"todo", "blocked"}
    r = lab.nb("make")
    assert r.returncode == 1  # boom fails again
    assert sorted(set(lab.ran())) == sorted(set(PREPARED) - {"after"})
    assert lab.states() == PREPARED


def test_clean_by_state_word_and_unknown(lab):
    r = lab.nb("clean", "failed")
    assert r.returncode == 0
    assert lab.states()["boom"] == "todo"
    r = lab.nb("clean", "nope")
    assert r.returncode == 2


def test_remake_forces_the_target_and_dependents_as_needed(lab):
    r = lab.nb("remake", "load-2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.ran() == ["load-2"]  # same result: process-2 is still up to date
    assert re.search(r"remake: 1 done", r.stdout), r.stdout
    r = lab.nb("remake", "process-?")
    assert r.returncode == 0
    assert sorted(lab.ran()) == ["load-2", "process-0", "process-1", "process-2"]
    assert lab.states() == PREPARED


def test_remake_unknown_target_is_error_2(lab):
    r = lab.nb("remake", "nope*")
    assert r.returncode == 2
    assert lab.ran() == []


# -- choosing the store ---------------------------------------------------------------------


def test_store_from_option_env_and_default(lab, tmp_path):
    # $NBMAKE_STORE, absolute
    r = lab.nb("ls", store=False, env=dict(lab.env, NBMAKE_STORE=str(lab.store)))
    assert r.returncode == 0 and pt.parse_ls(r.stdout) == PREPARED
    # $NBMAKE_STORE, relative to the working directory
    r = lab.nb("ls", store=False, env=dict(lab.env, NBMAKE_STORE="store"), cwd=lab.tmp)
    assert r.returncode == 0 and pt.parse_ls(r.stdout) == PREPARED
    # --store wins over $NBMAKE_STORE
    other = tmp_path / "elsewhere"
    r = lab.nb("ls", env=dict(lab.env, NBMAKE_STORE=str(other)))
    assert r.returncode == 0 and pt.parse_ls(r.stdout) == PREPARED
    # --store relative to the working directory
    r = pt.console("--store", "store", "ls", cwd=lab.tmp, env=lab.env)
    assert r.returncode == 0 and pt.parse_ls(r.stdout) == PREPARED


def test_default_store_is_dot_nbmake_in_the_working_directory(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = pt.env_for(tmp_path / "log")
    path = pt.script(work / "prep.py", PREP)
    r = pt.run_script(path, "--define-only", cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert (work / ".nbmake" / "nbmake.db").exists()
    r = pt.console("ls", cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert set(pt.parse_ls(r.stdout)) == set(PREPARED) - {"child-0", "child-1"}
    r = pt.console("make", "load-*", cwd=work, env=env)
    assert r.returncode == 0
    assert sorted(pt.names(tmp_path / "log")) == ["load-0", "load-1", "load-2"]
    # Another directory has another (empty) store.
    r = pt.console("ls", "load-0", cwd=tmp_path, env=env)
    assert r.returncode == 2


def test_store_that_cannot_be_opened_is_error_2(tmp_path):
    env = pt.env_for(tmp_path / "log")
    (tmp_path / "afile").write_text("x")
    r = pt.console("--store", "afile", "ls", cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot open the store" in r.stderr and "Traceback" not in r.stderr
    r = pt.console("--store", "afile/sub", "ls", cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no store at" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad"
    bad.mkdir(mode=0o700)
    (bad / "nbmake.db").write_bytes(b"this is not a database, " * 200)
    r = pt.console("--store", str(bad), "ls", cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot open the store" in r.stderr and "Traceback" not in r.stderr


# -- permissions ----------------------------------------------------------------------------


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_console_never_creates_a_store(tmp_path):
    env = pt.env_for(tmp_path / "log")
    for command in ("ls", "make"):
        r = pt.console("--store", "missing", command, cwd=tmp_path, env=env)
        assert r.returncode == 2 and "no store at" in r.stderr, r.stderr
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("how", ["script"])
def test_new_store_is_owner_only(tmp_path, how):
    env = pt.env_for(tmp_path / "log")
    store = tmp_path / "deep" / "new-store"
    if how == "script":
        path = pt.script(tmp_path / "s.py", '''
            from nbmake_ext import Context
            ctx = Context(store=sys.argv[1])

            def f(x):
                return bytes(40_000)  # a file, not a row of the database

            ctx.comp(f, 1)
            ctx.make()
        ''')
        r = pt.run_script(path, str(store), cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        files = list((store / "results").iterdir())
        assert files and all(_mode(f) & 0o077 == 0 for f in files)
    assert _mode(store) == 0o700
    assert _mode(store / "results") == 0o700
    assert _mode(store / "nbmake.db") & 0o077 == 0


def test_new_store_is_owner_only_under_a_permissive_umask(tmp_path):
    env = pt.env_for(tmp_path / "log")
    store = tmp_path / "s"
    code = ("import os, sys; os.umask(0); from nbmake_ext import Context;"
            " Context(%r).close()" % str(store))
    r = pt.run([pt.PYTHON, "-c", code], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert _mode(store) == 0o700
    assert _mode(store / "nbmake.db") & 0o077 == 0


def test_existing_store_readable_by_others_gets_a_warning(lab):
    os.chmod(lab.store, 0o755)
    r = lab.nb("ls")
    assert r.returncode == 0
    assert "readable by other users" in r.stderr
