"""What nbmake_ext says along the way goes through ``logging`` (loggers under
``nbmake_ext``), never ``print`` or Python warnings; the console shows warnings by default,
``-v`` adds INFO, ``-vv`` DEBUG. (In a kernel, with no logging set up, a warning reaches the
cell through logging's last resort: tests/notebook/test_kernel.py.)"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "execute" / "scripts"))

import proctools as pt  # noqa: E402

from contexts import new_context  # noqa: E402
import logcheck  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def triple(x):
    return 3 * x


def test_a_missing_result_is_a_logged_warning_not_a_python_warning(ctx, caplog):
    ctx.store.inline_max = 0  # results in files, even small ones
    a = ctx.comp(triple, 1, job_id="a")
    ctx.make()
    ctx.store.flush()  # (the make's last writes land: its result file exists)
    (result,) = (ctx.store.path / "results").iterdir()
    result.unlink()
    with warnings.catch_warnings(record=True) as python_warnings, \
            logcheck.library_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        ctx.make()
    assert python_warnings == []
    (record,) = [r for r in caplog.records if "result file" in r.getMessage()]
    assert record.name == "nbmake_ext.store.snapshots" and record.levelno == logging.WARNING
    assert record.getMessage() == "the result file of 'a' is missing; the job will run again"
    assert a.result() == 3


def test_a_store_readable_by_others_is_a_logged_warning(store_path, caplog):
    new_context(store_path).close()
    os.chmod(store_path, 0o755)
    with logcheck.library_warnings(), caplog.at_level(logging.WARNING):
        new_context(store_path).close()
    assert [(r.name, r.levelname) for r in caplog.records
            if "readable by other users" in r.getMessage()] == [
        ("nbmake_ext.store.store", "WARNING")]


# -- the console ----------------------------------------------------------------------------

JOBS = '''
from nbmake_ext import Context


def fine(x):
    return x


def crash():
    os._exit(3)  # its engine dies


ctx = Context(os.environ["NBMAKE_TEST_STORE"])
ctx.comp(fine, 1, job_id="fine")
ctx.comp(crash, job_id="crash")
ctx.close()
'''


@pytest.fixture
def lab(tmp_path):
    store = tmp_path / "store"
    env = pt.env_for(tmp_path / "jobs.log", NBMAKE_TEST_STORE=str(store))
    r = pt.run_script(pt.script(tmp_path / "jobs.py", JOBS), cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr

    def nb(*args: str):
        return pt.console("--store", str(store), *args, cwd=tmp_path, env=env)

    nb.store = store
    return nb


ENGINE_REPLACED = re.compile(r"^nbmake: info: engine \d+ exited with code 3 while running crash; "
                             r"a new engine takes its place$", re.M)


def test_the_console_says_more_with_v(lab):
    quiet = lab("parmake", "1")
    assert quiet.returncode == 1  # crash failed
    assert "died while running it: exited with code 3" in quiet.stderr  # the job's failure
    assert not ENGINE_REPLACED.search(quiet.stderr) and "nbmake: info:" not in quiet.stderr

    lab("clean", "all")
    verbose = lab("-v", "parmake", "1")
    assert verbose.returncode == 1
    assert ENGINE_REPLACED.search(verbose.stderr), verbose.stderr
    assert "nbmake: debug:" not in verbose.stderr
    assert verbose.stdout == quiet.stdout.replace(_took(quiet.stdout), _took(verbose.stdout))

    lab("clean", "all")
    debug = lab("parmake", "1", "-vv")  # after the command too
    assert re.search(r"^nbmake: debug: \[kernel\.pool\] started engine \d+", debug.stderr,
                     re.M), debug.stderr
    assert re.search(r"^nbmake: info: \[kernel\.engine_deaths\] engine \d+ exited with code 3",
                     debug.stderr, re.M), debug.stderr


def _took(summary: str) -> str:
    return re.search(r"in \d+\.\d\ds", summary).group(0)


def test_the_console_shows_warnings_by_default(lab):
    os.chmod(lab.store, 0o755)
    r = lab("ls")
    assert r.returncode == 0
    assert r.stderr == f"nbmake: warning: the store {lab.store} is readable by other users; " \
                       f"`chmod 700` it\n"
    assert pt.parse_ls(r.stdout) == {"fine": "todo", "crash": "todo"}  # output unchanged


def test_a_script_that_sets_up_no_logging_still_sees_warnings(tmp_path):
    """As in a kernel: no handler anywhere, so logging's last resort prints the warning on
    stderr, message only."""
    store = tmp_path / "store"
    env = pt.env_for(tmp_path / "jobs.log", NBMAKE_TEST_STORE=str(store))
    script = pt.script(tmp_path / "open.py", '''
        from nbmake_ext import Context
        Context(os.environ["NBMAKE_TEST_STORE"]).close()
        os.chmod(os.environ["NBMAKE_TEST_STORE"], 0o755)
        Context(os.environ["NBMAKE_TEST_STORE"]).close()
    ''')
    r = pt.run_script(script, cwd=tmp_path, env=env)
    assert r.returncode == 0
    assert r.stderr == f"the store {store} is readable by other users; `chmod 700` it\n"
