"""Bugs the make fuzz test (tests/test_fuzz_make.py) found, each as a minimal scenario.

Each test states the correct behaviour. While a bug is open its test is marked
xfail(strict=True, reason="BUG: ..."); when a fix lands, strict xfail turns the pass into a
failure: remove the marker then, and drop the bug's entry from KNOWN_BUGS in
test_fuzz_make.py so that the fuzz machine goes down that path again. The section titles are
the names the bugs had there.
"""

from __future__ import annotations

import hashlib
import itertools
import linecache
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbmake_ext import Context, JobsFailed, NotDone
from nbmake_ext.fingerprint import set_tracked_root

import logcheck

_serial = itertools.count()


class Notebook:
    """Cells run like ipykernel runs them (a ``__main__`` namespace, source in linecache),
    and one Context on a store under ``tmp_path``."""

    def __init__(self, tmp_path: Path):
        root = tmp_path / "project"
        root.mkdir()
        set_tracked_root(root)
        self.store = tmp_path / "store"
        self.ns: dict = {"__name__": "__main__"}
        self.files: list[str] = []
        self.ctx = self.open()

    def open(self) -> Context:
        ctx = Context(self.store, durable=False)
        ctx.store.inline_max = 0  # every result a file, for the scenarios that damage them
        ctx.validate = True
        ctx.report = lambda line: None
        self.ns.update(comp=ctx.comp, comp_dynamic=ctx.comp_dynamic)
        return ctx

    def cell(self, src: str) -> None:
        src = textwrap.dedent(src)
        filename = f"/tmp/ipykernel_regress_{os.getpid()}/{next(_serial)}.py"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        self.files.append(filename)
        exec(compile(src, filename, "exec"), self.ns)

    def result_file(self, job_id: str) -> Path:
        self.ctx.store.flush()  # (the last make's writes land: its result files exist)
        prefix = hashlib.blake2b(job_id.encode(), digest_size=10).hexdigest() + "-"
        (found,) = [p for p in (self.store / "results").iterdir() if p.name.startswith(prefix)]
        return found

    def corrupt_keeping_stamp(self, job_id: str) -> None:
        """Flip a byte, keep size and mtime: only the checksum can tell."""
        path = self.result_file(job_id)
        st = path.stat()
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x5A
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    def close(self) -> None:
        self.ctx.close()
        for f in self.files:
            linecache.cache.pop(f, None)
        set_tracked_root(None)


@pytest.fixture
def nb(tmp_path):
    notebook = Notebook(tmp_path)
    yield notebook
    notebook.close()


# --- "helper-no-reregister" -------------------------------------------------------------------


def test_helper_edit_then_remake_then_undo_serves_a_stale_result(nb):
    nb.cell("def helper(x):\n    return x + 1\n")
    nb.cell("def f(x):\n    return helper(x) * 2\n")
    nb.cell("comp(f, 1, job_id='F')")
    nb.ctx.make()
    assert nb.ctx.result_of("F") == 4
    nb.cell("def helper(x):\n    return x + 5\n")   # edit the helper, run its cell
    nb.ctx.remake("F")                              # runs with the new helper: 12
    nb.cell("def helper(x):\n    return x + 1\n")   # undo the edit
    nb.cell("comp(f, 1, job_id='F')")               # and re-run everything
    nb.ctx.make()
    assert nb.ctx.result_of("F") == nb.ns["f"](1) == 4  # served: 12


def test_helper_edit_makes_the_caller_stale_without_rerunning_comp(nb):
    nb.cell("def helper(x):\n    return x + 1\n")
    nb.cell("def f(x):\n    return helper(x) * 2\n")
    nb.cell("comp(f, 1, job_id='F')")
    nb.ctx.make()
    nb.cell("def helper(x):\n    return x + 5\n")
    assert nb.ctx.state_of("F") == "stale"          # SPEC 3: edit a helper, callers go stale
    assert nb.ctx.why("F") == ["code of helper changed"]


# --- "dynamic-incomplete" ---------------------------------------------------------------------

DYNAMIC = """
def parent(ctx, x):
    return [ctx.comp(g, x, i, job_id=f"c{i}") for i in range(3)]
"""


def test_undoing_a_broken_child_edit_makes_again(nb):
    nb.cell("def g(x, i):\n    return x + i\n")
    nb.cell(DYNAMIC)
    nb.cell("comp_dynamic(parent, 1, job_id='P')")
    nb.ctx.make()
    nb.cell("def g(x, i):\n    if i == 1:\n        raise ValueError('oops')\n    return x + 100 * i\n")
    nb.cell("comp_dynamic(parent, 1, job_id='P')")
    with pytest.raises(JobsFailed):
        nb.ctx.make()
    nb.cell("def g(x, i):\n    return x + i\n")   # undo: the notebook is what it was
    nb.cell("comp_dynamic(parent, 1, job_id='P')")
    nb.ctx.make()                                  # raises JobsFailed: c1 keeps the broken g
    assert [nb.ctx.result_of(f"c{i}") for i in range(3)] == [1, 2, 3]


def test_undoing_an_edit_after_an_interrupt_in_a_child(nb):
    nb.cell("""
        STOP = []
        def g(x, i):
            if STOP and i == STOP[0]:
                raise KeyboardInterrupt
            return x + i
    """)
    nb.cell(DYNAMIC)
    nb.cell("comp_dynamic(parent, 1, job_id='P')")
    nb.ctx.make()
    nb.cell("""
        def g(x, i):
            if STOP and i == STOP[0]:
                raise KeyboardInterrupt
            return x + 100 * i
    """)
    nb.cell("comp_dynamic(parent, 1, job_id='P')")
    nb.ns["STOP"].append(2)                        # Ctrl-C while child c2 runs
    with pytest.raises(KeyboardInterrupt):
        nb.ctx.make()
    nb.ns["STOP"].clear()
    nb.cell("""
        def g(x, i):
            if STOP and i == STOP[0]:
                raise KeyboardInterrupt
            return x + i
    """)
    nb.cell("comp_dynamic(parent, 1, job_id='P')")
    nb.ctx.make()
    assert nb.ctx.result_of("P") == [1, 2, 3]
    assert [nb.ctx.result_of(f"c{i}") for i in range(3)] == [1, 2, 3]  # c1 is 101


# --- "reasons-child-failed" -------------------------------------------------------------------


def test_dynamic_job_failed_by_a_child_keeps_its_reasons(nb):
    nb.cell("def g(x, i):\n    if i == 1:\n        raise ValueError('oops')\n    return x\n")
    nb.cell(DYNAMIC)
    nb.cell("comp_dynamic(parent, 1, job_id='P')")
    with pytest.raises(JobsFailed):
        nb.ctx.make()
    d = nb.ctx.details("P")
    assert d.state == "failed"
    assert d.reasons_last_run == ["never ran"]     # it ran: why it ran is kept
    assert d.started is not None and d.duration is not None


# --- "corrupt-child" --------------------------------------------------------------------------


def test_corrupt_child_result_is_remade(nb):
    nb.cell("def g(x):\n    return x + 1\n")
    nb.cell("def parent(ctx, x):\n    return [ctx.comp(g, x, job_id='c0')]\n")
    nb.cell("comp_dynamic(parent, 1, job_id='P')")
    nb.ctx.make()
    nb.corrupt_keeping_stamp("c0")
    with logcheck.library_warnings() as caught:
        nb.ctx.remake("P")                 # JobsFailed: "the result of its child c0 is unavailable"
        nb.ctx.make()                      # and again at every later make
    assert nb.ctx.result_of("P") == [2]
    assert any("c0" in m for m in logcheck.messages(caught))  # SPEC 9: with a warning


# --- "corrupt-remade" -------------------------------------------------------------------------

_CORRUPT_DEPENDENCY = """
import hashlib, logging, os, sys, tempfile, linecache
from pathlib import Path
from nbmake_ext import Context
from nbmake_ext.fingerprint import set_tracked_root
set_tracked_root(tempfile.mkdtemp())
ns = {"__name__": "__main__"}
def cell(src, n=[0]):
    n[0] += 1
    fn = f"/tmp/ipykernel_regress_sub/{n[0]}.py"
    linecache.cache[fn] = (len(src), None, src.splitlines(True), fn)
    exec(compile(src, fn, "exec"), ns)
logging.disable(logging.WARNING)  # the corrupt result is found, and said so
bad = []
for attempt in range(10):
    store = Path(tempfile.mkdtemp()) / "store"
    ctx = Context(store, durable=False)
    ctx.store.inline_max = 0
    ctx.report = lambda line: None
    ns.update(comp=ctx.comp)
    cell("def f(x):\\n    return x * 2\\n")
    cell("def h(a):\\n    return a + 1\\n")
    cell("comp(h, comp(f, 1, job_id='F'), job_id='H')")
    ctx.make()
    ctx.store.flush()  # (the make's last writes land: its result files exist)
    prefix = hashlib.blake2b(b"F", digest_size=10).hexdigest()
    (path,) = (store / "results").glob(prefix + "-*")
    st = path.stat()
    data = bytearray(path.read_bytes()); data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))   # only the checksum can tell
    cell("def h(a):\\n    return a + 2\\n")                 # H must run and reads F
    cell("comp(h, comp(f, 1, job_id='F'), job_id='H')")
    try:
        ctx.make()
    except Exception as exc:
        bad.append(f"make raised {exc!r}")
        continue
    if ctx.state_of("F") != "done":
        bad.append(f"F is {ctx.state_of('F')} right after it was remade")
    ctx.close()
print(bad)
sys.exit(1 if bad else 0)
"""


def test_corrupt_dependency_is_remade_once_and_kept():
    # Race-dependent, so ten attempts in a fresh process; each must end with F done.
    proc = subprocess.run([sys.executable, "-c", _CORRUPT_DEPENDENCY], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


# --- "double-complete" ------------------------------------------------------------------------


def test_rerun_child_with_an_up_to_date_sibling_that_depends_on_it(nb):
    nb.cell("def g(x, prev):\n    return x + prev\n")
    parent = """
        def parent(ctx, x):
            {}
            c0 = ctx.comp(g, x, 0, job_id='c0')
            c1 = ctx.comp(g, x, c0, job_id='c1')   # depends on its sibling
            return [c0, c1]
    """
    nb.cell(parent.format("pass"))
    nb.cell("comp_dynamic(parent, 1, job_id='P')")
    nb.ctx.make()
    nb.cell(parent.format("_unused = 1"))           # P runs again (its code changed) ...
    nb.cell("comp_dynamic(parent, 1, job_id='P')")
    nb.ctx.remake("c0")                              # ... and c0 too, to the same result
    assert nb.ctx.result_of("P") == [1, 2]


# --- "why-swapped-dependency" ----------------------------------------------------------------


def test_why_names_a_dependency_swapped_for_another(nb):
    nb.cell("def a():\n    return 1\n")
    nb.cell("def b():\n    return 2\n")
    nb.cell("def f(x):\n    return x\n")
    nb.cell("A = comp(a, job_id='A'); B = comp(b, job_id='B'); comp(f, A, job_id='F')")
    nb.ctx.make()
    nb.cell("comp(f, B, job_id='F')")
    why = nb.ctx.why("F")
    assert "new dependency B" in why
    assert "no longer depends on A" in why


# --- "state-of-no-refresh" ------------------------------------------------------------


def test_promise_after_a_helper_edit_is_stale_at_once(nb):
    nb.cell("def helper(x):\n    return x + 1\n")
    nb.cell("def f(x):\n    return helper(x) * 2\n")
    nb.cell("F = comp(f, 1, job_id='F')")
    nb.ctx.make()
    assert nb.ns["F"].result() == 4
    nb.cell("def helper(x):\n    return x + 5\n")   # edit the helper, run its cell
    assert nb.ns["F"].state == "stale"                 # `ls` says stale; state_of says done
    with pytest.raises(NotDone):
        nb.ns["F"].result()                            # serves 4; f(1) is now 12


# --- "lost-result-queued-dependents" --------------------------------------------------


def test_two_dependents_of_a_corrupt_result(nb):
    nb.cell("def f(x):\n    return x * 2\n")
    nb.cell("def h(a, k):\n    return a + k\n")
    jobs = "F = comp(f, 1, job_id='F'); comp(h, F, 1, job_id='H1'); comp(h, F, 2, job_id='H2')"
    nb.cell(jobs)
    nb.ctx.make()
    nb.corrupt_keeping_stamp("F")
    nb.cell("def h(a, k):\n    return a + k + 100\n")   # both dependents must run, and read F
    nb.cell(jobs)
    with logcheck.library_warnings() as caught:
        nb.ctx.make()                                        # AssertionError: H2 is queued ...
    assert [nb.ctx.result_of(j) for j in ("F", "H1", "H2")] == [2, 103, 104]
    assert len(caught) == 1, logcheck.messages(caught)  # F was lost once


# --- "interrupt-leaks-claim" -----------------------------------------------------------


def test_interrupt_while_a_corrupt_dependency_is_remade(nb):
    nb.cell("STOP = []\ndef f(x):\n    if STOP:\n        raise KeyboardInterrupt\n    return x * 2\n")
    nb.cell("def h(a):\n    return a + 1\n")
    jobs = "comp(h, comp(f, 1, job_id='F'), job_id='H')"
    nb.cell(jobs)
    nb.ctx.make()
    nb.corrupt_keeping_stamp("F")
    nb.cell("def h(a):\n    return a + 2\n")
    nb.cell(jobs)
    nb.ns["STOP"].append(1)                       # Ctrl-C while F is remade for H
    with logcheck.library_warnings():
        with pytest.raises(KeyboardInterrupt):
            nb.ctx.make()
        states = {r.job_id: r.state for r in nb.ctx.ls()}
    assert states == {"F": "todo", "H": "stale"}  # H: "running", for as long as the kernel lives


# --- "stale-stored-child" (open) -------------------------------------------------------------


def test_child_after_a_restart_runs_with_the_notebook_as_it_is(tmp_path):
    nb = Notebook(tmp_path)

    def kernel():
        nb.cell("C = 1\n")
        nb.cell("def g(v):\n    return v * 10 + C\n")
        nb.cell("def parent(ctx, x):\n    return [ctx.comp(g, x, job_id='c0')]\n")
        nb.cell("comp_dynamic(parent, 1, job_id='P')")

    try:
        kernel()
        nb.ctx.make()
        nb.cell("C = 0\n")
        nb.ctx.ls()                    # any command takes fingerprints (and pickles g, C = 0)
        nb.cell("C = 1\n")             # the edit is undone, then the kernel restarts
        nb.ctx.close()
        nb.ns = {"__name__": "__main__"}
        nb.ctx = nb.open()
        kernel()
        nb.ctx.make()                  # c0 runs, with C = 0
        assert nb.ctx.result_of("P") == [11]
        assert nb.ctx.result_of("c0") == nb.ns["g"](1) == 11   # served: 10
    finally:
        nb.close()


# --- "lost-result-waiting-dependents" (open) -------------------------------------------------


def test_waiting_dependent_of_a_corrupt_result(nb):
    nb.cell("def f(x):\n    return x * 2\n")
    nb.cell("def a(v):\n    return v + 1\n")
    nb.cell("def h(v, w):\n    return v + w\n")
    jobs = "F = comp(f, 1, job_id='F'); comp(a, F, job_id='A'); G = comp(f, 5, job_id='G');" \
           "comp(h, F, G, job_id='H')"
    nb.cell(jobs)
    nb.ctx.make()
    nb.corrupt_keeping_stamp("F")
    nb.result_file("G").unlink()              # G runs again, so H waits for G ...
    nb.cell("def a(v):\n    return v + 2\n")  # ... while A runs and finds F unreadable
    nb.cell(jobs)
    with logcheck.library_warnings():
        nb.ctx.make()                          # AssertionError: H is queued but dependency F ...
    assert [nb.ctx.result_of(j) for j in ("A", "G", "H")] == [4, 10, 12]


def test_a_child_that_ran_with_newer_globals_is_up_to_date_after_a_restart(tmp_path):
    # The parent finds g through globals(), so its own fingerprint does not cover g: only
    # the child sees the edit of C, runs again, and its new definition must be what the
    # store gives back after a restart.
    nb = Notebook(tmp_path)
    log = tmp_path / "ran.log"

    def kernel(c):
        nb.cell(f"C = {c}\n")
        nb.cell(f"def g(v):\n    open({str(log)!r}, 'a').write('c0 ')\n    return v * 10 + C\n")
        nb.cell("def parent(ctx, x):\n    return [ctx.comp(globals()['g'], x, job_id='c0')]\n")
        nb.cell("comp_dynamic(parent, 1, job_id='P')")

    try:
        kernel(1)
        nb.ctx.make()
        nb.cell("C = 2\n")
        nb.ctx.make()
        assert nb.ctx.result_of("c0") == 12
        assert log.read_text() == "c0 c0 "  # the child ran again, not its parent
        nb.ctx.close()
        nb.ns = {"__name__": "__main__"}
        nb.ctx = nb.open()
        kernel(2)
        nb.ctx.make()
        assert log.read_text() == "c0 c0 "
        assert nb.ctx.result_of("c0") == nb.ns["g"](1) == 12
    finally:
        nb.close()


# --- "lost-result-of-a-lost-input" ------------------------------------------------------------


@pytest.mark.parametrize("first", ["D", "C"])
def test_a_lost_result_whose_own_input_is_lost_waits_for_it(nb, first):
    nb.cell("""
        def a(x):
            return x + 1
        def b(x):
            return x * 2
        def c(x):
            return x + 3
        def d(x):
            return x - 1
    """)
    order = ["comp(d, A, job_id='D')", "comp(c, B, job_id='C')"]
    nb.cell("\n".join(["A = comp(a, 1, job_id='A')", "B = comp(b, A, job_id='B')",
                       *(order if first == "D" else order[::-1])]))
    nb.ctx.make()
    nb.corrupt_keeping_stamp("B")        # found only when C reads it
    nb.corrupt_keeping_stamp("A")        # found only when D (or the new B) reads it
    for job in ("C", "D"):               # found by the make: C and D run again
        path = nb.result_file(job)
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with logcheck.library_warnings():
        nb.ctx.make()
    assert [nb.ctx.result_of(j) for j in "ABCD"] == [2, 4, 7, 1]


# --- "corrupt-dynamic-interrupted" (a gap of the model: the product was right) ---------------


def test_interrupt_while_the_corrupt_child_of_a_corrupt_dynamic_job_is_remade(nb):
    """A dynamic job's result is whole only once its children's results are read: found
    corrupt with its child's, it runs again, finds the child's corrupt too, and is interrupted
    while the child runs again. Neither finished, and their old results are known to be
    unreadable: both are `todo` (not `done`), and the next make completes them."""
    nb.cell("STOP = []\ndef g(x):\n    if STOP:\n        raise KeyboardInterrupt\n    return x + 1\n")
    nb.cell("def parent(ctx, x):\n    return [ctx.comp(g, x, job_id='c0')]\n")
    nb.cell("def use(p):\n    return p[0] * 10\n")
    nb.cell("P = comp_dynamic(parent, 1, job_id='P')\ncomp(use, P, job_id='U')")
    nb.ctx.make()
    nb.corrupt_keeping_stamp("P")        # found when U is remade and reads it
    nb.corrupt_keeping_stamp("c0")       # found when the new P completes and reads it
    nb.ns["STOP"].append(1)              # Ctrl-C as c0 runs again
    with logcheck.library_warnings():
        with pytest.raises(KeyboardInterrupt):
            nb.ctx.remake("U")
        states = {r.job_id: r.state for r in nb.ctx.ls()}
        assert states == {"P": "todo", "c0": "todo", "U": "stale"}
        nb.ns["STOP"].clear()
        nb.ctx.make()
    assert [nb.ctx.result_of(j) for j in ("c0", "P", "U")] == [2, [2], 20]
