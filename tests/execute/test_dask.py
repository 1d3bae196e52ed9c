"""parmake --dask on a real Dask distributed cluster (SPEC 5, 7 and 8).

One ``distributed.LocalCluster`` on loopback serves the module: processes=True, two
workers of one thread, no dashboard, and ``allowed-failures: 0`` so a task whose worker
dies is ``KilledWorker`` at once instead of being retried elsewhere. Its processes must all
be gone when the module ends (checked).

The jobs are defined here and pickled by value (as a notebook's functions are), so the
workers, engines and the console never import this module. What ran, and where, is proven
by side effects (O_APPEND event lines with the pid of the process that ran the job, files
that jobs and the test wait for), never by timing; every wait is bounded and every test
has a hard timeout.
"""

from __future__ import annotations

import linecache
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cloudpickle  # noqa: E402
import dask  # noqa: E402

from contexts import record_elsewhere_when_claimed  # noqa: E402
import logcheck  # noqa: E402
from enginejobs.support import cluster_leftovers, descendants  # noqa: E402
from nbmake_ext import Context, JobsFailed, NbmakeError  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

WAIT = 30.0
# Loopback only; no dashboard, and the scheduler's metrics server on a free port (not 8787).
LOOPBACK = dict(host="127.0.0.1", dashboard_address=None,
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})


# -- jobs (they run on the workers) ---------------------------------------------------------

def log(lab: str, event: str) -> None:
    fd = os.open(os.path.join(lab, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{event} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def events(lab: str) -> list[tuple[str, int]]:
    path = Path(lab, "events.log")
    if not path.exists():
        return []
    return [(e, int(p)) for e, p in (line.split(" ") for line in path.read_text().splitlines())]


def names(lab: str) -> list[str]:
    return [e for e, _ in events(lab)]


def floats(lab: str, name: str, n: int, version: int = 0):
    """0.0, 1.0, ... n - 1 as a numpy array; ``version`` changes the job, not its result."""
    import numpy as np

    log(lab, f"{name}-start")
    return np.arange(n, dtype=np.float64)


def total_of(a) -> float:
    return float(a.sum())


def wait_for(path: Path, timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def work(lab: str, name: str, *inputs):
    log(lab, name)
    print(f"{name} says hello")
    return {"name": name, "pid": os.getpid(), "inputs": list(inputs)}


def fail(lab: str, name: str):
    log(lab, name)
    raise ValueError(f"{name} is broken")


def wait_to_be_killed(lab: str, name: str):
    log(lab, name)
    time.sleep(0.2)  # well into the job (its start has been announced)
    # Whole or absent (written aside, then renamed): the killer reads it as it appears.
    Path(lab, f"started-{name}.part").write_text(str(os.getpid()))
    os.replace(Path(lab, f"started-{name}.part"), Path(lab, f"started-{name}"))
    time.sleep(WAIT)
    return "survived"


def hold(lab: str, name: str):
    log(lab, name)
    Path(lab, f"started-{name}").touch()
    if not wait_for(Path(lab, f"release-{name}"), 60):
        raise TimeoutError(f"{name} never released")
    return name


def rendezvous(lab: str, me: str, other: str, timeout: float = WAIT):
    """Starts, then waits until ``other`` started: it can only return if both run at once."""
    Path(lab, f"started-{me}").touch()
    log(lab, me)
    if not wait_for(Path(lab, f"started-{other}"), timeout):
        raise TimeoutError(f"{me}: {other} never started while {me} ran")
    return me


def chatter(lab: str, me: str, other: str):
    """Prints, waits until ``other`` printed too (so both print at once), prints again."""
    print(f"{me} 1")
    Path(lab, f"printed-{me}").touch()
    if not wait_for(Path(lab, f"printed-{other}")):
        raise TimeoutError(f"{other} never ran alongside {me}")
    print(f"{me} 2", file=sys.stderr)
    print(f"{me} 3")
    return me


def leaf(lab: str, name: str, x):
    log(lab, name)
    return x * 10


def add(*xs):
    return sum(xs)


def fan(ctx, lab: str, base, k: int):
    """Dynamic: k children on ``base``, a nested dynamic child, and a child that sums them."""
    log(lab, f"fan{k}")
    kids = [ctx.comp(leaf, lab, f"leaf{k}-{i}", base + i) for i in range(k)]
    inner = ctx.comp_dynamic(inner_fan, lab, kids[0], job_id=f"inner{k}")
    total = ctx.comp(add, *kids, inner, job_id=f"total{k}")
    return {"total": total, "kids": kids}


def inner_fan(ctx, lab: str, x):
    log(lab, "inner")
    grand = [ctx.comp(leaf, lab, f"grand-{i}", x + i) for i in range(2)]
    return ctx.comp(add, *grand)


class LoadsNowhere:
    """Pickles fine (by reference to a builtin); loading it calls ``int("poison")``, which
    raises."""

    def __reduce__(self):
        return (int, ("poison",))


class DeepTrouble(BaseException):
    pass


def raise_base(lab: str, name: str, kind: str):
    log(lab, name)
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if kind == "GeneratorExit":
        raise GeneratorExit("closed")
    raise DeepTrouble("from the deep")


# -- the cluster ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster on loopback; at the end, every process it started must be gone."""
    before = set(descendants())
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.comm.timeouts.connect": "3s"}):
        lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      **LOOPBACK)
        client = distributed.Client(lc, set_as_default=False)
        try:
            yield lc, client
        finally:
            client.close()
            lc.close()
    left = cluster_leftovers(before)
    assert not left, f"processes of the cluster outlived it: {left}"


@pytest.fixture
def client(cluster):
    lc, client = cluster
    client.wait_for_workers(2, timeout=30)
    return client


@pytest.fixture
def address(cluster):
    return cluster[0].scheduler_address


@pytest.fixture
def lab(tmp_path) -> str:
    d = tmp_path / "lab"
    d.mkdir()
    return str(d)


@pytest.fixture
def make_ctx(tmp_path, monkeypatch):
    monkeypatch.delenv("NBMAKE_STORE", raising=False)
    made: list[Context] = []

    def make(name: str = "store", **kw) -> Context:
        ctx = Context(store=tmp_path / name, **kw)
        ctx.lines = []
        ctx.report = ctx.lines.append
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


def _queued_on_worker(dask_worker) -> list:
    return [k for k, ts in dask_worker.state.tasks.items()
            if ts.state in ("waiting", "ready", "constrained", "fetch", "flight")]


def worker_pids(client) -> dict[str, int]:
    return client.run(os.getpid)


def states(ctx) -> dict[str, str]:
    return {r.job_id: r.state for r in ctx.ls()}


def timeless(line: str) -> str:
    return re.sub(r"in \d+\.\d\ds", "in Ts", line)


def idle(client, timeout: float = 30.0) -> None:
    """Until no task is processing on any worker (a test's leftovers do not spill over)."""
    end = time.monotonic() + timeout
    while any(client.processing().values()):
        assert time.monotonic() < end, f"the cluster stayed busy: {client.processing()}"
        time.sleep(0.05)


# -- 1. where jobs run, caching, keys -------------------------------------------------------

@pytest.mark.timeout(120)
def test_jobs_run_in_the_workers_processes_and_results_are_cached(client, address, make_ctx,
                                                                   lab):
    ctx = make_ctx()
    loads = [ctx.comp(work, lab, f"load{i}", i, job_id=f"load{i}") for i in range(6)]
    total = ctx.comp(work, lab, "total", loads, job_id="total")
    pids = worker_pids(client)

    report = ctx.parmake(dask=client)
    assert report.ran == 7 and report.skipped == 0 and not report.failed
    assert timeless(ctx.lines[-1]) == "parmake: 7 done, 0 up to date in Ts"

    ran = events(lab)
    assert sorted(e for e, _ in ran) == sorted([f"load{i}" for i in range(6)] + ["total"])
    assert {pid for _, pid in ran} <= set(pids.values()), "a job ran outside the workers"
    assert os.getpid() not in {pid for _, pid in ran}
    result = total.result()
    assert result["pid"] in pids.values()
    assert [r["name"] for r in result["inputs"][0]] == [f"load{i}" for i in range(6)]
    assert [r["inputs"] for r in result["inputs"][0]] == [[i] for i in range(6)]

    d = ctx.details("load3")
    assert d.state == "done" and d.engine in pids, "Timing.engine is the worker's address"
    assert pids[d.engine] == loads[3].result()["pid"]
    assert d.stdout == "load3 says hello\n"
    assert d.duration is not None and d.duration >= 0

    # Cached: a second run (an address this time) executes nothing.
    again = ctx.parmake(dask=address)
    assert again.ran == 0 and again.skipped == 7
    assert events(lab) == ran, "a second parmake --dask ran jobs"
    assert ctx.make().ran == 0
    other = make_ctx()  # a fresh context on the same store: everything done
    assert set(states(other).values()) == {"done"}

    # Cleaning one job runs it again: a new run's tasks are never Dask's old ones.
    ctx.clean("total")
    third = ctx.parmake(dask=client)
    assert third.ran == 1 and third.skipped == 6
    assert names(lab).count("total") == 2 and names(lab).count("load3") == 1


def notebook_cells(cells: dict[str, str]) -> dict:
    """Run each cell's source as a notebook does: in files only this process's linecache
    holds. Returns the namespace the cells share."""
    ns = {"__name__": "__main__"}
    for name, src in cells.items():
        filename = f"/tmp/ipykernel_nowhere/{uuid.uuid4().hex}-{name}.py"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        exec(compile(src, filename, "exec"), ns)
    return ns


@pytest.mark.timeout(120)
def test_a_notebook_functions_traceback_from_a_worker_shows_its_source_lines(client, make_ctx):
    ns = notebook_cells({"inner": "def inner(x):\n    return x['missing']\n",
                         "outer": "def outer(x):\n    y = inner(x)\n    return y\n"})
    ctx = make_ctx()
    ctx.comp(ns["outer"], {}, job_id="j")
    with pytest.raises(JobsFailed):
        ctx.parmake(dask=client)
    tb = ctx.details("j").traceback
    assert ", in outer\n    y = inner(x)" in tb, tb
    assert ", in inner\n    return x['missing']" in tb, tb


def test_a_child_a_dynamic_job_defines_on_a_worker_shows_its_source_lines(client, make_ctx):
    ns = notebook_cells({"fragile": "def fragile(x):\n    y = x['missing']\n    return y\n",
                         "spawn": "def spawn(ctx):\n    return ctx.comp(fragile, {}, job_id='kid')\n"})
    ctx = make_ctx()
    ctx.comp_dynamic(ns["spawn"], job_id="top")
    with pytest.raises(JobsFailed):
        ctx.parmake(dask=client)
    tb = ctx.details("kid").traceback
    assert ", in fragile\n    y = x['missing']" in tb, tb


@pytest.mark.timeout(120)
def test_inputs_a_serial_make_stored_reach_the_workers(client, make_ctx, lab):
    ctx = make_ctx()  # small results: rows of the store's database, read by the kernel
    loads = [ctx.comp(work, lab, f"load{i}", i, job_id=f"load{i}") for i in range(2)]
    assert ctx.make().ran == 2
    assert {ctx.store.details(p.job_id)["r_file"] for p in loads} == {":db"}
    total = ctx.comp(work, lab, "total", loads, job_id="total")
    report = ctx.parmake(dask=client)
    assert report.ran == 1 and report.skipped == 2
    result = total.result()
    assert result["pid"] in worker_pids(client).values()
    assert [r["inputs"] for r in result["inputs"][0]] == [[0], [1]]


def sized(n: int) -> bytes:
    return b"x" * n


def size_of(*blobs_: bytes) -> list[int]:
    return [len(b) for b in blobs_]


@pytest.mark.timeout(120)
def test_small_results_are_rows_of_the_store_large_ones_files(client, make_ctx):
    ctx = make_ctx()
    small = ctx.comp(sized, 100, job_id="small")
    large = ctx.comp(sized, 100 << 10, job_id="large")
    both = ctx.comp(size_of, small, large, job_id="both")
    assert ctx.parmake(dask=client).ran == 3
    assert ctx.store.details("small")["r_file"] == ":db"
    assert ctx.store.details("large")["r_file"].endswith(".pkl")
    assert both.result() == [100, 100 << 10]
    assert make_ctx().comp(sized, 100, job_id="small").result() == b"x" * 100
    ctx.clean("both")
    assert ctx.parmake(dask=client).ran == 1  # its stored inputs: a row and a file
    assert both.result() == [100, 100 << 10]


@pytest.mark.timeout(120)
def test_a_large_array_counts_by_its_stored_bytes_on_a_worker_as_in_the_kernel(
        client, make_ctx, lab):
    """Made on a worker, then again in the kernel, alike: its dependent stays up to date
    (test_result_fingerprints.py: the kernel and engines)."""
    ctx = make_ctx()
    made = ctx.comp(floats, lab, "a", 1 << 18, 0, job_id="a")
    ctx.comp(total_of, made, job_id="total")
    assert ctx.parmake(dask=client).ran == 2
    fp = ctx.store.details("a")["r_result_fp"]
    assert fp == ctx.store.details("a")["r_checksum"][:32]
    made = ctx.comp(floats, lab, "a", 1 << 18, 1, job_id="a")
    total = ctx.comp(total_of, made, job_id="total")
    assert ctx.make().ran == 1 and names(lab).count("a-start") == 2
    assert ctx.store.details("a")["r_result_fp"] == fp
    made = ctx.comp(floats, lab, "a", 1 << 17, 1, job_id="a")
    total = ctx.comp(total_of, made, job_id="total")
    assert ctx.parmake(dask=client).ran == 2
    assert total.result() == float((1 << 17) * ((1 << 17) - 1) / 2)


@pytest.mark.timeout(120)
def test_dependencies_move_between_workers_not_through_the_kernel(client, make_ctx, lab,
                                                                  monkeypatch):
    """Results made in the run reach their dependents as Dask futures; only results stored
    by an earlier run are read by the kernel (and sent along)."""
    from nbmake_ext.store.results import ResultReader

    reads: list[str] = []
    real = ResultReader.read

    def counting(reader, job_id, name, checksum):
        reads.append(job_id)
        return real(reader, job_id, name, checksum)

    monkeypatch.setattr(ResultReader, "read", counting)
    ctx = make_ctx()
    a = ctx.comp(work, lab, "a", 1, job_id="a")
    b = ctx.comp(work, lab, "b", a, job_id="b")
    c = ctx.comp(work, lab, "c", a, b, job_id="c")
    assert ctx.parmake(dask=client).ran == 3
    assert reads == [], "the kernel read dependencies made in this run"
    assert c.result()["inputs"][1]["inputs"][0]["name"] == "a"

    reads.clear()
    ctx.clean("c")
    assert ctx.parmake(dask=client).ran == 1
    assert len(reads) == 2, "c's stored inputs a and b are read once each"


# -- 2. failures, a dead worker, placement ---------------------------------------------------

def _failing_graph(ctx, lab):
    bad = ctx.comp(fail, lab, "bad", job_id="bad")
    dep = ctx.comp(work, lab, "dep", bad, job_id="dep")
    ctx.comp(work, lab, "dep2", dep, job_id="dep2")
    oks = [ctx.comp(work, lab, f"ok{i}", i, job_id=f"ok{i}") for i in range(5)]
    ctx.comp(work, lab, "fan_in", oks, job_id="fan_in")


@pytest.mark.timeout(180)
def test_a_failing_job_blocks_only_its_dependents_as_on_engines(client, make_ctx, lab,
                                                                tmp_path):
    ctx = make_ctx()
    _failing_graph(ctx, lab)
    with pytest.raises(JobsFailed) as info:
        ctx.parmake(dask=client)
    err = info.value
    assert err.failed == {"bad": "ValueError: bad is broken"}
    assert err.blocked == {"dep": "bad", "dep2": "bad"}
    assert "ValueError: bad is broken" in err.tracebacks["bad"]
    assert "in fail" in err.tracebacks["bad"] and "nbmake_ext" not in err.tracebacks["bad"]
    st = states(ctx)
    assert st["bad"] == "failed" and st["dep"] == st["dep2"] == "blocked"
    assert all(st[f"ok{i}"] == "done" for i in range(5)) and st["fan_in"] == "done"
    assert "dep" not in names(lab) and "dep2" not in names(lab)
    assert ctx.why("bad")[0] == "its last run failed: ValueError: bad is broken"
    assert ctx.details("bad").engine in worker_pids(client)

    # The same graph on local engines: the same summary line and the same JobsFailed.
    lab2 = tmp_path / "lab2"
    lab2.mkdir()
    local = make_ctx("engines")
    _failing_graph(local, str(lab2))
    with pytest.raises(JobsFailed) as info2:
        local.parmake(n=2)
    assert timeless(ctx.lines[-1]) == timeless(local.lines[-1]) \
        == "parmake: 6 done, 1 failed, 2 blocked, 0 up to date in Ts"
    assert str(info2.value) == str(err)
    assert (info2.value.failed, info2.value.blocked) == (err.failed, err.blocked)

    # Again: the failure is retried (it is not up to date), the rest is cached.
    with pytest.raises(JobsFailed):
        ctx.parmake(dask=client)
    assert timeless(ctx.lines[-1]) == "parmake: 0 done, 1 failed, 2 blocked, 6 up to date in Ts"
    assert names(lab).count("bad") == 2 and names(lab).count("ok0") == 1


def within(seconds: float, call, *args, **kwargs):
    """``call(*args, **kwargs)``; an AssertionError if it has not returned in ``seconds``
    (a SIGINT then stops it, as Ctrl-C would)."""
    fired = threading.Event()

    def fire():
        fired.set()
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        return call(*args, **kwargs)
    except KeyboardInterrupt:
        if fired.is_set():
            raise AssertionError(f"no return after {seconds:.0f} s") from None
        raise
    finally:
        timer.cancel()


@pytest.mark.timeout(180)
def test_asking_the_cluster_its_size_does_not_deadlock_with_tasks_ending(client, make_ctx,
                                                                         monkeypatch):
    """The runner asks the cluster how many threads it has (every 2 s), a call through
    the client's event loop; that loop takes the runner's condition to report a task that
    ended. Asked while holding that condition, it deadlocked (about 1 fan-out of 1000
    jobs in 12 never returned). Here it asks at every poll."""
    from nbmake_ext.kernel import dask as nbdask

    monkeypatch.setattr(nbdask, "REFRESH", 0.0)
    for attempt in range(3):
        ctx = make_ctx(f"store{attempt}")
        jobs = [ctx.comp(add, i, attempt, job_id=f"n{i}") for i in range(400)]
        report = within(60, ctx.parmake, dask=client)
        assert report.ran == 400 and not report.failed
        assert jobs[-1].result() == 399 + attempt


@pytest.mark.timeout(120)
def test_tasks_whose_end_is_never_reported_are_taken_up_after_a_quiet_while(client, make_ctx,
                                                                            monkeypatch):
    """A make must not wait for ever: if tasks end without the runner being told (here:
    the first graph's futures are never followed), a while without news makes it look
    at its futures itself."""
    from nbmake_ext.kernel import dask as nbdask

    monkeypatch.setattr(nbdask, "QUIET", 1.0)
    add_callback = client.loop.add_callback
    skipped = []

    def loses_the_first_graph(callback, *args):
        if not skipped and getattr(callback, "__name__", "") == "update":
            skipped.append(len(args[0]))
            return None
        return add_callback(callback, *args)

    monkeypatch.setattr(client.loop, "add_callback", loses_the_first_graph)
    ctx = make_ctx()
    jobs = [ctx.comp(add, i, job_id=f"n{i}") for i in range(20)]
    with logcheck.warns("ended without being reported"):
        report = within(60, ctx.parmake, dask=client)
    assert skipped and report.ran == 20 and not report.failed
    assert [p.result() for p in jobs] == list(range(20))


@pytest.mark.timeout(120)
def test_an_argument_that_cannot_be_loaded_on_a_worker_fails_its_job_only(client, make_ctx,
                                                                          lab):
    ctx = make_ctx()
    bad = ctx.comp(work, lab, "bad", {"cfg": [LoadsNowhere()]}, job_id="bad")
    ctx.comp(work, lab, "dep", bad, job_id="dep")
    oks = [ctx.comp(work, lab, f"ok{i}", i, job_id=f"ok{i}") for i in range(4)]
    with pytest.raises(JobsFailed) as info:
        ctx.parmake(dask=client)
    assert list(info.value.failed) == ["bad"] and info.value.blocked == {"dep": "bad"}
    error = info.value.failed["bad"]
    assert re.fullmatch(r"its argument args\[2\]\['cfg'\]\[0\] cannot be loaded on worker "
                        r"tcp://127\.0\.0\.1:\d+: ValueError: invalid literal for int\(\) "
                        r"with base 10: 'poison'", error), error
    st = states(ctx)
    assert st["bad"] == "failed" and st["dep"] == "blocked"
    assert all(p.result()["name"] == f"ok{i}" for i, p in enumerate(oks))
    assert "bad" not in names(lab)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind, error", [
    ("KeyboardInterrupt", "KeyboardInterrupt"),
    ("GeneratorExit", "GeneratorExit: closed"),
    ("DeepTrouble", "DeepTrouble: from the deep"),
])
def test_a_job_raising_a_base_exception_fails_on_dask(client, make_ctx, lab, kind, error):
    ctx = make_ctx()
    bad = ctx.comp(raise_base, lab, "bad", kind, job_id="bad")
    ctx.comp(work, lab, "dep", bad, job_id="dep")
    oks = [ctx.comp(work, lab, f"ok{i}", i, job_id=f"ok{i}") for i in range(4)]
    with pytest.raises(JobsFailed) as info:
        ctx.parmake(dask=client)
    assert info.value.failed == {"bad": error} and info.value.blocked == {"dep": "bad"}
    assert ctx.details("bad").state == "failed" and "raise_base" in ctx.details("bad").traceback
    assert all(p.result()["name"] == f"ok{i}" for i, p in enumerate(oks))
    assert not ctx.store.running_among(ctx.graph.specs)
    assert len(worker_pids(client)) == 2


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_job_fails_that_job_and_the_rest_complete(client, make_ctx, lab):
    ctx = make_ctx()
    victim = ctx.comp(wait_to_be_killed, lab, "victim", job_id="victim")
    ctx.comp(work, lab, "after", victim, job_id="after")
    oks = [ctx.comp(work, lab, f"ok{i}", i, job_id=f"ok{i}") for i in range(8)]
    ctx.comp(work, lab, "fan_in", oks, job_id="fan_in")
    pids = worker_pids(client)
    killed: list[int] = []

    def killer():
        started = Path(lab, "started-victim")
        if wait_for(started, 60):
            pid = int(started.read_text())
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        with pytest.raises(JobsFailed) as info:
            ctx.parmake(dask=client)
    finally:
        thread.join(70)
    assert killed and killed[0] in pids.values(), "the victim did not run on a worker"
    address = next(a for a, p in pids.items() if p == killed[0])
    error = info.value.failed["victim"]
    assert error.startswith(f"worker {address} died while running it: KilledWorker"), error
    assert list(info.value.failed) == ["victim"]
    assert info.value.blocked == {"after": "victim"}
    st = states(ctx)
    assert st["victim"] == "failed" and st["after"] == "blocked"
    assert all(st[f"ok{i}"] == "done" for i in range(8)) and st["fan_in"] == "done"
    assert len(ctx.comp(work, lab, "fan_in", oks, job_id="fan_in").result()["inputs"][0]) == 8
    assert names(lab).count("victim") == 1, "the job that killed its worker was run again"
    d = ctx.details("victim")
    assert d.engine == address
    assert ctx.why("victim")[0].startswith(f"its last run failed: worker {address} died")
    # The nanny replaces the worker; the cluster goes on with two.
    client.wait_for_workers(2, timeout=30)


@pytest.mark.timeout(120)
def test_no_job_waits_behind_another_while_a_worker_is_idle(client, make_ctx, lab):
    """Three independent jobs, two one-thread workers: a1 runs until c3 has started; b2
    is quick. However Dask first places them, c3 must start on the worker b2 leaves idle
    (Dask's work stealing), not wait behind a1."""
    for attempt in range(3):
        ctx = make_ctx(f"store{attempt}")
        ctx.comp(rendezvous, lab, f"a1-{attempt}", f"c3-{attempt}", job_id="a1", timeout=10)
        ctx.comp(work, lab, f"b2-{attempt}", job_id="b2")
        ctx.comp(rendezvous, lab, f"c3-{attempt}", f"a1-{attempt}", job_id="c3", timeout=10)
        report = ctx.parmake(dask=client)
        assert report.ran == 3 and not report.failed, report.failed


# -- 2b. jobs sent ahead: chained in Dask before the kernel decides them -------------------

def hold_then_fail(lab: str, name: str):
    hold(lab, name)
    raise ValueError(f"{name} is broken")


def leaf_again(lab: str, name: str, x):  # leaf's body under another name: other code
    log(lab, name)
    return x * 10


def tasks_in_dask(client, *jobs: str) -> set[str]:
    """Which of these jobs have a task on the scheduler (keys are ``<job id>-<nonce>-<n>``)."""
    keys = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
    return {j for j in jobs for k in keys if k.rsplit("-", 2)[0] == j}


def while_running(lab: str, name: str, look) -> list:
    """In a thread: once job ``name`` started, call ``look()`` until it returns something
    true (bounded), keep that, then release the job."""
    seen: list = []

    def watch():
        try:
            if wait_for(Path(lab, f"started-{name}")):
                end = time.monotonic() + WAIT
                while time.monotonic() < end:
                    found = look()
                    if found:
                        seen.append(found)
                        break
                    time.sleep(0.02)
        finally:
            Path(lab, f"release-{name}").touch()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    seen.append(thread)
    return seen


@pytest.mark.timeout(120)
def test_a_chain_goes_to_dask_before_its_head_ends_and_is_recorded(client, make_ctx, lab):
    ctx = make_ctx()
    head = ctx.comp(hold, lab, "head", job_id="head")
    chain = [head]
    for i in range(3):
        chain.append(ctx.comp(work, lab, f"link{i}", chain[-1], job_id=f"link{i}"))
    links = ("link0", "link1", "link2")
    seen = while_running(lab, "head", lambda: tasks_in_dask(client, *links) == set(links))
    report = ctx.parmake(dask=client, n=8)
    seen[0].join(WAIT)
    assert seen[1:] == [True], "the chain was not in Dask while its head ran"
    assert report.ran == 4 and not report.failed
    value = chain[-1].result()
    assert value["name"] == "link2" and value["inputs"][0]["inputs"][0]["name"] == "link0"
    assert value["inputs"][0]["inputs"][0]["inputs"] == ["head"]
    assert {r.job_id: r.state for r in ctx.ls()} == dict.fromkeys(["head", *links], "done")
    d = ctx.details("link1")
    assert d.stdout == "link1 says hello\n" and d.engine in worker_pids(client)
    assert [r["name"] for r in [chain[1].result(), chain[2].result()]] == ["link0", "link1"]

    ran = events(lab)
    again = ctx.parmake(dask=client)
    assert again.ran == 0 and again.skipped == 4
    assert events(lab) == ran
    assert set(states(make_ctx()).values()) == {"done"}


@pytest.mark.timeout(120)
def test_jobs_sent_ahead_of_a_failure_end_blocked_and_never_run(client, make_ctx, lab):
    ctx = make_ctx()
    bad = ctx.comp(hold_then_fail, lab, "bad", job_id="bad")
    dep0 = ctx.comp(work, lab, "dep0", bad, job_id="dep0")
    ctx.comp(work, lab, "dep1", dep0, job_id="dep1")
    ctx.comp(work, lab, "ok", 1, job_id="ok")
    seen = while_running(lab, "bad", lambda: tasks_in_dask(client, "dep0", "dep1")
                         == {"dep0", "dep1"})
    with pytest.raises(JobsFailed) as info:
        ctx.parmake(dask=client, n=8)
    seen[0].join(WAIT)
    assert seen[1:] == [True], "the dependents were not in Dask while the failing job ran"
    assert info.value.failed == {"bad": "ValueError: bad is broken"}
    assert info.value.blocked == {"dep0": "bad", "dep1": "bad"}
    assert timeless(ctx.lines[-1]) == "parmake: 1 done, 1 failed, 2 blocked, 0 up to date in Ts"
    st = states(ctx)
    assert (st["bad"], st["dep0"], st["dep1"], st["ok"]) == ("failed", "blocked", "blocked",
                                                            "done")
    assert sorted(names(lab)) == ["bad", "ok"], "a job blocked by a failure ran"
    # Their claims are let go: another store on the same directory may take them.
    assert make_ctx().store.claim(["dep0", "dep1"]) == (["dep0", "dep1"], {})
    idle(client)


@pytest.mark.timeout(120)
def test_a_job_another_process_claimed_is_not_sent_ahead(client, make_ctx, lab):
    ctx = make_ctx()
    head = ctx.comp(hold, lab, "head", job_id="head")
    mid = ctx.comp(work, lab, "mid", head, job_id="mid")
    ctx.comp(work, lab, "tail", mid, job_id="tail")
    other = make_ctx()  # the same store, opened again: its claims exclude ours
    assert other.store.claim(["mid"]) == (["mid"], {})
    in_dask: list = []

    def look():  # mid (and so tail, its dependent) stay out of Dask while mid is claimed
        in_dask.append(tasks_in_dask(client, "mid", "tail"))
        other.store.release(["mid"])
        return True

    seen = while_running(lab, "head", look)
    report = ctx.parmake(dask=client, n=8)
    seen[0].join(WAIT)
    assert in_dask == [set()], in_dask
    assert report.ran == 3 and not report.failed
    assert sorted(names(lab)) == ["head", "mid", "tail"]


@pytest.mark.timeout(120)
def test_a_job_that_may_be_cut_off_is_not_sent_ahead(client, make_ctx, lab):
    """a's code changes but it makes the same result: b and c stay up to date, so they
    must not run on a worker ahead of that decision."""
    ctx = make_ctx()
    a = ctx.comp(leaf, lab, "a", 1, job_id="a")
    b = ctx.comp(leaf, lab, "b", a, job_id="b")
    ctx.comp(leaf, lab, "c", b, job_id="c")
    assert ctx.parmake(dask=client).ran == 3
    ctx.comp(leaf_again, lab, "a", 1, job_id="a")
    report = ctx.parmake(dask=client, n=8)
    assert (report.ran, report.skipped) == (1, 2)
    assert sorted(names(lab)) == ["a", "a", "b", "c"]


@pytest.mark.timeout(120)
def test_a_job_sent_ahead_on_an_input_another_process_replaced_runs_again(client, make_ctx,
                                                                        lab, monkeypatch):
    """D and J never ran; D waits for H, J for D: both are sent ahead, J on D's task. Just
    then another process stores D's result (made from the same H): the core takes that one
    (D is up to date), so what J's task made from this run's D must not be recorded."""
    ctx = make_ctx()
    h = ctx.comp(leaf, lab, "H", 1, job_id="H")
    d = ctx.comp(work, lab, "D", h, job_id="D")
    j = ctx.comp(work, lab, "J", d, job_id="J")
    ctx.sync()
    other = make_ctx()  # the same store, opened again
    stored = record_elsewhere_when_claimed(ctx, other, "D", {"H": 10}, monkeypatch)
    report = ctx.parmake(dask=client, n=8)
    assert stored == ["D"], "D was not sent ahead"
    assert (report.ran, report.skipped) == (2, 1) and not report.failed
    assert d.result() == "made elsewhere"
    assert j.result()["inputs"] == ["made elsewhere"]
    assert ctx.why("J") == []


# -- 3. dynamic jobs ------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_dynamic_jobs_children_nesting_and_dependents(client, make_ctx, lab):
    ctx = make_ctx()
    base = ctx.comp(leaf, lab, "base", 1, job_id="base")            # 10
    parent = ctx.comp_dynamic(fan, lab, base, 3, job_id="fan3")
    after = ctx.comp(work, lab, "after", parent, job_id="after")
    report = ctx.parmake(dask=client)
    assert not report.failed

    # leaf children: base+i -> (10+i)*10; inner: grandchildren of kids[0]=100 -> 1000, 1010
    kids = [100, 110, 120]
    inner = 1000 + 1010
    assert parent.result() == {"total": sum(kids) + inner, "kids": kids}
    value = after.result()
    assert value["inputs"] == [{"total": sum(kids) + inner, "kids": kids}]
    assert value["pid"] in worker_pids(client).values()

    rows = {r.job_id: r for r in ctx.ls()}
    assert rows["total3"].parent == "fan3" and rows["inner3"].parent == "fan3"
    assert {j for j, r in rows.items() if r.parent == "fan3"} >= {"total3", "inner3"}
    grand = [j for j, r in rows.items() if r.parent == "inner3"]
    assert len(grand) == 3  # two leaves and their sum
    assert all(r.state == "done" for r in rows.values())
    ran = {e: pid for e, pid in events(lab)}
    assert {"fan3", "inner", "leaf3-0", "leaf3-2", "grand-1", "after"} <= set(ran)
    assert set(ran.values()) <= set(worker_pids(client).values())
    assert report.ran == len(rows)

    again = ctx.parmake(dask=client)
    assert again.ran == 0 and again.skipped == len(rows)
    assert len(events(lab)) == len(ran)


# -- 4. the console, interrupts, errors ------------------------------------------------------

@pytest.mark.timeout(180)
def test_console_parmake_dask(address, make_ctx, lab, tmp_path):
    ctx = make_ctx()
    for i in range(4):
        ctx.comp(work, lab, f"c{i}", i, job_id=f"c{i}")
    ctx.comp(fail, lab, "bad", job_id="bad")
    ctx.close()
    env = {**os.environ}
    env.pop("NBMAKE_STORE", None)

    def console(*args):
        return subprocess.run(
            [sys.executable, "-m", "nbmake_ext", "--store", str(tmp_path / "store"), *args],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)

    first = console("parmake", "--dask", address, "2", "c*")  # at most 2 jobs in Dask
    assert first.returncode == 0, first.stderr
    assert timeless(first.stdout.strip()) == "parmake: 4 done, 0 up to date in Ts"
    assert sorted(names(lab)) == ["c0", "c1", "c2", "c3"]
    again = console("parmake", "--dask", address)
    assert again.returncode == 1
    assert timeless(again.stdout.strip()) == "parmake: 0 done, 1 failed, 4 up to date in Ts"
    assert "JobsFailed: 1 failed: bad" in again.stderr
    assert "ValueError: bad is broken" in again.stderr
    assert sorted(names(lab)) == ["bad", "c0", "c1", "c2", "c3"]
    ls = console("ls")
    assert re.search(r"c2\s+done", ls.stdout), ls.stdout


@pytest.mark.timeout(120)
def test_interrupt_cancels_queued_tasks_and_names_running_ones(client, make_ctx, lab):
    ctx = make_ctx()
    ctx.comp(work, lab, "early", job_id="early")
    assert ctx.parmake(dask=client).ran == 1
    # Six jobs that each hold their worker's one thread until released; four at a time in
    # Dask (n=4): two run, two wait in Dask, two wait in the kernel.
    held = [ctx.comp(hold, lab, f"h{i}", job_id=f"h{i}") for i in range(6)]
    ctx.comp(work, lab, "after", held, job_id="after")

    def started() -> list[str]:
        return [f"h{i}" for i in range(6) if Path(lab, f"started-h{i}").exists()]

    def interrupter():
        end = time.monotonic() + 60
        while len(started()) < 2 and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(0.3)  # the tasks' start events reach the kernel
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupter, daemon=True)
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt), logcheck.library_warnings() as logged:
            ctx.parmake(dask=client, n=4)
    finally:
        thread.join(70)
        running = started()
        # Dask's cancel reaches the workers a moment later: until then a worker whose
        # thread is free could still start a task it had queued.
        end = time.monotonic() + 30
        while any(client.run(_queued_on_worker).values()) and time.monotonic() < end:
            time.sleep(0.05)
        for i in range(6):
            Path(lab, f"release-h{i}").touch()  # the tasks Dask could not stop end now
    err = "\n".join(logcheck.messages(logged))
    assert len(running) == 2, running
    assert "Dask cannot stop a task that already started: " in err, err
    for job in running:
        assert f"{job} (on tcp://127.0.0.1:" in err, err
    assert "will run to its end on its worker; its result is discarded. The other 2 job(s) " \
           "were cancelled." in err, err
    assert ctx.lines[-1].endswith("(interrupted)")
    idle(client)
    # Cancelled tasks never run, also later; the running ones go back to todo.
    assert sorted(n for n in names(lab) if n.startswith("h")) == sorted(running)
    st = states(ctx)
    assert st["early"] == "done"
    assert all(st[j] == "todo" for j in [f"h{i}" for i in range(6)] + ["after"]), st

    report = ctx.parmake(dask=client)
    assert report.ran == 7 and report.skipped == 1
    assert set(states(ctx).values()) == {"done"}


@pytest.mark.timeout(60)
def test_missing_distributed_is_a_clear_error(tmp_path):
    """In a process where ``distributed`` cannot be imported (run apart: hiding it here
    would break the module's cluster)."""
    script = textwrap.dedent(f"""
        import operator, sys
        sys.modules["distributed"] = None  # as if it were not installed
        from nbmake_ext import Context, NbmakeError
        ctx = Context({str(tmp_path / "store")!r})
        ctx.comp(operator.add, 1, 2, job_id="sum")
        try:
            ctx.parmake(dask="tcp://127.0.0.1:8786")
        except NbmakeError as exc:
            print("ERROR", exc)
        print("STATE", ctx.ls()[0].state)
        ctx.close()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert 'ERROR parmake --dask needs the Dask distributed package: pip install ' \
           '"nbmake-ext[dask]"' in done.stdout, done.stdout
    assert "STATE todo" in done.stdout
    console = subprocess.run(
        [sys.executable, "-c", "import sys, runpy; sys.modules['distributed'] = None; "
         "sys.argv = ['nbmake', '--store', 'store', 'parmake', '--dask', 'tcp://127.0.0.1:1'];"
         " runpy.run_module('nbmake_ext', run_name='__main__')"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert console.returncode == 2, console.stderr
    assert 'pip install "nbmake-ext[dask]"' in console.stderr


@pytest.mark.timeout(60)
def test_an_unreachable_scheduler_is_a_clear_error(cluster, make_ctx):
    ctx = make_ctx()
    ctx.comp(add, 1, 2)
    with pytest.raises(NbmakeError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        ctx.parmake(dask="tcp://127.0.0.1:9")
    with pytest.raises(NbmakeError, match="scheduler address"):
        ctx.parmake(dask=42)
    assert set(states(ctx).values()) == {"todo"}


# -- 5. several jobs at once in one worker process -------------------------------------------

@pytest.mark.timeout(120)
def test_output_is_captured_per_job_in_a_multithreaded_worker(cluster, make_ctx, lab):
    """Dask runs several tasks per worker process at once: each job's log holds its own
    output only."""
    lc = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  **LOOPBACK)
    try:
        with distributed.Client(lc, set_as_default=False) as client:
            ctx = make_ctx()
            a = ctx.comp(chatter, lab, "a", "b", job_id="a")
            b = ctx.comp(chatter, lab, "b", "a", job_id="b")
            report = ctx.parmake(dask=client)
            assert report.ran == 2 and (a.result(), b.result()) == ("a", "b")
            for me in "ab":
                d = ctx.details(me)
                assert d.stdout == f"{me} 1\n{me} 3\n" and d.stderr == f"{me} 2\n"
            assert ctx.details("a").engine == ctx.details("b").engine
    finally:
        lc.close()


def _allow_failures(n: int, dask_scheduler=None) -> None:
    dask_scheduler.allowed_failures = n


def test_a_scheduler_that_runs_a_task_again_when_its_worker_dies_is_warned_of_once(
        client, monkeypatch):
    from nbmake_ext.kernel import dask_cluster

    monkeypatch.setattr(dask_cluster, "_warned_retries", False)
    dask_cluster.warn_if_tasks_run_again(client)  # allowed-failures 0: nothing to say
    client.run_on_scheduler(_allow_failures, 2)
    try:
        with logcheck.warns("allowed-failures = 2") as records:
            dask_cluster.warn_if_tasks_run_again(client)
            dask_cluster.warn_if_tasks_run_again(client)
        assert len(records) == 1 and "up to 3 times" in records[0].getMessage()
    finally:
        client.run_on_scheduler(_allow_failures, 0)
