"""CPU seconds per job of ``parmake 2``: the kernel's (by thread) and the engines', beside
the wall time. On a shared 2-core machine the wall time of a fan-out moves with whatever
else runs; the CPU each process spends per job does not, and it is what bounds the wall
time when the machine is quiet (the kernel's share especially: it is one thread).

    .venv/bin/python bench/bench_cpu_per_job.py                      # fan-out of 5,000
    .venv/bin/python bench/bench_cpu_per_job.py --shape chain --n 1000

``fanout``: n trivial jobs and one job taking all their results (as in
``../shared/anchors``); ``chain``: each job takes the result of the one before.
Engines are warm (a first parmake of one job); each repeat uses a fresh store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))

from nbmake_ext import Context  # noqa: E402
from _jobs import step, work  # noqa: E402


def total(*parts):
    return sum(parts)


def cpu_of(pid: int, tid: int | None = None) -> float:
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    fields = open(path).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_cpu() -> float:
    return cpu_of(os.getpid(), os.getpid())


def define(ctx: Context, shape: str, n: int) -> str:
    if shape == "chain":
        prev = ctx.comp(step, 0, 0, job_id="c0")
        for i in range(1, n):
            prev = ctx.comp(step, prev, i, job_id=f"c{i}")
        return prev.job_id
    parts = [ctx.comp(work, i, job_id=f"d{i}") for i in range(n)]
    return ctx.comp(total, *parts, job_id="total").job_id


def once(shape: str, n: int) -> dict[str, float]:
    root = tempfile.mkdtemp(prefix="nbmake-bench-cpu-")
    try:
        ctx = Context(os.path.join(root, "store"))
        ctx.comp(work, -1, job_id="warm")
        ctx.parmake(n=2)
        sink = define(ctx, shape, n)
        ctx.sync()
        engines = ctx._pool.pids()
        e0 = sum(cpu_of(p) for p in engines)
        k0, m0 = cpu_of(os.getpid()), main_thread_cpu()
        t0 = time.perf_counter()
        ctx.parmake(sink, n=2)
        wall = time.perf_counter() - t0
        k1, m1 = cpu_of(os.getpid()), main_thread_cpu()
        e1 = sum(cpu_of(p) for p in engines)
        ctx.close()
        return {"wall": wall, "kernel": k1 - k0, "kernel main thread": m1 - m0,
                "engines": e1 - e0, "load": os.getloadavg()[0]}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["fanout", "chain"], default="fanout")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.shape} of {args.n}, parmake 2, µs per job (load average at the end):")
    for _ in range(args.repeat):
        r = once(args.shape, args.n)
        per = {k: 1e6 * v / args.n for k, v in r.items() if k != "load"}
        print("  " + "  ".join(f"{k} {v:6.0f}" for k, v in per.items())
              + f"   (load {r['load']:.1f})")


if __name__ == "__main__":
    main()
