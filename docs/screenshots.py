"""Takes the README's screenshots of the job board (docs/board.png, docs/graph.png,
docs/timeline.png, docs/progress.png): a small pipeline with a failure, a retried job, a dynamic job and jobs
that report their progress, run by ``%parmake 3`` in JupyterLab, in headless chromium.

Usage:  .venv/bin/python docs/screenshots.py      (needs the test extra and chromium)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "notebook"))
sys.path.insert(0, str(HERE.parent / "tests" / "widget"))

from browser import browser  # noqa: E402
from conftest import Server  # noqa: E402
from jupytools import kernel_env  # noqa: E402

PIPELINE = """\
%load_ext nbmake_ext
from nbmake_ext import comp, comp_dynamic, progress
import time

def load(sensor):
    time.sleep(0.4)
    print(f"loaded sensor {sensor}")
    return sensor

def fit(x):
    for step in range(10):
        time.sleep(0.08)
        progress(step + 1, 10, "fitting")
    if x == 3:
        raise ValueError(f"sensor {x} is broken")
    return 2 * x

def summarize(values):
    return sum(values)

def part(i):
    time.sleep(0.5)
    return i * i

def expand(ctx, n):
    return [ctx.comp(part, i, job_id=f"part-{i}") for i in range(n)]

loads = [comp(load, i, job_id=f"load-{i}") for i in range(6)]
fits = [comp(fit, x, job_id=f"fit-{i}", job_retries=1 if i == 3 else 0, job_timeout=600)
        for i, x in enumerate(loads)]
report = comp(summarize, fits, job_id="report")
parts = comp_dynamic(expand, 4, job_id="expand")
"""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="nbm-shots-") as tmp:
        root = Path(tmp)
        server = Server("lab", root / "lab", kernel_env(root / "jupyter"))
        try:
            folder = server.notebooks / "demo"
            folder.mkdir()
            nb = new_notebook(cells=[new_code_cell(PIPELINE), new_code_cell("%parmake 3")],
                              metadata={"kernelspec": {"name": "python3", "language": "python",
                                                       "display_name": "Python 3"}})
            nbformat.write(nb, folder / "nb.ipynb")
            with browser() as b:
                page = b.new_page(viewport={"width": 1280, "height": 1000},
                                  device_scale_factor=1)
                page.goto(server.url("lab/tree/demo/nb.ipynb?reset"))
                page.wait_for_function(
                    """() => { const w = window.jupyterapp?.shell?.currentWidget;
                         return w?.context?.path === 'demo/nb.ipynb'
                           && w?.sessionContext?.session?.kernel?.status === 'idle'; }""",
                    timeout=90_000)
                page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
                page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
                board = page.locator(".nbm-board")
                # While it runs: the running jobs' own progress (nbmake_ext.progress).
                page.wait_for_function("""() => document.querySelectorAll(
                    '.nbm-jprog [data-role="progress"]').length >= 2""", timeout=120_000)
                page.wait_for_timeout(250)
                board.screenshot(path=HERE / "progress.png")
                page.wait_for_selector('.nbm-board[data-run="ended"]', timeout=120_000)
                board.locator('.nbm-jobs [data-job-id="fit-3"]').click()
                board.locator('[data-role="details"]').wait_for(state="visible")
                board.screenshot(path=HERE / "board.png")
                board.locator('button[data-tab="graph"]').click()
                board.locator('.nbm-graph [data-job-id="report"]').wait_for()
                page.wait_for_timeout(300)
                board.screenshot(path=HERE / "graph.png")
                board.locator('[data-role="details"] .nbm-close').click()
                board.locator('button[data-tab="timeline"]').click()
                board.locator('[data-role="timeline"] .nbm-tb').first.wait_for()
                page.wait_for_timeout(300)
                bar = board.locator('[data-role="timeline"] .nbm-tb[data-job-id="fit-2"]')
                box = bar.bounding_box()
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.wait_for_timeout(200)
                whole = board.bounding_box()  # the board, and the hover box below it
                page.screenshot(path=HERE / "timeline.png", clip={
                    "x": whole["x"], "y": whole["y"], "width": whole["width"],
                    "height": whole["height"] + 95})
        finally:
            server.close()
    print("written:", ", ".join(str(HERE / n) for n in ("board.png", "graph.png", "timeline.png", "progress.png")))


if __name__ == "__main__":
    main()
