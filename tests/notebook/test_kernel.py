"""What a notebook user does, in one real kernel shared by the module.

Every test has its own working directory and store (fixture ``nb``). What ran is proven by
side effects: jobs append a line to ``runs.log`` in the test's directory. Sections follow
the items of the notebook issue; restarts (4) are in test_restart.py, the demo and the
command line (8) in test_notebooks.py.
"""

from __future__ import annotations

import os
import re

import pytest

import nbmake_ext

pytestmark = pytest.mark.timeout(120)

PACKAGE_DIR = os.path.dirname(nbmake_ext.__file__)

HELPERS = """
def logged(name):
    with open('runs.log', 'a') as fh:
        fh.write(name + '\\n')

def double(x):
    logged(f'double-{x}')
    return 2 * x

def add(a, b):
    logged(f'add-{a}-{b}')
    return a + b

def ratio(a, b):
    logged(f'ratio-{a}-{b}')
    q = a / b
    return q
"""


def runs(nb) -> list[str]:
    path = nb.cwd / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


def summary(reply) -> str:
    lines = [line for line in reply.text.splitlines() if re.match(r"(make|remake): ", line)]
    assert len(lines) == 1, reply
    return lines[0]


# -- 1. the extension ----------------------------------------------------------------------

def test_kernel_runs_this_checkout(nb):
    reply = nb.ok("import sys, nbmake_ext\nprint(sys.executable)\nprint(nbmake_ext.__file__)")
    executable, module = reply.text.split()
    assert os.path.samefile(executable, os.sys.executable)
    assert os.path.dirname(module) == PACKAGE_DIR


def test_one_context_per_kernel_and_comp_bound_to_it(nb):
    nb.ok(HELPERS)
    reply = nb.ok("ctx = current_context()\np = comp(double, 1)\n"
                  "print(p._context is ctx, ctx.store.path)\n"
                  "%load_ext nbmake_ext\nprint(current_context() is ctx)")
    lines = reply.text.splitlines()
    assert lines[0] == f"True {nb.cwd / '.nbmake'}" and lines[-1] == "True"  # loaded once
    assert "double-" in nb.ok("%nbmake ls").text


def test_comp_before_load_ext_uses_the_kernels_context(fresh_kernel, tmp_path):
    k = fresh_kernel()
    k.ok("from nbmake_ext import comp, current_context\nearly = comp(abs, -3, job_id='early')")
    k.ok("%load_ext nbmake_ext")
    reply = k.ok("print(early._context is current_context())\n%make early\nprint(early.result())")
    assert reply.text.splitlines()[-1] == "3" and "True" in reply.text
    assert (tmp_path / ".nbmake").stat().st_mode & 0o777 == 0o700


def test_unload_removes_magics_and_reload_finds_the_store(nb):
    nb.ok("p = comp(abs, -5, job_id='five')\n%make")
    nb.ok("old = current_context()\n%unload_ext nbmake_ext")
    assert "not found" in nb.fails("%make").text
    assert "not found" in nb.fails("%%comp\ny = 1").text
    assert "five" not in nb.complete("%nbmake ls fi")[0]
    nb.ok("%load_ext nbmake_ext")
    reply = nb.ok("print(current_context() is not old, old._closed)\n%nbmake store .nbmake\n"
                  "%nbmake ls five")
    assert reply.text.startswith("True True") and "five" in reply.text and "done" in reply.text
    nb.ok("%reload_ext nbmake_ext")
    assert nb.complete("%nbmake ls fi") == (["five"], "fi")


# -- 2. commands ---------------------------------------------------------------------------

def test_every_command_through_nbmake(nb):
    nb.ok(HELPERS + "a = comp(double, 1, job_id='a')\nb = comp(add, a, 10, job_id='b')")
    assert summary(nb.ok("%nbmake make")).startswith("make: 2 done, 0 up to date")
    assert runs(nb) == ["double-1", "add-2-10"]

    ls = nb.ok("%nbmake ls").text
    assert re.search(r"^a +done +double", ls, re.M) and re.search(r"^b +done +add", ls, re.M)
    details = nb.ok("%nbmake details b").text
    assert "depends on a" in details and "why        up to date" in details
    assert "b is up to date" in nb.ok("%nbmake why b").text
    assert "2 jobs: 2 done" in nb.ok("%nbmake stats").text

    assert summary(nb.ok("%nbmake remake a")).startswith("remake: 1 done, 1 up to date")
    assert runs(nb)[2:] == ["double-1"]  # equal result: b did not run again
    assert "cleaned 1 job" in nb.ok("%nbmake clean a").text
    assert "never ran" in nb.ok("%nbmake why a").text
    assert summary(nb.ok("%nbmake make b")).startswith("make: 1 done, 1 up to date")
    assert f"store: {nb.cwd / '.nbmake'}" in nb.ok("%nbmake store").text
    assert "%nbmake details JOB" in nb.ok("%nbmake").text


def test_make_remake_clean_are_magics_of_their_own(nb):
    nb.ok(HELPERS + "xs = [comp(double, i, job_id=f'd{i}') for i in range(3)]\n"
          "total = comp(sum, xs, job_id='total')")
    assert summary(nb.ok("%make 'd*'")).startswith("make: 3 done")
    assert summary(nb.ok("%make")).startswith("make: 1 done, 3 up to date")
    assert summary(nb.ok("%remake d1")).startswith("remake: 1 done, 3 up to date")
    assert "cleaned 2 jobs" in nb.ok("%clean d0 d2").text
    assert summary(nb.ok("%make todo")).startswith("make: 2 done")
    assert sorted(runs(nb)) == ["double-0", "double-0", "double-1", "double-1", "double-2",
                                "double-2"]


def test_help_shows_usage_and_example(nb):
    page = nb.ok("%make?").payload[0]["data"]["text/plain"]
    assert "%make [--echo] [targets ...]" in page and "%make report" in page
    page = nb.ok("%nbmake?").payload[0]["data"]["text/plain"]
    assert "%nbmake why JOB" in page and "%nbmake ls failed" in page


def test_tab_completes_job_ids(nb):
    nb.ok("for i in range(3): comp(abs, i, job_id=f'abs-{i}')\n"
          "comp(abs, 5, job_id='cell-model+score')")
    assert nb.complete("%make ab") == (["abs-0", "abs-1", "abs-2"], "ab")
    assert nb.complete("%remake abs-0 abs-1 cell") == (["cell-model+score"], "cell")
    assert nb.complete("%nbmake why cell-model+s") == (["cell-model+score"], "cell-model+s")
    assert nb.complete("%clean ")[0] == ["abs-0", "abs-1", "abs-2", "cell-model+score"]
    assert nb.complete("%nbmake de") == (["debug", "details"], "de")
    assert "abs-1" in nb.complete("%nbmake stats ")[0]  # stats takes targets too
    assert "abs-1" not in nb.complete("%nbmake store ")[0]


def test_misuse_is_reported_short(nb):
    for code, message in [("%make nothing-like-this", "UnknownTarget: no job matches"),
                          ("%nbmake why nope", "UnknownTarget: no job 'nope'"),
                          ("%nbmake frob", "UsageError: unknown nbmake command 'frob'"),
                          ("%remake", "the following arguments are required: targets")]:
        reply = nb.fails(code)
        shown = (reply.error or {}).get("traceback", "") + reply.text
        assert message in shown, reply
        assert PACKAGE_DIR not in shown


def listed(reply) -> set[str]:
    """The job ids of an ``ls`` table."""
    rows = reply.text.splitlines()[2:]
    return {r.split()[0] for r in rows if r.strip() and not re.match(r"\d+ jobs:", r)}


def test_two_notebooks_on_one_store_keep_to_their_own_jobs(fresh_kernel, tmp_path):
    """No targets means this kernel's jobs and what they need; `all` means every job."""
    setup = "%load_ext nbmake_ext\nfrom nbmake_ext import comp, comp_dynamic, Promise\n" + HELPERS
    a, b = fresh_kernel(), fresh_kernel()
    a.ok(setup + "ok = comp(double, 1, job_id='a-ok')\nbad = comp(ratio, 1, 0, job_id='a-bad')\n"
         "shared = comp(add, 2, 3, job_id='shared')")
    b.ok(setup + "def parts(context, n):\n    return [context.comp(double, 10 + i, "
         "job_id=f'part-{i}') for i in range(n)]\n"
         "b1 = comp(double, 5, job_id='b1')\nb2 = comp(add, b1, Promise('shared'), job_id='b2')\n"
         "fan = comp_dynamic(parts, 2, job_id='fan')")
    mine = {"b1", "b2", "shared", "fan", "part-0", "part-1"}  # with what they need
    reply = b.ok("%make")
    assert summary(reply).startswith("make: 6 done, 0 up to date")
    assert "job board (make, running): 4 jobs: 4 todo" in reply.text  # not a-ok, a-bad
    ran = sorted(runs(b))
    assert ran == ["add-10-5", "add-2-3", "double-10", "double-11", "double-5"]
    assert listed(b.ok("%nbmake ls")) == mine
    assert "6 jobs: 6 done" in b.ok("%nbmake stats").text
    assert "job board: 6 jobs: 6 done" in b.ok("%nbmake show").text
    assert "cleaned 4 jobs" in b.ok("%clean").text  # b1 b2 shared fan (with its parts)
    reply = b.ok("%parmake 2")
    assert re.search(r"^parmake: 6 done, 0 up to date", reply.text, re.M), reply
    assert listed(a.ok("%nbmake ls")) == {"a-ok", "a-bad", "shared"}
    assert listed(a.ok("%nbmake ls all")) == mine | {"a-ok", "a-bad"}
    # A kernel that registered nothing sees the whole store.
    c = fresh_kernel()
    c.ok("%load_ext nbmake_ext")
    assert listed(c.ok("%nbmake ls")) == mine | {"a-ok", "a-bad"}
    assert "8 jobs: 2 todo, 6 done" in c.ok("%nbmake stats").text
    # `all` is every job of the store, in any kernel: a-bad fails now.
    reply = b.fails("%make all")
    assert "ZeroDivisionError" in reply.error["traceback"] and "a-bad" in reply.error["evalue"]
    assert "8 jobs: 7 done, 1 failed" in b.ok("%nbmake stats all").text
    assert "6 jobs: 6 done" in b.ok("%nbmake stats").text
    assert summary(b.ok("%make")).startswith("make: 0 done, 6 up to date")
    assert "a-bad" in listed(b.ok("%nbmake ls failed"))  # targets choose from the store
    # A's own make meets its own failure.
    reply = a.fails("%make")
    assert "a-bad" in reply.error["evalue"]


def test_a_state_word_no_job_is_in_selects_nothing(nb):
    nb.ok(HELPERS + "a = comp(double, 1, job_id='a')\n%make")
    assert "no jobs" in nb.ok("%nbmake ls failed blocked").text
    assert summary(nb.ok("%make failed")).startswith("make: 0 done, 0 up to date")
    assert "cleaned 0 jobs" in nb.ok("%clean blocked").text
    assert "job board: 0 jobs" in nb.ok("%nbmake show failed").text
    assert runs(nb) == ["double-1"]
    error = nb.fails("%nbmake ls failed 'b*'").error  # a glob that matches nothing
    assert error["ename"] == "UnknownTarget" and "'b*'" in error["evalue"]


@pytest.mark.parametrize("line, bad", [("%parmake n=-3", "'-3'"), ("%parmake 0", "'0'"),
                                       ("%nbmake parmake 1.5 a", "'1.5'")])
def test_parmake_n_that_is_not_a_whole_number_from_1_is_a_usage_error(nb, line, bad):
    nb.ok(HELPERS + "a = comp(double, 1, job_id='a')")
    reply = nb.fails(line)
    shown = reply.text  # IPython prints a UsageError short, on stderr
    assert "UsageError: parmake: the number of engines must be a whole number >= 1" in shown
    assert f"not {bad}" in shown, shown
    assert not [m for m in reply.msgs if m["msg_type"] == "display_data"]  # no board
    assert runs(nb) == [] and "todo" in nb.ok("%nbmake ls a").text


# -- 3. %%comp cells -----------------------------------------------------------------------

def test_comp_cells_outputs_inputs_and_ids(nb):
    nb.ok(HELPERS + "k = 3\nbase = comp(double, 5, job_id='base')")
    nb.ok("%%comp\nlogged('first')\nscaled = [v * k for v in range(4)]\nbiggest = max(scaled)")
    # `scaled`, `biggest`: outputs of another cell; `base`: a Promise; `k`: captured;
    # `len`: a builtin; `v`, `w` are bound by the cell itself.
    nb.ok("%%comp\nlogged('second')\nw = 1\nshare = biggest / len(scaled) + base + k * w")
    nb.ok("%%comp\nprint('a cell that binds nothing')")
    ls = nb.ok("%nbmake ls").text
    ids = re.findall(r"^(\S+) +todo", ls, re.M)
    assert ids[:3] == ["base", "cell-scaled+biggest", "cell-w+share"]
    assert re.fullmatch(r"cell-[0-9a-f]{8}", ids[3])
    details = nb.ok("%nbmake details cell-w+share").text
    assert "depends on cell-scaled+biggest, base" in details
    inputs = nb.ok("sorted(current_context().graph.specs['cell-w+share'].kwargs)").value
    assert inputs == "['base', 'biggest', 'k', 'logged', 'scaled']"  # not `len`, `w`

    before = nb.ok("print(type(scaled).__name__, repr(share))").text
    assert before.strip() == "Promise <Promise cell-w+share.share: todo>"
    nb.ok("%make")
    assert nb.ok("print(scaled, biggest, share)").text.strip() == "[0, 3, 6, 9] 9 15.25"
    assert sorted(runs(nb)) == ["double-5", "first", "second"]


def test_inputs_may_have_any_name(nb):
    nb.ok("self = 2\nfunc = 3\njob_id = 4")
    nb.ok("%%comp\ntotal = self + func + job_id")
    assert nb.ok("%make\ntotal").value == "9"


def test_undefined_name_is_an_error_at_registration(nb):
    reply = nb.fails("%%comp\ny = not_defined_anywhere + 1")
    assert reply.error["ename"] == "InvalidJob"
    assert "name 'not_defined_anywhere' is not defined" in reply.error["evalue"]
    assert "cell-y" in reply.error["evalue"]
    assert "no jobs" in nb.ok("%nbmake ls").text
    assert "y" not in nb.ok("print(dir())").text.split("'")


@pytest.mark.parametrize("body", ["return 5", "z = (", "await thing()"])
def test_a_cell_that_cannot_run_is_an_error_at_registration(nb, body):
    reply = nb.fails(f"%%comp\n{body}")
    assert reply.error["ename"] == "InvalidJob"
    assert "the cell is not valid Python" in reply.error["evalue"]


def test_cycle_between_cells_is_rejected_with_the_cycle_named(nb):
    nb.ok("v = 0")
    nb.ok("%%comp first\nu = v + 1")
    nb.ok("%%comp second\nv = u * 2")
    reply = nb.fails("%%comp first\nu = v + 1")
    assert reply.error["ename"] == "InvalidJob"
    assert "first -> second -> first" in reply.error["evalue"]
    # The rejected definition recorded nothing: the first one is still there.
    assert summary(nb.ok("%make")).startswith("make: 2 done")
    assert nb.ok("print(u, v)").text.strip() == "1 2"


def test_printed_output_goes_to_the_jobs_log(nb):
    nb.ok("%%comp talk\nprint('hello from the cell')\nanswer = 42")
    reply = nb.ok("%make")
    assert "hello from the cell" not in reply.text
    details = nb.ok("%nbmake details talk").text
    assert "--- stdout\nhello from the cell" in details


def test_comp_flags_are_options_shown_by_details_and_never_a_reason_to_run(nb):
    nb.ok(HELPERS)
    nb.ok("%%comp --timeout 5 --retries 1 --mem 1GB\nlogged('x')\nx = 6 * 7")
    details = nb.ok("%nbmake details cell-x").text
    assert "\ntimeout    5 s\n" in details and "\nretries    1\n" in details
    assert "\nresources  mem=1 GB\n" in details
    assert summary(nb.ok("%make")).startswith("make: 1 done")
    # other flags: recorded, and the job stays up to date
    nb.ok("%%comp --timeout 60 --gpus 1 --resource licence=2\nlogged('x')\nx = 6 * 7")
    assert summary(nb.ok("%make")).startswith("make: 0 done, 1 up to date")
    assert runs(nb) == ["x"] and nb.ok("x").value == "42"
    details = nb.ok("%nbmake details cell-x").text
    assert "\ntimeout    60 s\n" in details and "retries" not in details
    assert "\nresources  gpus=1, licence=2\n" in details
    options = nb.ok("current_context().details('cell-x').options").value
    assert options == "{'timeout': 60.0, 'resources': {'gpus': 1, 'licence': 2}}"


@pytest.mark.parametrize("flags, shown", [
    ("--timeout soon", "argument --timeout: needs a number of seconds > 0, not 'soon'"),
    ("--mem lots", "argument --mem: needs an amount of memory"),
    ("--resource licence", "argument --resource: needs NAME=AMOUNT, not 'licence'"),
    ("--priority 3", "unrecognized arguments: --priority"),
])
def test_a_bad_comp_flag_is_a_usage_error_naming_it(nb, flags, shown):
    reply = nb.fails(f"%%comp {flags}\ny = 1")
    assert "UsageError" in reply.text and shown in reply.text, reply
    assert "no jobs" in nb.ok("%nbmake ls").text


def test_parmake_takes_resource_totals(nb):
    nb.ok(HELPERS + "a = comp(double, 1, job_id='a', job_resources={'licence': 1})")
    reply = nb.fails("%parmake 2 --resources licence=x")
    assert "UsageError: parmake --resources licence=x: licence: needs a number >= 0, " \
           "not 'x'" in reply.text, reply
    assert runs(nb) == [] and "todo" in nb.ok("%nbmake ls a").text
    reply = nb.ok("%parmake 2 --resources licence=3")
    assert re.search(r"^parmake: 1 done", reply.text, re.M), reply
    totals = nb.ok("t = current_context().resource_totals\n(t['cpus'], t['licence'])").value
    assert totals == "(2, 3)"


def test_a_job_past_its_timeout_in_the_kernel_is_stopped_and_the_kernel_goes_on(nb):
    # The kernel's own make runs the job in the kernel's main thread: its time limit is an
    # alarm there, which stops it without harm to the kernel.
    nb.ok(HELPERS + "import time\ndef hang():\n    logged('hang')\n    time.sleep(3600)\n"
          "h = comp(hang, job_id='hang', job_timeout=1, job_retries=1)\n"
          "ok = comp(double, 4, job_id='ok')")
    reply = nb.fails("%make")
    assert summary(reply).startswith("make: 1 done, 1 failed")
    details = nb.ok("%nbmake details hang").text
    assert "\nerror      timed out after 1 s\n" in details, details
    assert "attempts   1. " in details and "2. " in details
    assert sorted(runs(nb)) == ["double-4", "hang", "hang"]
    assert nb.ok("import signal\nsignal.getsignal(signal.SIGALRM) == signal.SIG_DFL").value \
        == "True"
    assert nb.ok("6 * 7").value == "42"


def test_edited_cell_redefines_the_job_and_why_says_what_changed(nb):
    nb.ok(HELPERS + "k = 2\ndef helper(v):\n    return v * 3")
    cell = "%%comp\nlogged('r')\nr = helper(k) + {}"
    nb.ok(cell.format(1))
    nb.ok("%make")
    nb.ok(cell.format(1) + "  # a comment does not count")
    assert "cell-r is up to date" in nb.ok("%nbmake why cell-r").text
    nb.ok(cell.format(2))
    assert "code of cell changed" in nb.ok("%nbmake why cell-r").text
    nb.ok("%make")
    nb.ok("k = 5")
    nb.ok(cell.format(2))
    assert "argument k changed" in nb.ok("%nbmake why cell-r").text
    nb.ok("%make")
    nb.ok("def helper(v):\n    return v * 4")
    nb.ok(cell.format(2))
    assert "code of helper changed" in nb.ok("%nbmake why cell-r").text
    assert nb.ok("%make\nr").value == "22"
    assert runs(nb) == ["r", "r", "r", "r"]


def test_outputs_bound_to_values_at_once_when_up_to_date(nb):
    nb.ok(HELPERS)
    nb.ok("%%comp\nlogged('cell')\nz = 7")
    nb.ok("%make")
    nb.ok("del z")
    nb.ok("%%comp\nlogged('cell')\nz = 7")
    assert nb.ok("z").value == "7"
    assert runs(nb) == ["cell"]


def test_cell_reading_its_own_output_runs_once(nb):
    nb.ok("x = 1")
    nb.ok("%%comp\nx = x + 1")
    assert nb.ok("%make\nx").value == "2"
    nb.ok("%%comp\nx = x + 1")          # re-executing reads what it read the first time
    assert nb.ok("x").value == "2"
    assert summary(nb.ok("%make")).startswith("make: 0 done, 1 up to date")


def test_two_cells_binding_one_name_need_ids(nb):
    nb.ok("%%comp\ndf = [3, None, 1]")
    reply = nb.fails("%%comp\ndf = [v for v in df if v is not None]")
    assert "give this cell an id" in reply.error["evalue"]
    nb.ok("%%comp clean\ndf = [v for v in df if v is not None]")
    assert nb.ok("%make\ndf").value == "[3, 1]"
    nb.ok("%%comp clean\ndf = [v for v in df if v is not None]")  # again: same job
    assert "depends on cell-df" in nb.ok("%nbmake details clean").text


def test_a_rebound_name_is_captured_not_a_dependency(nb):
    nb.ok("%%comp\nm = 10")
    nb.ok("m = 1")
    nb.ok("%%comp\nn = m + 1")
    assert "depends on -" in nb.ok("%nbmake details cell-n").text
    assert nb.ok("%make cell-n\nn").value == "2"


def test_a_remake_rebinds_outputs_to_the_new_result_unless_the_user_rebound_them(nb):
    nb.ok(HELPERS + "def tick():\n    logged('tick')\n"
          "    return len(open('runs.log').read().split())")
    nb.ok("%%comp\nticks = tick()")
    assert nb.ok("%make\nticks").value == "1"
    assert nb.ok("%remake cell-ticks\nticks").value == "2"
    nb.ok("ticks = 'mine'")
    assert nb.ok("%remake cell-ticks\nticks").value == "'mine'"


def test_make_from_python_binds_outputs_when_the_cell_ends(nb):
    nb.ok("%%comp\ng = 'value'")
    reply = nb.ok("current_context().make()\nprint(type(g).__name__)")
    assert "make: 1 done" in reply.text and "Promise" in reply.text
    assert nb.ok("g").value == "'value'"


# -- 5. errors the notebook way ------------------------------------------------------------

def test_failed_make_shows_the_jobs_traceback_not_ours(nb):
    nb.ok(HELPERS + "q = comp(ratio, 1, 0, job_id='q')\nafter = comp(add, q, 1, job_id='after')")
    nb.ok("%%comp boom\nzero = 0\nw = 1 / zero")
    reply = nb.fails("%make")
    assert summary(reply).startswith("make: 0 done, 2 failed, 1 blocked")
    err = reply.error
    assert err["ename"] == "JobsFailed"
    assert re.fullmatch(r"2 failed: (q, boom|boom, q); 1 blocked: after", err["evalue"])
    tb = err["traceback"]
    assert "--- q: ZeroDivisionError: division by zero" in tb
    assert ", in ratio\n    q = a / b" in tb                       # the function's frame
    assert 'File "<%%comp boom>", line 2, in <module>\n    w = 1 / zero' in tb  # the cell's
    assert PACKAGE_DIR not in tb and "nbmake_ext" not in tb.replace("nbmake_ext.", "")


def test_invalid_job_renders_one_line(nb):
    reply = nb.fails("comp(42)")
    assert reply.error["traceback"].strip().splitlines() == [
        "InvalidJob: job '?': 42 is not callable; comp() takes a function first"]


def test_a_warning_reaches_the_cell_on_stderr(nb):
    """nbmake_ext logs its warnings; in a kernel where nothing set logging up, logging's
    last resort prints them on stderr, which the cell shows."""
    nb.ok(HELPERS + "current_context().store.inline_max = 0\nd = comp(double, 4, job_id='d')")
    nb.ok("%make")
    for path in (nb.cwd / ".nbmake" / "results").iterdir():
        path.unlink()
    reply = nb.ok("%make")
    assert summary(reply).startswith("make: 1 done")
    stderr = "".join(m["content"]["text"] for m in reply.msgs
                     if m["msg_type"] == "stream" and m["content"]["name"] == "stderr")
    assert "the result file of 'd' is missing; the job will run again" in stderr.splitlines()
    assert "Warning" not in stderr


# -- 6. debug ------------------------------------------------------------------------------

def test_debug_reruns_the_failed_job_and_debug_lands_in_its_frame(nb):
    nb.ok(HELPERS + "q = comp(ratio, 3, 0, job_id='q')")
    nb.fails("%make")
    reply = nb.fails("%nbmake debug q")
    assert "debug: running q here" in reply.text
    assert reply.error["ename"] == "ZeroDivisionError"
    tb = reply.error["traceback"]
    assert "in ratio(a, b)" in tb and re.search(r"^---> \d+ +q = a / b$", tb, re.M)
    assert PACKAGE_DIR not in tb  # our frames are hidden
    assert runs(nb) == ["ratio-3-0", "ratio-3-0"]
    # The user's next step: %debug opens the job's frame, with its stored inputs.
    reply = nb.ok("%debug", stdin=["p (a, b)", "q"])
    assert "(3, 0)" in reply.text and "q = a / b" in reply.text


def test_debug_a_comp_cell_and_a_job_whose_inputs_are_missing(nb):
    nb.ok("zero = 0")
    nb.ok("%%comp boom\nw = 1 / zero")
    nb.fails("%make")
    reply = nb.fails("%nbmake debug boom")
    assert reply.error["ename"] == "ZeroDivisionError"
    assert "File <%%comp boom>:1" in reply.error["traceback"]
    assert PACKAGE_DIR not in reply.error["traceback"]
    nb.ok("p = comp(abs, -1, job_id='p')\nr = comp(abs, p, job_id='r')")
    reply = nb.fails("%nbmake debug r")
    assert reply.error["ename"] == "NotDone"
    assert "job 'p' has no stored result" in reply.error["evalue"]


# -- 7. views ------------------------------------------------------------------------------

def test_command_outputs_are_text_and_html_tables(nb):
    nb.ok(HELPERS + "a = comp(double, 1, job_id='a')\nbad = comp(ratio, 1, 0, job_id='bad')\n"
          "blocked = comp(add, bad, 1, job_id='blk')")
    made = nb.fails("%make")
    board, bundle = made.bundles  # the job board (tests/widget), then the summary line
    assert "application/vnd.jupyter.widget-view+json" in board
    assert bundle["text/plain"].startswith("make: 1 done, 1 failed, 1 blocked, 0 up to date")
    assert re.search(r'<b style="color:#d62828">1 failed</b>', bundle["text/html"])
    for command, table_words in [("ls", ["id", "state", "function", "duration", "parent"]),
                                 ("details bad", ["depends on", "why", "error"]),
                                 ("stats", ["function", "jobs", "done", "failed"])]:
        [bundle] = nb.ok(f"%nbmake {command}").bundles
        assert set(bundle) == {"text/plain", "text/html"}
        html = bundle["text/html"]
        assert "<table" in html and all(f">{w}<" in html for w in table_words), html
    [ls] = nb.ok("%nbmake ls").bundles
    assert 'data-state="blocked"' in ls["text/html"] and "blk" in ls["text/plain"]
    [details] = nb.ok("%nbmake details bad").bundles
    assert "ZeroDivisionError" in details["text/html"] and "<pre>" in details["text/html"]
    [why] = nb.ok("%nbmake why blk").bundles
    assert "<li>" in why["text/html"] and "blocked by bad" in why["text/plain"]
