"""The notebooks under notebooks/, executed as `jupyter nbconvert --execute` would.

Each runs in a copy inside a temporary directory (its store is that directory's
``.nbmake``). The notebooks under notebooks/golden/ are golden tests: what they show when
executed must match their saved outputs, up to times and padding. After an intended
change of output, regenerate the saved outputs (and the demo's) with

    NBMAKE_UPDATE_NOTEBOOKS=1 python -m pytest tests/notebook/test_notebooks.py

and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from jupytools import output_texts

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
ALL = sorted(p.relative_to(NOTEBOOKS).as_posix() for p in NOTEBOOKS.rglob("*.ipynb")
             if ".ipynb_checkpoints" not in p.parts)
UPDATE = os.environ.get("NBMAKE_UPDATE_NOTEBOOKS") == "1"


def execute(source: Path, workdir: Path) -> nbformat.NotebookNode:
    """Run a copy of the notebook in ``workdir`` (its kernel's working directory)."""
    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


def errors(nb) -> list[tuple[int, str, bool]]:
    """(cell index, exception name, tagged raises-exception) of every error output."""
    return [(i, o["ename"], "raises-exception" in cell.metadata.get("tags", []))
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for o in cell.outputs if o["output_type"] == "error"]


def texts(nb) -> list[list[str]]:
    return [output_texts(cell) for cell in nb.cells if cell.cell_type == "code"]


def all_text(nb) -> str:
    return "\n".join(t for cell in texts(nb) for t in cell)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ALL)
def test_notebook(name, tmp_path):
    source = NOTEBOOKS / name
    saved = nbformat.read(source, as_version=4)
    nb = execute(source, tmp_path)
    assert all(tagged for _, _, tagged in errors(nb)), errors(nb)
    if UPDATE:
        nbformat.write(nb, source)
    elif name.startswith("golden/"):
        for index, (want, got) in enumerate(zip(texts(saved), texts(nb), strict=True)):
            assert got == want, f"{name}: code cell {index} shows other outputs"
    CHECKS.get(name, lambda nb: None)(nb)


def check_demo(nb) -> None:
    """The story the demo tells: a failure, its traceback, a fix, then nothing to do."""
    assert [(ename, tagged) for _, ename, tagged in errors(nb)] == [
        ("JobsFailed", True), ("ValueError", True)]
    text = all_text(nb)
    makes = re.findall(r"^make: .*", text, re.M)
    assert len(makes) == 3, makes
    assert makes[0].startswith("make: 35 done, 1 failed, 4 blocked, 0 up to date")
    assert makes[1].startswith("make: 8 done, 35 up to date")
    assert makes[2].startswith("make: 0 done, 43 up to date")
    assert "ValueError: 70 readings are NaN" in text and "43 jobs: 43 done" in text
    assert "since then: now calls fit_robust" in text
    assert "south: 4/4 sensors" in text


CHECKS = {"demo.ipynb": check_demo}


# -- the real command line ------------------------------------------------------------------

def nbconvert(notebook: Path, output: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
           "--output", output, notebook.name]
    proc = subprocess.Popen(cmd, cwd=notebook.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # the CLI and the kernel it started, together
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def code_outputs(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return ["\n".join(output_texts(c)) for c in nb.cells if c.cell_type == "code"]


@pytest.mark.timeout(300)
def test_nbconvert_twice_second_run_runs_nothing(tmp_path, jupyter_env):
    notebook = tmp_path / "rerun.ipynb"
    shutil.copy(NOTEBOOKS / "golden" / "rerun.ipynb", notebook)
    first = nbconvert(notebook, "first.ipynb", jupyter_env)
    assert first.returncode == 0, first.stderr
    second = nbconvert(notebook, "second.ipynb", jupyter_env)
    assert second.returncode == 0, second.stderr

    one, two = code_outputs(tmp_path / "first.ipynb"), code_outputs(tmp_path / "second.ipynb")
    assert "make: 5 done, 0 up to date" in one[3] and "'Promise'" in one[2]
    assert "make: 0 done, 5 up to date" in two[3] and "'int'" in two[2]
    assert one[3].splitlines()[-1] == two[3].splitlines()[-1] == "14"
    log = (tmp_path / "runs.log").read_text().splitlines()
    assert sorted(log) == ["count-0", "count-1", "count-2", "count-3", "total"]


FAILING = {
    "cells": [
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "%load_ext nbmake_ext\nfrom nbmake_ext import comp\n"
                   "def broken():\n    raise RuntimeError('on purpose')\n"
                   "comp(broken, job_id='broken')"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "%make"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.mark.timeout(300)
def test_nbconvert_exits_non_zero_when_a_job_fails(tmp_path, jupyter_env):
    notebook = tmp_path / "failing.ipynb"
    notebook.write_text(json.dumps(nbformat.from_dict(FAILING)))
    result = nbconvert(notebook, "out.ipynb", jupyter_env)
    assert result.returncode != 0
    assert "JobsFailed: 1 failed: broken" in result.stderr
    assert "RuntimeError: on purpose" in result.stderr
    assert not (tmp_path / "out.ipynb").exists()
