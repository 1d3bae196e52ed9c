"""``nbmake_ext.progress(done, total, message)`` inside a job: the run's observer is told
growing fractions while the job runs, in the kernel's make, on engines and on Dask; reports
are throttled (at most ~5 a second per job, whatever the pace of the calls), a call costs
little, and outside a job ``progress`` does nothing. The console's live line shows it."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from enginejobs import jobs as J  # noqa: E402
from enginejobs.support import *  # noqa: E402,F401,F403
from enginejobs.support import guarded  # noqa: E402

from nbmake_ext import progress  # noqa: E402
from nbmake_ext.shared import progress as P  # noqa: E402
from nbmake_ext.ui.progress_line import ProgressLine  # noqa: E402


class Watcher:
    """A view: the state of each job, and every progress report with the time it came and
    the state the job was in then."""

    def __init__(self):
        self.state: dict[str, str] = {}
        self.reports: dict[str, list[tuple[float, float, float, str, str]]] = {}
        self.threads: set[str] = set()

    def job_changed(self, job_id, state, info):
        self.state[job_id] = state

    def job_progress(self, job_id, done, total, message):
        self.threads.add(threading.current_thread().name)
        self.reports.setdefault(job_id, []).append(
            (time.monotonic(), done, total, message, self.state.get(job_id)))

    def tick(self):
        pass

    def fractions(self, job_id) -> list[float]:
        return [done / total for _, done, total, _, _ in self.reports.get(job_id, [])]


def check_growing(w: Watcher, job_id: str, steps: int, seconds: float) -> None:
    reports = w.reports.get(job_id, [])
    fractions = w.fractions(job_id)
    assert len(fractions) >= 3, reports
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions), reports
    assert all(state == "running" for *_, state in reports), reports
    assert all(total == steps and msg == f"step {int(done)}" for _, done, total, msg, _ in reports)
    # Throttled: at most one report per INTERVAL (and a first one at once).
    assert len(reports) <= seconds / P.INTERVAL + 2, reports
    gaps = [b[0] - a[0] for a, b in zip(reports, reports[1:])]
    assert min(gaps) >= P.INTERVAL * 0.8, gaps


# -- the reporter -------------------------------------------------------------------------

def test_outside_a_job_progress_does_nothing():
    assert progress(1, 2) is None
    assert progress(3, 4, "message") is None
    assert progress("not", "numbers") is None  # nothing looks at them outside a job


def test_the_reporter_sends_the_first_report_then_at_most_one_per_interval():
    now = [100.0]
    sent = []
    r = P.Reporter("j", lambda *a: sent.append(a), clock=lambda: now[0])
    r.report(0, 10, "")
    for i in range(1, 6):  # within the interval: held back
        now[0] += 0.03
        r.report(i, 10, "")
    assert sent == [("j", 0.0, 10.0, "")]
    now[0] += P.INTERVAL
    r.report(7, 10, "halfway")
    assert sent[-1] == ("j", 7.0, 10.0, "halfway")
    now[0] += P.INTERVAL
    r.report(7, 10, "halfway")  # nothing new: nothing sent
    assert len(sent) == 2
    with pytest.raises(TypeError, match="numbers expected"):
        now[0] += P.INTERVAL
        r.report("seven", 10, "")


def test_a_report_held_back_is_sent_by_a_timer_where_the_place_allows_it():
    sent = []
    with P.reporting("j", lambda *a: sent.append((time.monotonic(), a)), later=True):
        progress(1, 4)
        progress(2, 4)
        progress(3, 4)  # a burst, then a long step: 3/4 must still show
        time.sleep(P.INTERVAL * 2.5)
        assert [a[1] for _, a in sent] == [1.0, 3.0]
        assert sent[1][0] - sent[0][0] >= P.INTERVAL * 0.9
    progress(4, 4)  # the job ended: nothing more
    time.sleep(P.INTERVAL * 1.5)
    assert len(sent) == 2


def test_a_job_in_threads_of_one_process_reports_through_its_own_thread_only():
    sent = []

    def job(name):
        with P.reporting(name, lambda *a: sent.append(a), whole_process=False):
            progress(1, 2)
            time.sleep(0.05)

    threads = [threading.Thread(target=job, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a[0] for a in sent) == ["t0", "t1", "t2"]
    progress(1, 2)  # this thread runs no job
    assert len(sent) == 3


# -- in the kernel's make -----------------------------------------------------------------

@pytest.mark.timeout(60)
def test_make_tells_the_observer_growing_fractions_while_the_job_runs(make_ctx):
    ctx = make_ctx()
    ctx.comp(J.counting, 12, 0.07, job_id="count")
    w = Watcher()
    report = ctx.make(observer=w)
    assert report.ran == 1 and w.state["count"] == "done"
    check_growing(w, "count", 12, 12 * 0.07)


@pytest.mark.timeout(60)
def test_a_tight_loop_of_progress_calls_stays_cheap_and_sends_little(make_ctx):
    ctx = make_ctx()
    p = ctx.comp(J.tight, 300_000, job_id="tight")
    w = Watcher()
    t0 = time.monotonic()
    ctx.make(observer=w)
    seconds = time.monotonic() - t0
    per_call = p.result()
    assert per_call < 3e-6, f"{per_call * 1e9:.0f} ns per progress() call"
    assert 1 <= len(w.reports["tight"]) <= seconds / P.INTERVAL + 2, w.reports["tight"]


@pytest.mark.timeout(60)
def test_the_console_line_shows_the_progress_of_running_jobs(make_ctx):
    ctx = make_ctx()
    ctx.comp(J.counting, 8, 0.08, job_id="count")
    line = ProgressLine()
    seen = []
    tell = line.job_progress

    def job_progress(*args):
        tell(*args)
        seen.append(line.text())
    line.job_progress = job_progress
    ctx.make(observer=line)
    assert len(seen) >= 2 and all("running: count " in s for s in seen), seen
    assert seen[-1].split("running: count ")[1].split("/") [1] == "8"
    assert "/" not in line.text().split("running")[-1]  # gone once the job ended


# -- on engines -----------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_parmake_tells_the_observer_growing_fractions_from_the_engines(make_ctx):
    ctx = make_ctx()
    ctx.comp(J.counting, 12, 0.07, job_id="count-a")
    ctx.comp(J.counting, 12, 0.07, job_id="count-b")
    p = ctx.comp(J.tight, 300_000, job_id="tight")
    w = Watcher()
    report = guarded(ctx.parmake, n=2, observer=w)
    assert report.ran == 3
    for job in ("count-a", "count-b"):
        check_growing(w, job, 12, 12 * 0.07 + 0.5)
    assert p.result() < 3e-6, f"{p.result() * 1e9:.0f} ns per progress() call on an engine"
    assert 1 <= len(w.reports["tight"]) <= 5, w.reports["tight"]
    assert w.threads == {threading.main_thread().name}  # told by the run loop


# -- on Dask ------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_parmake_on_dask_tells_the_observer_growing_fractions(make_ctx):
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None,
                                  scheduler_kwargs={"dashboard": False,
                                                    "dashboard_address": "127.0.0.1:0"}) as lc, \
            distributed.Client(lc, set_as_default=False) as client:
        ctx = make_ctx()
        ctx.comp(J.counting, 12, 0.08, job_id="count-a")
        ctx.comp(J.counting, 12, 0.08, job_id="count-b")
        w = Watcher()
        report = guarded(ctx.parmake, dask=client, observer=w)
    assert report.ran == 2
    for job in ("count-a", "count-b"):
        fractions = w.fractions(job)
        assert len(fractions) >= 3, w.reports
        assert fractions == sorted(fractions), w.reports
        assert all(state == "running" for *_, state in w.reports[job]), w.reports
