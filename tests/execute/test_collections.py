"""The kernel's garbage collector during a run (shared/gc_pause.py, ``fewer_collections``):
while engines run the jobs, the run loop only keeps books and collects young objects
rarely; while jobs run in the kernel, they see the collector as the user set it."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from enginejobs import jobs as J  # noqa: E402
from enginejobs.support import *  # noqa: E402,F401,F403
from enginejobs.support import guarded  # noqa: E402

from nbmake_ext.shared.gc_pause import BOOKKEEPING_THRESHOLD  # noqa: E402


class Thresholds:
    """An observer of the run: the collector's threshold each time the loop turns."""

    def __init__(self):
        self.seen: set[int] = set()

    def job_changed(self, job_id, state, info):
        self.seen.add(gc.get_threshold()[0])

    def tick(self):
        self.seen.add(gc.get_threshold()[0])


def threshold_in_the_job() -> int:
    return gc.get_threshold()[0]


def test_a_parmake_collects_rarely_and_a_make_as_the_user_set(make_ctx, lab):
    usual = gc.get_threshold()
    ctx = make_ctx()
    for i in range(4):
        ctx.comp(J.work, lab, f"w{i}", job_id=f"w{i}")
    watch = Thresholds()
    guarded(ctx.parmake, n=2, observer=watch)
    assert watch.seen == {BOOKKEEPING_THRESHOLD}
    assert gc.get_threshold() == usual

    seen_by_job = ctx.comp(threshold_in_the_job, job_id="in-kernel")
    watch = Thresholds()
    ctx.make("in-kernel", observer=watch)
    assert seen_by_job.result() == usual[0] and watch.seen == {usual[0]}
    assert gc.get_threshold() == usual


def test_an_engine_loads_many_inputs_with_the_collector_paused_and_runs_the_job_with_it_on(
        make_ctx, lab, tmp_path):
    ctx = make_ctx()
    parts = [ctx.comp(J.loaded, i, job_id=f"part{i}") for i in range(4)]
    guarded(ctx.parmake, n=1)
    ctx.close()  # fresh engines: the inputs are read from the store and unpickled there
    ctx = make_ctx()
    parts = [ctx.comp(J.loaded, i, job_id=f"part{i}") for i in range(4)]
    seen = ctx.comp(J.collector_seen, *parts[:3], job_id="seen")
    alone = ctx.comp(J.collector_seen, parts[3], job_id="alone")
    guarded(ctx.parmake, "seen", "alone", n=1)
    assert ctx.lines[-1].startswith("parmake: 2 done")
    assert seen.result() == ([False, False, False], True)
    assert alone.result() == ([True], True)  # one input: nothing to put off
