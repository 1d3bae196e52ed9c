"""nbmake_ext against the tools users would pick instead, on trivial jobs, in one run.

    .venv/bin/python bench/bench_serial.py [--sizes 1000,10000,100000] [--quick] [--repeat K]

Three measures, each printed as a table (see bench/README.md):
  1. registration cost per comp() call;
  2. a first, serial make on an empty store with every result persisted;
  3. a no-op make after a restart: a fresh process re-registers everything and finds
     nothing to do.

Every measured run is a fresh subprocess (bench/_worker.py), so no tool profits from
another's warm caches; tools take turns within each repeat, and the best (minimum) of
the repeats is reported. Slow cells are skipped or repeated fewer times, using the
previous size to estimate their cost (``--limit``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "_worker.py")

TARGET_SERIAL_RATIO = 1.5
TARGET_NOOP = {10_000: 0.3, 100_000: 3.0}
TARGET_REG_US = 30.0


@dataclass(frozen=True)
class Tool:
    label: str
    worker: str          # tool name for _worker.py
    fsync: bool = True
    store: str = ""      # which store kind it reads/writes (noop tools share the pickle one)


REG_TOOLS = [Tool("nbmake_ext", "nbmake"), Tool("compmake", "compmake")]
BUILD_TOOLS = [
    Tool("nbmake_ext", "nbmake", True, "nbmake"),
    Tool("nbmake_ext durable=False", "nbmake", False, "nbmake"),
    Tool("joblib.Memory", "joblib", True, "joblib"),
    Tool("compmake", "compmake", True, "compmake"),
    Tool("pickle loop (no fsync)", "pickle", False, "pickle"),
    Tool("pickle loop + fsync", "pickle", True, "pickle"),
]
NOOP_TOOLS = [
    Tool("nbmake_ext", "nbmake", True, "nbmake"),
    Tool("joblib.Memory", "joblib", True, "joblib"),
    Tool("compmake", "compmake", True, "compmake"),
    Tool("pickle loop: load N", "pickle-load", True, "pickle"),
    Tool("pickle loop: exists N", "pickle-exists", True, "pickle"),
]
# How each store is built for a no-op measure when the build measure did not leave one
# (sizes above --make-sizes): the fastest honest way, since only its content matters.
SETUP = {
    "nbmake": Tool("setup nbmake", "nbmake", False, "nbmake"),
    "joblib": Tool("setup joblib", "joblib", True, "joblib"),
    "compmake": Tool("setup compmake", "compmake", True, "compmake"),
    "pickle": Tool("setup pickle", "pickle", False, "pickle"),
}


@dataclass
class Cell:
    """The outcome of one (measure, tool, shape, N): best run, or why there is none."""

    runs: list[dict] = field(default_factory=list)
    skipped: str = ""
    failed: dict | None = None
    reps_planned: int = 0

    def best(self, key) -> dict | None:
        return min(self.runs, key=key) if self.runs else None


# -- running one measured process ---------------------------------------------------------

class Runner:
    def __init__(self, args, root: str):
        self.args = args
        self.root = root
        self.counter = 0
        # (kind, tool, shape) -> (n, wall seconds, the part of it that grows with n)
        self.cost: dict[tuple, tuple[int, float, float]] = {}
        self.failures: list[dict] = []
        self.sync_seconds = 0.0

    def rmtree(self, path: str) -> None:
        """Stores are removed with the whole directory after the report: deleting hundreds
        of thousands of files takes minutes here, and nothing is measured meanwhile."""

    def new_dir(self, name: str) -> str:
        self.counter += 1
        return os.path.join(self.root, f"{self.counter:04d}-{name}")

    def estimate(self, kind: str, tool: Tool, shape: str, n: int) -> float | None:
        prev = self.cost.get((kind, tool.label, shape))
        if prev is None:
            return None
        n0, wall, scaled = prev
        return wall - scaled + scaled * n / n0  # start-up and imports do not grow with N

    def run(self, tool: Tool, phase: str, shape: str, n: int, store: str,
            timeout: float) -> dict:
        out = os.path.join(self.root, f"result-{self.counter}-{os.getpid()}.json")
        err = os.path.join(self.root, "stderr.txt")
        cmd = [sys.executable, WORKER, tool.worker, phase, shape, str(n), store, out]
        if not tool.fsync:
            cmd.append("--no-fsync")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        env.pop("NBMAKE_STORE", None)
        if os.path.exists(out):
            os.unlink(out)
        t_sync = time.time()
        os.sync()  # earlier runs' dirty pages must not be written back during this one
        t_launch = time.time()
        self.sync_seconds += t_launch - t_sync
        with open(err, "wb") as ef:
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=ef, cwd=self.root, env=env, timeout=timeout)
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        wall = time.time() - t_launch
        with open(err, "rb") as ef:
            stderr = ef.read().decode("utf-8", "replace")
        res: dict = {"cmd": " ".join(cmd), "wall": wall}
        if os.path.exists(out):
            with open(out) as f:
                res.update(json.load(f))
            os.unlink(out)
            res["startup"] = res["t_start_wall"] - t_launch
        if rc != 0 or "made" not in res and phase != "reg" or "registered" not in res:
            res.setdefault("error", f"worker exited with {rc} after {wall:.1f}s")
            res.setdefault("traceback", stderr[-3000:])
        want_calls = n if phase == "build" else 0
        if "error" not in res and res.get("calls") != want_calls:
            res["error"] = f"the job body ran {res.get('calls')} times, expected {want_calls}"
        return res

    def cell(self, kind: str, tool: Tool, shape: str, n: int) -> Cell:
        """Plan the repeats of one cell (the runs themselves are interleaved by caller)."""
        c = Cell()
        est = self.estimate(kind, tool, shape, n)
        limit = self.args.limit
        if est is not None and est > limit:
            c.skipped = f"skipped: would take ~{est:.0f} s"
            return c
        c.reps_planned = self.args.repeat if est is None else \
            max(1, min(self.args.repeat, int(limit // max(est, 1e-9))))
        return c


def interleave(runner: Runner, kind: str, phase: str, shape: str, n: int,
               cells: dict[Tool, Cell], stores_in: dict[str, str] | None,
               stores_out: dict[str, str] | None, on_done=None) -> None:
    """Run each tool's repeats in turns: rep 1 of every tool, then rep 2, ..."""
    reps = max((c.reps_planned for c in cells.values()), default=0)
    for rep in range(reps):
        for tool, c in cells.items():
            if rep >= c.reps_planned or c.failed is not None or c.skipped:
                continue
            if stores_in is not None:
                store = stores_in[tool.store]
            else:
                store = runner.new_dir(f"{tool.worker}-{shape}-{n}")
            est = runner.estimate(kind, tool, shape, n)
            timeout = max(120.0, 5 * est) if est is not None else 600.0
            res = runner.run(tool, phase, shape, n, store, timeout)
            progress(f"  {kind:5s} {shape:5s} n={n:<7d} {tool.label:26s} rep {rep + 1}: "
                     + (f"FAILED {res['error']}" if "error" in res else f"{res['wall']:.2f} s wall"))
            if "error" in res:
                c.failed = res
                runner.failures.append({"kind": kind, "tool": tool.label, "shape": shape,
                                        "n": n, **res})
            else:
                c.runs.append(res)
                prev = runner.cost.get((kind, tool.label, shape))
                if prev is None or prev[0] != n or res["wall"] < prev[1]:
                    runner.cost[(kind, tool.label, shape)] = (n, res["wall"], scaled_part(res))
            if stores_in is None:
                # Keep the last good store of each kind as the no-op measure's input.
                if stores_out is not None and "error" not in res and tool.store:
                    old = stores_out.get(tool.store)
                    if old and old != store:
                        runner.rmtree(old)
                    stores_out[tool.store] = store
                else:
                    runner.rmtree(store)


def scaled_part(res: dict) -> float:
    last = max(res.get(k, 0.0) for k in ("registered", "made", "closed"))
    return max(0.0, last - res.get("imported", 0.0))


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- formatting ---------------------------------------------------------------------------

def fmt_n(n: int) -> str:
    return f"{n:,}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def table(rows: list[list[str]], header: list[str], right: set[int]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = []
    for r in [header, ["-" * w for w in widths]] + rows:
        lines.append("  ".join(str(v).rjust(widths[i]) if i in right else str(v).ljust(widths[i])
                               for i, v in enumerate(r)).rstrip())
    return "\n".join(lines)


def cell_text(c: Cell | None, value) -> str:
    if c is None:
        return "-"
    if c.failed is not None:
        return f"FAILED ({c.failed['error'].split(':')[0]})"
    if c.skipped:
        return c.skipped
    return value


def reps_note(c: Cell, k: int) -> str:
    n = len(c.runs)
    return f" [best of {n}]" if n != k else ""


# -- the three measures -------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000",
                    help="job counts (default 1000,10000,100000)")
    ap.add_argument("--quick", action="store_true", help="sizes 1000 and 10000 only")
    ap.add_argument("--repeat", type=int, default=3, help="repeats per cell; the best is kept")
    ap.add_argument("--make-sizes", default=None,
                    help="sizes for measure 2, the first make (default: the sizes <= 10000)")
    ap.add_argument("--shapes", default="indep",
                    help="indep (N independent jobs, the default) and/or chain (job i uses "
                         "job i-1's result): --shapes indep,chain")
    ap.add_argument("--chain-max", type=int, default=10_000,
                    help="largest N for the chain shape (default 10000)")
    ap.add_argument("--limit", type=float, default=60.0,
                    help="skip a run estimated to take longer than this (s); fewer repeats "
                         "when repeats would exceed it")
    ap.add_argument("--tmp", default="/tmp", help="where the temporary stores go")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    sizes = [1000, 10_000] if args.quick else sorted(int(s) for s in args.sizes.split(",") if s)
    make_sizes = (sorted(int(s) for s in args.make_sizes.split(",") if s)
                  if args.make_sizes else [n for n in sizes if n <= 10_000])
    shapes = [s for s in args.shapes.split(",") if s]
    for s in shapes:
        if s not in ("indep", "chain"):
            ap.error(f"unknown shape {s!r}")

    versions = tool_versions()
    args.git = git_state()
    root = tempfile.mkdtemp(prefix="nbmake-bench-", dir=args.tmp)
    os.chmod(root, 0o700)
    runner = Runner(args, root)
    have_compmake = versions["compmake"][0] is not None
    reg_tools = [t for t in REG_TOOLS if have_compmake or t.worker != "compmake"]
    build_tools = [t for t in BUILD_TOOLS if have_compmake or t.worker != "compmake"]
    noop_tools = [t for t in NOOP_TOOLS if have_compmake or t.worker != "compmake"]

    reg: dict[tuple, Cell] = {}
    build: dict[tuple, Cell] = {}
    noop: dict[tuple, Cell] = {}
    t_all = time.time()
    try:
        for shape in shapes:
            shape_sizes = [n for n in sizes if shape == "indep" or n <= args.chain_max]
            for n in shape_sizes:
                # 1. registration
                cells = {t: runner.cell("reg", t, shape, n) for t in reg_tools}
                interleave(runner, "reg", "reg", shape, n, cells, None, None)
                reg.update({(t.label, shape, n): c for t, c in cells.items()})

                # 2. first make (its last good stores feed the no-op measure)
                stores: dict[str, str] = {}
                if n in make_sizes:
                    cells = {t: runner.cell("build", t, shape, n)
                             for t in build_tools}
                    interleave(runner, "build", "build", shape, n, cells, None, stores)
                    build.update({(t.label, shape, n): c for t, c in cells.items()})

                # 3. no-op make in a fresh process
                cells = {}
                for t in noop_tools:
                    prev_fail = any(noop.get((t.label, shape, m)) is not None
                                    and noop[(t.label, shape, m)].failed is not None
                                    for m in shape_sizes if m < n)
                    c = runner.cell("noop", t, shape, n)
                    if prev_fail:
                        c = Cell(skipped="skipped: failed at a smaller N")
                    elif not c.skipped and t.store not in stores:
                        c = setup_store(runner, t, shape, n, stores, build_tools, build)
                        if c is None:
                            c = runner.cell("noop", t, shape, n)
                    cells[t] = c
                interleave(runner, "noop", "noop", shape, n, cells, stores, None)
                noop.update({(t.label, shape, n): c for t, c in cells.items()})
                progress(f"  (so far: {time.time() - t_all:.0f} s, of which os.sync "
                         f"{runner.sync_seconds:.0f} s)")
        print_report(args, sizes, make_sizes, shapes, versions, reg_tools, build_tools,
                     noop_tools, reg, build, noop, runner, time.time() - t_all)
    except KeyboardInterrupt:
        progress("interrupted: printing what was measured")
        print_report(args, sizes, make_sizes, shapes, versions, reg_tools, build_tools,
                     noop_tools, reg, build, noop, runner, time.time() - t_all)
    finally:
        if args.keep:
            progress(f"kept {root}")
        else:
            progress(f"removing {root} (many files: this can take minutes) ...")
            shutil.rmtree(root, ignore_errors=True)
    return 0


def setup_store(runner: Runner, t: Tool, shape: str, n: int, stores: dict,
                build_tools, build) -> Cell | None:
    """Build the store a no-op measure reads; a Cell if that cannot be done."""
    setup = SETUP[t.store]
    est = runner.estimate("setup", setup, shape, n)
    if est is None:
        # From the build measure at a smaller size, if any.
        for bt in build_tools:
            if bt.worker == setup.worker and bt.fsync == setup.fsync:
                est = runner.estimate("build", bt, shape, n)
                break
    if est is not None and est > 4 * runner.args.limit:
        return Cell(skipped=f"skipped: building its store would take ~{est:.0f} s")
    store = runner.new_dir(f"{setup.worker}-{shape}-{n}-setup")
    res = runner.run(setup, "build", shape, n, store, max(600.0, 5 * (est or 0)))
    progress(f"  setup {shape:5s} n={n:<7d} {setup.label:26s}: "
             + (f"FAILED {res['error']}" if "error" in res else f"{res['wall']:.2f} s wall"))
    if "error" in res:
        shutil.rmtree(store, ignore_errors=True)
        runner.failures.append({"kind": "setup", "tool": setup.label, "shape": shape, "n": n, **res})
        return Cell(failed=res)
    runner.cost[("setup", setup.label, shape)] = (n, res["wall"], scaled_part(res))
    stores[t.store] = store
    return None


# -- the report ---------------------------------------------------------------------------

def us_per_job(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def build_total(r: dict) -> float:
    return r["closed"] - r["imported"]  # open + register + make + close, in-process


def noop_total(r: dict) -> float:
    return r["made"] - r["imported"]  # open + register + make, in-process


def print_report(args, sizes, make_sizes, shapes, versions, reg_tools, build_tools, noop_tools,
                 reg, build, noop, runner, elapsed) -> None:
    k = args.repeat
    out = []
    p = out.append
    p("nbmake_ext serial benchmark")
    p(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores, "
      f"load average at the end {os.getloadavg()[0]:.2f}; stores under {args.tmp} "
      f"({fs_type(args.tmp)}); best of {k} unless noted; total {elapsed:.0f} s")
    at_end = git_state()
    p(f"nbmake_ext code: {args.git}" + ("" if at_end == args.git
                                        else f" at the start, {at_end} at the end"))
    p("versions: " + ", ".join(f"{name} {v}" if v else f"{name} NOT AVAILABLE ({why})"
                              for name, (v, why) in versions.items()))
    p("jobs: indep = work(i) -> i * 2 for i < N;  chain = step(result of job i-1, i) -> prev + i")
    p("")

    # 1. registration
    p("== 1. Registration: µs per comp() call (fresh process, empty store, nothing run) ==")
    header = ["shape", "tool"] + [fmt_n(n) for n in sizes]
    rows = []
    for shape in shapes:
        for t in reg_tools:
            row = [shape, t.label]
            for n in sizes:
                c = reg.get((t.label, shape, n))
                if c is None:
                    row.append("-")
                    continue
                b = c.best(lambda r: r["registered"] - r["opened"])
                row.append(cell_text(c, f"{us_per_job(b['registered'] - b['opened'], n):.1f}"
                                     + reps_note(c, k) if b else "-"))
            rows.append(row)
    p(table(rows, header, set(range(2, len(header)))))
    p(f"target: nbmake_ext < {TARGET_REG_US:.0f} µs per comp(). compmake's comp() also writes "
      "the job's definition to disk; nbmake_ext writes definitions at make time.")
    p("")

    # 2. serial first make
    p("== 2. Serial first make on an empty store, every result persisted: µs per job ==")
    p("   µs/job = (open store + register N + make + close) / N, inside the process "
      "(imports excluded).")
    p("   x pickle: ratio to the bare loop without fsync; x pk+fsync: to the loop with an fsync "
      "per file (nbmake_ext makes every result durable before recording it, unless "
      "durable=False).")
    header = ["shape", "N", "tool", "µs/job", "x pickle", "x pk+fsync", "x joblib", "split (µs/job)"]
    rows = []
    for shape in shapes:
        for n in make_sizes:
            if shape == "chain" and n > args.chain_max:
                continue
            base = {}
            for t in build_tools:
                c = build.get((t.label, shape, n))
                b = c.best(build_total) if c else None
                base[t.label] = us_per_job(build_total(b), n) if b else None
            for t in build_tools:
                c = build.get((t.label, shape, n))
                if c is None:
                    continue
                b = c.best(build_total)
                v = base[t.label]
                split = ""
                if b:
                    split = (f"open {us_per_job(b['opened'] - b['imported'], n):.1f} + "
                             f"reg {us_per_job(b['registered'] - b['opened'], n):.1f} + "
                             f"make {us_per_job(b['made'] - b['registered'], n):.1f} + "
                             f"close {us_per_job(b['closed'] - b['made'], n):.1f}")
                rows.append([shape, fmt_n(n), t.label,
                             cell_text(c, f"{v:.1f}" + reps_note(c, k) if b else "-"),
                             ratio(v, base.get("pickle loop (no fsync)")),
                             ratio(v, base.get("pickle loop + fsync")),
                             ratio(v, base.get("joblib.Memory")), split])
    p(table(rows, header, {1, 3, 4, 5, 6}))
    p(f"target: nbmake_ext <= {TARGET_SERIAL_RATIO}x the bare pickle-file loop.")
    p("")

    # 3. no-op make after a restart
    p("== 3. No-op make after a restart: a fresh process re-registers all N jobs and makes; "
      "nothing runs ==")
    p("   in-proc = open store + register N + make, measured inside the process (what the "
      "targets are about); start = interpreter start-up, import = importing the tool; wall = "
      "whole subprocess as seen by the parent.")
    p("   pickle loop: load N = open + pickle.load every result file; exists N = one "
      "os.path.exists per job.")
    header = ["shape", "N", "tool", "in-proc s", "µs/job", "x load", "x exists", "x joblib",
              "start s", "import s", "wall s", "split (s)"]
    rows = []
    for shape in shapes:
        for n in sizes:
            if shape == "chain" and n > args.chain_max:
                continue
            base = {}
            for t in noop_tools:
                c = noop.get((t.label, shape, n))
                b = c.best(noop_total) if c else None
                base[t.label] = noop_total(b) if b else None
            for t in noop_tools:
                c = noop.get((t.label, shape, n))
                if c is None:
                    continue
                b = c.best(noop_total)
                v = base[t.label]
                split = ""
                if b and t.worker in ("nbmake", "compmake"):
                    split = (f"open {b['opened'] - b['imported']:.3f} + "
                             f"reg {b['registered'] - b['opened']:.3f} + "
                             f"make {b['made'] - b['registered']:.3f}")
                rows.append([shape, fmt_n(n), t.label,
                             cell_text(c, f"{v:.3f}" + reps_note(c, k) if b else "-"),
                             f"{us_per_job(v, n):.1f}" if v is not None else "",
                             ratio(v, base.get("pickle loop: load N")),
                             ratio(v, base.get("pickle loop: exists N")),
                             ratio(v, base.get("joblib.Memory")),
                             f"{b['startup']:.3f}" if b else "",
                             f"{b['imported']:.3f}" if b else "",
                             f"{b['wall']:.3f}" if b else "", split])
    p(table(rows, header, {1, 3, 4, 5, 6, 7, 8, 9, 10}))
    p("targets: nbmake_ext no-op re-make of 10,000 jobs < 0.3 s, of 100,000 < 3 s (in-proc).")
    p("")

    # targets
    p("== Targets from the issue (nbmake_ext) ==")
    for shape in shapes:
        for n in sizes:
            c = reg.get(("nbmake_ext", shape, n))
            b = c.best(lambda r: r["registered"] - r["opened"]) if c else None
            if b:
                v = us_per_job(b["registered"] - b["opened"], n)
                p(f"  registration  {shape:5s} N={fmt_n(n):>7s}: {v:7.1f} µs/job  "
                  f"(< {TARGET_REG_US:.0f})   {'PASS' if v < TARGET_REG_US else 'FAIL'}")
        for n in make_sizes:
            c = build.get(("nbmake_ext", shape, n))
            b = c.best(build_total) if c else None
            if not b:
                if c is not None and c.failed:
                    p(f"  serial make   {shape:5s} N={fmt_n(n):>7s}: FAILED")
                continue
            v = us_per_job(build_total(b), n)
            for label in ("pickle loop (no fsync)", "pickle loop + fsync"):
                pc = build.get((label, shape, n))
                pb = pc.best(build_total) if pc else None
                if pb:
                    r = v / us_per_job(build_total(pb), n)
                    p(f"  serial make   {shape:5s} N={fmt_n(n):>7s}: {r:5.2f}x {label:24s}"
                      f"(<= {TARGET_SERIAL_RATIO})  {'PASS' if r <= TARGET_SERIAL_RATIO else 'FAIL'}")
        for n in sizes:
            if n not in TARGET_NOOP:
                continue
            c = noop.get(("nbmake_ext", shape, n))
            b = c.best(noop_total) if c else None
            if b:
                v = noop_total(b)
                p(f"  no-op re-make {shape:5s} N={fmt_n(n):>7s}: {v:7.3f} s   "
                  f"(< {TARGET_NOOP[n]})   {'PASS' if v < TARGET_NOOP[n] else 'FAIL'}")
            elif c is not None:
                p(f"  no-op re-make {shape:5s} N={fmt_n(n):>7s}: "
                  f"{'FAILED' if c.failed else c.skipped}")

    if runner.failures:
        p("")
        p("== Failures ==")
        for f in runner.failures:
            p(f"-- {f['kind']} {f['tool']} {f['shape']} N={f['n']}: {f['error']}")
            p(f"   command: {f['cmd']}")
            tb = (f.get("traceback") or "").strip().splitlines()
            if len(tb) > 24:
                tb = tb[:14] + [f"   ... ({len(tb) - 22} lines) ..."] + tb[-8:]
            p("\n".join("   " + line for line in tb))
    print("\n".join(out), flush=True)


def tool_versions() -> dict[str, tuple[str | None, str]]:
    out = {}
    for name, code in (("nbmake_ext", "import nbmake_ext as m; print(m.__version__)"),
                       ("joblib", "import joblib as m; print(m.__version__)"),
                       ("compmake", "import compmake as m; print(m.__version__)")):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, cwd=tempfile.gettempdir())
        if proc.returncode == 0:
            out[name] = (proc.stdout.strip().splitlines()[-1], "")
        else:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            hint = " (on Python 3.11 use `pip install compmake-z6`)" if name == "compmake" else ""
            out[name] = (None, last + hint)
            progress(f"{name} is not available: {last}{hint}")
    return out


def git_state() -> str:
    """The commit measured, and whether nbmake_ext/ had uncommitted changes."""
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "nbmake_ext"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{rev or '?'}" + (" + uncommitted changes in nbmake_ext/" if dirty else "")


def fs_type(path: str) -> str:
    try:
        best, kind = "", "?"
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt, typ = parts[1], parts[2]
                if os.path.realpath(path).startswith(mnt) and len(mnt) > len(best):
                    best, kind = mnt, typ
        return kind
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
