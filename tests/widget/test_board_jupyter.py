"""The job board in real front ends: JupyterLab 4 and Notebook 7 in headless chromium.

One notebook per test (kernels persist across page loads on one server), run with the app's
own "run all cells" command, then checked through the board's data-* attributes (SPEC 6):
job states, dynamic children with data-parent appearing while their parent runs, counts,
a click on the failed job showing its traceback while the kernel is still busy, a blocked
job leading to the job that blocks it, and the buttons on an idle kernel. Screenshots of what
the tests saw go to tests/widget/screenshots/.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

SETUP = """\
%load_ext nbmake_ext
from nbmake_ext import comp, comp_dynamic
import time

def load(i):
    time.sleep(0.2)
    print(f"loaded sensor {i}")
    return i

def fit(x):
    if x == 3:
        raise ValueError(f"sensor {x} is broken")
    return 2 * x

def summarize(values):
    return sum(values)

def part(i):
    time.sleep(1.0)
    return i * i

def expand(ctx, n):
    return [ctx.comp(part, i, job_id=f"part-{i}") for i in range(n)]

def slow(x):
    time.sleep(SLOW)
    return x

loads = [comp(load, i, job_id=f"load-{i}") for i in range(5)]
fits = [comp(fit, x, job_id=f"fit-{i}") for i, x in enumerate(loads)]
report = comp(summarize, fits, job_id="report")
parts = comp_dynamic(expand, 4, job_id="expand")
tail = comp(slow, fits[4], job_id="slow")  # starts late: keeps the run going
"""

EXPECTED = {**{f"load-{i}": "done" for i in range(5)},
            **{f"fit-{i}": "done" for i in range(5) if i != 3}, "fit-3": "failed",
            "report": "blocked", "expand": "done", "slow": "done",
            **{f"part-{i}": "done" for i in range(4)}}

BOARD = ".nbm-jobs"  # the jobs view: one element per job


def watch_errors(page) -> list[str]:
    """Uncaught errors of the board's code (loaded from blob: URLs, see loader.js). Notebook
    7.6 itself throws "Cannot read properties of undefined (reading 'schema')" while it
    loads, with no widget involved: that one is not ours."""
    errors: list[str] = []

    def seen(exc) -> None:
        stack = getattr(exc, "stack", "") or ""
        if "blob:" in stack or "nbm" in str(exc) or "board" in str(exc):
            errors.append(f"{exc}\n{stack}")

    page.on("pageerror", seen)
    return errors


def write_notebook(server, name: str, slow: float) -> str:
    folder = server.notebooks / name
    folder.mkdir()
    nb = new_notebook(cells=[new_code_cell(f"SLOW = {slow}\n" + SETUP),
                             new_code_cell("%parmake 2")],
                      metadata={"kernelspec": {"name": "python3", "language": "python",
                                               "display_name": "Python 3"}})
    nbformat.write(nb, folder / "nb.ipynb")
    return f"{name}/nb.ipynb"


def open_and_run(page, server, path: str, url: str) -> None:
    page.goto(server.url(url))
    page.wait_for_function(
        """(path) => { const w = window.jupyterapp?.shell?.currentWidget;
             return w?.context?.path === path
               && w?.sessionContext?.session?.kernel?.status === 'idle'; }""",
        arg=path, timeout=90_000)
    # Not awaited: the command's promise resolves only when every cell has run.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def states(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        f"{BOARD} [data-job-id]", "els => Object.fromEntries(els.map(e => [e.dataset.jobId, e.dataset.state]))")


def counts(page) -> dict[str, int]:
    return {k: int(v) for k, v in page.eval_on_selector_all(
        "[data-count-state]", "els => els.map(e => [e.dataset.countState, e.textContent.trim()])")}


def wait_for_end(page, timeout: float = 120_000) -> None:
    page.wait_for_selector('.nbm-board[data-run="ended"]', timeout=timeout)
    page.wait_for_function("() => !document.querySelector('.nbm-board[data-run=\"active\"]')")


def check_final_board(page) -> None:
    got = states(page)
    assert got == EXPECTED, got
    tally = {s: 0 for s in ("todo", "stale", "running", "done", "failed", "blocked")}
    for state in got.values():
        tally[state] += 1
    assert counts(page) == tally
    parents = page.eval_on_selector_all(
        f"{BOARD} [data-parent]", "els => els.map(e => [e.dataset.jobId, e.dataset.parent])")
    assert sorted(parents) == [[f"part-{i}", "expand"] for i in range(4)]


def test_jupyterlab_board_live_and_after_the_run(lab, chromium, screenshots):
    path = write_notebook(lab, "lab", slow=6.0)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    try:
        open_and_run(page, lab, path, f"lab/tree/{path}?reset")

        # Live: the children of the dynamic job appear while it runs.
        page.wait_for_function(
            """() => { const p = document.querySelector('.nbm-jobs [data-job-id="expand"]');
                 return p && p.dataset.state === 'running'
                   && document.querySelectorAll('.nbm-jobs [data-parent="expand"]').length > 0; }""",
            timeout=90_000)
        page.screenshot(path=screenshots / "1-children-appear.png")

        # The failed job's traceback is there while the kernel is still busy (no round trip).
        page.wait_for_selector(f'{BOARD} [data-job-id="fit-3"][data-state="failed"]')
        assert page.query_selector('.nbm-board[data-run="active"]') is not None
        page.click(f'{BOARD} [data-job-id="fit-3"]')
        details = page.locator('[data-role="details"]')
        details.wait_for(state="visible")
        assert "ValueError: sensor 3 is broken" in details.inner_text()
        assert "Traceback" in details.inner_text()
        assert page.query_selector('.nbm-board[data-run="active"]') is not None, \
            "the run ended before the click: make `slow` slower"
        # The buttons say that the kernel is busy, and send nothing.
        page.click('[data-role="details"] [data-act="remake"]')
        assert "busy" in details.locator(".nbm-msg").inner_text()
        page.screenshot(path=screenshots / "2-traceback-while-running.png")

        wait_for_end(page)
        check_final_board(page)

        # A blocked job names the failed job that blocks it; one click goes there.
        page.click(f'{BOARD} [data-job-id="report"]')
        assert "fit-3" in details.locator(".nbm-blocked").inner_text()
        page.screenshot(path=screenshots / "3-blocked.png")
        details.locator(".nbm-blocked .nbm-goto").click()
        page.wait_for_function(
            """() => document.querySelector('[data-role="details"] .nbm-jid')?.textContent === 'fit-3'""")
        text = details.inner_text()
        assert "ValueError: sensor 3 is broken" in text and "Traceback" in text
        assert page.is_visible(f'{BOARD} [data-job-id="fit-3"].nbm-sel')
        page.screenshot(path=screenshots / "4-failed-details.png")
        page.locator(".nbm-board").screenshot(path=screenshots / "board.png")  # docs/board.png

        # The graph view: every job, dependencies and the children of the dynamic job.
        page.click('.nbm-board button[data-tab="graph"]')
        page.wait_for_selector('.nbm-graph [data-job-id="report"][data-state="blocked"]')
        graph = page.eval_on_selector_all(
            ".nbm-graph [data-job-id]", "els => Object.fromEntries(els.map(e => [e.dataset.jobId, e.dataset.state]))")
        assert graph == EXPECTED
        page.screenshot(path=screenshots / "5-graph.png")
        page.click('.nbm-board button[data-tab="jobs"]')

        # On the idle kernel the buttons act: remake a job, shown live on this board.
        page.click(f'{BOARD} [data-job-id="load-0"]')
        page.click('[data-role="details"] [data-act="remake"]')
        page.wait_for_function(
            """() => /remake: /.test(document.querySelector('[data-role="details"] .nbm-msg')?.textContent || '')""",
            timeout=60_000)
        assert re.search(r"remake: \d+ done", details.locator(".nbm-msg").inner_text())
        assert states(page)["load-0"] == "done"
        page.screenshot(path=screenshots / "6-remade.png", full_page=True)

        # Saved, then the page reloaded: the board is rebuilt from the widget's state in
        # the kernel.
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.reload()
        page.wait_for_selector(f'{BOARD} [data-job-id="fit-3"]', timeout=90_000)
        assert states(page) == EXPECTED
        page.screenshot(path=screenshots / "7-reloaded.png")
        assert not errors, errors
    finally:
        page.screenshot(path=screenshots / "last.png")
        page.close()


def test_notebook7_board_shows_the_states(notebook7, chromium, screenshots):
    path = write_notebook(notebook7, "nb7", slow=0.5)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    try:
        open_and_run(page, notebook7, path, f"notebooks/{path}")
        wait_for_end(page)
        check_final_board(page)
        page.click(f'{BOARD} [data-job-id="fit-3"]')
        assert "ValueError: sensor 3 is broken" in page.locator('[data-role="details"]').inner_text()
        page.screenshot(path=screenshots / "notebook7.png")
        assert not errors, errors
    finally:
        page.screenshot(path=screenshots / "last.png")
        page.close()
