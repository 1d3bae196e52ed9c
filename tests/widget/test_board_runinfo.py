"""What a board shows of job runs, from a real store: the timeline's bars (stored timings,
failed attempts of retried jobs), a running job's progress, and in the details panel its
attempts, options (timeout, retries, resources) and peak memory. The data is checked in
Python, then drawn by the shipped front end in a headless chromium (fake widget model)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser import open_fake_board
from samples import run_json, small_board

from nbmake_ext import Context, File
from nbmake_ext.errors import JobsFailed
from nbmake_ext.ui import timeline
from nbmake_ext.ui.board import Board


def flaky(counter: str, failures: int) -> str:
    path = Path(counter)
    made = int(path.read_text()) if path.exists() else 0
    path.write_text(str(made + 1))
    time.sleep(0.05)  # (long enough for its bar on the timeline to be hovered)
    if made < failures:
        raise RuntimeError(f"attempt {made + 1} failed")
    return "ok"


def steady(i: int) -> int:
    time.sleep(0.01)
    return i


@pytest.fixture
def store_board(tmp_path, monkeypatch):
    """A store where `steady-*` ran, `retried` failed once then succeeded (retries 2,
    timeout 30 s, 1 GB of memory), `hopeless` failed both its attempts."""
    monkeypatch.delenv("NBMAKE_STORE", raising=False)
    ctx = Context(store=tmp_path / "store")
    ctx.report = lambda line: None
    try:
        for i in range(3):
            ctx.comp(steady, i, job_id=f"steady-{i}")
        ctx.comp(flaky, str(tmp_path / "retried"), 1, job_id="retried", job_retries=2,
                 job_timeout=30, job_resources={"mem": "1GB"})
        ctx.comp(flaky, str(tmp_path / "hopeless"), 5, job_id="hopeless", job_retries=1)
        with pytest.raises(JobsFailed):
            ctx.make()
        yield ctx, Board.from_context(ctx)
    finally:
        ctx.close()


def test_the_board_holds_each_run_its_attempts_options_and_peak_memory(store_board):
    ctx, board = store_board
    retried = board.jobs["retried"].x
    assert retried["opt"] == {"timeout": 30, "retries": 2, "resources": {"mem": 1_000_000_000}}
    assert [a["attempt"] for a in retried["att"]] == [1]
    assert "attempt 1 failed" in retried["att"][0]["error"]
    assert retried["rss"] > 1_000_000
    hopeless = board.jobs["hopeless"].x
    assert board.jobs["hopeless"].state == "failed" and len(hopeless["att"]) == 1
    assert "opt" not in board.jobs["steady-0"].x

    data = board.to_json()
    tl = data["tl"]
    assert tl["pl"] == ["kernel"]
    bars = sorted((data["ids"][j], o) for j, o in zip(tl["j"], tl["o"]))
    assert bars == sorted([("steady-0", "d"), ("steady-1", "d"), ("steady-2", "d"),
                           ("retried", "a"), ("retried", "d"), ("hopeless", "a"),
                           ("hopeless", "f")])
    assert tl["s"][0] == 0 and all(s >= 0 for s in tl["s"]) and all(d >= 0 for d in tl["d"])
    # A board of some jobs holds the bars of those only.
    some = Board.from_context(ctx, ["steady-1"])
    assert some.to_json()["tl"]["j"] == [0]


def copy_text(source: str, target: str) -> None:
    Path(target).write_text(Path(source).read_text())


@pytest.fixture
def files_board(tmp_path, monkeypatch):
    """A store where `copy` read raw.csv and wrote copy.csv, and a shell step counted its
    lines into lines.txt."""
    monkeypatch.delenv("NBMAKE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    Path("raw.csv").write_text("a,b\n1,2\n")
    ctx = Context(store=tmp_path / "store")
    ctx.report = lambda line: None
    try:
        ctx.comp(copy_text, File("raw.csv"), "copy.csv", job_id="copy",
                 job_outputs=["copy.csv"])
        ctx.sh("wc -l < {input} > {output}", inputs=["copy.csv"], outputs=["lines.txt"],
               job_id="count")
        ctx.make()
        yield ctx, Board.from_context(ctx)
    finally:
        ctx.close()


def test_the_board_holds_each_jobs_input_and_output_files(files_board):
    ctx, board = files_board
    assert board.jobs["copy"].x["files"] == {"in": [["raw.csv", ""]], "out": [["copy.csv", ""]]}
    assert board.jobs["count"].x["files"] == {"in": [["copy.csv", ""]],
                                              "out": [["lines.txt", ""]]}
    # What `details` knows (each file's state, a shell step's command) replaces it.
    from nbmake_ext.ui.board import extras_from_details
    x = extras_from_details(ctx.details("count"))
    assert x["files"] == {"in": [["copy.csv", "unchanged"]], "out": [["lines.txt", "as written"]]}
    assert x["cmd"].startswith("wc -l < ") and x["cmd"].endswith("lines.txt")


@pytest.mark.browser
def test_details_list_a_jobs_files(files_board, page, screenshots):
    _, board = files_board
    open_fake_board(page, board.to_json(), {**run_json("", active=False), "t0": 0})
    page.click('.nbm-jobs [data-job-id="copy"]')
    details = page.locator('[data-role="details"]')
    details.wait_for(state="visible")
    text = details.inner_text()
    assert "input files" in text and "raw.csv" in text, text
    assert "output files" in text and "copy.csv" in text, text
    page.screenshot(path=screenshots / "files.png")


def test_options_stay_with_a_job_whatever_the_run_tells():
    board = small_board()
    board.jobs["fit-3"].x["opt"] = {"retries": 1}
    board.start_run("parmake", ["fit-3"])
    board.change("fit-3", "running", {"engine": "engine 9"})
    board.change("fit-3", "stale", {"attempt": 2, "error": "boom"})
    board.change("fit-3", "running", {"engine": "engine 9", "attempt": 2,
                                      "attempts": [{"attempt": 1, "error": "boom"}]})
    x = board.take_delta()["j"]["fit-3"]["x"]
    assert x["opt"] == {"retries": 1} and x["try"] == 2 and x["att"][0]["error"] == "boom"
    board.change("fit-3", "done", {"duration": 1.0, "engine": "engine 9", "peak_rss": 5_000_000})
    x = board.take_delta()["j"]["fit-3"]["x"]
    assert x["opt"] == {"retries": 1} and x["rss"] == 5_000_000 and x["eng"] == "engine 9"


def test_progress_is_kept_while_the_job_runs_and_sent_with_the_next_batch():
    board = small_board()
    board.start_run("make", ["todo-1"])
    assert not board.progress("todo-1", 1, 10)  # not running: nothing to show
    board.change("todo-1", "running", {"engine": "kernel"})
    board.take_delta()
    assert board.progress("todo-1", 3, 10, "step 3")
    entry = board.take_delta()["j"]["todo-1"]
    assert entry["s"] == "r" and entry["x"]["pg"] == [3, 10, "step 3"] and entry["x"]["t0"]
    board.change("todo-1", "done", {"duration": 1.0})
    assert "pg" not in board.take_delta()["j"]["todo-1"]["x"]


def test_timeline_json_is_compact_and_sorted():
    bars = [("b", "engine 7", 100.5, 101.0, "d"), ("a", "kernel", 100.0, 100.2, "f"),
            ("gone", "kernel", 99.0, 99.5, "d"), ("a", "engine 7", 99.5, 99.9, "a")]
    out = timeline.to_json(bars, {"a": 0, "b": 1})
    assert out == {"b": 99.5, "pl": ["engine 7", "kernel"], "j": [0, 0, 1], "p": [0, 1, 0],
                   "s": [0, 500, 500], "d": [400, 200, 500], "o": "afd"}
    assert timeline.to_json([], {"a": 0}) is None


# -- in the browser -------------------------------------------------------------------------

@pytest.fixture
def page(chromium):
    page = chromium.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, errors


@pytest.mark.browser
def test_details_show_attempts_options_and_peak_memory(store_board, page, screenshots):
    _, board = store_board
    open_fake_board(page, board.to_json(), {**run_json("", active=False), "t0": 0})
    page.click('.nbm-jobs [data-job-id="retried"]')
    details = page.locator('[data-role="details"]')
    details.wait_for(state="visible")
    text = details.inner_text()
    assert "timeout 30 s · retries 2 · resources: mem 1.0 GB" in text, text
    assert "peak memory" in text and " MB" in text, text
    attempts = details.locator('[data-log="attempts"]')
    assert "earlier attempts (1)" in attempts.inner_text()
    assert "RuntimeError: attempt 1 failed" in attempts.inner_text()
    page.screenshot(path=screenshots / "retried.png")

    # The timeline: a bar per run, the failed attempts too, one row (the kernel).
    page.click('button[data-tab="timeline"]')
    tl = page.locator('[data-role="timeline"]')
    tl.locator(".nbm-tb").first.wait_for()
    bars = tl.evaluate("""(t) => [...t.querySelectorAll('.nbm-tb')].map(
        (b) => [b.dataset.jobId, b.dataset.outcome, b.dataset.engine])""")
    assert sorted(bars) == sorted([
        ["steady-0", "done", "kernel"], ["steady-1", "done", "kernel"],
        ["steady-2", "done", "kernel"], ["retried", "attempt", "kernel"],
        ["retried", "done", "kernel"], ["hopeless", "attempt", "kernel"],
        ["hopeless", "failed", "kernel"]])
    assert tl.evaluate("(t) => [...t.querySelectorAll('[data-place]')].map((r) => r.dataset.place)") == ["kernel"]
    tl.locator('.nbm-tb[data-job-id="hopeless"][data-outcome="attempt"]').hover()
    tip = page.locator('[data-role="timeline-tip"]:not([hidden])')
    assert "hopeless" in tip.inner_text() and "attempt 1 failed" in tip.inner_text()
    page.screenshot(path=screenshots / "timeline.png")


@pytest.mark.browser
def test_a_live_run_draws_its_bars_and_progress_as_changes_come(page, screenshots):
    board = small_board()
    now = time.time()
    board.bars = [("load-1", "kernel", now - 100, now - 99, "d"),
                  ("fit-3", "engine 5", now - 98, now - 97, "f")]
    open_fake_board(page, board.to_json(), run_json("parmake", exp=2))
    page.click('button[data-tab="timeline"]')
    page.evaluate("""(now) => window.boardDelta({t: "delta", run: {exp: 2, fin: 0, active: true},
        j: {"fit-3": {s: "r", x: {t0: now - 1, eng: "engine 6", pg: [2, 8]}}}})""", now)
    prog = page.locator('.nbm-jprog [data-role="progress"][data-job-id="fit-3"]')
    assert prog.inner_text() == "2/8"
    page.evaluate("""(now) => window.boardDelta({t: "delta", run: {},
        j: {"fit-3": {s: "r", x: {t0: now - 1, eng: "engine 6", pg: [5, 8, "halfway"]}}}})""", now)
    assert prog.inner_text() == "5/8"
    page.click('.nbm-jprog a[data-goto="fit-3"]')
    assert page.locator('[data-role="details"] [data-role="progress"]').inner_text() == "5/8"
    # Its bar is live, on the engine that runs it: the stored run of fit-3 is superseded.
    page.wait_for_selector('[data-role="timeline"] .nbm-tb[data-job-id="fit-3"][data-outcome="running"]')
    fit = page.eval_on_selector_all('[data-role="timeline"] .nbm-tb[data-job-id="fit-3"]',
                                    "els => els.map(e => [e.dataset.outcome, e.dataset.engine])")
    assert fit == [["running", "engine 6"]]
    page.screenshot(path=screenshots / "live.png")
    page.evaluate("""(now) => window.boardDelta({t: "delta", run: {fin: 1},
        j: {"fit-3": {s: "d", F: 1, x: {t0: now - 1, t1: now, dur: 1, eng: "engine 6"}}}})""", now)
    assert page.locator('[data-role="progress"]').count() == 0
    page.wait_for_selector('[data-role="timeline"] .nbm-tb[data-job-id="fit-3"][data-outcome="done"]')
