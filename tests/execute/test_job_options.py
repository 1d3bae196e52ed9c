"""Job options enforced (SPEC 5, "Job options"): ``job_timeout``, ``job_retries`` and
``job_resources`` on the kernel's own make and on real engine processes, and each job's
peak memory. (Dask: test_dask_options.py.)

What ran when is read from the jobs' own event lines (enginejobs/jobs.py), never from a
guess about timing; the one bound on time checked here is that a make with a job that
would sleep for an hour returns within seconds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from enginejobs import jobs as J  # noqa: E402
from enginejobs import optionjobs as O  # noqa: E402
from enginejobs.support import *  # noqa: E402,F401,F403
from enginejobs.support import make_or_parmake as run  # noqa: E402
from enginejobs.support import guarded, wait_until  # noqa: E402

from nbmake_ext import JobsFailed  # noqa: E402
from nbmake_ext.ui import text  # noqa: E402

RUNNERS = ["make", "parmake"]


# -- timeouts -------------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", RUNNERS)
def test_a_job_past_its_timeout_is_failed_and_the_others_go_on(make_ctx, lab, how):
    ctx = make_ctx()
    ctx.comp(O.forever, lab, "hang", job_id="hang", job_timeout=0.5)
    ctx.comp(O.quick, lab, "other", job_id="other")
    t0 = time.monotonic()
    failed = run(ctx, how)
    assert time.monotonic() - t0 < 20
    assert isinstance(failed, JobsFailed)
    details = ctx.details("hang")
    assert details.state == "failed" and details.error == "timed out after 0.5 s"
    assert 0.5 <= details.duration < 5
    assert ctx.details("other").state == "done"
    if how == "parmake":  # the engine's own alarm stopped it: the engine lives on
        ran_on = [pid for event, pid, _ in J.events(lab) if event == "hang-start"][0]
        assert details.engine == f"engine {ran_on}"
        assert ran_on in ctx._pool.pids()


@pytest.mark.timeout(60)
def test_a_job_that_ignores_its_alarm_has_its_engine_killed_and_replaced(make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(J.work, lab, "warm", job_id="warm")
    guarded(ctx.parmake, n=2)
    before = set(ctx._pool.pids())
    ctx.comp(O.deaf_forever, lab, "deaf", job_id="deaf", job_timeout=1)
    ctx.comp(O.quick, lab, "after", job_id="after")
    t0 = time.monotonic()
    with pytest.raises(JobsFailed):
        guarded(ctx.parmake, n=2)
    took = time.monotonic() - t0
    assert took < 20
    details = ctx.details("deaf")
    victim = [pid for event, pid, _ in J.events(lab) if event == "deaf-start"][0]
    assert details.error == f"timed out after 1 s (it did not stop: engine {victim} was killed)"
    assert ctx.details("after").state == "done"
    wait_until(lambda: len(ctx._pool.pids()) == 2, what="a new engine in its place")
    after = set(ctx._pool.pids())
    assert victim in before and victim not in after
    # the time from the timeout to the failure recorded, with a new engine starting
    assert details.ended - details.started < 1 + 1.0


# -- retries --------------------------------------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", RUNNERS)
def test_a_flaky_job_passes_on_its_third_attempt_with_two_retries(make_ctx, lab, how):
    ctx = make_ctx()
    p = ctx.comp(O.flaky, lab, "net", 2, job_id="net", job_retries=2)
    down = ctx.comp(J.work, lab, "use", p, job_id="use")
    report = run(ctx, how)
    assert not isinstance(report, JobsFailed), report
    assert p.result() == "net after 3"
    assert down.result()["inputs"] == ["net after 3"]
    assert J.names(lab).count("use-start") == 1
    details = ctx.details("net")
    assert details.state == "done" and details.error is None
    assert [(a["attempt"], a["error"]) for a in details.attempts] == [
        (1, "ConnectionError: flaky read, attempt 1"),
        (2, "ConnectionError: flaky read, attempt 2")]
    assert all(a["duration"] >= 0 and a["started"] and a["traceback"] for a in details.attempts)
    rendered = text.render_details(details)
    assert "attempts" in rendered and "3. " in rendered and "succeeded" in rendered


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", RUNNERS)
def test_a_flaky_job_fails_after_two_attempts_with_one_retry(make_ctx, lab, how):
    ctx = make_ctx()
    ctx.comp(O.flaky, lab, "net", 2, job_id="net", job_retries=1)
    ctx.comp(J.work, lab, "use", ctx.comp(O.flaky, lab, "net", 2, job_id="net",
                                          job_retries=1), job_id="use")
    failed = run(ctx, how)
    assert isinstance(failed, JobsFailed)
    details = ctx.details("net")
    assert details.state == "failed"
    assert details.error == "ConnectionError: flaky read, attempt 2"
    assert [a["error"] for a in details.attempts] == ["ConnectionError: flaky read, attempt 1"]
    assert [e for e in J.names(lab) if e.startswith("net-")] == ["net-attempt1", "net-attempt2"]
    assert ctx.details("use").state == "blocked"
    # The next make runs it again from its first attempt: the old ones are not kept.
    Path(lab, "net.attempts").write_text("0")
    ctx.comp(O.flaky, lab, "net", 0, job_id="net", job_retries=1)
    run(ctx, how)
    assert ctx.details("net").state == "done" and ctx.details("net").attempts == []


@pytest.mark.timeout(90)
def test_a_job_whose_engine_dies_runs_again_with_a_retry(make_ctx, lab):
    ctx = make_ctx()
    p = ctx.comp(O.flaky, lab, "crash", 1, "die", job_id="crash", job_retries=1)
    report = run(ctx, "parmake")
    assert not isinstance(report, JobsFailed), report
    assert p.result() == "crash after 2"
    (first,) = ctx.details("crash").attempts
    assert first["error"].startswith("engine ") and "died while running it" in first["error"]


@pytest.mark.timeout(60)
def test_a_timed_out_attempt_is_retried(make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(O.forever, lab, "hang", job_id="hang", job_timeout=0.3, job_retries=1)
    assert isinstance(run(ctx, "make"), JobsFailed)
    details = ctx.details("hang")
    assert J.names(lab).count("hang-start") == 2
    assert [a["error"] for a in details.attempts] == ["timed out after 0.3 s"]
    assert details.error == "timed out after 0.3 s"


# -- resources ------------------------------------------------------------------------------

def spans(lab, names) -> dict[str, tuple[float, float]]:
    ev = {e: t for e, _, t in J.events(lab)}
    return {n: (ev[f"{n}-start"], ev[f"{n}-end"]) for n in names}


def overlapping(spans_: dict[str, tuple[float, float]]) -> int:
    """The most of these spans that overlap at one moment."""
    points = sorted([(a, 1) for a, _ in spans_.values()] + [(b, -1) for _, b in spans_.values()])
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


@pytest.mark.timeout(90)
def test_jobs_on_the_one_gpu_never_overlap_while_jobs_without_resources_do(make_ctx, lab):
    ctx = make_ctx()
    gpu = [ctx.comp(O.hold, lab, f"g{i}", 0.3, job_id=f"g{i}", job_resources={"gpus": 1})
           for i in range(4)]
    free = [ctx.comp(O.hold, lab, f"f{i}", 0.3, job_id=f"f{i}") for i in range(4)]
    guarded(ctx.parmake, n=2, resources={"gpus": 1})
    assert overlapping(spans(lab, [f"g{i}" for i in range(4)])) == 1
    assert overlapping(spans(lab, [f"f{i}" for i in range(4)])) == 2
    assert {p.result()["devices"] for p in gpu} == {"0"}
    assert {p.result()["devices"] for p in free} == {""}


@pytest.mark.timeout(90)
def test_two_gpus_are_shared_out_one_each_to_jobs_that_run_together(make_ctx, lab, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")  # as a machine with 2 GPUs shows them
    ctx = make_ctx()
    jobs = [ctx.comp(O.hold, lab, f"g{i}", 0.4, job_id=f"g{i}", job_resources={"gpus": 1})
            for i in range(4)]
    guarded(ctx.parmake, n=2)
    got = {p.job_id: p.result()["devices"] for p in jobs}
    assert set(got.values()) <= {"4", "7"}
    s = spans(lab, list(got))
    for a in got:
        for b in got:
            if a < b and s[a][0] < s[b][1] and s[b][0] < s[a][1]:
                assert got[a] != got[b], (a, b, got)


@pytest.mark.timeout(90)
def test_a_custom_resource_of_total_one_serialises_its_jobs(make_ctx, lab):
    ctx = make_ctx()
    for i in range(3):
        ctx.comp(O.hold, lab, f"l{i}", 0.3, job_id=f"l{i}", job_resources={"licence": 1})
    guarded(ctx.parmake, n=2)
    assert overlapping(spans(lab, ["l0", "l1", "l2"])) == 1
    for i in range(3):
        ctx.comp(O.hold, lab, f"m{i}", 0.3, job_id=f"m{i}", job_resources={"licence": 1})
    guarded(ctx.parmake, "m0", "m1", "m2", n=2, resources={"licence": 2})
    assert overlapping(spans(lab, ["m0", "m1", "m2"])) == 2


@pytest.mark.timeout(60)
def test_a_job_asking_for_more_than_a_total_fails_at_once_naming_both(make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(O.quick, lab, "big", job_id="big", job_resources={"gpus": 2})
    ctx.comp(O.quick, lab, "small", job_id="small")
    with pytest.raises(JobsFailed):
        guarded(ctx.parmake, n=2, resources={"gpus": 1})
    details = ctx.details("big")
    assert details.error == ("it asks for gpus=2, more than the total of 1 this make "
                             "shares out")
    assert "big-ran" not in J.names(lab) and "small-ran" in J.names(lab)


# -- peak memory ----------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", RUNNERS)
def test_a_job_that_allocates_200_mb_shows_a_peak_of_at_least_that(make_ctx, lab, how):
    ctx = make_ctx()
    ctx.comp(O.allocate, lab, "big", 200, job_id="big")
    ctx.comp(O.quick, lab, "small", job_id="small")
    run(ctx, how, "big")
    run(ctx, how, "small")
    assert ctx.details("big").peak_rss >= 200 << 20
    # measured per job: the next job in the same process does not inherit the peak
    assert ctx.details("small").peak_rss < 200 << 20
    assert "peak memory" in text.render_details(ctx.details("big"))
