"""A job is ``running`` only while it executes (SPEC 2), not while it waits in an engine's
queue: the views are told "running" when the runner reports ``Started``. Real engines,
real sockets; the views' running count is sampled while the make runs."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from enginejobs import jobs as J  # noqa: E402
from enginejobs.support import *  # noqa: E402,F401,F403
from enginejobs.support import guarded  # noqa: E402


class Board:
    """What a view knows: each job's last public state. A thread samples the number of
    running jobs every 50 ms, as a view refreshing itself would."""

    def __init__(self):
        self.state: dict[str, str] = {}
        self.engines: dict[str, str] = {}
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def job_changed(self, job_id, state, info):
        self.state[job_id] = state
        if state == "running":
            self.engines[job_id] = info.get("engine", "")

    def tick(self):
        pass

    def running(self) -> int:
        return sum(1 for s in list(self.state.values()) if s == "running")

    def _sample(self):
        while not self._stop.is_set():
            self.samples.append(self.running())
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.mark.timeout(120)
def test_parmake_2_shows_at_most_2_running_though_engines_hold_more(make_ctx, lab):
    ctx = make_ctx()
    for i in range(12):
        ctx.comp(J.nap, lab, f"n{i}", 0.5, job_id=f"n{i}")
    with Board() as board:
        report = guarded(ctx.parmake, n=2, observer=board)
    assert report.ran == 12
    assert board.samples, "nothing sampled"
    assert max(board.samples) <= 2, board.samples
    assert max(board.samples) == 2, board.samples  # both engines were seen busy
    assert all(board.state[f"n{i}"] == "done" for i in range(12))
    assert all(e.startswith("engine ") for e in board.engines.values()), board.engines


@pytest.mark.timeout(60)
def test_serial_make_shows_the_job_it_runs_as_running(make_ctx, lab):
    ctx = make_ctx()
    for i in range(4):
        ctx.comp(J.nap, lab, f"s{i}", 0.2, job_id=f"s{i}")
    with Board() as board:
        seen = []
        tell = board.job_changed

        def job_changed(job_id, state, info):
            tell(job_id, state, info)
            if state == "running":  # the job has not begun yet when the views are told
                seen.append((job_id, [e for e in J.names(lab) if e.startswith(job_id)]))
        board.job_changed = job_changed
        report = ctx.make(observer=board)
    assert report.ran == 4
    assert max(board.samples) == 1, board.samples
    assert [j for j, _ in seen] == ["s0", "s1", "s2", "s3"]
    assert all(events == [] for _, events in seen), seen
