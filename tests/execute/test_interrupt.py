"""Ctrl-C during make, in a script and in the console, on real processes.

SIGINT is sent while a job is blocked (the job logs "<name>-start" and then waits for a
release file that never comes), so where the interrupt lands never depends on timing.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "scripts"))

import proctools as pt  # noqa: E402


CHAIN = '''
from nbmake_ext import Context

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
print("PID", os.getpid())
TAG = os.environ.get("TAG", "v1")


def step(i, prev, tag="v1"):
    note(f"s{i}-start")
    if i == 2 and os.environ.get("HANG"):
        hold("never")
    note(f"s{i}")
    return (prev or 0) + i


prev = None
for i in range(4):
    prev = ctx.comp(step, i, prev, job_id=f"s{i}", tag=TAG if i == 2 else "v1")
if "--define-only" in sys.argv:
    sys.exit(0)
try:
    ctx.make()
except BaseException as exc:
    print("RAISED", type(exc).__name__)
    raise
print("RESULT", prev.result())
'''


def finished(log: Path, since: int = 0) -> list[str]:
    return [n for n, _ in pt.read_log(log)[since:] if not n.endswith("-start")]


def one_summary(out: str, command: str = "make") -> str:
    lines = pt.summary_lines(out, command)
    assert len(lines) == 1, out
    return lines[0]


def _interrupt_at_s2(procs, args, lab, env_extra=None):
    tmp, log, store, env = lab
    since = len(pt.read_log(log))
    p = procs.start(args, cwd=tmp, env=dict(env, HANG="1", **(env_extra or {})))
    pt.wait_until(lambda: "s2-start" in [n for n, _ in pt.read_log(log)[since:]],
                  what="s2 starts", procs=(p,))
    pt.interrupt(p)
    code, out, err = procs.finish(p, timeout=30)
    return code, out, err


@pytest.mark.timeout(60)
def test_sigint_in_a_script_stops_make_and_puts_the_job_back_to_todo(lab, procs):
    tmp, log, store, env = lab
    path = pt.script(tmp / "chain.py", CHAIN)
    code, out, err = _interrupt_at_s2(procs, [pt.PYTHON, str(path)], lab)

    # The interrupt reaches the user as KeyboardInterrupt, and nothing else.
    assert "RAISED KeyboardInterrupt" in out, out + err
    assert code == -signal.SIGINT, (code, out, err)
    assert "KeyboardInterrupt" in err
    line = one_summary(out)
    assert "interrupted" in line and "2 done" in line, line

    assert finished(log) == ["s0", "s1"]
    states = pt.ls_states(store, cwd=tmp, env=env)
    assert states == {"s0": "done", "s1": "done", "s2": "todo", "s3": "todo"}
    assert pt.integrity(store) == "ok"

    n = len(pt.read_log(log))
    r = pt.run_script(path, cwd=tmp, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert finished(log, n) == ["s2", "s3"]
    assert re.search(r"make: 2 done, 2 up to date", r.stdout), r.stdout
    assert "RESULT 6" in r.stdout


@pytest.mark.timeout(60)
def test_sigint_while_a_redefined_job_reruns_leaves_it_stale(lab, procs):
    tmp, log, store, env = lab
    path = pt.script(tmp / "chain.py", CHAIN)
    r = pt.run_script(path, cwd=tmp, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    n = len(pt.read_log(log))

    # s2 is redefined (another argument): it reruns and is interrupted.
    code, out, err = _interrupt_at_s2(procs, [pt.PYTHON, str(path)], lab, {"TAG": "v2"})
    assert "RAISED KeyboardInterrupt" in out, out + err
    assert code == -signal.SIGINT
    assert "interrupted" in one_summary(out)
    assert finished(log, n) == []

    env2 = dict(env, TAG="v2")
    states = pt.ls_states(store, cwd=tmp, env=env2)
    assert states["s0"] == states["s1"] == "done"
    assert states["s2"] == "stale", states
    r = pt.console("--store", str(store), "why", "s2", cwd=tmp, env=env2)
    assert r.returncode == 0 and "tag" in r.stdout, r.stdout + r.stderr

    # The next make runs s2 only: its result is unchanged, so s3 stays up to date.
    n = len(pt.read_log(log))
    r = pt.run_script(path, cwd=tmp, env=env2)
    assert r.returncode == 0, r.stdout + r.stderr
    assert finished(log, n) == ["s2"]
    assert re.search(r"make: 1 done, 3 up to date", r.stdout), r.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("entry", ["module", "script"])
def test_sigint_in_the_console_exits_130(lab, procs, entry):
    tmp, log, store, env = lab
    path = pt.script(tmp / "chain.py", CHAIN)
    r = pt.run_script(path, "--define-only", cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr
    cmd = [pt.PYTHON, "-m", "nbmake_ext"] if entry == "module" else [pt.NBMAKE]
    code, out, err = _interrupt_at_s2(procs, cmd + ["--store", str(store), "make"], lab)
    assert code == 130, (code, out, err)
    assert "interrupted" in err.lower()
    assert "Traceback" not in err  # a clean message, not a stack dump
    assert "interrupted" in one_summary(out)

    assert finished(log) == ["s0", "s1"]
    assert pt.ls_states(store, cwd=tmp, env=env) == {
        "s0": "done", "s1": "done", "s2": "todo", "s3": "todo"}

    n = len(pt.read_log(log))
    r = pt.console("--store", str(store), "make", cwd=tmp, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert finished(log, n) == ["s2", "s3"]
    assert re.search(r"make: 2 done, 2 up to date", r.stdout), r.stdout


@pytest.mark.timeout(60)
def test_sigint_during_remake_keeps_the_old_result(lab, procs):
    tmp, log, store, env = lab
    path = pt.script(tmp / "chain.py", CHAIN)
    r = pt.run_script(path, cwd=tmp, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    n = len(pt.read_log(log))
    p = procs.start([pt.PYTHON, "-m", "nbmake_ext", "--store", str(store), "remake", "s2"],
                    cwd=tmp, env=dict(env, HANG="1"))
    pt.wait_until(lambda: "s2-start" in [x for x, _ in pt.read_log(log)[n:]],
                  what="s2 starts again", procs=(p,))
    pt.interrupt(p)
    code, out, err = procs.finish(p, timeout=30)
    assert code == 130, (code, out, err)
    assert "interrupted" in one_summary(out, "remake")
    # s2 keeps its earlier result: the remake did not complete, so it is still forced
    # (stale) or back to done -- never todo, never failed.
    states = pt.ls_states(store, cwd=tmp, env=env)
    assert states["s2"] in ("stale", "done"), states
    assert states["s0"] == states["s1"] == states["s3"] == "done"
    if states["s2"] == "stale":
        r = pt.console("--store", str(store), "why", "s2", cwd=tmp, env=env)
        assert "forced by remake" in r.stdout, r.stdout
    r = pt.run_script(path, cwd=tmp, env=env)
    assert r.returncode == 0 and "RESULT 6" in r.stdout, r.stdout + r.stderr


WAITER = '''
from nbmake_ext import Context

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
print("PID", os.getpid())


def slow():
    note("slow-start")
    if os.environ.get("HANG"):
        hold("slow")
    note("slow")
    return 41


def first():
    note("first")
    return 0


def plus(v):
    note("plus")
    return v + 1


x = ctx.comp(slow, job_id="slow")
if sys.argv[1] == "b":
    ctx.comp(first, job_id="first")
    ctx.comp(plus, x, job_id="plus")
try:
    ctx.make()
except KeyboardInterrupt:
    print("KEYBOARDINTERRUPT")
    sys.exit(3)
'''


@pytest.mark.timeout(60)
def test_sigint_while_waiting_for_another_process(lab, procs):
    """B waits for A's run of `slow` and is interrupted: A is unaffected, nothing runs
    twice, and B's dependents of `slow` never ran."""
    tmp, log, store, env = lab
    path = pt.script(tmp / "waiter.py", WAITER)
    a = procs.start([pt.PYTHON, str(path), "a"], cwd=tmp, env=dict(env, HANG="1"))
    pt.wait_until(pt.logged(log, "slow-start"), what="A runs slow", procs=(a,))
    b = procs.start([pt.PYTHON, str(path), "b"], cwd=tmp, env=env)
    # B's own job is finished and recorded: B now only waits for A's `slow`.
    pt.wait_until(lambda: pt.ls_states(store, cwd=tmp, env=env).get("first") == "done",
                  what="B finishes its own job", procs=(b,))
    pt.interrupt(b)
    cb, out_b, err_b = procs.finish(b)
    assert cb == 3 and "KEYBOARDINTERRUPT" in out_b, out_b + err_b
    assert "interrupted" in one_summary(out_b)

    pt.release(log, "slow")
    ca, out_a, err_a = procs.finish(a)
    assert ca == 0, out_a + err_a
    assert sorted(pt.names(log)) == ["first", "slow", "slow-start"]
    states = pt.ls_states(store, cwd=tmp, env=env)
    assert states == {"slow": "done", "first": "done", "plus": "todo"}
    assert pt.integrity(store) == "ok"


DYNAMIC = '''
from nbmake_ext import Context

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])


def child(i):
    note(f"child-{i}-start")
    if i == 1 and os.environ.get("HANG"):
        hold("never")
    note(f"child-{i}")
    return i * 10


def fan(context, n):
    note("fan")
    return [context.comp(child, i, job_id=f"child-{i}") for i in range(n)]


def total(xs):
    note("total")
    return sum(xs)


f = ctx.comp_dynamic(fan, 2, job_id="fan")
t = ctx.comp(total, f, job_id="total")
try:
    ctx.make()
except BaseException as exc:
    print("RAISED", type(exc).__name__)
    raise
print("RESULT", t.result())
'''


@pytest.mark.timeout(60)
def test_sigint_in_a_dynamic_child_keeps_finished_children(lab, procs):
    tmp, log, store, env = lab
    path = pt.script(tmp / "dyn.py", DYNAMIC)
    p = procs.start([pt.PYTHON, str(path)], cwd=tmp, env=dict(env, HANG="1"))
    pt.wait_until(pt.logged(log, "child-1-start"), what="child-1 starts", procs=(p,))
    pt.interrupt(p)
    code, out, err = procs.finish(p)
    assert "RAISED KeyboardInterrupt" in out, out + err
    assert code == -signal.SIGINT
    done_before = set(finished(log))
    assert done_before >= {"fan"} and "child-1" not in done_before

    states = pt.ls_states(store, cwd=tmp, env=env)
    assert states["total"] == "todo"
    assert states["fan"] == "todo"  # its result needs all its children
    assert states.get("child-1", "todo") == "todo"
    if "child-0" in done_before:
        assert states["child-0"] == "done"

    n = len(pt.read_log(log))
    r = pt.run_script(path, cwd=tmp, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RESULT 10" in r.stdout
    again = finished(log, n)
    assert "child-1" in again and "total" in again
    assert ("child-0" in again) != ("child-0" in done_before)  # finished children stay
    assert set(pt.ls_states(store, cwd=tmp, env=env).values()) == {"done"}
