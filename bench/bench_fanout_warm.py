"""The fan-out of ``check engines``, timed as the anchors time it, with where its CPU goes.

1,000 trivial jobs and one job taking all their results, ``parmake 2`` on engines that a
make of one job started just before (the anchors' untimed warm-up), in a fresh store; the
second make alone is timed. Per make: its wall time, the CPU of the kernel's thread that
ran it, and the CPU of each engine (every thread of it, from ``/proc``: not distorted by
the waits of a busy machine). Quartiles over the makes.

    .venv/bin/python bench/bench_fanout_warm.py                  # 20 makes in this process
    .venv/bin/python bench/bench_fanout_warm.py --fresh 16       # each in a new process, as
                                                                 # the anchors run them
    .venv/bin/python bench/bench_fanout_warm.py --fresh 16 --trees /tmp/old,.
                                                                 # two checkouts, alternated
    .venv/bin/python bench/bench_fanout_warm.py --chain          # the check's chain instead:
                                                                 # job i takes job i-1's result

Run it from a directory outside the trees (engines import ``nbmake_ext`` from where they
start): the script sets the working directory to a temporary one itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _engine_cpu(pids: list[int]) -> list[float]:
    out = []
    for pid in pids:
        with open(f"/proc/{pid}/schedstat") as f:
            out.append(int(f.read().split()[0]) / 1e6)
    return out


def one_make(n: int, workdir: str, chain: bool = False) -> dict:
    """One store, one warm-up make, one timed make: its figures in ms."""
    sys.path.insert(0, HERE)
    os.environ["PYTHONPATH"] = os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])
    import _jobs
    from nbmake_ext import Context

    ctx = Context(store=os.path.join(workdir, "store"))
    ctx.report = lambda line: None
    if chain:
        last = ctx.comp(_jobs.work, 0, job_id="c0")
        for i in range(1, n):
            last = ctx.comp(_jobs.step, last, i, job_id=f"c{i}")
        target, expected = last, n * (n - 1) // 2
    else:
        parts = [ctx.comp(_jobs.work, i, job_id=f"d{i}") for i in range(n)]
        target, expected = ctx.comp(_jobs.total, *parts, job_id="total"), n * (n - 1)
    ctx.comp(_jobs.work, -1, job_id="warm-up")
    ctx.parmake("warm-up", n=2)
    pids = ctx._pool.pids()
    e0 = _engine_cpu(pids)
    t0, c0 = time.perf_counter(), time.thread_time()
    ctx.parmake(target.job_id, n=2)
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    engines = [b - a for a, b in zip(e0, _engine_cpu(pids))]
    assert target.result() == expected
    ctx.close()
    return {"wall": wall * 1e3, "kernel": cpu * 1e3, "engines": sorted(engines)}


def _quartiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return f"{q[0]:6.1f} {statistics.median(values):6.1f} {q[2]:6.1f}"


def report(label: str, makes: list[dict]) -> None:
    print(f"{label}: {len(makes)} makes; quartiles (25%, median, 75%) in ms")
    print(f"  wall           {_quartiles([m['wall'] for m in makes])}")
    print(f"  kernel thread  {_quartiles([m['kernel'] for m in makes])}")
    print(f"  engines (sum)  {_quartiles([sum(m['engines']) for m in makes])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="jobs of the fan-out (or chain)")
    ap.add_argument("--chain", action="store_true", help="a chain of N links instead")
    ap.add_argument("--makes", type=int, default=20, help="makes in this process")
    ap.add_argument("--fresh", type=int, default=0, help="makes, each in a new process")
    ap.add_argument("--trees", default="", help="checkouts to alternate (with --fresh)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="nbm-fanout-")
    os.chdir(workdir)
    try:
        if args.one:
            print(json.dumps(one_make(args.n, workdir, args.chain)))
            return
        if not args.fresh:
            makes = []
            for i in range(args.makes):
                os.makedirs(f"{workdir}/{i}")
                makes.append(one_make(args.n, f"{workdir}/{i}", args.chain))
            report("in one process", makes)
            return
        trees = [os.path.abspath(t) for t in args.trees.split(",") if t] or [None]
        found: dict = {t: [] for t in trees}
        for _ in range(args.fresh):
            for tree in trees:  # alternated: the machine's slow spells hit every tree
                env = dict(os.environ)
                if tree is not None:
                    env["PYTHONPATH"] = os.pathsep.join([tree, env.get("PYTHONPATH", "")])
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one",
                                      "--n", str(args.n), *(["--chain"] if args.chain else [])],
                                     env=env, check=True,
                                     capture_output=True, text=True).stdout
                found[tree].append(json.loads(out.strip().splitlines()[-1]))
        for tree, makes in found.items():
            report(tree or "this tree", makes)
    finally:
        os.chdir("/")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
