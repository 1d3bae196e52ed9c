"""Boards made up in memory (no store): the data formats are the real ones."""

from __future__ import annotations

import time

from nbmake_ext.ui.board import Board, Job


def small_board() -> Board:
    """A load/fit/report pipeline with a failure, what it blocks, and a dynamic job with
    children."""
    jobs = [Job(f"load-{i}", "done", "load", None, (), {"dur": 0.01 * i, "eng": "kernel",
                                                       "out": f"loaded {i}\n"})
            for i in range(6)]
    jobs += [Job(f"fit-{i}", "done", "fit", None, (f"load-{i}",), {"dur": 0.2})
             for i in range(6) if i != 3]
    jobs.append(Job("fit-3", "failed", "fit", None, ("load-3",), {
        "err": "ValueError: 70 readings are NaN", "dur": 0.05, "eng": "engine-1",
        "tb": "Traceback (most recent call last):\n  File \"nb.py\", line 3, in fit\n"
              "ValueError: 70 readings are NaN\n", "out": "fitting sensor 3\n"}))
    jobs.append(Job("report", "blocked", "summarize", None,
                    tuple(f"fit-{i}" for i in range(6)), {"by": "fit-3"}))
    jobs.append(Job("squares", "done", "squares", None, (), {"dur": 0.3}))
    jobs += [Job(f"square-{i}", "done", "square", "squares", (), {"dur": 0.001})
             for i in range(4)]
    jobs.append(Job("todo-1", "todo", "later", None, ("report",), {}))
    jobs.append(Job("stale-1", "stale", "later", None, ("load-1",),
                    {"why": ["code of later changed"]}))
    return Board(jobs)


def big_board(n: int = 10_000, functions: int = 20, dynamic: int = 50,
              children: int = 20) -> Board:
    """``n`` jobs in ``functions`` groups with chains of dependencies; ``dynamic`` parents
    with ``children`` each; every state present."""
    states = ["done"] * 6 + ["todo", "stale", "failed", "blocked", "running"]
    jobs = []
    per = max(1, n // functions)
    made = 0
    for f in range(functions):
        for i in range(per):
            if made >= n - dynamic * (children + 1):
                break
            jid = f"f{f}-{i:05d}"
            deps = (f"f{f - 1}-{i:05d}",) if f and i < per else ()
            state = states[(f * 7 + i) % len(states)]
            x = {"dur": 0.01}
            if state == "failed":
                x = {"err": "ValueError: bad", "tb": "Traceback...\nValueError: bad\n"}
            elif state == "blocked":
                x = {"by": f"f{f}-{max(0, i - 1):05d}"}
            jobs.append(Job(jid, state, f"func_{f}", None, deps, x))
            made += 1
    for d in range(dynamic):
        pid = f"dyn-{d:03d}"
        jobs.append(Job(pid, "done", "expand", None, (), {"dur": 1.0}))
        jobs += [Job(f"{pid}-c{c:02d}", "done", "part", pid, (), {"dur": 0.1})
                 for c in range(children)]
    known = {j.job_id for j in jobs}
    for j in jobs:
        j.deps = tuple(d for d in j.deps if d in known)
    return Board(jobs)


def run_json(command: str = "parmake", active: bool = True, exp: int = 0, fin: int = 0) -> dict:
    now = time.time()
    return {"cmd": command, "active": active, "t0": now - 5, "now": now, "el": 5.0,
            "exp": exp, "fin": fin, "summary": "", "outcome": "" if active else "finished",
            "error": ""}
