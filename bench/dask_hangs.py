"""Does ``parmake --dask`` ever fail to return? Many makes, each on a fresh LocalCluster.

    PYTHONPATH=. .venv/bin/python bench/dask_hangs.py [--runs 30] [--jobs 1000]
        [--chain 200] [--threads 1] [--limit 60]

Each run starts a LocalCluster on loopback (2 worker processes), makes a fan-out of
``--jobs`` trivial jobs and a chain of ``--chain`` on a new store, and closes the cluster.
A make that has not returned after ``--limit`` seconds is reported with the stacks of
every thread and what the runner and the Dask scheduler hold, then interrupted. One line
per make: shape, seconds, and HUNG when it did not return in time.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [HERE] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))

import _jobs  # noqa: E402

LOOPBACK = dict(host="127.0.0.1", dashboard_address=None,
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
RUNNERS: list = []


class Hung(KeyboardInterrupt):
    pass


def _state(runner, client) -> str:
    lines = [f"runner: inflight={len(runner.inflight)} by_key={len(runner.by_key)} "
             f"queued={len(runner._queued)} ahead={len(runner.ahead)} early={len(runner.early)}"
             f" to_fetch={len(runner._to_fetch)} fetched={len(runner._fetched)} "
             f"fetch_idle={runner._fetch_idle} unsynced={len(runner._unsynced)} "
             f"outbox={len(runner.outbox)} ended_ready={runner.ended.has_ready()} "
             f"ended_tracked={len(runner.ended.futures)}"]
    statuses = Counter(getattr(t.future, "status", None) for t in runner.inflight.values())
    lines.append(f"inflight futures by status: {dict(statuses)}")
    box: dict = {}

    def ask():
        try:
            box["sched"] = client.run_on_scheduler(
                lambda dask_scheduler: dict(Counter(ts.state for ts in
                                                    dask_scheduler.tasks.values())))
            box["processing"] = client.processing()
        except Exception as exc:  # noqa: BLE001
            box["error"] = repr(exc)

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    t.join(10)
    lines.append(f"scheduler: {box if box else 'no answer in 10 s'}")
    return "\n".join(lines)


def make(client, shape: str, n: int, limit: float, tmp: str) -> tuple[float, bool]:
    from nbmake_ext import Context

    store = tempfile.mkdtemp(prefix="nbm-hang-", dir=tmp)
    ctx = Context(store)
    ctx.report = lambda line: None
    prev = 0
    for i in range(n):
        prev = ctx.comp(_jobs.work, i) if shape == "fan" else ctx.comp(_jobs.step, prev, i)
    hung = {"flag": False}

    def watchdog():
        hung["flag"] = True
        print(f"--- {shape} did not return after {limit:.0f} s", flush=True)
        faulthandler.dump_traceback(all_threads=True)
        if RUNNERS:
            print(_state(RUNNERS[-1], client), flush=True)
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(limit, watchdog)
    timer.daemon = True
    t0 = time.perf_counter()
    timer.start()
    try:
        report = ctx.parmake(dask=client)
        assert report.ran == n and not report.failed, report.line()
    except KeyboardInterrupt:
        if not hung["flag"]:
            raise
    finally:
        timer.cancel()
        dt = time.perf_counter() - t0
        ctx.close()
        shutil.rmtree(store, ignore_errors=True)
    return dt, hung["flag"]


def main() -> int:
    import dask
    import distributed

    from nbmake_ext.kernel import dask as nbdask

    init = nbdask.DaskRunner.__init__

    def keep(self, *a, **k):
        init(self, *a, **k)
        RUNNERS[:] = [self]

    nbdask.DaskRunner.__init__ = keep

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="per worker (0: Dask's default)")
    parser.add_argument("--limit", type=float, default=60.0)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="dask-hangs-")
    hangs, times = Counter(), {"fan": [], "chain": []}
    try:
        for run in range(args.runs):
            kw = {"threads_per_worker": args.threads} if args.threads else {}
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                cluster = distributed.LocalCluster(n_workers=2, processes=True, **kw, **LOOPBACK)
            client = distributed.Client(cluster, set_as_default=False)
            try:
                for shape, n in (("fan", args.jobs), ("chain", args.chain)):
                    if not n:
                        continue
                    dt, hung = make(client, shape, n, args.limit, tmp)
                    times[shape].append(dt)
                    hangs[shape] += hung
                    print(f"run {run} {shape} {n}: {dt:.2f}s{' HUNG' if hung else ''}",
                          flush=True)
            finally:
                client.close()
                cluster.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for shape, ts in times.items():
        if ts:
            ts.sort()
            print(f"{shape}: {len(ts)} makes, {hangs[shape]} hung; median {ts[len(ts) // 2]:.2f}s"
                  f", max {ts[-1]:.2f}s")
    return 1 if sum(hangs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
