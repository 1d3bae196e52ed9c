"""The board's front end in a real headless chromium, against a fake widget model (no
Jupyter server): the shipped code (nbmake_ext/ui/static/) fed the real data formats.

Fast checks of what the JupyterLab tests cannot reach cheaply: 10,000 jobs, the graph
around a job in a big board, batches that add children, requests to an idle kernel.
"""

from __future__ import annotations

import pytest
from browser import open_fake_board
from samples import big_board, run_json, small_board

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


@pytest.fixture
def page(chromium):
    page = chromium.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, errors


def cells(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        ".nbm-jobs [data-job-id]", "els => Object.fromEntries(els.map(e => [e.dataset.jobId, e.dataset.state]))")


def counts(page) -> dict[str, int]:
    return {k: int(v) for k, v in page.eval_on_selector_all(
        "[data-count-state]", "els => els.map(e => [e.dataset.countState, e.textContent])")}


def test_ten_thousand_jobs_each_an_element_with_its_state(page, screenshots):
    board = big_board(10_000)
    open_fake_board(page, board.to_json(), run_json("parmake", exp=10_000, fin=5000))
    shown = cells(page)
    assert shown == {jid: job.state for jid, job in board.jobs.items()}
    assert counts(page) == board.counts()
    parents = page.eval_on_selector_all(
        ".nbm-jobs [data-parent]", "els => els.map(e => [e.dataset.jobId, e.dataset.parent])")
    assert {c: p for c, p in parents} == {j.job_id: j.parent for j in board.jobs.values() if j.parent}
    page.screenshot(path=screenshots / "10k.png")


def test_batches_change_states_and_add_children_under_their_parent(page):
    board = small_board()
    open_fake_board(page, board.to_json(), run_json("parmake", exp=20))
    page.evaluate("""() => window.boardDelta({t: "delta", run: {exp: 22, fin: 3, active: true},
        j: {"todo-1": {s: "r", x: {t0: 1}},
            "square-9": {s: "t", x: {}, p: "squares", f: "square", d: [], r: 1},
            "fit-3": {s: "d", x: {dur: 1}}}})""")
    assert cells(page)["todo-1"] == "running" and cells(page)["fit-3"] == "done"
    kid = page.locator('.nbm-jobs [data-job-id="square-9"]')
    assert kid.get_attribute("data-parent") == "squares"
    # In the bracket of its parent's children, not in a group of its own.
    assert page.evaluate("""() => document.querySelector('[data-job-id="square-9"]')
        .closest('.nbm-dyn').firstElementChild.dataset.jobId""") == "squares"
    assert counts(page)["running"] == 1 and counts(page)["failed"] == 0
    page.evaluate("""() => window.boardDelta({t: "delta", j: {}, gone: ["square-9"], run: {}})""")
    assert "square-9" not in cells(page)


def test_graph_of_a_big_board_is_the_neighbourhood_of_the_chosen_job(page, screenshots):
    board = big_board(2_000, functions=10, dynamic=5)
    open_fake_board(page, board.to_json(), run_json("show", active=False))
    page.click('.nbm-jobs [data-job-id="f4-00010"]')
    page.click('button[data-tab="graph"]')
    page.wait_for_selector('.nbm-graph [data-job-id="f4-00010"]')
    nodes = page.eval_on_selector_all(".nbm-graph [data-job-id]", "els => els.map(e => e.dataset.jobId)")
    assert "f3-00010" in nodes and "f5-00010" in nodes and len(nodes) <= 300
    assert "around f4-00010" in page.inner_text(".nbm-gnote")
    page.screenshot(path=screenshots / "graph.png")
    # A link to a job outside the drawing centres the graph on it.
    page.evaluate("() => window.board")  # keep the page alive
    page.fill(".nbm-search", "f8-00100")
    page.press(".nbm-search", "Enter")
    page.wait_for_selector('.nbm-graph [data-job-id="f8-00100"].nbm-sel')


def test_requests_wait_for_an_idle_kernel(page):
    data = small_board().to_json()
    data["x"][str(data["ids"].index("load-1"))]["part"] = True
    open_fake_board(page, data, run_json("make", active=True), busy="make")
    page.click('.nbm-jobs [data-job-id="load-1"]')
    details = page.locator('[data-role="details"]')
    assert "busy running make" in details.inner_text()
    page.click('[data-role="details"] [data-act="clean"]')
    assert "nothing was sent" in details.inner_text()
    assert page.evaluate("() => window.board.model.sent") == []

    # The run ends: the board asks for the logs of the job shown, and buttons send.
    page.evaluate("""() => { window.boardBusy("");
        window.boardSet("run", {...window.board.model.get("run"), active: false, outcome: "finished"}); }""")
    page.click('.nbm-jobs [data-job-id="fit-1"]')
    page.click('.nbm-jobs [data-job-id="load-1"]')
    sent = page.evaluate("() => window.board.model.sent")
    assert sent == [{"t": "details", "job": "load-1", "re": "r1"}]
    page.click('[data-role="details"] [data-act="remake"]')
    assert page.evaluate("() => window.board.model.sent")[-1]["t"] == "remake"
    assert "asking the kernel" in details.inner_text()
    page.evaluate("""() => window.boardDelta({t: "reply", re: "r2", ok: true,
                                             msg: "remake: 1 done, 3 up to date in 0.1s"})""")
    assert "remake: 1 done" in details.inner_text()


def test_filter_and_search(page):
    open_fake_board(page, small_board().to_json(), run_json("show", active=False))
    page.click('.nbm-chip[data-filter="failed"]')
    assert page.get_attribute(".nbm-board", "data-only") == "failed"
    opacity = page.eval_on_selector('.nbm-jobs [data-job-id="load-0"]', "e => getComputedStyle(e).opacity")
    assert float(opacity) < 0.5
    page.click('.nbm-chip[data-filter="failed"]')
    assert page.get_attribute(".nbm-board", "data-only") is None
    page.fill(".nbm-search", "fit-")
    page.wait_for_function("() => document.querySelector('.nbm-found').textContent === '6 found'")


def test_batches_a_snapshot_holds_are_dropped_whatever_their_order(page):
    """A board whose code loads after its run ended gets the run's batches (queued while
    the code loaded) after the final snapshot: they must not undo it."""
    board = small_board()
    data = board.to_json()
    open_fake_board(page, {**data, "n": 7}, run_json("make", active=False, exp=1, fin=1))
    page.evaluate("""() => window.boardDelta({t: "delta", n: 3, j: {"load-0": {s: "r", x: {}}},
        run: {active: true, fin: 0}})""")
    assert cells(page)["load-0"] == "done"
    assert page.get_attribute(".nbm-board", "data-run") == "ended"
    # A newer batch applies; a snapshot that comes after it but is older keeps it.
    page.evaluate("""() => window.boardDelta({t: "delta", n: 8, j: {"todo-1": {s: "d", x: {}}},
        run: {}})""")
    assert cells(page)["todo-1"] == "done"
    page.evaluate("(d) => window.boardSet('data', d)", {**data, "n": 7})
    assert cells(page)["todo-1"] == "done" and cells(page)["load-0"] == "done"
    page.evaluate("(d) => window.boardSet('data', d)", {**data, "n": 8})
    assert cells(page)["todo-1"] == "todo"  # this snapshot says so, and holds batch 8


STATIC_BOARD = """(uid) => { const host = document.createElement("div");
  host.className = "nbmake-board"; host.dataset.nbmakeBoard = uid;
  host.innerHTML = '<div class="nbmake-static"><span data-job-id="load-0" data-state="done">load-0</span></div>';
  document.body.append(host); }"""


def test_the_live_board_is_mounted_over_its_static_board(page):
    """Once the command ended, the output holds the static board; the live page shows the
    interactive board over it, until the model goes."""
    open_fake_board(page, small_board().to_json(), run_json("make", active=False))
    page.evaluate(STATIC_BOARD, "board-1")
    page.wait_for_selector('.nbmake-board .nbm-live .nbm-jobs [data-job-id="fit-3"]')
    assert not page.is_visible(".nbmake-board .nbmake-static")
    page.click('.nbmake-board .nbm-jobs [data-job-id="fit-3"]')
    assert "ValueError: 70 readings are NaN" in page.inner_text(
        '.nbmake-board [data-role="details"]')
    # Another board's static output is left alone.
    page.evaluate(STATIC_BOARD, "board-2")
    page.wait_for_timeout(50)
    assert page.eval_on_selector_all(".nbmake-board .nbm-live", "els => els.length") == 1
    # The output drawn again: mounted again, with the job still chosen.
    page.evaluate("() => document.querySelector('[data-nbmake-board=\"board-1\"]').remove()")
    page.evaluate(STATIC_BOARD, "board-1")
    page.wait_for_selector('.nbmake-board .nbm-live [data-role="details"]:visible')
    # The model goes (its kernel restarted): the static board shows again.
    page.evaluate("() => window.boardForget()")
    page.wait_for_function("() => !document.querySelector('.nbm-live')")
    assert page.is_visible('[data-nbmake-board="board-1"] .nbmake-static [data-job-id="load-0"]')


def test_opening_and_closing_the_details_leaves_every_cell_in_place(page, screenshots):
    # A grid that narrows when the details open lays out and paints its 10,000 cells again
    # (and moves the cell under the pointer): the details take the place of a hint instead.
    board = big_board(2000)
    open_fake_board(page, board.to_json(), run_json("show", active=False))
    where = """() => Object.fromEntries([...document.querySelectorAll('.nbm-jobs [data-job-id]')]
        .slice(0, 400).map((c) => { const r = c.getBoundingClientRect(); return [c.dataset.jobId, [r.x, r.y]]; }))"""
    hint = page.locator('[data-role="details-hint"]')
    details = page.locator('[data-role="details"]')
    assert hint.is_visible() and details.is_hidden()
    before = page.evaluate(where)
    page.click('.nbm-jobs [data-job-id="f0-00005"]')
    details.wait_for(state="visible")
    assert hint.is_hidden()
    assert details.locator(".nbm-jid").text_content() == "f0-00005"
    page.screenshot(path=screenshots / "details-open.png")
    assert page.evaluate(where) == before
    details.locator(".nbm-close").click()
    details.wait_for(state="hidden")
    assert hint.is_visible()
    assert page.evaluate(where) == before
    # The other views use the whole width: no hint there.
    page.click('button[data-tab="graph"]')
    assert hint.is_hidden()
