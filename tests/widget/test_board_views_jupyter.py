"""The board's timeline, progress and graph views in real front ends (JupyterLab 4 and
Notebook 7 in headless chromium), checked through their data-* attributes (SPEC 6):

- the timeline after a kernel restart: ``%nbmake show all`` in the fresh kernel draws a bar
  for every job made before the restart (in the kernel and on two engines), one row per
  place; hovering a bar names the job and its times, clicking it opens its details;
- ``nbmake_ext.progress`` in a running job: the DOM, sampled while the job runs, shows the
  job's ``done/total`` growing, in the kernel's ``make`` and on an engine;
- the graph view fits: every node inside the visible area when first shown, and again
  once the details panel is open (a 40-into-1 graph with a failure).

Screenshots of what the tests saw go to tests/widget/screenshots/.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from servers import restart_kernel
from test_board_jupyter import watch_errors

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

SERVERS = ["lab", "notebook7"]


def write_notebook(server, name: str, cells: list[str]) -> str:
    folder = server.notebooks / name
    folder.mkdir()
    nb = new_notebook(cells=[new_code_cell(c) for c in cells],
                      metadata={"kernelspec": {"name": "python3", "language": "python",
                                               "display_name": "Python 3"}})
    nbformat.write(nb, folder / "nb.ipynb")
    return f"{name}/nb.ipynb"


def open_notebook(page, server, path: str) -> None:
    url = f"lab/tree/{path}?reset" if server.app == "lab" else f"notebooks/{path}"
    page.goto(server.url(url))
    wait_idle(page, path)


def wait_idle(page, path: str, timeout: float = 90_000) -> None:
    page.wait_for_function(
        """(path) => { const w = window.jupyterapp?.shell?.currentWidget;
             return w?.context?.path === path
               && w?.sessionContext?.session?.kernel?.status === 'idle'; }""",
        arg=path, timeout=timeout)


def run_all(page) -> None:
    # Not awaited: the command's promise resolves only when every cell has run.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def run_cell(page, index: int) -> None:
    page.evaluate("""(i) => { const w = window.jupyterapp.shell.currentWidget;
        w.content.activeCellIndex = i;
        window.jupyterapp.commands.execute('notebook:run-cell'); }""", index)


def cell(page, index: int):
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def board_of(page, index: int):
    return cell(page, index).locator(".nbm-board")


def wait_board_ended(page, index: int, timeout: float = 120_000):
    board = cell(page, index).locator('.nbm-board[data-run="ended"]')
    board.wait_for(timeout=timeout)
    return board


def server_of(request, name: str):
    return request.getfixturevalue(name)


# -- the timeline, after a restart; the graph's fit -----------------------------------------

RESTART_SETUP = """\
%load_ext nbmake_ext
from nbmake_ext import comp
import time

def step(i):
    time.sleep(0.3)
    return i

def leaf(i):
    time.sleep(0.01)
    if i == 13:
        raise ValueError("leaf 13 is broken")
    return i

def gather(values):
    return sum(values)

ks = [comp(step, i, job_id=f"k-{i}") for i in range(3)]
es = [comp(step, 10 + i, job_id=f"e-{i}") for i in range(6)]
leaves = [comp(leaf, i, job_id=f"leaf-{i:02d}") for i in range(40)]
sink = comp(gather, leaves, job_id="sink")
"""

RESTART_CELLS = [RESTART_SETUP, "%make k-*", "%parmake 2 e-*", "%make leaf-* sink",
                 "%load_ext nbmake_ext\n%nbmake show all"]
RAN = {**{f"k-{i}": "kernel" for i in range(3)}, **{f"e-{i}": "engine" for i in range(6)},
       **{f"leaf-{i:02d}": "kernel" for i in range(40)}}


def nodes_outside(page, board) -> list:
    """The graph's nodes not wholly inside its visible area (the scrolled box)."""
    return board.evaluate("""(b) => {
        const canvas = b.querySelector('.nbm-gcanvas');
        const c = canvas.getBoundingClientRect();
        const view = { left: Math.max(c.left, 0), top: Math.max(c.top, 0),
                       right: Math.min(c.left + canvas.clientWidth, innerWidth),
                       bottom: Math.min(c.top + canvas.clientHeight, innerHeight) };
        return [...b.querySelectorAll('.nbm-graph [data-job-id]')].map((n) => {
            const r = n.getBoundingClientRect();
            return [n.dataset.jobId, r.left, r.top, r.right, r.bottom, view];
        }).filter(([id, l, t, r, bt, v]) => !(l >= v.left - 1 && t >= v.top - 1
                                                 && r <= v.right + 1 && bt <= v.bottom + 1));
    }""")


def check_graph_fits(page, board, what: str, screenshots) -> None:
    """Every node inside the visible area (the fit is made when the box's size is known:
    polled for a moment)."""
    board.scroll_into_view_if_needed()
    outside = None
    for _ in range(30):
        outside = nodes_outside(page, board)
        if not outside:
            break
        page.wait_for_timeout(100)
    page.screenshot(path=screenshots / f"graph-{what}.png")
    assert not outside, f"{what}: {len(outside)} nodes not in view, e.g. {outside[:3]}"


@pytest.mark.parametrize("server_name", SERVERS)
def test_timeline_after_a_restart_and_the_graph_in_view(server_name, request, chromium,
                                                        screenshots):
    server = server_of(request, server_name)
    path = write_notebook(server, f"timeline-{server_name}", RESTART_CELLS)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    try:
        open_notebook(page, server, path)
        run_all(page)
        # The last make fails (leaf-13), which stops Run All before the `show` cell.
        board = wait_board_ended(page, 3)
        assert board.locator('.nbm-jobs [data-job-id="leaf-13"]').get_attribute("data-state") == "failed"
        assert board.locator('.nbm-jobs [data-job-id="sink"]').get_attribute("data-state") == "blocked"

        # The graph, 40 into 1 (and the other jobs of the store): fitted when first shown ...
        board.locator('button[data-tab="graph"]').click()
        board.locator('.nbm-graph [data-job-id="sink"]').wait_for()
        check_graph_fits(page, board, "first", screenshots)
        # ... and with the details panel open beside it (the sink and the failure in view).
        board.locator('.nbm-graph [data-job-id="leaf-13"]').click()
        board.locator('[data-role="details"]').wait_for(state="visible")
        assert "leaf 13 is broken" in board.locator('[data-role="details"]').inner_text()
        check_graph_fits(page, board, "details-open", screenshots)
        board.locator('[data-role="details"] .nbm-close').click()
        board.locator('[data-role="details"]').wait_for(state="hidden")
        check_graph_fits(page, board, "details-closed", screenshots)

        # A fresh kernel: nothing ran in it, the store remembers.
        restart_kernel(page)
        wait_idle(page, path)
        run_cell(page, 4)
        shown = board_of(page, 4)
        shown.locator('.nbm-jobs [data-job-id="sink"]').wait_for(timeout=60_000)
        shown.locator('button[data-tab="timeline"]').click()
        timeline = shown.locator('[data-role="timeline"]')
        timeline.locator(".nbm-tb").first.wait_for()
        bars = timeline.evaluate("""(t) => [...t.querySelectorAll('[data-job-id]')].map(
            (b) => [b.dataset.jobId, b.dataset.engine, b.closest('[data-place]').dataset.place])""")
        places = timeline.evaluate(
            "(t) => [...t.querySelectorAll('[data-place]')].map((r) => r.dataset.place)")
        page.screenshot(path=screenshots / "timeline-after-restart.png")
        timeline.screenshot(path=screenshots / "timeline.png")  # docs/timeline.png

        # A bar per job that ran (the sink was blocked: it never ran), on its place's row.
        assert sorted(j for j, _, _ in bars) == sorted(RAN), bars
        assert all(engine == place for _, engine, place in bars), bars
        engines = {e for j, e, _ in bars if j.startswith("e-")}
        assert len(engines) == 2 and all(re.fullmatch(r"engine \d+", e) for e in engines), engines
        assert {e for j, e, _ in bars if not j.startswith("e-")} == {"kernel"}
        assert places[0] == "kernel" and sorted(places[1:]) == sorted(engines), places
        assert timeline.locator('.nbm-tb[data-job-id="leaf-13"]').get_attribute("data-outcome") == "failed"

        # Hovering a bar names the job and its times; clicking it opens its details.
        timeline.locator('.nbm-tb[data-job-id="e-3"]').hover()
        tip = page.locator('[data-role="timeline-tip"]:not([hidden])')
        tip.wait_for(state="visible")
        box = tip.bounding_box()  # wholly in the window: nothing clips it
        assert box["x"] >= 0 and box["y"] >= 0 and box["width"] > 100
        assert box["x"] + box["width"] <= 1400 and box["y"] + box["height"] <= 1000, box
        text = tip.inner_text()
        assert "e-3" in text and "started" in text and "took" in text, text
        assert re.search(r"engine \d+", text), text
        page.screenshot(path=screenshots / "timeline-hover.png")
        timeline.locator('.nbm-tb[data-job-id="leaf-13"]').click()
        details = shown.locator('[data-role="details"]')
        details.wait_for(state="visible")
        assert details.locator(".nbm-jid").inner_text() == "leaf-13"
        assert "leaf 13 is broken" in details.inner_text()
        page.screenshot(path=screenshots / "timeline-details.png")
        assert not errors, errors
    finally:
        page.screenshot(path=screenshots / "last.png")
        page.close()


# -- progress inside a running job ----------------------------------------------------------

PROGRESS_SETUP = """\
%load_ext nbmake_ext
from nbmake_ext import comp, progress
import time

def counting(n):
    for i in range(n):
        time.sleep(0.15)
        progress(i + 1, n, f"step {i + 1}")
    return n

in_kernel = comp(counting, 16, job_id="count-kernel")
on_engine = comp(counting, 17, job_id="count-engine")
"""

SAMPLER = """() => {
    window.progressSamples = {};
    window.progressSampler = setInterval(() => {
        for (const el of document.querySelectorAll('.nbm-board [data-role="progress"][data-job-id]')) {
            const seen = (window.progressSamples[el.dataset.jobId] ||= []);
            const text = el.textContent.trim();
            if (seen[seen.length - 1] !== text) seen.push(text);
        }
    }, 40);
}"""


@pytest.mark.parametrize("server_name", SERVERS)
def test_progress_grows_on_the_running_job(server_name, request, chromium, screenshots):
    server = server_of(request, server_name)
    path = write_notebook(server, f"progress-{server_name}",
                          [PROGRESS_SETUP, "%make count-kernel", "%parmake 1 count-engine"])
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    try:
        open_notebook(page, server, path)
        page.evaluate(SAMPLER)
        run_all(page)
        page.locator('.nbm-jprog [data-role="progress"][data-job-id="count-kernel"]').wait_for(
            timeout=90_000)
        page.screenshot(path=screenshots / "progress-kernel.png")
        page.locator('.nbm-jprog [data-role="progress"][data-job-id="count-engine"]').wait_for(
            timeout=90_000)
        page.screenshot(path=screenshots / "progress-engine.png")
        wait_board_ended(page, 1)
        wait_board_ended(page, 2)
        samples = page.evaluate("() => { clearInterval(window.progressSampler); "
                                "return window.progressSamples; }")
        for job, total in (("count-kernel", 16), ("count-engine", 17)):
            seen = samples.get(job, [])
            pairs = [tuple(map(int, re.fullmatch(r"(\d+)/(\d+)", s).groups())) for s in seen]
            assert all(t == total for _, t in pairs), (job, seen)
            done = [d for d, _ in pairs]
            assert len(done) >= 4, (job, seen)  # ~2.5 s of work, reported ~5 times a second
            assert done == sorted(done) and len(set(done)) == len(done), (job, seen)
            assert 1 <= done[0] <= total // 2 and done[-1] >= total // 2, (job, seen)
        # Once the jobs ended, no progress is shown any more.
        assert page.locator('.nbm-board [data-role="progress"]').count() == 0
        assert not errors, errors
    finally:
        page.screenshot(path=screenshots / "last.png")
        page.close()
