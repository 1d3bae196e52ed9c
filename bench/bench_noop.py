"""Where the time of a no-op make goes: a fresh process defines every job of a fan-out again
(as ``../shared/anchors`` does: ``comp(double, i)`` for each i, then one job taking every
result) and makes, finding nothing to do. Reported per phase, best and median of the runs,
in CPU seconds of the process (steadier than wall time on a shared machine):

- ``define``: the ``comp`` loop (the loop itself included, as the anchors time it);
- ``store read``: ``Store.snapshot``, every stored job read back;
- ``sync, rest``: comparing the definitions with the stored ones, code fingerprints again;
- ``run``: the scheduler's sweep and the run loop (``Driver``);
- ``unchanged``: the look at the record of the last clean make (kernel/clean_makes.py)
  that lets a make of jobs all as that make left them skip the three phases above;
- ``gc``: garbage collections, wherever they fell.

    .venv/bin/python bench/bench_noop.py                 # 100,000 jobs, 5 runs
    .venv/bin/python bench/bench_noop.py --n 10000 --runs 9
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

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import functools, gc, json, sys, time
sys.path.insert(0, sys.argv[3])
import nbmake_ext as nb
from nbmake_ext import context as context_module
from nbmake_ext.kernel import clean_makes
from nbmake_ext.kernel.driver import Driver
from nbmake_ext.store.store import Store
from _jobs import work


def total(*parts):
    return sum(parts)


spent = {}


def timed(cls, name, phase):
    method = getattr(cls, name)

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        t = time.process_time()
        try:
            return method(*args, **kwargs)
        finally:
            spent[phase] = spent.get(phase, 0.0) + time.process_time() - t
    setattr(cls, name, wrapper)


timed(Store, "snapshot", "store read")
timed(context_module.Context, "sync", "sync")
timed(Driver, "run", "run")
timed(clean_makes, "unchanged_report", "unchanged")
gc_started = [0.0]


def on_gc(phase, info):
    if phase == "start":
        gc_started[0] = time.process_time()
    else:
        spent["gc"] = spent.get("gc", 0.0) + time.process_time() - gc_started[0]


gc.callbacks.append(on_gc)
n = int(sys.argv[2])
t0 = time.process_time()
ctx = nb.Context(store=sys.argv[1])
promises = [ctx.comp(work, i, job_id=f"d{i}") for i in range(n)]
ctx.comp(total, *promises, job_id="total")
t1 = time.process_time()
report = ctx.make("total")
t2 = time.process_time()
if sys.argv[4] == "noop":
    assert report.ran == 0, report
spent["define"] = t1 - t0
spent["make"] = t2 - t1
spent["sync, rest"] = spent.pop("sync", 0.0) - spent.get("store read", 0.0)
ctx.close()
print(json.dumps(spent))
"""

PHASES = ["define", "unchanged", "store read", "sync, rest", "run", "make", "gc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="nbmake-noop-", dir=args.tmp)
    store = os.path.join(workdir, "store")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [os.path.dirname(HERE), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-c", CHILD, store, str(args.n), HERE, "noop"]
    try:
        print(f"building a store of {args.n} jobs ...", file=sys.stderr)
        subprocess.run(command[:-1] + ["build"], env=env, check=True, capture_output=True)
        runs = []
        for i in range(args.runs):
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  run {i + 1}: define + make {runs[-1]['define'] + runs[-1]['make']:.3f} s",
                  file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"no-op make of a fan-out of {args.n} jobs, CPU seconds, {args.runs} fresh processes:")
    for phase in PHASES + ["define + make"]:
        values = [r["define"] + r["make"] if phase == "define + make" else r.get(phase, 0.0)
                  for r in runs]
        print(f"  {phase:14s} best {min(values):6.3f}   median {statistics.median(values):6.3f}")


if __name__ == "__main__":
    main()
