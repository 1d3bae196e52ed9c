"""``%parmake`` in a real kernel: interrupts, the summary, bound outputs, tracebacks, and
engines that never outlive their kernel. Each test starts a kernel of its own.

Jobs prove what ran with lines appended to ``jobs.log`` (``O_APPEND``, one ``write`` per
line, so lines of two engines never mix): ``start NAME PID`` and ``end NAME``. A job that
waits blocks until its file ``go-NAME`` exists, so the test decides when it may end.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest

import nbmake_ext

pytestmark = pytest.mark.timeout(120)

PACKAGE_DIR = os.path.dirname(nbmake_ext.__file__)

SETUP = "%load_ext nbmake_ext\nfrom nbmake_ext import comp, current_context\nimport os, time"

JOBS = """
def log(line):
    fd = os.open('jobs.log', os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + '\\n').encode())
    finally:
        os.close(fd)

def quick(name, *inputs):
    log(f'start {name} {os.getpid()}')
    log(f'end {name}')
    return name

def waits(name, *inputs):
    log(f'start {name} {os.getpid()}')
    deadline = time.monotonic() + 60
    while not os.path.exists(f'go-{name}') and time.monotonic() < deadline:
        time.sleep(0.01)
    log(f'end {name}')
    return name

fa = comp(quick, 'fa', job_id='fa')
fb = comp(quick, 'fb', job_id='fb')
a = comp(waits, 'a', fa, job_id='a')
b = comp(waits, 'b', fb, job_id='b')
c = comp(waits, 'c', a, job_id='c')
final = comp(quick, 'final', [a, b, c], job_id='final')
"""


def log_lines(cwd: Path) -> list[str]:
    path = cwd / "jobs.log"
    return path.read_text().splitlines() if path.exists() else []


def started(cwd: Path) -> dict[str, list[int]]:
    """job name -> pids of the processes that started it, in order."""
    out: dict[str, list[int]] = {}
    for line in log_lines(cwd):
        words = line.split()
        if words[0] == "start":
            out.setdefault(words[1], []).append(int(words[2]))
    return out


def ended(cwd: Path) -> list[str]:
    return [line.split()[1] for line in log_lines(cwd) if line.startswith("end ")]


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def states(k) -> dict[str, str]:
    """``%nbmake ls`` as {job id: state}."""
    rows = {}
    for line in k.ok("%nbmake ls").text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1] in ("todo", "stale", "running", "done", "failed",
                                            "blocked"):
            rows[words[0]] = words[1]
    return rows


def pids_of(k) -> tuple[list[int], int]:
    """The kernel's engine pids and the kernel's own pid."""
    text = k.ok("_p = current_context()._pool\n"
                "print(sorted(_p.pids()) if _p else [], os.getpid())").text
    engines, kernel = re.fullmatch(r"\[([\d, ]*)\] (\d+)\s*", text).groups()
    return [int(p) for p in engines.split(",") if p.strip()], int(kernel)


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_all_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [p for p in pids if alive(p)]
    assert not survivors, f"engines outlived their kernel: {survivors}"


def summary(reply) -> str:
    lines = [line for line in reply.text.splitlines() if re.match(r"parmake: ", line)]
    assert len(lines) == 1, reply
    return lines[0]


class Background:
    """One execute request in a thread, so the test can act while the cell runs."""

    def __init__(self, k, code: str, timeout: float):
        self.reply = None
        self.exc: BaseException | None = None

        def run():
            try:
                self.reply = k.run(code, timeout=timeout)
            except BaseException as exc:  # noqa: BLE001 - re-raised by result()
                self.exc = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the cell did not finish"
        if self.exc is not None:
            raise self.exc
        return self.reply


# -- interrupting a parmake ------------------------------------------------------------------

@pytest.mark.timeout(150)
def test_interrupt_stops_the_engines_jobs_and_keeps_the_engines(fresh_kernel, tmp_path):
    k = fresh_kernel()
    k.ok(SETUP)
    k.ok(JOBS)
    _, kernel_pid = pids_of(k)

    cell = Background(k, "%parmake 2", timeout=90)
    # fa and fb end first (a and b need them); then a and b start, one per engine.
    wait_until(lambda: {"a", "b"} <= set(started(tmp_path)), 60, "a and b to start")
    assert {"fa", "fb"} <= set(ended(tmp_path))
    k.km.interrupt_kernel()
    reply = cell.result(30)

    # The interrupt reaches the user.
    assert reply.status == "error", reply
    assert reply.error["ename"] == "KeyboardInterrupt", reply
    assert "(interrupted)" in summary(reply)

    # The engines' jobs were stopped, not left running: given their go files now, they
    # still never end.
    first = started(tmp_path)
    engine_pids = {first["a"][0], first["b"][0]}
    assert len(engine_pids) == 2 and kernel_pid not in engine_pids
    for name in ("a", "b", "c"):
        (tmp_path / f"go-{name}").touch()
    time.sleep(1.0)
    assert sorted(ended(tmp_path)) == ["fa", "fb"]
    assert "c" not in started(tmp_path)  # waits for a

    # They are back to todo; finished jobs stay done.
    assert states(k) == {"fa": "done", "fb": "done", "a": "todo", "b": "todo", "c": "todo",
                         "final": "todo"}

    # The same engines are alive and serve the next parmake, which completes everything.
    pool_pids, _ = pids_of(k)
    assert set(pool_pids) == engine_pids and all(alive(p) for p in pool_pids)
    again = k.ok("%parmake 2", timeout=60)
    assert summary(again).startswith("parmake: 4 done, 2 up to date"), again
    assert sorted(ended(tmp_path)) == ["a", "b", "c", "fa", "fb", "final"]
    second = started(tmp_path)
    assert second["fa"] == first["fa"] and second["fb"] == first["fb"]  # not run again
    assert len(second["a"]) == len(second["b"]) == 2
    assert {pid for name in ("a", "b", "c", "final") for pid in second[name]} <= engine_pids
    assert pids_of(k)[0] == sorted(engine_pids)
    assert set(states(k).values()) == {"done"}
    assert k.ok("print(final.result())").text.strip() == "final"

    # A clean shutdown (the kernel's atexit closes the context) stops every engine.
    k.kc.stop_channels()
    k.km.shutdown_kernel(now=False)
    assert_all_gone([*engine_pids, kernel_pid])


# -- what a parmake shows -----------------------------------------------------------------------

def test_parmake_shows_the_summary_and_binds_comp_outputs(fresh_kernel, tmp_path):
    k = fresh_kernel()
    k.ok(SETUP)
    k.ok("%%comp\nbase = sum(range(10))\nlabel = 'pid-' + str(__import__('os').getpid())")
    k.ok("%%comp\ndoubled = base * 2")
    assert k.ok("print(type(doubled).__name__)").text.strip() == "Promise"

    reply = k.ok("%parmake 2")
    assert summary(reply).startswith("parmake: 2 done, 0 up to date"), reply
    # Bound to values when the magic ends, as after %make; the cell ran on an engine.
    engines, kernel_pid = pids_of(k)
    text = k.ok("print(type(doubled).__name__, doubled, base, label)").text.split()
    assert text[:3] == ["int", "90", "45"]
    engine_pid = int(text[3].removeprefix("pid-"))
    assert engine_pid in engines and engine_pid != kernel_pid

    assert summary(k.ok("%parmake 2")).startswith("parmake: 0 done, 2 up to date")
    k.ok("%%comp\ndoubled = base * 3")
    assert k.ok("%parmake n=2\ndoubled").value == "135"

    # Killed without a word (shutdown now=True): the engines follow their kernel.
    k.close()
    assert_all_gone([*engines, kernel_pid])


FAILING = ("def ratio(a, b):\n    q = a / b\n    return q\n\n"
           "def add(a, b):\n    return a + b\n\n"
           "q = comp(ratio, 1, 0, job_id='q')\nafter = comp(add, q, 1, job_id='after')\n"
           "ok = comp(add, 1, 2, job_id='ok')")


def test_a_failing_job_on_an_engine_renders_its_own_traceback(fresh_kernel, tmp_path):
    k = fresh_kernel()
    k.ok(SETUP)
    k.ok(FAILING)
    k.ok("%%comp boom\nzero = 0\nw = 1 / zero")
    reply = k.fails("%parmake 2")
    assert summary(reply).startswith("parmake: 1 done, 2 failed, 1 blocked"), reply
    err = reply.error
    assert err["ename"] == "JobsFailed"
    assert re.fullmatch(r"2 failed: (q, boom|boom, q); 1 blocked: after", err["evalue"])
    tb = err["traceback"]
    assert "--- q: ZeroDivisionError: division by zero" in tb
    assert re.search(r'File "[^"]+", line 2, in ratio\n', tb)            # the function's frame
    assert 'File "<%%comp boom>", line 2, in <module>\n    w = 1 / zero' in tb  # the cell's
    assert PACKAGE_DIR not in tb and "nbmake_ext" not in tb.replace("nbmake_ext.", "")
    assert "ZeroDivisionError" in k.ok("%nbmake details q").text
    engines, kernel_pid = pids_of(k)
    assert len(engines) == 2 and kernel_pid not in engines
    k.close()
    assert_all_gone([*engines, kernel_pid])


def test_a_notebook_functions_traceback_from_an_engine_shows_its_source_line(fresh_kernel):
    k = fresh_kernel()
    k.ok(SETUP)
    k.ok(FAILING)
    tb = k.fails("%parmake 2 q").error["traceback"]
    assert ", in ratio\n    q = a / b" in tb   # as %make shows it


def test_a_traceback_from_an_engine_shows_the_lines_of_callees_in_other_cells(fresh_kernel):
    k = fresh_kernel()
    k.ok(SETUP)
    k.ok("def inner(x):\n    return x['missing']")
    k.ok("def outer(x):\n    y = inner(x)\n    return y\n\nj = comp(outer, {}, job_id='j')")
    tb = k.fails("%parmake 2 j").error["traceback"]
    assert ", in outer\n    y = inner(x)" in tb
    assert ", in inner\n    return x['missing']" in tb


def test_a_child_a_dynamic_job_defines_on_an_engine_shows_its_source_lines(fresh_kernel):
    """The child's function reaches the engine that runs it through the engine that ran its
    parent; the lines of its cell travel along."""
    k = fresh_kernel()
    k.ok(SETUP + "\nfrom nbmake_ext import comp_dynamic")
    k.ok("def fragile(x):\n    y = x['missing']\n    return y")
    k.ok("def spawn(ctx):\n    time.sleep(0.5)  # the other engine is idle when the child comes\n"
         "    return ctx.comp(fragile, {}, job_id='kid')\n\ntop = comp_dynamic(spawn, job_id='top')")
    assert "child kid failed" in k.fails("%parmake 2 top").error["traceback"]
    details = k.ok("%nbmake details kid").text
    assert "KeyError" in details and ", in fragile\n    y = x['missing']" in details
