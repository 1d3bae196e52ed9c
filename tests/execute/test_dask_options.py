"""Job options on a real Dask distributed cluster (SPEC 5, "Job options"): ``job_timeout``,
``job_retries`` and ``job_resources`` with ``parmake(dask=...)``, and each job's peak
memory. (The kernel's make and engines: test_job_options.py.)

One cluster serves the module, on loopback, processes=True, ``allowed-failures: 0``: two
workers of two threads, one offering ``gpus=1, licence=1``, the other nothing. Its
processes must all be gone when the module ends (checked).

The jobs are defined here and pickled by value (as a notebook's functions are). What ran,
where and when is read from the jobs' own event lines (``<event> <pid> <time>``, one
O_APPEND write each), and jobs wait for files the test or other jobs create; every wait is
bounded and every test has a hard timeout. A job that ignores its time limit keeps its
worker's thread (Dask cannot stop a running task): each test releases its own before it
ends.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cloudpickle  # noqa: E402
import dask  # noqa: E402

from enginejobs.support import cluster_leftovers, descendants  # noqa: E402
from nbmake_ext import Context, JobsFailed  # noqa: E402
from nbmake_ext.kernel import dask_limits  # noqa: E402
from nbmake_ext.kernel.dask import DaskRunner  # noqa: E402
from nbmake_ext.kernel.dask_limits import cannot_place  # noqa: E402
from nbmake_ext.ui import text  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

WAIT = 30.0
LOOPBACK = dict(host="127.0.0.1", dashboard_address=None,
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
GPU_WORKER = {"gpus": 1, "licence": 1}


# -- jobs (they run on the workers) ---------------------------------------------------------
# Defined here, not taken from enginejobs: this module is pickled by value, so Dask workers
# run these without the tests' folder on their path (log, events and names included).

def log(lab: str, event: str) -> None:
    fd = os.open(os.path.join(lab, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{event} {os.getpid()} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


def events(lab: str) -> list[tuple[str, int, float]]:
    path = Path(lab, "events.log")
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        event, pid, t = line.split(" ")
        out.append((event, int(pid), float(t)))
    return out


def names(lab: str) -> list[str]:
    return [e for e, _, _ in events(lab)]


def wait_for(path: Path, timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def attempt(lab: str, name: str) -> int:
    """Which attempt of ``name`` this is (counted in a file of the lab)."""
    counter = Path(lab, f"{name}.attempts")
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    return n


def quick(lab: str, name: str, *inputs) -> str:
    log(lab, f"{name}-ran")
    return name


def hold(lab: str, name: str, seconds: float, *inputs) -> dict:
    log(lab, f"{name}-start")
    time.sleep(seconds)
    log(lab, f"{name}-end")
    return {"name": name, "pid": os.getpid()}


def spin(lab: str, name: str) -> str:
    """Would run for ever, in Python: its time limit stops it (and it says so)."""
    log(lab, f"{name}-start")
    try:
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            time.sleep(0.01)
    except BaseException as exc:
        log(lab, f"{name}-stopped-by-{type(exc).__name__}")
        raise
    return "ran to its end"


def stubborn(lab: str, name: str) -> str:
    """Its first attempt ignores its time limit (swallows what stops it, as code stuck in
    C would not see it) until ``release-<name>`` exists, then returns a late result. A
    later attempt releases it, waits until it returned, and returns."""
    n = attempt(lab, name)
    log(lab, f"{name}-start{n}")
    release = Path(lab, f"release-{name}")
    if n == 1:
        end = time.monotonic() + WAIT
        while not release.exists() and time.monotonic() < end:
            try:
                time.sleep(0.01)
            except BaseException:  # noqa: BLE001 - deaf to its time limit
                pass
        log(lab, f"{name}-late")
        return "the late result of attempt 1"
    release.touch()
    end = time.monotonic() + WAIT
    while f"{name}-late" not in names(lab) and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.2)  # the late result is on its way meanwhile
    log(lab, f"{name}-end{n}")
    return f"attempt {n}"


def keeper(lab: str, name: str, other: str, seconds: float) -> str:
    """Keeps the make going: after ``seconds``, lets the stubborn ``other`` return late,
    and runs on a while after it did."""
    log(lab, f"{name}-start")
    time.sleep(seconds)
    Path(lab, f"release-{other}").touch()
    end = time.monotonic() + WAIT
    while f"{other}-late" not in names(lab) and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.5)  # the late result reaches the kernel meanwhile, if anything lets it
    log(lab, f"{name}-end")
    return name


def flaky(lab: str, name: str, failures: int) -> str:
    n = attempt(lab, name)
    log(lab, f"{name}-attempt{n}")
    if n <= failures:
        raise ConnectionError(f"flaky read, attempt {n}")
    return f"{name} after {n}"


def allocate(lab: str, name: str, megabytes: int) -> int:
    block = bytearray(megabytes << 20)
    for i in range(0, len(block), 4096):  # touch every page: resident, not just reserved
        block[i] = 1
    log(lab, f"{name}-allocated")
    return len(block)


# -- the cluster ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """Two workers of two threads: the first offers GPU_WORKER, the second nothing. At the
    end, every process the cluster started must be gone."""
    before = set(descendants())
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.comm.timeouts.connect": "3s"}):
        lc = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                      resources=dict(GPU_WORKER), **LOOPBACK)
        try:
            plain = dict(lc.new_spec)
            plain["options"] = {k: v for k, v in plain["options"].items() if k != "resources"}
            lc.new_spec = plain
            lc.scale(2)
            client = distributed.Client(lc, set_as_default=False)
            try:
                client.wait_for_workers(2, timeout=30)
                yield lc, client
            finally:
                client.close()
        finally:
            lc.close()
    left = cluster_leftovers(before)
    assert not left, f"processes of the cluster outlived it: {left}"


@pytest.fixture
def client(cluster):
    return cluster[1]


@pytest.fixture
def workers(client) -> dict[str, tuple[int, dict]]:
    """Worker address -> (its pid, the resources it offers)."""
    pids = client.run(os.getpid)
    info = client.scheduler_info()["workers"]
    return {a: (pids[a], dict(info[a].get("resources") or {})) for a in pids}


@pytest.fixture
def lab(tmp_path) -> str:
    d = tmp_path / "lab"
    d.mkdir()
    return str(d)


@pytest.fixture
def make_ctx(tmp_path, monkeypatch):
    monkeypatch.delenv("NBMAKE_STORE", raising=False)
    made: list[Context] = []

    def make(name: str = "store") -> Context:
        ctx = Context(store=tmp_path / name)
        ctx.lines = []
        ctx.report = ctx.lines.append
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


def idle(client, timeout: float = WAIT) -> None:
    """Until no task is processing on any worker (a test's leftovers do not spill over)."""
    end = time.monotonic() + timeout
    while any(client.processing().values()):
        assert time.monotonic() < end, f"the cluster stayed busy: {client.processing()}"
        time.sleep(0.05)


def parmake(ctx, client, *targets):
    """``ctx.parmake(dask=client)``; JobsFailed is returned, not raised."""
    try:
        return ctx.parmake(*targets, dask=client)
    except JobsFailed as exc:
        return exc


def release(lab: str, name: str) -> None:
    """Let a stubborn job's first attempt return, and wait until it did."""
    Path(lab, f"release-{name}").touch()
    end = time.monotonic() + WAIT
    while f"{name}-late" not in names(lab):
        assert time.monotonic() < end, f"{name} never returned"
        time.sleep(0.01)


# -- timeouts -------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_a_job_its_worker_cannot_stop_is_failed_at_its_timeout_and_its_late_result_dropped(
        client, workers, make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(stubborn, lab, "hang", job_id="hang", job_timeout=0.5)
    ctx.comp(quick, lab, "other", job_id="other")
    try:
        t0 = time.monotonic()
        failed = parmake(ctx, client)
        took = time.monotonic() - t0
        assert isinstance(failed, JobsFailed), failed
        # The job hangs until released below: the make returned without waiting for it,
        # at its time limit (with room for a busy machine's Dask).
        assert took < 0.5 + 8, f"the make returned {took:.1f} s after it started"
        assert "hang-late" not in names(lab)  # the job still ran when the make returned
        details = ctx.details("hang")
        assert details.state == "failed" and details.error == "timed out after 0.5 s"
        assert 0.5 <= details.duration < 0.5 + 6
        ran_on = [pid for e, pid, _ in events(lab) if e == "hang-start1"]
        assert details.engine in workers and workers[details.engine][0] in ran_on
        assert ctx.details("other").state == "done"
    finally:
        release(lab, "hang")
    idle(client)
    time.sleep(0.3)  # time for a late result to arrive, if anything took it
    details = ctx.details("hang")
    assert details.state == "failed" and details.error == "timed out after 0.5 s"
    assert [r.state for r in ctx.ls("hang")] == ["failed"]


@pytest.mark.timeout(60)
def test_a_late_result_that_comes_while_the_make_runs_is_dropped(client, make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(stubborn, lab, "hang", job_id="hang", job_timeout=0.5)
    ctx.comp(keeper, lab, "keeper", "hang", 2.0, job_id="keeper")
    try:
        assert isinstance(parmake(ctx, client), JobsFailed)
    finally:
        release(lab, "hang")
    order = names(lab)
    assert order.index("hang-late") < order.index("keeper-end")
    details = ctx.details("hang")
    assert details.state == "failed" and details.error == "timed out after 0.5 s"
    assert ctx.details("keeper").state == "done"
    idle(client)


@pytest.mark.timeout(60)
def test_a_job_in_python_is_stopped_on_its_worker_by_its_time_limit(client, workers, make_ctx,
                                                                   lab):
    ctx = make_ctx()
    ctx.comp(spin, lab, "spin", job_id="spin", job_timeout=0.5)
    t0 = time.monotonic()
    assert isinstance(parmake(ctx, client), JobsFailed)
    assert time.monotonic() - t0 < 0.5 + 3
    details = ctx.details("spin")
    assert details.error == "timed out after 0.5 s"
    assert details.engine in workers
    # It was stopped where it ran, in its thread, by the asynchronous exception.
    assert wait_for_event(lab, "spin-stopped-by-JobTimedOut")
    (pid,) = [p for e, p, _ in events(lab) if e == "spin-stopped-by-JobTimedOut"]
    assert workers[details.engine][0] == pid
    idle(client)


def wait_for_event(lab: str, event: str, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while event not in names(lab):
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("starts", ["heard", "lost"])
def test_time_queued_in_dask_does_not_count_against_a_timeout(client, make_ctx, lab, starts,
                                                               monkeypatch):
    """Three jobs of 1.2 s on the one licence, each with a timeout of 2 s: the last waits
    2.4 s in Dask before it starts, yet none times out, whether the kernel hears of their
    starts or not (then it asks the workers)."""
    if starts == "lost":
        monkeypatch.setattr(DaskRunner, "_on_started", lambda self, key, address: None)
    ctx = make_ctx()
    for i in range(3):
        ctx.comp(hold, lab, f"l{i}", 1.2, job_id=f"l{i}", job_timeout=2,
                 job_resources={"licence": 1})
    report = parmake(ctx, client)
    assert not isinstance(report, JobsFailed), report
    ev = {e: t for e, _, t in events(lab)}
    spans = sorted((ev[f"l{i}-start"], ev[f"l{i}-end"]) for i in range(3))
    assert spans[2][0] - spans[0][0] > 2, "the last one did not wait longer than its timeout"
    assert overlapping(spans) == 1


@pytest.mark.timeout(60)
def test_a_stuck_job_whose_start_the_kernel_never_heard_of_is_still_failed(
        client, make_ctx, lab, monkeypatch):
    monkeypatch.setattr(DaskRunner, "_on_started", lambda self, key, address: None)
    ctx = make_ctx()
    ctx.comp(stubborn, lab, "hang", job_id="hang", job_timeout=0.5)
    try:
        t0 = time.monotonic()
        assert isinstance(parmake(ctx, client), JobsFailed)
        assert time.monotonic() - t0 < 0.5 + dask_limits.ASK_EVERY + 3
        details = ctx.details("hang")
        assert details.error == "timed out after 0.5 s" and details.duration >= 0.5
        assert details.engine.startswith("tcp://")  # the worker that said it runs it
    finally:
        release(lab, "hang")
    idle(client)


# -- retries --------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_a_flaky_job_passes_on_its_third_attempt_with_two_retries(client, make_ctx, lab):
    ctx = make_ctx()
    p = ctx.comp(flaky, lab, "net", 2, job_id="net", job_retries=2)
    down = ctx.comp(quick, lab, "use", p, job_id="use")
    report = parmake(ctx, client)
    assert not isinstance(report, JobsFailed), report
    assert p.result() == "net after 3" and down.result() == "use"
    assert names(lab).count("use-ran") == 1
    details = ctx.details("net")
    assert details.state == "done" and details.error is None
    assert [(a["attempt"], a["error"]) for a in details.attempts] == [
        (1, "ConnectionError: flaky read, attempt 1"),
        (2, "ConnectionError: flaky read, attempt 2")]
    assert all(a["engine"].startswith("tcp://") and a["traceback"] for a in details.attempts)


@pytest.mark.timeout(60)
def test_a_flaky_job_fails_after_two_attempts_with_one_retry(client, make_ctx, lab):
    ctx = make_ctx()
    p = ctx.comp(flaky, lab, "net", 2, job_id="net", job_retries=1)
    ctx.comp(quick, lab, "use", p, job_id="use")
    assert isinstance(parmake(ctx, client), JobsFailed)
    details = ctx.details("net")
    assert details.state == "failed" and details.error == "ConnectionError: flaky read, attempt 2"
    assert [a["error"] for a in details.attempts] == ["ConnectionError: flaky read, attempt 1"]
    assert names(lab).count("net-attempt1") == 1 and names(lab).count("net-attempt2") == 1
    assert "net-attempt3" not in names(lab) and "use-ran" not in names(lab)
    assert ctx.details("use").state == "blocked"


@pytest.mark.timeout(60)
def test_a_timed_out_attempt_is_retried_and_its_late_result_never_counts(client, make_ctx,
                                                                         lab):
    """Attempt 1 ignores its time limit: the kernel fails it at its timeout and runs attempt
    2, which lets attempt 1 return while attempt 2 still runs: the result is attempt 2's."""
    ctx = make_ctx()
    p = ctx.comp(stubborn, lab, "hang", job_id="hang", job_timeout=1, job_retries=1)
    try:
        report = parmake(ctx, client)
        assert not isinstance(report, JobsFailed), report
    finally:
        release(lab, "hang")
    order = names(lab)
    assert order.index("hang-start1") < order.index("hang-start2") < order.index("hang-late") \
        < order.index("hang-end2")
    assert p.result() == "attempt 2"
    details = ctx.details("hang")
    assert details.state == "done"
    assert [(a["attempt"], a["error"]) for a in details.attempts] == [
        (1, "timed out after 1 s")]
    idle(client)
    assert ctx.details("hang").state == "done" and p.result() == "attempt 2"


# -- resources ------------------------------------------------------------------------------

def overlapping(spans: list[tuple[float, float]]) -> int:
    """The most of these spans that overlap at one moment."""
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


def spans_of(lab: str, jobs: list[str]) -> list[tuple[float, float]]:
    ev = {e: t for e, _, t in events(lab)}
    return [(ev[f"{j}-start"], ev[f"{j}-end"]) for j in jobs]


@pytest.mark.timeout(60)
def test_gpu_jobs_run_one_at_a_time_on_the_gpu_worker_while_others_overlap(
        client, workers, make_ctx, lab):
    (gpu_pid,) = [pid for pid, offers in workers.values() if offers.get("gpus")]
    ctx = make_ctx()
    first = ctx.comp(quick, lab, "first", job_id="first")
    gpu = [f"g{i}" for i in range(4)]
    for i, name in enumerate(gpu):  # g2 and g3 wait for an input: they go once it is made
        inputs = (first,) if i >= 2 else ()
        ctx.comp(hold, lab, name, 0.3, *inputs, job_id=name, job_resources={"gpus": 1})
    report = parmake(ctx, client)
    assert not isinstance(report, JobsFailed), report
    assert overlapping(spans_of(lab, gpu)) == 1
    assert {pid for e, pid, _ in events(lab) if e[0] == "g"} == {gpu_pid}
    assert {ctx.details(g).engine for g in gpu} == {
        a for a, (pid, _) in workers.items() if pid == gpu_pid}

    free = [f"f{i}" for i in range(4)]
    for name in free:
        ctx.comp(hold, lab, name, 0.3, job_id=name)
    report = parmake(ctx, client, *free)
    assert not isinstance(report, JobsFailed), report
    assert overlapping(spans_of(lab, free)) >= 2


@pytest.mark.timeout(60)
def test_a_resource_offered_as_one_serialises_its_jobs(client, make_ctx, lab):
    ctx = make_ctx()
    jobs = [f"l{i}" for i in range(3)]
    for name in jobs:
        ctx.comp(hold, lab, name, 0.3, job_id=name, job_resources={"licence": 1})
    report = parmake(ctx, client)
    assert not isinstance(report, JobsFailed), report
    assert overlapping(spans_of(lab, jobs)) == 1


@pytest.mark.timeout(60)
def test_a_job_no_worker_could_run_fails_at_once_naming_its_ask_and_the_offer(
        client, make_ctx, lab):
    ctx = make_ctx()
    first = ctx.comp(quick, lab, "first", job_id="first")
    ctx.comp(quick, lab, "big", job_id="big", job_resources={"gpus": 2})
    ctx.comp(quick, lab, "after", first, job_id="after", job_resources={"gpus": 2})
    ctx.comp(quick, lab, "nowhere", job_id="nowhere", job_resources={"tpus": 1, "mem": "1GB"})
    ctx.comp(quick, lab, "free", job_id="free", job_resources={"gpus": 0})
    t0 = time.monotonic()
    failed = parmake(ctx, client)
    assert time.monotonic() - t0 < 5
    assert isinstance(failed, JobsFailed)
    more = "it asks for gpus=2, more than any Dask worker offers (at most gpus=1)"
    assert ctx.details("big").error == more
    assert ctx.details("after").error == more  # (decided once its input was made)
    assert ctx.details("nowhere").error == (
        'it asks for mem=1 GB, tpus=1, but no Dask worker offers mem or tpus (workers '
        'declare resources: dask worker --resources "mem=1000000000,tpus=1")')
    assert ctx.details("free").state == "done"
    assert sorted(names(lab)) == ["first-ran", "free-ran"]


def test_what_no_worker_could_run_is_said_in_words():
    offers = [{"gpus": 1, "licence": 1}, {"mem": 8e9}]
    assert cannot_place({"gpus": 1}, offers) is None
    assert cannot_place({"gpus": 1, "licence": 1}, offers) is None
    assert cannot_place({"gpus": 1}, []) is None  # no worker yet: the cluster may be starting
    assert cannot_place({"gpus": 1, "mem": 1e9}, offers) == (
        "it asks for gpus=1, mem=1 GB, but no one Dask worker offers all of it (workers "
        "offer gpus=1, licence=1; mem=8 GB)")
    assert cannot_place({"mem": 9e9}, offers) == (
        "it asks for mem=9 GB, more than any Dask worker offers (at most mem=8 GB)")
    assert cannot_place({"cpus": 2}, offers) == (
        'it asks for cpus=2, but no Dask worker offers cpus (workers declare resources: '
        'dask worker --resources "cpus=2")')


# -- peak memory ----------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_a_job_that_allocates_200_mb_shows_a_peak_of_at_least_that(client, make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(allocate, lab, "big", 200, job_id="big")
    ctx.comp(quick, lab, "small", job_id="small")
    assert not isinstance(parmake(ctx, client, "big"), JobsFailed)
    assert not isinstance(parmake(ctx, client, "small"), JobsFailed)
    assert ctx.details("big").peak_rss >= 200 << 20
    # measured per job: a later job on the same worker does not inherit the peak
    assert 0 < ctx.details("small").peak_rss < 200 << 20
    assert "peak memory" in text.render_details(ctx.details("big"))
