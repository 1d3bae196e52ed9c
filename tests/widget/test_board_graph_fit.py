"""The graph view fits its box (headless chromium, the shipped front end, a fake widget
model): on first display, when the details panel opens or closes, and it keeps the selected
job and its neighbours in view when the user zoomed in. The graph is the demo notebook's
(12 sensors: load, drop_outliers, fit, two %%comp cells, a dynamic job and its children,
a report), where the right side (summaries, report, cell-mean_slope) used to be cut off."""

from __future__ import annotations

import pytest
from browser import open_fake_board
from samples import run_json

from nbmake_ext.ui.board import Board, Job

pytestmark = pytest.mark.browser


def demo_board() -> Board:
    jobs = []
    for s in range(12):
        jobs.append(Job(f"load-{s:08x}", "done", "load", None, ()))
        jobs.append(Job(f"drop_outliers-{s:08x}", "done", "drop_outliers", None, (f"load-{s:08x}",)))
        jobs.append(Job(f"fit-sensor{s}", "failed" if s == 7 else "done", "fit", None,
                        (f"drop_outliers-{s:08x}",)))
    fits = tuple(f"fit-sensor{s}" for s in range(12))
    jobs.append(Job("cell-slopes+steepest", "blocked", "cell", None, fits, {"by": "fit-sensor7"}))
    jobs.append(Job("cell-mean_slope", "blocked", "cell", None, ("cell-slopes+steepest",)))
    jobs.append(Job("summaries", "blocked", "summaries", None, fits, {"by": "fit-sensor7"}))
    jobs += [Job(f"site-{site}", "done", "site_summary", "summaries", fits[:4])
             for site in ("north", "south", "east")]
    jobs.append(Job("report", "blocked", "make_report", None, ("summaries",)))
    return Board(jobs)


OUTSIDE = """() => {
    const canvas = document.querySelector('.nbm-gcanvas');
    const c = canvas.getBoundingClientRect();
    const right = c.left + canvas.clientWidth, bottom = c.top + canvas.clientHeight;
    return [...document.querySelectorAll('.nbm-graph [data-job-id]')].filter((n) => {
        const r = n.getBoundingClientRect();
        return r.left < c.left - 1 || r.top < c.top - 1 || r.right > right + 1 || r.bottom > bottom + 1;
    }).map((n) => n.dataset.jobId);
}"""


def outside(page) -> list[str]:
    for _ in range(20):  # the fit follows the box's size: a frame or two
        left = page.evaluate(OUTSIDE)
        if not left:
            return []
        page.wait_for_timeout(50)
    return left


@pytest.fixture
def page(chromium):
    page = chromium.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, errors


def test_the_demo_graph_fits_first_and_beside_the_details_panel(page, screenshots):
    open_fake_board(page, demo_board().to_json(), run_json("make", active=False))
    page.click('button[data-tab="graph"]')
    page.wait_for_selector('.nbm-graph [data-job-id="report"]')
    assert outside(page) == []
    page.screenshot(path=screenshots / "first.png")
    page.click('.nbm-graph [data-job-id="fit-sensor7"]')
    page.wait_for_selector('[data-role="details"]', state="visible")
    assert outside(page) == []
    page.screenshot(path=screenshots / "details-open.png")
    page.click('[data-role="details"] .nbm-close')
    assert outside(page) == []


def test_after_a_zoom_the_selected_job_and_its_neighbours_stay_in_view(page, screenshots):
    open_fake_board(page, demo_board().to_json(), run_json("make", active=False))
    page.click('button[data-tab="graph"]')
    page.wait_for_selector('.nbm-graph [data-job-id="report"]')
    page.click('.nbm-zoom button[title="larger"]')
    page.click('.nbm-graph [data-job-id="load-00000000"]')  # the details panel opens
    page.wait_for_selector('[data-role="details"]', state="visible")
    page.wait_for_timeout(100)
    assert len(page.evaluate(OUTSIDE)) > 10  # zoomed in: most of the graph is out of view
    page.fill(".nbm-search", "cell-mean_slope")
    page.press(".nbm-search", "Enter")
    page.wait_for_selector('[data-role="details"]', state="visible")
    page.wait_for_timeout(100)
    left = page.evaluate(OUTSIDE)
    assert "cell-mean_slope" not in left and "cell-slopes+steepest" not in left, left
    page.screenshot(path=screenshots / "zoomed-selected.png")
    page.click('.nbm-zoom button[title="fit the graph in view"]')
    assert outside(page) == []
