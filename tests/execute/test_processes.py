"""nbmake_ext across real processes: caching between runs, definitions recorded at exit,
two processes on one store, and a process killed mid-run.

Every test runs fresh interpreters on a real temporary store. What ran is proven by side
effects (each job appends "<name>:<pid>" to a log opened with O_APPEND), never by timing.
"""

from __future__ import annotations

import re
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "scripts"))

import proctools as pt  # noqa: E402


def summary(out: str, command: str = "make") -> str:
    lines = pt.summary_lines(out, command)
    assert len(lines) == 1, f"expected one summary line, got:\n{out}"
    return lines[0]


def summary_counts(line: str) -> tuple[int, int]:
    done = re.search(r"(\d+) done", line)
    up = re.search(r"(\d+) up to date", line)
    assert done and up, line
    return int(done.group(1)), int(up.group(1))


def pid_of(out: str) -> int:
    m = re.search(r"^PID (\d+)$", out, re.M)
    assert m, out
    return int(m.group(1))


# -- 1. caching across processes ------------------------------------------------------------

GRAPH = '''
from nbmake_ext import Context

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
print("PID", os.getpid())


def load(i):
    note(f"load-{i}")
    return i * 2


def process(x, i, k=3):
    note(f"process-{i}")
    return x + k


def group(xs, g):
    note(f"group-{g}")
    return sum(xs)


def report(gs):
    note("report")
    return sum(gs)


raw = [ctx.comp(load, i) for i in range(8)]
clean = [ctx.comp(process, r, i, k=3) for i, r in enumerate(raw)]
groups = [ctx.comp(group, clean[0:3], 0), ctx.comp(group, clean[3:6], 1),
          ctx.comp(group, clean[6:8], 2)]
top = ctx.comp(report, groups)
ctx.make()
print("RESULT", top.result())
print("IDS", len(ctx.ls()))
'''

ALL20 = ({f"load-{i}" for i in range(8)} | {f"process-{i}" for i in range(8)}
         | {"group-0", "group-1", "group-2", "report"})


def _run_graph(path, lab):
    tmp, log, store, env = lab
    before = len(pt.read_log(log))
    r = pt.run_script(path, cwd=tmp, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RESULT " in r.stdout
    ran = pt.read_log(log)[before:]
    assert {pid for _, pid in ran} <= {pid_of(r.stdout)}
    return r, [name for name, _ in ran]


@pytest.mark.timeout(60)
def test_second_run_of_a_script_runs_nothing(lab):
    tmp, log, store, env = lab
    path = pt.script(tmp / "graph.py", GRAPH)

    r, ran = _run_graph(path, lab)
    assert sorted(ran) == sorted(ALL20)
    assert "RESULT 80" in r.stdout  # sum(2i + 3 for i < 8)
    assert re.search(r"\b20 done\b", summary(r.stdout)), r.stdout

    r, ran = _run_graph(path, lab)
    assert ran == []
    line = summary(r.stdout)
    assert "0 done" in line and "20 up to date" in line, line
    assert "RESULT 80" in r.stdout
    assert "IDS 20" in r.stdout  # default ids are deterministic: no duplicates


@pytest.mark.timeout(60)
def test_editing_one_function_runs_that_job_and_changed_dependents_only(lab):
    tmp, log, store, env = lab
    path = pt.script(tmp / "graph.py", GRAPH)
    _run_graph(path, lab)

    # group's new body gives the same results: the 3 groups run, report does not.
    src = path.read_text()
    path.write_text(src.replace("    return sum(xs)\n", "    return sum(sorted(xs))\n"))
    r, ran = _run_graph(path, lab)
    assert sorted(ran) == ["group-0", "group-1", "group-2"]
    assert summary_counts(summary(r.stdout)) == (3, 17)

    # load changes for i == 0 only: all loads run, then only the chain of load-0.
    src = path.read_text()
    path.write_text(src.replace("    return i * 2\n", "    return i * 2 if i else 100\n"))
    r, ran = _run_graph(path, lab)
    assert sorted(ran) == sorted([f"load-{i}" for i in range(8)]
                                 + ["process-0", "group-0", "report"])
    assert summary_counts(summary(r.stdout)) == (11, 9)
    assert "RESULT 180" in r.stdout
    assert "IDS 20" in r.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("edit", ["comment", "blank-lines", "docstring-free-spacing"])
def test_comment_and_whitespace_edits_run_nothing(lab, edit):
    tmp, log, store, env = lab
    path = pt.script(tmp / "graph.py", GRAPH)
    _run_graph(path, lab)
    src = path.read_text()
    if edit == "comment":
        new = src.replace("    note(f\"process-{i}\")\n",
                          "    # a comment about processing\n    note(f\"process-{i}\")  # log\n")
    elif edit == "blank-lines":
        new = src.replace("    note(f\"group-{g}\")\n", "\n    note(f\"group-{g}\")\n\n\n")
    else:
        new = src.replace("    return x + k\n", "    return x+k\n")
    assert new != src
    path.write_text(new)
    r, ran = _run_graph(path, lab)
    assert ran == []
    assert summary_counts(summary(r.stdout)) == (0, 20)


HELPERS = '''
from nbmake_ext import Context
import mylib

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])


def bump(v):
    return v + 1


def use_main_helper(i):
    note(f"main-helper-{i}")
    return bump(i)


def use_lib_helper(i):
    note(f"lib-helper-{i}")
    return mylib.triple(i)


def untouched(i):
    note(f"untouched-{i}")
    return i


jobs = ([ctx.comp(use_main_helper, i) for i in range(2)]
        + [ctx.comp(use_lib_helper, i) for i in range(2)]
        + [ctx.comp(mylib.lib_job, i) for i in range(2)]
        + [ctx.comp(untouched, i) for i in range(2)])
ctx.make()
print("RESULTS", [p.result() for p in jobs])
'''

MYLIB = '''
import os


def triple(x):
    return 3 * x


def lib_job(i):
    fd = os.open(os.environ["NBMAKE_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"lib-job-{i}:{os.getpid()}\\n".encode())
    os.close(fd)
    return -i
'''


@pytest.mark.timeout(60)
def test_editing_a_helper_in_main_or_in_a_local_module_reruns_its_callers(lab):
    tmp, log, store, env = lab
    path = pt.script(tmp / "helpers.py", HELPERS)
    (tmp / "mylib.py").write_text(MYLIB)

    def run():
        n = len(pt.read_log(log))
        r = pt.run_script(path, cwd=tmp, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        return sorted(pt.names(log)[n:]), r.stdout

    ran, out = run()
    assert len(ran) == 8 and "RESULTS [1, 2, 0, 3, 0, -1, 0, 1]" in out
    assert run()[0] == []

    path.write_text(path.read_text().replace("return v + 1", "return v + 2"))
    ran, out = run()
    assert ran == ["main-helper-0", "main-helper-1"]
    assert "RESULTS [2, 3, 0, 3, 0, -1, 0, 1]" in out

    (tmp / "mylib.py").write_text(MYLIB.replace("return 3 * x", "return 4 * x"))
    ran, out = run()
    assert ran == ["lib-helper-0", "lib-helper-1"]
    assert "RESULTS [2, 3, 0, 4, 0, -1, 0, 1]" in out

    (tmp / "mylib.py").write_text(MYLIB.replace("return 3 * x", "return 4 * x")
                                  .replace("return -i", "return -i * 10"))
    ran, out = run()
    assert ran == ["lib-job-0", "lib-job-1"]
    assert "RESULTS [2, 3, 0, 4, 0, -10, 0, 1]" in out


# -- 2. definitions recorded at exit ----------------------------------------------------------

REGISTER = '''
from nbmake_ext import comp

print("PID", os.getpid())


def square(x):
    note(f"square-{x}")
    return x * x


def total(xs):
    note("total")
    return sum(xs)


squares = [comp(square, i) for i in range(4)]
t = comp(total, squares, job_id="total")
if "--read" in sys.argv:
    print("TOTAL", t.result())
    print("STATES", sorted({p.state for p in squares + [t]}))
'''


@pytest.mark.timeout(60)
def test_definitions_are_recorded_at_exit_and_run_by_the_console(lab):
    tmp, log, store, env = lab
    env = dict(env, NBMAKE_STORE=str(store))  # module-level comp uses the default store
    path = pt.script(tmp / "register.py", REGISTER)
    r = pt.run_script(path, cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    assert pt.read_log(log) == []  # registering runs nothing

    r = pt.console("--store", str(store), "ls", cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    states = pt.parse_ls(r.stdout)
    assert len(states) == 5 and set(states.values()) == {"todo"}, r.stdout
    assert "total" in states and sum(j.startswith("square-") for j in states) == 4

    # The console runs the functions of the script's __main__ from the store: the
    # script itself is gone.
    path.unlink()
    r = pt.console("--store", str(store), "make", cwd=tmp, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    ran = pt.read_log(log)
    assert sorted(n for n, _ in ran) == ["square-0", "square-1", "square-2", "square-3", "total"]
    assert len({pid for _, pid in ran}) == 1  # all in the console's process
    assert re.search(r"make: 5 done, 0 up to date", r.stdout), r.stdout

    # A third process reads the results; nothing runs again.
    path = pt.script(tmp / "register.py", REGISTER)
    r = pt.run_script(path, "--read", cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    assert "TOTAL 14" in r.stdout
    assert "STATES ['done']" in r.stdout
    assert pid_of(r.stdout) not in {pid for _, pid in ran}
    assert len(pt.read_log(log)) == 5

    assert set(pt.ls_states(store, cwd=tmp, env=env).values()) == {"done"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ending", ["exception", "sys.exit"])
def test_definitions_are_recorded_when_the_script_ends_badly(lab, ending):
    tmp, log, store, env = lab
    env = dict(env, NBMAKE_STORE=str(store))
    end = 'raise RuntimeError("script broke")' if ending == "exception" else "sys.exit(5)"
    path = pt.script(tmp / "register.py", REGISTER + "\n" + end + "\n")
    r = pt.run_script(path, cwd=tmp, env=env)
    assert r.returncode in (1, 5), r.stderr
    states = pt.ls_states(store, cwd=tmp, env=env)
    assert len(states) == 5 and set(states.values()) == {"todo"}


@pytest.mark.timeout(60)
def test_console_runs_jobs_whose_functions_live_in_a_local_module(lab):
    tmp, log, store, env = lab
    (tmp / "mylib.py").write_text(MYLIB)
    path = pt.script(tmp / "reg.py", '''
        from nbmake_ext import Context
        import mylib

        ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
        ctx.comp(mylib.lib_job, 7, job_id="lib")
    ''')
    r = pt.run_script(path, cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    r = pt.console("--store", str(store), "make", cwd=tmp, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert pt.names(log) == ["lib-job-7"]


# -- 3. two processes on one store ------------------------------------------------------------

CONCURRENT = '''
from nbmake_ext import Context

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
print("PID", os.getpid())
SHAPE = sys.argv[2]


def work(i):
    note(f"work-{i}")
    time.sleep(0.2)
    return i


def load(i):
    note(f"load-{i}")
    time.sleep(0.2)
    return i + 1


def process(x, i):
    note(f"process-{i}")
    time.sleep(0.2)
    return x * 10


def pair(a, b, j):
    note(f"pair-{j}")
    time.sleep(0.2)
    return a + b


def report(ps):
    note("report")
    return sum(ps)


if SHAPE == "flat":
    jobs = [ctx.comp(work, i) for i in range(20)]
    final = None
else:
    loads = [ctx.comp(load, i) for i in range(6)]
    procs = [ctx.comp(process, x, i) for i, x in enumerate(loads)]
    pairs = [ctx.comp(pair, procs[2 * j], procs[2 * j + 1], j) for j in range(3)]
    final = ctx.comp(report, pairs)
    jobs = loads + procs + pairs + [final]
ctx.sync()

# Start line: both processes are ready before either makes.
Path(LOG + ".ready-" + sys.argv[1]).touch()
hold("go")
ctx.make()
print("STATES", sorted({p.state for p in jobs}))
if final is not None:
    print("RESULT", final.result())
'''


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shape,n", [("flat", 20), ("deps", 16)])
def test_two_processes_making_one_graph_run_each_job_once(lab, procs, shape, n):
    tmp, log, store, env = lab
    path = pt.script(tmp / "conc.py", CONCURRENT)
    a = procs.start([pt.PYTHON, str(path), "a", shape], cwd=tmp, env=env)
    b = procs.start([pt.PYTHON, str(path), "b", shape], cwd=tmp, env=env)
    pt.wait_until(lambda: all(Path(f"{log}.ready-{t}").exists() for t in "ab"),
                  what="both processes ready", procs=(a, b))
    pt.release(log, "go")
    ca, out_a, err_a = procs.finish(a)
    cb, out_b, err_b = procs.finish(b)
    assert ca == 0, out_a + err_a
    assert cb == 0, out_b + err_b

    ran = pt.read_log(log)
    c = Counter(name for name, _ in ran)
    assert len(c) == n
    assert set(c.values()) == {1}, {k: v for k, v in c.items() if v > 1}

    for out in (out_a, out_b):
        assert "STATES ['done']" in out
        done, up = summary_counts(summary(out))
        assert done + up == n, out
    if shape == "deps":
        assert "RESULT 210" in out_a and "RESULT 210" in out_b  # 10 * sum(1..6)

    # Each process's "done" is exactly what it ran.
    by_pid = Counter(pid for _, pid in ran)
    for out in (out_a, out_b):
        assert summary_counts(summary(out))[0] == by_pid.get(pid_of(out), 0)
    assert pt.integrity(store) == "ok"


ALONE_THEN_ANOTHER = '''
from nbmake_ext import Context

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
print("PID", os.getpid())


def work(i):
    note(f"work-{i}")
    time.sleep(0.15)
    return i


jobs = [ctx.comp(work, i) for i in range(16)]
if sys.argv[1] == "first":
    ctx.parmake(n=2)
else:
    ctx.make()
print("STATES", sorted({p.state for p in jobs}))
'''


@pytest.mark.timeout(60)
def test_a_process_that_opens_the_store_during_a_make_alone_runs_no_job_twice(lab, procs):
    """The first make has the store to itself: it claims in memory (store/claims.py).
    The second process opens the store while it runs and makes the same jobs: it waits
    for the claims to be locks, and each job runs once."""
    tmp, log, store, env = lab
    path = pt.script(tmp / "alone.py", ALONE_THEN_ANOTHER)
    first = procs.start([pt.PYTHON, str(path), "first"], cwd=tmp, env=env)
    pt.wait_until(lambda: len(pt.read_log(log)) >= 2, what="the first make running jobs",
                  procs=(first,))
    second = procs.start([pt.PYTHON, str(path), "second"], cwd=tmp, env=env)
    c1, out1, err1 = procs.finish(first)
    c2, out2, err2 = procs.finish(second)
    assert c1 == 0, out1 + err1
    assert c2 == 0, out2 + err2
    ran = pt.read_log(log)
    c = Counter(name for name, _ in ran)
    assert len(c) == 16 and set(c.values()) == {1}, {k: v for k, v in c.items() if v > 1}
    for out in (out1, out2):
        assert "STATES ['done']" in out
    # Each make's "done" is what it ran (the first's on its engines).
    by_second = sum(1 for _, pid in ran if pid == pid_of(out2))
    assert summary_counts(summary(out2))[0] == by_second
    assert summary_counts(summary(out1, "parmake"))[0] == len(ran) - by_second
    assert pt.integrity(store) == "ok"


ANOTHER_MAKES_A_LATER_JOB = '''
import subprocess

from nbmake_ext import Context

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
print("PID", os.getpid())


def later():
    note("later")
    return 2


def first():
    # This make has read the store and will claim `later` next: another process makes
    # `later` now. Opening the store is what tells this make to look again.
    note("first")
    other = subprocess.run([sys.executable, __file__, "other"], capture_output=True, text=True)
    assert other.returncode == 0, other.stdout + other.stderr
    return 1


if sys.argv[1] == "other":
    ctx.comp(later, job_id="later")
    ctx.make("later")
else:
    ctx.comp(first, job_id="first")
    b = ctx.comp(later, job_id="later")
    ctx.make()
    print("RESULT", b.result())
'''


@pytest.mark.timeout(60)
def test_a_job_another_process_made_after_this_make_read_the_store_is_not_run_again(lab):
    tmp, log, store, env = lab
    path = pt.script(tmp / "later.py", ANOTHER_MAKES_A_LATER_JOB)
    r = pt.run_script(path, "main", cwd=tmp, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RESULT 2" in r.stdout
    ran = pt.read_log(log)
    assert [name for name, _ in ran] == ["first", "later"]
    assert ran[1][1] != pid_of(r.stdout)  # `later` ran in the other process, only there
    assert summary_counts(summary(r.stdout)) == (1, 1)


WAIT_FOR_OTHER = '''
from nbmake_ext import Context

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
print("PID", os.getpid())


def slow():
    note("slow-start")
    hold("slow")
    note("slow")
    return 41


def opener():
    # Runs in process B while A still runs `slow`: lets A finish.
    note("opener")
    Path(LOG + ".release-slow").touch()
    return 0


def plus(v):
    note("plus")
    return v + 1


x = ctx.comp(slow, job_id="slow")
if sys.argv[1] == "b":
    ctx.comp(opener, job_id="opener")
    y = ctx.comp(plus, x, job_id="plus")
ctx.make()
if sys.argv[1] == "b":
    print("RESULT", y.result())
'''


@pytest.mark.timeout(60)
def test_a_job_running_in_another_process_is_waited_for_and_its_result_used(lab, procs):
    tmp, log, store, env = lab
    path = pt.script(tmp / "wait.py", WAIT_FOR_OTHER)
    a = procs.start([pt.PYTHON, str(path), "a"], cwd=tmp, env=env)
    pt.wait_until(pt.logged(log, "slow-start"), what="A runs slow", procs=(a,))
    # While A runs it, another process sees the job as running.
    assert pt.ls_states(store, cwd=tmp, env=env)["slow"] == "running"

    b = procs.start([pt.PYTHON, str(path), "b"], cwd=tmp, env=env)
    cb, out_b, err_b = procs.finish(b)
    ca, out_a, err_a = procs.finish(a)
    assert ca == 0, out_a + err_a
    assert cb == 0, out_b + err_b

    ran = pt.read_log(log)
    pid_a, pid_b = pid_of(out_a), pid_of(out_b)
    assert sorted(ran) == sorted([("slow-start", pid_a), ("slow", pid_a), ("opener", pid_b),
                                  ("plus", pid_b)])
    assert "RESULT 42" in out_b
    assert summary_counts(summary(out_b)) == (2, 1)  # opener, plus; slow waited for
    assert summary_counts(summary(out_a)) == (1, 0)


OTHER_ENDS = '''
from nbmake_ext import Context, JobsFailed

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
print("PID", os.getpid())


def slow():
    note("slow-start")
    if os.environ.get("HANG"):
        hold("slow")
        if os.environ.get("HANG") == "fail":
            raise RuntimeError("slow failed in A")
    note("slow")
    return 41


def ender(how):
    # Runs in process B while A runs `slow`, and ends A's run of it.
    note("ender")
    pid_a = [int(line.rsplit(":", 1)[1]) for line in Path(LOG).read_text().splitlines()
             if line.startswith("slow-start:")][0]
    if how == "release":
        Path(LOG + ".release-slow").touch()
    elif how == "kill":
        os.kill(pid_a, 9)
    elif how == "sigint":
        os.kill(pid_a, 2)
    return 0


def plus(v):
    note("plus")
    return v + 1


x = ctx.comp(slow, job_id="slow")
if sys.argv[1] == "b":
    ctx.comp(ender, sys.argv[2], job_id="ender")
    y = ctx.comp(plus, x, job_id="plus")
try:
    ctx.make()
except JobsFailed as exc:
    print("JOBSFAILED", exc)
    sys.exit(1)
except KeyboardInterrupt:
    print("KEYBOARDINTERRUPT")
    sys.exit(3)
if sys.argv[1] == "b":
    print("RESULT", y.result())
'''


def _a_then_b(lab, procs, how, hang="1"):
    tmp, log, store, env = lab
    path = pt.script(tmp / "other.py", OTHER_ENDS)
    a = procs.start([pt.PYTHON, str(path), "a"], cwd=tmp, env=dict(env, HANG=hang))
    pt.wait_until(pt.logged(log, "slow-start"), what="A runs slow", procs=(a,))
    b = procs.start([pt.PYTHON, str(path), "b", how], cwd=tmp, env=env)
    ca, out_a, err_a = procs.finish(a)  # reaps A as soon as it ends
    cb, out_b, err_b = procs.finish(b)
    return (ca, out_a, err_a), (cb, out_b, err_b)


@pytest.mark.timeout(60)
def test_waiting_process_takes_over_the_claim_of_a_killed_process(lab, procs):
    tmp, log, store, env = lab
    (ca, out_a, err_a), (cb, out_b, err_b) = _a_then_b(lab, procs, "kill")
    assert ca == -signal.SIGKILL
    assert cb == 0, out_b + err_b
    pid_a, pid_b = pid_of(out_a), pid_of(out_b)
    assert sorted(pt.read_log(log)) == sorted([
        ("slow-start", pid_a), ("ender", pid_b), ("slow-start", pid_b), ("slow", pid_b),
        ("plus", pid_b)])
    assert "RESULT 42" in out_b
    assert summary_counts(summary(out_b)) == (3, 0)
    assert pt.integrity(store) == "ok"


@pytest.mark.timeout(60)
def test_waiting_process_runs_a_job_the_other_process_was_interrupted_in(lab, procs):
    tmp, log, store, env = lab
    (ca, out_a, err_a), (cb, out_b, err_b) = _a_then_b(lab, procs, "sigint")
    assert ca == 3 and "KEYBOARDINTERRUPT" in out_a, out_a + err_a
    assert cb == 0, out_b + err_b
    pid_a, pid_b = pid_of(out_a), pid_of(out_b)
    assert sorted(pt.read_log(log)) == sorted([
        ("slow-start", pid_a), ("ender", pid_b), ("slow-start", pid_b), ("slow", pid_b),
        ("plus", pid_b)])
    assert "RESULT 42" in out_b


@pytest.mark.timeout(60)
def test_a_job_that_fails_in_the_other_process_is_not_run_again_by_the_waiter(lab, procs):
    tmp, log, store, env = lab
    (ca, out_a, err_a), (cb, out_b, err_b) = _a_then_b(lab, procs, "release", hang="fail")
    assert ca == 1 and "JOBSFAILED" in out_a, out_a + err_a
    # B waited for A's run of `slow` and uses its outcome: failed, `plus` blocked.
    assert pt.counts(log)["slow-start"] == 1, pt.read_log(log)
    assert cb == 1 and "JOBSFAILED" in out_b, out_b + err_b


SERIAL_HOLDS = '''
from nbmake_ext import Context

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])


def job(i):
    note(f"job-{i}-start")
    hold(f"job-{i}")
    return i


for i in range(5):
    ctx.comp(job, i, job_id=f"job-{i}")
ctx.make()
'''


@pytest.mark.timeout(60)
def test_other_processes_see_only_the_job_a_serial_make_runs_as_running(lab, procs):
    tmp, log, store, env = lab
    path = pt.script(tmp / "serial.py", SERIAL_HOLDS)
    p = procs.start([pt.PYTHON, str(path)], cwd=tmp, env=env)
    try:
        pt.wait_until(lambda: any(n.endswith("-start") for n in pt.names(log)),
                      what="a job starts", procs=(p,))
        states = pt.ls_states(store, cwd=tmp, env=env)
    finally:
        for i in range(5):
            pt.release(log, f"job-{i}")
    code, out, err = procs.finish(p)
    assert code == 0, out + err
    first = pt.names(log)[0].removesuffix("-start")
    assert states[first] == "running"
    assert sorted(states.values()) == ["running", "todo", "todo", "todo", "todo"], states


# -- 4. a process killed mid-run --------------------------------------------------------------

KILLED = '''
from nbmake_ext import Context

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
print("PID", os.getpid())


def step(i, prev):
    note(f"step-{i}-start")
    if i == 3 and os.environ.get("HANG"):
        hold("never")
    note(f"step-{i}")
    return (prev or 0) + i


def side(i):
    note(f"side-{i}-start")
    note(f"side-{i}")
    return -i


prev = None
for i in range(6):
    prev = ctx.comp(step, i, prev, job_id=f"s{i}")
sides = [ctx.comp(side, i, job_id=f"side{i}") for i in range(3)]
ctx.make()
print("RESULT", prev.result())
'''


def job_of(name: str) -> str:
    """Log name -> job id: step-3 -> s3, side-1 -> side1."""
    kind, _, i = name.partition("-")
    return f"s{i}" if kind == "step" else f"side{i}"


def name_of(job: str) -> str:
    return f"side-{job[4:]}" if job.startswith("side") else f"step-{job[1:]}"


@pytest.mark.timeout(60)
def test_sigkill_mid_run_keeps_finished_jobs_and_the_next_make_finishes(lab, procs):
    tmp, log, store, env = lab
    path = pt.script(tmp / "killed.py", KILLED)
    p = procs.start([pt.PYTHON, str(path)], cwd=tmp, env=dict(env, HANG="1"))
    pt.wait_until(pt.logged(log, "step-3-start"), what="s3 starts", procs=(p,))
    # Results are recorded as jobs finish, not at exit: every job that finished before
    # s3 started (s0..s2 and any side job) becomes done while the process still runs.
    finished_before = {n for n in pt.names(log) if not n.endswith("-start")}
    assert {"step-0", "step-1", "step-2"} <= finished_before

    def recorded():
        states = pt.ls_states(store, cwd=tmp, env=env)
        return all(states.get(job) == "done" for job in map(job_of, finished_before))

    pt.wait_until(recorded, what="finished jobs recorded", procs=(p,))
    assert pt.ls_states(store, cwd=tmp, env=env)["s3"] == "running"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=20)
    assert p.returncode == -signal.SIGKILL

    assert pt.integrity(store) == "ok"
    first = pt.read_log(log)
    finished = {n for n, _ in first if not n.endswith("-start")}
    states = pt.ls_states(store, cwd=tmp, env=env)
    assert len(states) == 9
    assert finished == finished_before
    for job in states:
        expected = "done" if name_of(job) in finished else "todo"
        assert states[job] == expected, (job, states)
    assert states["s3"] == "todo"  # the dead process's claim is not "running"

    r = pt.run_script(path, cwd=tmp, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RESULT 15" in r.stdout
    second = pt.read_log(log)[len(first):]
    second_names = {n for n, _ in second if not n.endswith("-start")}
    assert second_names.isdisjoint(finished)
    assert finished | second_names == {f"step-{i}" for i in range(6)} | {
        f"side-{i}" for i in range(3)}
    assert {"step-3", "step-4", "step-5"} <= second_names
    done, up = summary_counts(summary(r.stdout))
    assert (done, up) == (len(second_names), 9 - len(second_names))
    assert set(pt.ls_states(store, cwd=tmp, env=env).values()) == {"done"}
    assert pt.integrity(store) == "ok"
