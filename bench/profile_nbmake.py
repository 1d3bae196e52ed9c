"""Where nbmake_ext's time goes: cProfile of (a) a first serial make and (b) a no-op make
after a restart, each in a fresh process, on the trivial jobs of bench_serial.py.

    .venv/bin/python bench/profile_nbmake.py                   # (a) 10k serial, (b) 100k no-op
    .venv/bin/python bench/profile_nbmake.py --what build --n 10000 --no-durable
    .venv/bin/python bench/profile_nbmake.py --what noop --n 100000 --top 40

The profiled span is Context(store) + N comp() calls + make() + close(). The main thread
is profiled as usual; for the serial make, the store's background threads (the writer
and the file pool that writes and fsyncs results) are profiled too and printed apart,
added up over all of them. Numbers under a profiler are inflated (by ~2x for code made of
many small calls); read them as shares.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)


def child(what: str, n: int, store: str, durable: bool, top: int, shape: str) -> None:
    from nbmake_ext import Context
    from _jobs import step, work

    thread_profiles: list[tuple[str, cProfile.Profile]] = []
    lock = threading.Lock()

    def start_thread_profile(frame, event, arg):  # first event of a new thread
        prof = cProfile.Profile()
        with lock:
            thread_profiles.append((threading.current_thread().name, prof))
        prof.enable()  # replaces this hook for the thread

    threading.setprofile(start_thread_profile)
    main = cProfile.Profile()
    t0 = time.perf_counter()
    main.enable()
    ctx = Context(store, durable=durable)
    ctx.report = lambda line: None
    if shape == "indep":
        for i in range(n):
            ctx.comp(work, i)
    else:
        p = 0
        for i in range(n):
            p = ctx.comp(step, p, i)
    report = ctx.make()
    ctx.close()
    main.disable()
    elapsed = time.perf_counter() - t0
    threading.setprofile(None)

    print(f"# {what} {shape} N={n:,} durable={durable}: {report.line()}; "
          f"{elapsed:.3f} s under the profiler ({elapsed / n * 1e6:.1f} µs/job)")
    print_stats("main thread, by cumulative time", main, "cumulative", top)
    print_stats("main thread, by own time", main, "tottime", top)
    if thread_profiles:
        groups: dict[str, list[cProfile.Profile]] = {}
        for name, prof in thread_profiles:
            key = name.rstrip("0123456789_").rstrip("_") or name
            groups.setdefault(key, []).append(prof)
        for key, profs in groups.items():
            stats = pstats.Stats(profs[0])
            for prof in profs[1:]:
                stats.add(prof)
            print_stats(f"background threads {key!r} x{len(profs)}, by own time", stats,
                        "tottime", max(10, top // 2))


def print_stats(title: str, prof, sort: str, top: int) -> None:
    buf = io.StringIO()
    stats = prof if isinstance(prof, pstats.Stats) else pstats.Stats(prof, stream=buf)
    stats.stream = buf
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    text = buf.getvalue()
    # Keep the table, drop pstats' preamble lines about ordering.
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(
        ("Ordered by", "List reduced"))]
    print(f"\n## {title}")
    print("\n".join(lines))


def run_child(args_list: list[str]) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args_list],
                   check=True, env=env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", choices=("build", "noop", "both"), default="both")
    ap.add_argument("--n", type=int, default=None,
                    help="jobs (default: 10000 for build, 100000 for noop)")
    ap.add_argument("--shape", choices=("indep", "chain"), default="indep")
    ap.add_argument("--no-durable", action="store_true", help="build with durable=False")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--tmp", default="/tmp")
    ap.add_argument("--child", nargs=5, metavar=("WHAT", "N", "STORE", "DURABLE", "SHAPE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        what, n, store, durable, shape = args.child
        child(what, int(n), store, durable == "1", args.top, shape)
        return 0

    root = tempfile.mkdtemp(prefix="nbmake-prof-", dir=args.tmp)
    try:
        if args.what in ("build", "both"):
            n = args.n or 10_000
            run_child(["build", str(n), os.path.join(root, "build"),
                       "0" if args.no_durable else "1", args.shape, "--top", str(args.top)])
            shutil.rmtree(os.path.join(root, "build"), ignore_errors=True)
            print()
        if args.what in ("noop", "both"):
            n = args.n or 100_000
            store = os.path.join(root, "noop")
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
            print(f"(building the store of {n:,} jobs first, not profiled)", file=sys.stderr)
            subprocess.run([sys.executable, os.path.join(HERE, "_worker.py"), "nbmake", "build",
                            args.shape, str(n), store, os.path.join(root, "setup.json"),
                            "--no-fsync"], check=True, env=env, stdout=subprocess.DEVNULL)
            run_child(["noop", str(n), store, "1", args.shape, "--top", str(args.top)])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
