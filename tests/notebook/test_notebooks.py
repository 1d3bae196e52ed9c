"""The notebooks under notebooks/, executed as `jupyter nbconvert --execute` would.

Each runs in a copy inside a temporary directory (its store is that directory's
``.nbmake``). The notebooks under notebooks/golden/ are golden tests: what they show when
executed must match their saved outputs, up to times and padding. The demo is checked for
the story it tells, also when run a second time on its store. After an intended change of
output, regenerate the saved outputs (the demo's too) with

    NBMAKE_UPDATE_NOTEBOOKS=1 python -m pytest tests/notebook/test_notebooks.py

and review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupytools import output_texts
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
GOLDEN = sorted(p.relative_to(NOTEBOOKS).as_posix() for p in NOTEBOOKS.glob("golden/*.ipynb"))
UPDATE = os.environ.get("NBMAKE_UPDATE_NOTEBOOKS") == "1"


def test_every_notebook_is_tested():
    everything = {p.relative_to(NOTEBOOKS).as_posix() for p in NOTEBOOKS.rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts}
    assert everything == {"demo.ipynb", *GOLDEN}


def execute(source: Path, workdir: Path) -> nbformat.NotebookNode:
    """Run a copy of the notebook in ``workdir`` (its kernel's working directory); fails
    on an error in a cell not tagged ``raises-exception``."""
    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


def write_back(nb, path: Path) -> None:
    """Saves regenerated outputs, without the widget state nbclient adds: a board's output
    is its static board once its command ended, which needs none."""
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


def errors(nb) -> list[str]:
    """The exception names of the error outputs, all in cells tagged raises-exception."""
    found = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o["output_type"] == "error":
                assert "raises-exception" in cell.metadata.get("tags", []), o["ename"]
                found.append(o["ename"])
    return found


def texts(nb) -> list[list[str]]:
    return [output_texts(cell) for cell in nb.cells if cell.cell_type == "code"]


def makes(nb) -> list[str]:
    text = "\n".join(t for cell in texts(nb) for t in cell)
    return re.findall(r"^make: .*", text, re.M)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", GOLDEN)
def test_golden_notebook(name, tmp_path):
    source = NOTEBOOKS / name
    saved = nbformat.read(source, as_version=4)
    nb = execute(source, tmp_path)
    errors(nb)
    if UPDATE:
        write_back(nb, source)
        return
    for index, (want, got) in enumerate(zip(texts(saved), texts(nb), strict=True)):
        assert got == want, f"{name}: code cell {index} shows other outputs"


@pytest.mark.timeout(300)
def test_demo_tells_its_story_and_run_all_again_runs_only_the_broken_fit(tmp_path):
    source = NOTEBOOKS / "demo.ipynb"
    first = execute(source, tmp_path)
    if UPDATE:
        write_back(first, source)
    # A failure and its traceback, a fix, then nothing to do.
    assert errors(first) == ["JobsFailed", "ValueError"]
    assert [m.split(" in ")[0] for m in makes(first)] == [
        "make: 35 done, 1 failed, 4 blocked, 0 up to date",
        "make: 8 done, 35 up to date",
        "make: 0 done, 43 up to date",
        "make: 3 done, 36 up to date"]  # a data file, a figure and a shell step
    text = "\n".join(t for cell in texts(first) for t in cell)
    for shown in ["ValueError: 70 readings are NaN", "since then: now calls fit_robust",
                  "south: 4/4 sensors", "-- stdout\nmean slope over 12 sensors",
                  "43 jobs: 43 done", "figs/slopes.svg (as written)"]:
        assert shown in text
    bars = (tmp_path / "figs" / "bars.txt").read_text().strip()
    assert int(bars) == (tmp_path / "figs" / "slopes.svg").read_text().count("<rect") > 0

    # Restart and Run All, on the same store: only fit-sensor7 runs, and fails again; the
    # fix takes it and what it blocked back from the store, and says so.
    again = execute(source, tmp_path)
    assert errors(again) == ["JobsFailed", "ValueError"]
    assert [m.split(" in ")[0] for m in makes(again)] == [
        "make: 0 done, 1 failed, 7 blocked, 35 up to date",
        "make: 0 done, 8 restored, 35 up to date",
        "make: 0 done, 43 up to date",
        "make: 0 done, 39 up to date"]

    # The data file edited: the jobs that read it, and only they, run again (the figure
    # is written anew; its label changed).
    sites = tmp_path / "data" / "sites.csv"
    sites.write_text(sites.read_text().replace("North field", "North ridge"))
    third = execute(source, tmp_path)
    assert [m.split(" in ")[0] for m in makes(third)][-1] == "make: 3 done, 36 up to date"
    assert "North ridge" in (tmp_path / "figs" / "slopes.svg").read_text()


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


FAILING = new_notebook(cells=[
    new_code_cell("%load_ext nbmake_ext\nfrom nbmake_ext import comp\n\n"
                  "def broken():\n    raise RuntimeError('on purpose')\n\n"
                  "comp(broken, job_id='broken')"),
    new_code_cell("%make"),  # not tagged raises-exception
], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


@pytest.mark.timeout(300)
def test_nbconvert_exits_non_zero_when_a_job_fails(tmp_path, jupyter_env):
    notebook = tmp_path / "failing.ipynb"
    nbformat.write(FAILING, notebook)
    result = nbconvert(notebook, "out.ipynb", jupyter_env)
    assert result.returncode != 0
    assert "JobsFailed: 1 failed: broken" in result.stderr
    assert "RuntimeError: on purpose" in result.stderr
    assert not (tmp_path / "out.ipynb").exists()
