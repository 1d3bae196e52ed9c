"""What ``parmake --dask`` adds on top of Dask itself, per job, in one run.

    .venv/bin/python bench/bench_dask.py [--jobs 1000] [--chain 200] [--ms 10]
                                         [--repeat 3] [--cluster-process] [--no-engines]

One LocalCluster on loopback (processes, 2 workers x 1 thread, no dashboard) serves every
row. By default it lives in this process (its scheduler shares the kernel's process, as a
``LocalCluster()`` made in a notebook does); ``--cluster-process`` starts it in a process of
its own, so this process is only a client, as with a remote cluster.

Shapes: ``fan-out`` = N independent trivial jobs ``work(i)`` (bench/_jobs.py), ``chain`` =
L trivial jobs, each ``step(previous result, i)``; the same two with jobs that take
``--ms`` milliseconds each (``nap``: a sleep, so they leave the CPU to the rest). Rows:

- ``dask.delayed``: one graph, ``dask.compute(*every node)`` (every result comes back);
- ``client.submit``: every task submitted at once (a chain passes futures), then
  ``client.gather`` of every future;
- ``nbmake parmake --dask``: ``ctx.parmake(dask=client)`` on a fresh store (registration
  of the jobs is timed apart and not included): every result is fingerprinted, written to
  the kernel's store and fsynced, the jobs' output captured; jobs that must run whatever
  their inputs bring (here: all, on a fresh store) go to Dask ahead, chained to their
  inputs' tasks, and are recorded as the kernel decides them;
- ``nbmake parmake (engines)``: the same jobs on 2 local engines (a warm pool, results
  cleaned between repeats), for reference.

Each row runs ``--repeat`` times, rows taking turns, and the best time is kept. The
overhead is nbmake's time over the faster of the two plain-Dask rows, minus one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
# Engines and Dask workers import the jobs module too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [HERE] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))

import _jobs  # noqa: E402

TARGET = 0.20
LOOPBACK = dict(host="127.0.0.1", dashboard_address=None,
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
CLUSTER = f"""
import sys, dask
from distributed import LocalCluster
dask.config.set({{"distributed.scheduler.allowed-failures": 0}})
c = LocalCluster(n_workers=int(sys.argv[1]), threads_per_worker=1, processes=True,
                 **{LOOPBACK!r})
print(c.scheduler_address, flush=True)
sys.stdin.read()
c.close()
"""


def nap(i, ms):
    """A job that takes ``ms`` milliseconds (sleeping: it leaves the CPU to the rest)."""
    time.sleep(ms / 1000)
    return i * 2


def nap_step(prev, i, ms):
    time.sleep(ms / 1000)
    return prev + i


def calls(shape):
    """[(func, args)] of a shape, an argument None standing for the previous job's result."""
    kind, n, ms = SHAPES[shape]
    if kind == "fan":
        return [(_jobs.work, (i,)) if not ms else (nap, (i, ms)) for i in range(n)]
    return [(_jobs.step, (None, i)) if not ms else (nap_step, (None, i, ms)) for i in range(n)]


def run_delayed(client, shape):
    import dask

    nodes, prev = [], 0
    for func, args in calls(shape):
        prev = dask.delayed(func, pure=False)(*[prev if a is None else a for a in args])
        nodes.append(prev)
    t0 = time.perf_counter()
    values = dask.compute(*nodes, scheduler=client)
    dt = time.perf_counter() - t0
    check(shape, list(values))
    return dt


def run_submit(client, shape):
    t0 = time.perf_counter()
    futures, prev = [], 0
    for func, args in calls(shape):
        prev = client.submit(func, *[prev if a is None else a for a in args], pure=False)
        futures.append(prev)
    values = client.gather(futures)
    dt = time.perf_counter() - t0
    check(shape, values)
    return dt


def register(ctx, shape):
    promises, prev = [], 0
    for func, args in calls(shape):
        prev = ctx.comp(func, *[prev if a is None else a for a in args])
        promises.append(prev)
    return promises


def run_nbmake_dask(client, shape, tmp, stats):
    from nbmake_ext import Context

    n = SHAPES[shape][1]
    store = tempfile.mkdtemp(prefix="nbm-dask-", dir=tmp)
    try:
        ctx = Context(store)
        ctx.report = lambda line: None
        t0 = time.perf_counter()
        promises = register(ctx, shape)
        ctx.sync()
        stats.setdefault(("reg", shape), []).append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        report = ctx.parmake(dask=client)
        dt = time.perf_counter() - t0
        assert report.ran == n and not report.failed, report.line()
        check(shape, [promises[0].result(), promises[-1].result()], ends_only=True)
        ctx.close()
        return dt
    finally:
        shutil.rmtree(store, ignore_errors=True)


class Engines:
    """One context with a warm engine pool; results cleaned between repeats."""

    def __init__(self, tmp):
        from nbmake_ext import Context

        self.store = tempfile.mkdtemp(prefix="nbm-eng-", dir=tmp)
        self.ctx = Context(self.store)
        self.ctx.report = lambda line: None
        self.ctx.comp(_jobs.work, -1, job_id="warm")
        self.ctx.parmake("warm", n=2)
        self.shapes: dict[str, list] = {}

    def run(self, shape):
        ctx = self.ctx
        if shape not in self.shapes:
            self.shapes[shape] = register(ctx, shape)
        ids = [p.job_id for p in self.shapes[shape]]
        ctx.clean(*ids)
        t0 = time.perf_counter()
        report = ctx.parmake(*ids, n=2)
        dt = time.perf_counter() - t0
        assert report.ran == len(ids), report.line()
        return dt

    def close(self):
        self.ctx.close()
        shutil.rmtree(self.store, ignore_errors=True)


def check(shape, values, ends_only=False):
    kind, n, _ = SHAPES[shape]
    if kind == "fan":
        want = [i * 2 for i in range(n)]
    else:
        want, acc = [], 0
        for i in range(n):
            acc += i
            want.append(acc)
    if ends_only:
        want = [want[0], want[-1]]
    assert list(values) == want, "wrong results"


SHAPES: dict[str, tuple[str, int, float]] = {}  # name -> (fan | chain, jobs, ms per job)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="fan-out size (default 1000)")
    parser.add_argument("--chain", type=int, default=200, help="chain length (default 200)")
    parser.add_argument("--ms", type=float, default=10.0,
                        help="duration of the jobs of the 'ms' shapes (default 10; 0: skip)")
    parser.add_argument("--ms-jobs", type=int, default=400,
                        help="fan-out size of the 'ms' shape (its chain: a quarter)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-engines", action="store_true", help="skip the engines row")
    parser.add_argument("--cluster-process", action="store_true",
                        help="run the LocalCluster in a process of its own")
    parser.add_argument("--tmp", default=None)
    args = parser.parse_args()

    import dask
    from distributed import Client, LocalCluster

    import distributed

    dask.config.set({"distributed.scheduler.allowed-failures": 0,
                     "distributed.worker.daemon": False})
    where = "own process" if args.cluster_process else "this process"
    print(f"# Python {sys.version.split()[0]}, dask {dask.__version__}, distributed "
          f"{distributed.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"LocalCluster ({where}) processes=True n_workers={args.workers} "
          f"threads_per_worker=1; best of {args.repeat}")
    tmp = tempfile.mkdtemp(prefix="bench-dask-", dir=args.tmp)
    cluster = proc = None
    if args.cluster_process:
        proc = subprocess.Popen([sys.executable, "-c", CLUSTER, str(args.workers)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        client = Client(proc.stdout.readline().strip())
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               **LOOPBACK)
        client = Client(cluster)
    engines = None
    try:
        # Warm-up: workers import nbmake_ext and _jobs; connections are made.
        SHAPES.update({"fan-out": ("fan", args.jobs, 0), "chain": ("chain", args.chain, 0)})
        if args.ms > 0:
            ms = f"{args.ms:g} ms"
            SHAPES.update({f"fan-out {ms}": ("fan", args.ms_jobs, args.ms),
                           f"chain {ms}": ("chain", max(1, args.ms_jobs // 4), args.ms)})
        SHAPES["warm"] = ("fan", 20, 0)
        run_submit(client, "warm")
        run_nbmake_dask(client, "warm", tmp, {})
        del SHAPES["warm"]
        if not args.no_engines:
            engines = Engines(tmp)
        sizes = {name: n for name, (_, n, _) in SHAPES.items()}
        rows = ["dask.delayed", "client.submit", "nbmake parmake --dask"]
        if engines is not None:
            rows.append("nbmake parmake (engines)")
        best: dict[tuple[str, str], float] = {}
        stats: dict = {}
        for rep in range(args.repeat):
            for shape, n in sizes.items():
                for row in rows:
                    if row == "dask.delayed":
                        dt = run_delayed(client, shape)
                    elif row == "client.submit":
                        dt = run_submit(client, shape)
                    elif row == "nbmake parmake --dask":
                        dt = run_nbmake_dask(client, shape, tmp, stats)
                    else:
                        dt = engines.run(shape)
                    key = (row, shape)
                    best[key] = min(best.get(key, float("inf")), dt)
                    print(f"  repeat {rep + 1}: {row:26s} {shape:14s} {dt * 1e3:8.1f} ms",
                          file=sys.stderr)
    finally:
        if engines is not None:
            engines.close()
        client.close()
        if cluster is not None:
            cluster.close()
        if proc is not None:
            proc.stdin.close()
            proc.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n| ms per job (total) | {' | '.join(f'{s}, N={n}' for s, n in sizes.items())} |")
    print("| --- |" + " --- |" * len(sizes))
    for row in rows:
        cells = [f"{best[(row, s)] / n * 1e3:.2f} ({best[(row, s)]:.2f} s)"
                 for s, n in sizes.items()]
        print(f"| {row} | {' | '.join(cells)} |")
    print()
    ok = True
    for shape, n in sizes.items():
        base = min(best[("dask.delayed", shape)], best[("client.submit", shape)])
        ours = best[("nbmake parmake --dask", shape)]
        over = ours / base - 1
        reg = min(stats.get(("reg", shape), [float("nan")]))
        verdict = "ok" if over < TARGET else "ABOVE TARGET"
        ok &= over < TARGET
        print(f"{shape:14s}: nbmake --dask overhead over plain Dask {over * 100:+4.0f}% "
              f"({(ours - base) / n * 1e6:+.0f} us/job; target < {TARGET * 100:.0f}%: "
              f"{verdict}); registration, not included: {reg / n * 1e6:.0f} us/job")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
