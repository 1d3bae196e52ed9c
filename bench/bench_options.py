"""What job options cost, and how fast a timeout takes effect.

    .venv/bin/python bench/bench_options.py            # 10,000 jobs, best of 3
    .venv/bin/python bench/bench_options.py --n 2000 --repeat 5

1. Per job, with and without options (``job_timeout=600, job_retries=2,
   job_resources={"tokens": 1e-6}``: limits that never bind, so only their bookkeeping
   is measured): ``comp`` (register), ``sync`` (record the definitions), a first ``make``
   in the process, and a first ``parmake 2`` on warm engines. Each cell in a fresh
   store; with and without alternate within a repeat; the best time is kept.
2. The time from a job's timeout to its ``failed`` record, and to a fresh engine ready
   in the place of the one killed: a job that blocks the alarm and sleeps (as a C loop
   would), ``job_timeout=1``, on ``parmake 2``; the engine's own alarm cannot stop it, so
   the kernel kills the engine. Measured from the job's start as the engine saw it.
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
# engines import the jobs' module too
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))

from nbmake_ext import Context, JobsFailed  # noqa: E402
from _jobs import deaf_sleep, work  # noqa: E402

OPTIONS = {"job_timeout": 600, "job_retries": 2, "job_resources": {"tokens": 1e-6}}


def one(n: int, options: bool, engines: bool) -> dict[str, float]:
    root = tempfile.mkdtemp(prefix="nbmake-bench-options-")
    try:
        ctx = Context(os.path.join(root, "store"))
        if engines:
            ctx.comp(work, -1, job_id="warm")
            ctx.parmake(n=2)
        extra = OPTIONS if options else {}
        t0 = time.perf_counter()
        for i in range(n):
            ctx.comp(work, i, **extra)
        t1 = time.perf_counter()
        ctx.sync()
        t2 = time.perf_counter()
        if engines:
            ctx.parmake(n=2)
        else:
            ctx.make()
        t3 = time.perf_counter()
        ctx.close()
        return {"comp": t1 - t0, "sync": t2 - t1, "parmake 2" if engines else "make": t3 - t2}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def costs(n: int, repeat: int) -> None:
    best: dict[tuple[str, bool], float] = {}
    for _ in range(repeat):
        for engines in (False, True):
            for options in (False, True):
                for phase, seconds in one(n, options, engines).items():
                    key = (phase, options)
                    best[key] = min(best.get(key, float("inf")), seconds)
    print(f"per job, {n} jobs, best of {repeat} (µs):")
    print(f"  {'phase':<10} {'without':>9} {'with':>9} {'ratio':>7}")
    for phase in ("comp", "sync", "make", "parmake 2"):
        a, b = best[(phase, False)], best[(phase, True)]
        print(f"  {phase:<10} {1e6 * a / n:>9.1f} {1e6 * b / n:>9.1f} {b / a:>7.2f}")


def timeout_to_failure(repeat: int) -> None:
    print("job_timeout=1 on a job that blocks its alarm, parmake 2 (s after the timeout):")
    for _ in range(repeat):
        root = tempfile.mkdtemp(prefix="nbmake-bench-timeout-")
        try:
            ctx = Context(os.path.join(root, "store"))
            ctx.comp(work, -1, job_id="warm")
            ctx.parmake(n=2)
            pool = ctx._pool
            before = set(pool.pids())
            ctx.comp(deaf_sleep, 3600, job_id="deaf", job_timeout=1)
            try:
                ctx.parmake("deaf", n=2)
            except JobsFailed:
                pass
            failed_at = time.time()
            while True:  # a new engine in the killed one's place, ready for jobs
                engines = list(pool.engines.values())
                if len(engines) == 2 and all(e.ready for e in engines) \
                        and set(pool.pids()) != before:
                    break
                pool.poll(0.005)
            fresh_at = time.time()
            d = ctx.details("deaf")
            started = d.started
            print(f"  failed recorded {d.ended - started - 1:.3f}  make returned "
                  f"{failed_at - started - 1:.3f}  fresh engine ready "
                  f"{fresh_at - started - 1:.3f}   ({d.error})")
            ctx.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    costs(args.n, args.repeat)
    timeout_to_failure(args.repeat)


if __name__ == "__main__":
    main()
