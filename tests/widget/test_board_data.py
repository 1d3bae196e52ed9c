"""The board's data (nbmake_ext/ui/board.py) and its text fallback, without a kernel."""

from __future__ import annotations

import re

from samples import big_board, small_board

from nbmake_ext.core.graph import Graph
from nbmake_ext.core.jobspec import JobSpec
from nbmake_ext.ui import views
from nbmake_ext.ui.board import TEXT_CAP, Board, Job, clip, expected_jobs


def test_a_run_merges_changes_into_one_pending_delta():
    board = small_board()
    board.start_run("make", ["todo-1", "stale-1", "fit-3", "report"])
    board.change("fit-3", "running", {"reasons": ["its last run failed"]})
    board.change("fit-3", "done", {"duration": 0.5, "engine": "engine 7", "stdout": "ok\n",
                                   "stderr": "", "traceback": ""})
    board.change("report", "running", {})
    delta = board.take_delta()
    assert delta["t"] == "delta" and set(delta["j"]) == {"fit-3", "report"}
    fit = delta["j"]["fit-3"]
    assert fit["s"] == "d" and fit["F"] == 1
    assert fit["x"]["dur"] == 0.5 and fit["x"]["eng"] == "engine 7" and fit["x"]["out"] == "ok\n"
    assert "tb" not in fit["x"] and "err" not in fit["x"]  # the failure of the last run is gone
    assert fit["x"]["t0"] <= fit["x"]["t1"]
    assert delta["run"]["exp"] == 4 and delta["run"]["fin"] == 1 and delta["run"]["active"]
    assert not board.pending and board.take_delta()["j"] == {}


def test_a_skip_keeps_the_logs_and_is_up_to_date():
    board = small_board()
    board.start_run("make", ["stale-1"])
    board.change("stale-1", "done", {})
    x = board.take_delta()["j"]["stale-1"]["x"]
    assert "why" not in x and board.jobs["stale-1"].state == "done"
    board.change("load-1", "done", {})
    assert board.take_delta()["j"]["load-1"]["x"]["out"] == "loaded 1\n"


def test_new_children_join_the_run_with_their_parent_and_can_be_forgotten():
    board = small_board()
    board.start_run("parmake", ["squares"])
    board.change("square-9", "todo", {"parent": "squares", "function": "__main__.square",
                                      "deps": ["load-1"]})
    entry = board.take_delta()["j"]["square-9"]
    assert entry == {"p": "squares", "f": "square", "d": ["load-1"], "s": "t", "x": {}, "r": 1}
    assert "square-9" in board.run.expected
    board.change("square-9", "forgotten", {})
    delta = board.take_delta()
    assert delta["gone"] == ["square-9"] and "square-9" not in board.jobs
    data = board.to_json()
    assert "square-9" not in data["ids"]
    kid = data["ids"].index("square-0")
    assert data["ids"][data["par"][kid]] == "squares"


def test_snapshot_json_is_compact_and_complete():
    board = small_board()
    data = board.to_json()
    assert len(data["ids"]) == len(data["st"]) == len(data["fn"]) == len(data["par"]) == 20
    assert data["fns"][data["fn"][data["ids"].index("report")]] == "summarize"
    report = data["ids"].index("report")
    assert [data["ids"][d] for d in data["deps"][report]] == [f"fit-{i}" for i in range(6)]
    assert data["x"][str(data["ids"].index("fit-3"))]["err"].startswith("ValueError")
    assert data["st"][report] == "b"


def test_long_logs_keep_their_start_and_their_end():
    text = "start\n" + "x" * 100_000 + "\nValueError: the end\n"
    short = clip(text)
    assert len(short) < TEXT_CAP + 200
    assert short.startswith("start\n") and short.endswith("ValueError: the end\n")
    assert "characters cut" in short
    assert clip("small") == "small" and clip(None) == ""


def spec(jid: str, *deps: str) -> JobSpec:
    return JobSpec(jid, "m.f", "c", {}, "a", tuple(deps))


def test_expected_jobs_of_make_and_remake():
    graph = Graph([spec("a"), spec("b", "a"), spec("c", "b"), spec("d")])
    board = Board([Job("a", "done", "f", None, ()), Job("b", "stale", "f", None, ("a",)),
                   Job("c", "todo", "f", None, ("b",)), Job("d", "todo", "f", None, ())])
    assert expected_jobs(board, graph, "make", ["c"]) == {"b", "c"}
    assert expected_jobs(board, graph, "make", []) == {"b", "c", "d"}
    assert expected_jobs(board, graph, "remake", ["a"]) == {"a", "b", "c"}


def test_text_fallback_lists_problems_and_functions():
    board = small_board()
    board.start_run("parmake", [])
    board.run.active = False
    board.run.ended = board.run.started + 1.5
    board.run.outcome = "failed"
    board.run.summary = "parmake: 1 done, 1 failed, 1 blocked, 0 up to date in 1.50s"
    text = views.board_text(board)
    lines = text.splitlines()
    assert lines[0] == ("job board (parmake, finished with failures in 1.50s): 20 jobs: "
                        "1 todo, 1 stale, 16 done, 1 failed, 1 blocked")
    assert lines[1] == "  (parmake: 1 done, 1 failed, 1 blocked, 0 up to date in 1.50s)"
    assert any(line.split()[:3] == ["failed", "fit-3", "fit"] for line in lines)
    assert any(line.split() == ["blocked", "report", "summarize", "blocked", "by", "fit-3"]
               for line in lines)
    html = views.board_html(board)
    assert "ValueError: 70 readings are NaN" in html and "traceback of fit-3" in html
    board.run.active = True
    assert views.board_text(board) == ("job board (parmake, running): 20 jobs: 1 todo, "
                                       "1 stale, 16 done, 1 failed, 1 blocked")


def test_the_problem_of_a_job_blocked_through_another_names_the_failed_job():
    board = Board([Job("a", "failed", "f", None, (), {"err": "ValueError: a"}),
                   Job("b", "blocked", "g", None, ("a",), {"by": "a"}),
                   Job("c", "blocked", "h", None, ("b",), {"by": "b"}),  # named its blocker
                   Job("d", "blocked", "h", None, ("c",), {}),          # named none
                   Job("e", "done", "f", None, (), {})])
    rows = {line.split()[1]: line.split()[3:] for line in views.board_text(board).splitlines()
            if line.split()[:1] in (["failed"], ["blocked"])}
    assert rows == {"a": ["ValueError:", "a"], "b": ["blocked", "by", "a"],
                    "c": ["blocked", "by", "a"], "d": ["blocked", "by", "a"]}
    assert "blocked by a" in views.board_html(board)


def test_a_static_board_lists_every_job_with_its_state_up_to_200():
    board = small_board()
    board.start_run("make", [])
    board.run.active = False
    html = views.board_html(board)
    for job in board.jobs.values():
        parent = f' data-parent="{job.parent}"' if job.parent else ""
        assert f'data-job-id="{job.job_id}" data-state="{job.state}"{parent}' in html
    assert 'title="report: blocked by fit-3"' in html
    lines = views.board_text(board).splitlines()
    assert "fit (6): done fit-0 fit-1 fit-2 fit-4 fit-5 · failed fit-3" in lines
    assert "summarize (1): blocked report" in lines
    host = views.board_host("abc", html)
    assert host.startswith('<div class="nbmake-board" data-nbmake-board="abc">'
                           '<div class="nbmake-static">')


def test_beyond_200_jobs_a_static_board_counts_per_function_and_lists_every_failure():
    board = big_board(1_000, functions=10, dynamic=5)
    html = views.board_html(board)
    failed = [j for j in board.jobs.values() if j.state == "failed"]
    assert len(failed) > views.BOARD_PROBLEMS_SHOWN  # more than the table of problems holds
    for job in failed:
        assert f'data-job-id="{job.job_id}" data-state="failed"' in html
    assert not re.search(r'data-job-id="[^"]+" data-state="done"', html)  # not the others
    assert "<td" in html and ">func_3<" in html
    text = views.board_text(board)
    assert f"failed ({len(failed)}): " in text
    assert all(j.job_id in text for j in failed)
