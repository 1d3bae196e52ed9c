"""``parmake 2`` beside the parallel tools a user would pick instead, in one run.

    .venv/bin/python bench/bench_parallel.py                 # 1k and 10k, best of 3
    .venv/bin/python bench/bench_parallel.py --quick         # 1k only, best of 2
    .venv/bin/python bench/bench_parallel.py --sizes 1000,5000 --repeat 5 --tools floor,nbmake

Cells (every tool runs every cell, with 2 worker processes):

- ``fan-out N``: N independent trivial jobs ``work(i) -> 2 i`` (bench/_jobs.py);
- ``chain N``: job i is ``step(result of job i-1, i)``: one job at a time, a latency;
- ``payload``: ``--payload-jobs`` (50) jobs each returning ``--mb`` (10) MB of ``bytes``,
  all consumed by one dependent job (``consume(parts) -> total length``); in MB/s of the
  results produced (50 x 10 MB / wall time).

Per-job overhead = (wall time - the jobs' own compute time, measured serially here) / N.
Workers are started and warmed before timing; the time to start them and run a first
few jobs is the ``cold`` column. Tools (``--tools``):

- ``floor``: a raw pyzmq dispatcher (ROUTER + 2 DEALER worker processes over ipc,
  ``--prefetch`` jobs in flight per worker, cloudpickled function + arguments, pickled
  results sent back; a chain waits for each result; the payload consumer gets the 50
  pickled results forwarded as frames);
- ``nbmake`` / ``nbmake-nodur``: ``ctx.parmake(*targets, n=2)`` with results persisted in
  the store, ``Context(store)`` (fsynced, the default) and ``Context(store, durable=False)``.
  Each cell gets a fresh store and context: its pool is warmed by a first parmake of 4
  other jobs (the cold column: engines start on first use), then the jobs are registered
  and synced (``comp`` + ``sync``, untimed: in a notebook that happens when the defining
  cell ends; shown as ``reg``), then ``parmake`` is timed;
- ``dask-delayed`` / ``dask-futures``: Dask distributed, ``LocalCluster(n_workers=2,
  threads_per_worker=1, processes=True, dashboard off)``, in this process as in a notebook;
  ``dask.compute`` of a delayed graph built before timing, or ``client.submit``/``map``
  (timed) then ``gather``;
- ``dask-processes``: ``dask.compute(..., scheduler="processes")`` on a warm pool of 2
  spawned processes (passed as ``pool=``, else dask starts one per compute);
- ``joblib``: ``Parallel(n_jobs=2)`` (loky, its reusable executor kept warm); a chain is
  one ``Parallel`` call per link inside one ``with Parallel(...)`` block.

Each tool runs in a fresh process per repeat; tools take turns within a repeat and the
best (minimum) time per cell is kept. Cells estimated to take more than ``--limit``
seconds are skipped; cells slower than ``--limit / 4`` run only once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TOOLS = ["floor", "nbmake", "nbmake-nodur", "dask-delayed", "dask-futures", "dask-processes",
         "joblib"]
LABELS = {
    "floor": "raw zmq floor",
    "nbmake": "nbmake parmake 2",
    "nbmake-nodur": "nbmake durable=False",
    "dask-delayed": "dask distr. delayed",
    "dask-futures": "dask distr. futures",
    "dask-processes": "dask processes",
    "joblib": "joblib loky",
}
TARGET_FLOOR_FAN = 3.0
TARGET_DASK_FAN = 0.1
TARGET_FLOOR_CHAIN = 2.5
TARGET_FLOOR_PAYLOAD = 1.5


# -- the payload jobs (imported by module name, so every tool pickles them by reference) --

def make_payload(i, mb):
    return bytes([i % 251]) * (mb << 20)


def consume(parts):
    return sum(len(p) for p in parts)


def _env() -> None:
    """Workers and engines import _jobs and bench_parallel by name."""
    paths = [HERE, ROOT] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    for p in (ROOT, HERE):
        if p not in sys.path:
            sys.path.insert(0, p)


# == the tools, each in a worker process ===================================================

def proc_cpu(pids) -> float:
    """CPU seconds (user + system) used so far by these processes (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


class CpuMeter:
    """CPU used during a timed span: this process's main thread, its other threads (the
    store writer, ZeroMQ's I/O threads), and the worker processes."""

    def __init__(self, worker_pids):
        self.pids = list(worker_pids)
        self.t = (time.thread_time(), time.process_time(), proc_cpu(self.pids))

    def done(self) -> dict:
        main, proc, workers = (time.thread_time(), time.process_time(), proc_cpu(self.pids))
        return {"main": main - self.t[0], "threads": (proc - self.t[1]) - (main - self.t[0]),
                "workers": workers - self.t[2]}


class Tool:
    """start() -> cold seconds; fanout/chain/payload(...) -> (wall, checked value);
    ``cpu`` is the CpuMeter reading of the last timed span, where the tool measures it."""

    cpu: dict | None = None

    def start(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


# -- raw pyzmq floor --------------------------------------------------------------------------

def zmq_worker(endpoint: str, parent: int) -> None:
    import pickle
    import threading

    import cloudpickle
    import zmq

    def watch():  # never outlive the dispatcher
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sock.send(b"ready")
    dumps, loads = cloudpickle.dumps, pickle.loads
    while True:
        frames = sock.recv_multipart(copy=False)
        if frames[0].bytes == b"stop":
            break
        jid = frames[0]
        func, args = loads(frames[1].buffer)
        if len(frames) > 2:  # the results of its dependencies, forwarded as they came
            args = (*args, [loads(f.buffer) for f in frames[2:]])
        try:
            out = dumps(func(*args), protocol=5)
        except Exception:  # noqa: BLE001
            out = b"!" + traceback.format_exc().encode()
        sock.send_multipart([jid, out], copy=False)
    sock.close(0)
    ctx.term()


class Floor(Tool):
    def __init__(self, tmp: str, prefetch: int):
        self.tmp, self.prefetch = tmp, prefetch

    def start(self) -> float:
        import zmq

        t0 = time.perf_counter()
        self.dir = tempfile.mkdtemp(prefix="zf-", dir="/tmp")
        endpoint = f"ipc://{self.dir}/s"
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.procs = [subprocess.Popen([sys.executable, __file__, "--zmq-worker", endpoint,
                                        str(os.getpid())]) for _ in range(2)]
        self.workers = []
        while len(self.workers) < 2:
            ident, msg = self.sock.recv_multipart()
            assert msg == b"ready"
            self.workers.append(ident)
        from _jobs import work
        self._fan(work, [(i,) for i in range(4)])
        return time.perf_counter() - t0

    def _send(self, worker, jid: int, func, args, deps=()) -> None:
        import cloudpickle

        self.sock.send_multipart([worker, str(jid).encode(),
                                  cloudpickle.dumps((func, args), protocol=5), *deps],
                                 copy=False)

    def _recv(self):
        worker, jid, out = self.sock.recv_multipart(copy=False)
        if out.bytes[:1] == b"!":
            raise RuntimeError(out.bytes[1:].decode())
        return worker, int(jid.bytes), out

    def _fan(self, func, arglist, raw=False) -> list:
        import pickle

        n, nxt, done = len(arglist), 0, 0
        results = [None] * n
        for _ in range(self.prefetch):
            for w in self.workers:
                if nxt < n:
                    self._send(w, nxt, func, arglist[nxt])
                    nxt += 1
        while done < n:
            w, jid, out = self._recv()
            results[jid] = out if raw else pickle.loads(out.buffer)
            done += 1
            if nxt < n:
                self._send(w, nxt, func, arglist[nxt])
                nxt += 1
        return results

    def fanout(self, n):
        from _jobs import work

        meter = CpuMeter(p.pid for p in self.procs)
        t0 = time.perf_counter()
        results = self._fan(work, [(i,) for i in range(n)])
        wall = time.perf_counter() - t0
        self.cpu = meter.done()
        return wall, sum(results)

    def chain(self, n):
        import pickle

        from _jobs import step

        meter = CpuMeter(p.pid for p in self.procs)
        t0 = time.perf_counter()
        prev = 0
        w = self.workers[0]
        for i in range(n):
            self._send(w, i, step, (prev, i))
            w, _, out = self._recv()
            prev = pickle.loads(out.buffer)
        wall = time.perf_counter() - t0
        self.cpu = meter.done()
        return wall, prev

    def payload(self, k, mb):
        import pickle

        meter = CpuMeter(p.pid for p in self.procs)
        t0 = time.perf_counter()
        parts = self._fan(make_payload, [(i, mb) for i in range(k)], raw=True)
        self._send(self.workers[0], k, consume, (), parts)
        _, _, out = self._recv()
        total = pickle.loads(out.buffer)
        wall = time.perf_counter() - t0
        self.cpu = meter.done()
        return wall, total

    def close(self) -> None:
        for w in self.workers:
            self.sock.send_multipart([w, b"stop"])
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.sock.close(0)
        self.ctx.term()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- nbmake_ext -------------------------------------------------------------------------------

class Nbmake(Tool):
    """A fresh store, context and pool per cell (so no cell pays for another's rows)."""

    WARM = 4

    def __init__(self, tmp: str, durable: bool):
        self.tmp, self.durable = tmp, durable
        self.colds: list[float] = []
        self.regs: dict[str, float] = {}
        self.cell = ""
        self.profile = None  # a cProfile.Profile to enable around the timed parmake

    def _open(self):
        from nbmake_ext import Context
        from _jobs import work

        self.store = tempfile.mkdtemp(prefix="nbp-", dir=self.tmp)
        ctx = Context(self.store, durable=self.durable)
        self.lines: list[str] = []
        ctx.report = self.lines.append
        t0 = time.perf_counter()
        for i in range(self.WARM):
            ctx.comp(work, -1 - i, job_id=f"warm{i}")
        ctx.parmake(n=2)
        self.colds.append(time.perf_counter() - t0)
        return ctx

    def _run(self, ctx, define, expect: int):
        t0 = time.perf_counter()
        targets = define()
        ctx.sync()
        self.regs[self.cell] = time.perf_counter() - t0
        meter = CpuMeter(ctx._pool.pids())
        t0 = time.perf_counter()
        if self.profile is not None:
            self.profile.enable()
        report = ctx.parmake(*targets, n=2)
        if self.profile is not None:
            self.profile.disable()
        wall = time.perf_counter() - t0
        self.cpu = meter.done()
        if report.ran != expect or report.failed:
            raise RuntimeError(f"parmake ran {report.ran} of {expect}: {report.line()}")
        return wall

    def _close(self, ctx):
        ctx.close()
        shutil.rmtree(self.store, ignore_errors=True)

    def start(self) -> float:
        return 0.0  # measured per cell: self.colds

    def fanout(self, n):
        from _jobs import work

        ctx = self._open()
        try:
            wall = self._run(ctx, lambda: [ctx.comp(work, i, job_id=f"f{i}").job_id
                                           for i in range(n)], n)
            ends = [ctx.result_of(f"f{i}") for i in (0, n - 1)]
            if ends != [0, 2 * (n - 1)]:
                raise RuntimeError(f"wrong results {ends}")
            value = sum(2 * i for i in range(n))  # ran == n checked; loading all is slow
        finally:
            self._close(ctx)
        return wall, value

    def chain(self, n):
        from _jobs import step

        ctx = self._open()
        try:
            def define():
                p = ctx.comp(step, 0, 0, job_id="c0")
                for i in range(1, n):
                    p = ctx.comp(step, p, i, job_id=f"c{i}")
                return [p.job_id]
            wall = self._run(ctx, define, n)
            value = ctx.result_of(f"c{n - 1}")
        finally:
            self._close(ctx)
        return wall, value

    def payload(self, k, mb):
        ctx = self._open()
        try:
            def define():
                parts = [ctx.comp(make_payload, i, mb, job_id=f"p{i}") for i in range(k)]
                return [ctx.comp(consume, parts, job_id="total").job_id]
            wall = self._run(ctx, define, k + 1)
            value = ctx.result_of("total")
        finally:
            self._close(ctx)
        return wall, value


# -- Dask distributed ---------------------------------------------------------------------------

class DaskDistributed(Tool):
    def __init__(self, futures: bool):
        self.futures = futures

    def start(self) -> float:
        import dask
        from distributed import Client, LocalCluster

        t0 = time.perf_counter()
        self.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=None)
        self.client = Client(self.cluster)
        from _jobs import work

        dask.compute(*[dask.delayed(work)(i) for i in range(4)])
        return time.perf_counter() - t0

    def fanout(self, n):
        import dask

        from _jobs import work

        if self.futures:
            t0 = time.perf_counter()
            fs = self.client.map(work, range(n), pure=False)
            results = self.client.gather(fs)
            wall = time.perf_counter() - t0
            del fs
        else:
            ds = [dask.delayed(work, pure=False)(i) for i in range(n)]
            t0 = time.perf_counter()
            results = dask.compute(*ds)
            wall = time.perf_counter() - t0
        return wall, sum(results)

    def chain(self, n):
        import dask

        from _jobs import step

        if self.futures:
            t0 = time.perf_counter()
            f = self.client.submit(step, 0, 0, pure=False)
            for i in range(1, n):
                f = self.client.submit(step, f, i, pure=False)
            value = f.result()
            wall = time.perf_counter() - t0
        else:
            d = dask.delayed(step, pure=False)(0, 0)
            for i in range(1, n):
                d = dask.delayed(step, pure=False)(d, i)
            t0 = time.perf_counter()
            (value,) = dask.compute(d)
            wall = time.perf_counter() - t0
        return wall, value

    def payload(self, k, mb):
        import dask

        if self.futures:
            t0 = time.perf_counter()
            parts = [self.client.submit(make_payload, i, mb, pure=False) for i in range(k)]
            value = self.client.submit(consume, parts, pure=False).result()
            wall = time.perf_counter() - t0
            del parts
        else:
            parts = [dask.delayed(make_payload, pure=False)(i, mb) for i in range(k)]
            total = dask.delayed(consume, pure=False)(parts)
            t0 = time.perf_counter()
            (value,) = dask.compute(total)
            wall = time.perf_counter() - t0
        return wall, value

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


# -- Dask processes scheduler ------------------------------------------------------------------

class DaskProcesses(Tool):
    def start(self) -> float:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        import dask

        from _jobs import work

        t0 = time.perf_counter()
        # dask's own choice of context (spawn); a pool passed in is kept between computes
        self.pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
        list(self.pool.map(time.sleep, [0.05, 0.05]))  # both processes up
        dask.compute(*[dask.delayed(work)(i) for i in range(4)], **self._kw())
        return time.perf_counter() - t0

    def _kw(self):
        return {"scheduler": "processes", "pool": self.pool, "num_workers": 2}

    def fanout(self, n):
        import dask

        from _jobs import work

        ds = [dask.delayed(work, pure=False)(i) for i in range(n)]
        t0 = time.perf_counter()
        results = dask.compute(*ds, **self._kw())
        return time.perf_counter() - t0, sum(results)

    def chain(self, n):
        import dask

        from _jobs import step

        d = dask.delayed(step, pure=False)(0, 0)
        for i in range(1, n):
            d = dask.delayed(step, pure=False)(d, i)
        t0 = time.perf_counter()
        (value,) = dask.compute(d, **self._kw())
        return time.perf_counter() - t0, value

    def payload(self, k, mb):
        import dask

        parts = [dask.delayed(make_payload, pure=False)(i, mb) for i in range(k)]
        total = dask.delayed(consume, pure=False)(parts)
        t0 = time.perf_counter()
        (value,) = dask.compute(total, **self._kw())
        return time.perf_counter() - t0, value

    def close(self) -> None:
        self.pool.shutdown()


# -- joblib -----------------------------------------------------------------------------------

class Joblib(Tool):
    def start(self) -> float:
        from joblib import Parallel, delayed

        from _jobs import work

        t0 = time.perf_counter()
        Parallel(n_jobs=2)(delayed(work)(i) for i in range(4))
        return time.perf_counter() - t0

    def fanout(self, n):
        from joblib import Parallel, delayed

        from _jobs import work

        t0 = time.perf_counter()
        results = Parallel(n_jobs=2)(delayed(work)(i) for i in range(n))
        return time.perf_counter() - t0, sum(results)

    def chain(self, n):
        from joblib import Parallel, delayed

        from _jobs import step

        t0 = time.perf_counter()
        with Parallel(n_jobs=2) as par:
            prev = par([delayed(step)(0, 0)])[0]
            for i in range(1, n):
                prev = par([delayed(step)(prev, i)])[0]
        return time.perf_counter() - t0, prev

    def payload(self, k, mb):
        from joblib import Parallel, delayed

        t0 = time.perf_counter()
        with Parallel(n_jobs=2) as par:
            parts = par(delayed(make_payload)(i, mb) for i in range(k))
            value = par([delayed(consume)(parts)])[0]
        return time.perf_counter() - t0, value


def make_tool(name: str, args) -> Tool:
    if name == "floor":
        return Floor(args.tmp, args.prefetch)
    if name in ("nbmake", "nbmake-nodur"):
        return Nbmake(args.tmp, durable=name == "nbmake")
    if name in ("dask-delayed", "dask-futures"):
        return DaskDistributed(futures=name == "dask-futures")
    if name == "dask-processes":
        return DaskProcesses()
    if name == "joblib":
        return Joblib()
    raise SystemExit(f"unknown tool {name}")


# == one tool, one repeat: the worker process ================================================

def expected(shape: str, n: int, mb: int) -> int:
    if shape == "fanout":
        return sum(2 * i for i in range(n))
    if shape == "chain":
        return sum(range(n))
    return n * (mb << 20)


def compute_time(shape: str, n: int, mb: int) -> float:
    """The jobs' own time, run serially here (best of 3)."""
    from _jobs import step, work

    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        if shape == "fanout":
            for i in range(n):
                work(i)
        elif shape == "chain":
            p = step(0, 0)
            for i in range(1, n):
                p = step(p, i)
        else:
            consume([make_payload(i, mb) for i in range(n)])
        best = min(best, time.perf_counter() - t0)
    return best


SITECUSTOMIZE = """
import os, sys
if "nbmake_ext.engine" in sys.orig_argv:
    import atexit, cProfile
    _prof = cProfile.Profile()
    _prof.enable()

    def _dump():
        _prof.disable()
        _prof.dump_stats(os.path.join(os.environ["NBP_PROFILE_ENGINES"],
                                      f"engine-{os.getpid()}.prof"))
    atexit.register(_dump)
"""


def profile_engines(directory: str) -> None:
    """Engines started from now on run their main thread under cProfile and dump it, at
    exit, into ``directory`` (through a sitecustomize module on their PYTHONPATH)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "sitecustomize.py"), "w") as f:
        f.write(SITECUSTOMIZE)
    os.environ["NBP_PROFILE_ENGINES"] = os.path.abspath(directory)
    os.environ["PYTHONPATH"] = os.pathsep.join([os.path.abspath(directory),
                                                os.environ["PYTHONPATH"]])


def print_engine_profiles(directory: str, out) -> None:
    import glob
    import pstats

    files = sorted(glob.glob(os.path.join(directory, "engine-*.prof")))
    if not files:
        out.write("\n# no engine profiles were written\n")
        return
    stats = pstats.Stats(*files, stream=out)
    for order in ("cumulative", "tottime"):
        out.write(f"\n# engines' main threads ({len(files)} processes, whole life), by {order}\n")
        stats.sort_stats(order).print_stats(45)


def worker_main(args) -> None:
    _env()
    if args.profile_engines:
        profile_engines(args.profile_engines)
    res: dict = {"tool": args.worker, "cells": {}}
    tool = make_tool(args.worker, args)
    prof = writer_prof = None
    if args.profile:
        import cProfile

        from nbmake_ext.store import writer as writer_module

        prof = cProfile.Profile()
        tool.profile = prof
        # The store's background writer thread (it commits what the kernel's thread leaves
        # waiting), over all its life.
        writer_prof = cProfile.Profile()
        loop = writer_module.Writer._late_writes

        def profiled_loop(self):
            writer_prof.enable()
            try:
                loop(self)
            finally:
                writer_prof.disable()
        writer_module.Writer._late_writes = profiled_loop
    try:
        res["cold"] = tool.start()
        per_job: dict[str, float] = {}  # shape -> seconds per job seen so far
        for cell in args.cells.split(","):
            shape, n = cell.split(":")
            n = int(n)
            key = f"{shape}:{n}"
            est = per_job.get(shape, 0.0) * n
            if est > args.limit:
                res["cells"][key] = {"skipped": f"would take ~{est:.0f} s"}
                continue
            if isinstance(tool, Nbmake):
                tool.cell = key
            try:
                if shape == "payload":
                    wall, value = tool.payload(n, args.mb)
                else:
                    wall, value = getattr(tool, shape)(n)
                want = expected(shape, n, args.mb)
                if value != want:
                    raise RuntimeError(f"wrong result {value!r}, expected {want!r}")
                res["cells"][key] = {"wall": wall, "compute": compute_time(shape, n, args.mb),
                                     "cpu": tool.cpu}
                tool.cpu = None
                if isinstance(tool, Nbmake):
                    res["cells"][key]["reg"] = tool.regs.get(key)
                per_job[shape] = max(per_job.get(shape, 0.0), wall / n)
            except Exception as exc:  # noqa: BLE001 - shown in the table
                res["cells"][key] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                                     "traceback": traceback.format_exc()}
        if isinstance(tool, Nbmake):
            res["cold"] = min(tool.colds) if tool.colds else None
    except Exception as exc:  # noqa: BLE001
        res["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        res["traceback"] = traceback.format_exc()
    finally:
        try:
            tool.close()
        except Exception:  # noqa: BLE001
            pass
    if prof is not None:
        import pstats

        with open(args.profile, "w") as f:
            for order in ("cumulative", "tottime"):
                f.write(f"\n# main thread, timed parmake only, by {order}\n")
                pstats.Stats(prof, stream=f).sort_stats(order).print_stats(45)
            for order in ("tottime", "cumulative"):
                f.write(f"\n# the store's background writer thread (warm-up included), by {order}\n")
                pstats.Stats(writer_prof, stream=f).sort_stats(order).print_stats(30)
            if args.profile_engines:
                print_engine_profiles(args.profile_engines, f)
    with open(args.out, "w") as f:
        json.dump(res, f)


# == the parent: repeats, table, targets ======================================================

def run_worker(tool: str, cells: list[str], args) -> dict:
    fd, out = tempfile.mkstemp(prefix="bp-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, __file__, "--worker", tool, "--cells", ",".join(cells),
           "--out", out, "--tmp", args.tmp, "--limit", str(args.limit), "--mb", str(args.mb),
           "--prefetch", str(args.prefetch)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        os.unlink(out)
        return {"error": f"timed out after {args.timeout} s", "cells": {}}
    try:
        with open(out) as f:
            res = json.load(f)
    except (OSError, ValueError):
        res = {"error": f"worker exited with {proc.returncode}",
               "traceback": (err or "")[-3000:], "cells": {}}
    finally:
        if os.path.exists(out):
            os.unlink(out)
    return res


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="job counts of fan-out and chain")
    ap.add_argument("--chain-sizes", default=None, help="chain lengths (default: --sizes)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1k only, best of 2")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--payload-jobs", type=int, default=50)
    ap.add_argument("--mb", type=int, default=10, help="MB each payload job returns")
    ap.add_argument("--no-payload", action="store_true")
    ap.add_argument("--prefetch", type=int, default=2, help="floor: jobs in flight per worker")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where nbmake's stores go")
    ap.add_argument("--limit", type=float, default=90.0,
                    help="skip a cell estimated to take longer (seconds)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per worker process")
    # internal
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--cells", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--profile", default=None,
                    help="with --worker nbmake*: cProfile the timed parmake into this file")
    ap.add_argument("--profile-engines", metavar="DIR", default=None,
                    help="with --profile: cProfile the engines too (dumps into DIR)")
    ap.add_argument("--zmq-worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--spy-summary", metavar="RAW",
                    help="summarise a py-spy raw profile of --worker nbmake* (see README)")
    ap.add_argument("--spy-rate", type=float, default=250, help="its sampling rate")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()

    if args.spy_summary:
        spy_summary(args.spy_summary, args.spy_rate, args.top)
        return
    if args.zmq_worker:
        zmq_worker(args.zmq_worker[0], int(args.zmq_worker[1]))
        return
    if args.worker:
        _env()
        import bench_parallel  # the jobs above, pickled by reference (not as __main__'s)

        bench_parallel.worker_main(args)
        return

    _env()
    if args.quick:
        args.sizes, args.repeat = "1000", min(args.repeat, 2)
    sizes = [int(s) for s in args.sizes.split(",")]
    chain_sizes = [int(s) for s in (args.chain_sizes or args.sizes).split(",")]
    tools = args.tools.split(",")
    cells = [f"fanout:{n}" for n in sizes] + [f"chain:{n}" for n in chain_sizes]
    if not args.no_payload:
        cells.append(f"payload:{args.payload_jobs}")

    command = " ".join([os.path.relpath(sys.executable), *sys.argv])
    load_before = loadavg()
    print(f"# {command}", flush=True)
    print(f"# {os.cpu_count()} CPUs, load average before: {load_before}; stores in {args.tmp}",
          flush=True)
    results: dict[str, dict[str, list[dict]]] = {t: {} for t in tools}
    colds: dict[str, list[float]] = {t: [] for t in tools}
    errors: dict[str, str] = {}
    todo = {t: list(cells) for t in tools}
    for r in range(args.repeat):
        for tool in tools:
            if not todo[tool]:
                continue
            t0 = time.perf_counter()
            res = run_worker(tool, todo[tool], args)
            print(f"  [repeat {r + 1}/{args.repeat}] {tool}: {time.perf_counter() - t0:.1f} s, "
                  f"load {loadavg()}", file=sys.stderr, flush=True)
            if res.get("error"):
                errors[tool] = res["error"] + "\n" + res.get("traceback", "")
            if res.get("cold") is not None:
                colds[tool].append(res["cold"])
            for key, cell in res["cells"].items():
                results[tool].setdefault(key, []).append(cell)
                if "error" in cell:
                    errors[f"{tool} {key}"] = cell["error"] + "\n" + cell.get("traceback", "")
            # slow or skipped cells run only once; broken ones are not retried
            todo[tool] = [c for c in todo[tool]
                          if c in res["cells"] and "wall" in res["cells"][c]
                          and res["cells"][c]["wall"] < args.limit / 4]
    print_table(results, colds, tools, cells, args, errors, load_before)


def best(cells: list[dict] | None):
    """(best measured cell, how many measured), or (a skipped/failed cell, 0)."""
    if not cells:
        return None, 0
    ok = [c for c in cells if "wall" in c]
    if ok:
        return min(ok, key=lambda c: c["wall"]), len(ok)
    return cells[-1], 0


def overhead_us(cell: dict, n: int) -> float:
    return max(0.0, cell["wall"] - cell["compute"]) / n * 1e6


def print_table(results, colds, tools, cells, args, errors, load_before) -> None:
    mb_total = args.payload_jobs * args.mb
    header = ["tool"] + [_cell_title(c) for c in cells] + ["cold s"]
    rows = []
    value: dict[tuple[str, str], float] = {}  # (tool, cell) -> µs/job or seconds (payload)
    for tool in tools:
        row = [LABELS.get(tool, tool)]
        for key in cells:
            cell, count = best(results[tool].get(key))
            shape, n = key.split(":")
            n = int(n)
            if cell is None:
                row.append("-")
            elif "wall" not in cell:
                row.append("FAILED" if "error" in cell else "skipped")
            else:
                note = "" if count >= args.repeat else f" [{count}]"
                if shape == "payload":
                    value[(tool, key)] = cell["wall"]
                    row.append(f"{mb_total / cell['wall']:,.0f}{note}")
                else:
                    us = overhead_us(cell, n)
                    value[(tool, key)] = us
                    row.append(f"{us:,.0f}{note}")
        row.append(f"{min(colds[tool]):.2f}" if colds[tool] else "-")
        rows.append(row)
    print()
    print(f"Per-job overhead in µs/job ((wall - compute) / N, best of {args.repeat}; [k]: best "
          f"of k); payload: {args.payload_jobs} x {args.mb} MB consumed by one job, in MB/s")
    _print_rows(header, rows)

    # where the CPU goes, for the tools that measure it
    cpu_rows = []
    for tool in tools:
        row, any_cpu = [LABELS.get(tool, tool)], False
        for key in cells:
            cell, _ = best(results[tool].get(key))
            n = int(key.split(":")[1])
            cpu = cell.get("cpu") if cell else None
            if not cpu:
                row.append("-")
                continue
            any_cpu = True
            if key.startswith("payload"):  # ms per 10 MB job
                scale, n = 1e3, n
            else:
                scale = 1e6
            row.append("/".join(f"{cpu[p] / n * scale:,.0f}"
                                for p in ("main", "threads", "workers")))
        if any_cpu:
            cpu_rows.append(row)
    if cpu_rows:
        print("\nCPU during the timed run, per job: main thread / other threads of the "
              "dispatching process (store writer, ZeroMQ I/O) / both workers, in µs "
              "(payload: ms per payload job); from /proc, 10 ms ticks for the workers:")
        _print_rows([("payload" if h == "payload MB/s" else h) for h in header[:-1]], cpu_rows)

    # nbmake registration (comp + sync), untimed above
    regs = []
    for tool in ("nbmake", "nbmake-nodur"):
        if tool not in tools:
            continue
        row = [LABELS[tool] + " reg"]
        for key in cells:
            cell, _ = best(results[tool].get(key))
            n = int(key.split(":")[1])
            if key.startswith("payload"):
                n += 1
            row.append(f"{cell['reg'] / n * 1e6:,.0f}" if cell and cell.get("reg") else "-")
        regs.append(row)
    if regs:
        print("\nnbmake registration, comp() + sync() before the timed parmake (µs/job, "
              "not included above):")
        _print_rows([("payload" if h == "payload MB/s" else h) for h in header[:-1]], regs)

    # ratios
    dask_best = {}
    for key in cells:
        vals = [value[(t, key)] for t in ("dask-delayed", "dask-futures") if (t, key) in value]
        if vals:
            dask_best[key] = min(vals)
    ratio_rows = []
    for tool in tools:
        if tool == "floor":
            continue
        for ref, refname in (("floor", "x floor"), ("dask", "x dask distr.")):
            if ref == "dask" and tool.startswith("dask-") and tool != "dask-processes":
                continue
            row = [f"{LABELS.get(tool, tool)} {refname}"]
            for key in cells:
                mine = value.get((tool, key))
                other = value.get(("floor", key)) if ref == "floor" else dask_best.get(key)
                if mine is None or not other:
                    row.append("-")
                else:  # payload: a ratio of times
                    row.append(f"{mine / other:.2f}")
            ratio_rows.append(row + [""])
    print("\nRatios (overhead per job, and payload time, over the raw floor and over the "
          "faster Dask distributed row; lower is better):")
    _print_rows([("payload time" if h == "payload MB/s" else h) for h in header[:-1]],
                [r[:-1] for r in ratio_rows])

    print("\nTargets:")
    for tool in ("nbmake", "nbmake-nodur"):
        if tool not in tools:
            continue
        for key in cells:
            shape = key.split(":")[0]
            mine = value.get((tool, key))
            floor = value.get(("floor", key))
            if mine is None:
                continue
            checks = []
            if shape == "fanout":
                checks.append((f"within {TARGET_FLOOR_FAN}x the floor", floor, TARGET_FLOOR_FAN))
                checks.append((f"at most {TARGET_DASK_FAN}x Dask distributed",
                               dask_best.get(key), TARGET_DASK_FAN))
            elif shape == "chain":
                checks.append((f"within {TARGET_FLOOR_CHAIN}x the floor", floor,
                               TARGET_FLOOR_CHAIN))
            else:
                checks.append((f"time within {TARGET_FLOOR_PAYLOAD}x the floor's", floor,
                               TARGET_FLOOR_PAYLOAD))
            for what, ref, limit in checks:
                if not ref:
                    print(f"  n/a   {LABELS[tool]}, {_cell_title(key)}: {what} (no reference)")
                    continue
                ratio = mine / ref
                verdict = "PASS" if ratio <= limit else "FAIL"
                print(f"  {verdict}  {LABELS[tool]}, {_cell_title(key)}: {what}: "
                      f"{ratio:.2f}x")
    print(f"\nload average before: {load_before}; after: {loadavg()}")
    if errors:
        print("\nFailures:")
        for what, text in errors.items():
            print(f"--- {what}\n{text.rstrip()}")


# == reading a py-spy profile of one nbmake cell ==============================================

def spy_summary(raw: str, rate: float, top: int) -> None:
    """Per process role (kernel, engine) and thread, the seconds sampled and the functions,
    own and inclusive, of a ``py-spy record --subprocesses --threads -f raw`` profile of
    ``--worker nbmake*``. The kernel's main thread counts only the timed parmake; engine
    main threads only their serve loop (not their start-up imports)."""
    import collections
    import re

    frame_re = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::(?P<line>\d+))?\)$")

    def short(frame: str) -> str:
        m = frame_re.match(frame)
        if not m:
            return frame
        parts = m.group("file").split("/")
        f = "/".join(parts[parts.index("nbmake_ext"):]) if "nbmake_ext" in parts else parts[-1]
        return f"{m.group('func')} ({f}:{m.group('line') or '?'})"

    groups: dict[str, dict] = {}
    with open(raw) as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            procs = [f for f in frames if f.startswith("process ")]
            rest = [f for f in frames if not f.startswith("process ")]
            if not procs or not rest or not rest[0].startswith("thread "):
                continue
            pid, _, cmd = procs[-1][len("process "):].partition(":")
            role = "engine" if "nbmake_ext.engine" in cmd else "kernel"
            head, frames = rest[0], rest[1:]  # "thread (TID): NAME"
            tid, _, name = head[len("thread ("):].partition(")")
            names = [short(f).split(" (")[0] for f in frames]
            if tid == pid:
                thread = "main"
                if role == "kernel" and not ("Nbmake._run" in names and "Context.parmake" in names):
                    continue  # registration, the warm-up parmake, closing
                if role == "engine" and "Engine.serve" not in names:
                    continue  # start-up imports
            else:
                thread = name.lstrip(": ") or "?"
            key = f"{role} {thread}" if role != "engine" else f"engines {thread}"
            g = groups.setdefault(key, {"n": 0, "own": collections.Counter(),
                                        "incl": collections.Counter(), "pids": set()})
            n = int(count)
            g["n"] += n
            g["pids"].add(pid)
            if frames:
                g["own"][short(frames[-1])] += n
            for fr in set(map(short, frames)):
                g["incl"][fr] += n
    for key, g in sorted(groups.items(), key=lambda kv: -kv[1]["n"]):
        total = g["n"]
        print(f"\n## {key} ({len(g['pids'])} process(es)): {total} samples = "
              f"{total / rate:.2f} s")
        print("   own%  incl%  function (by own time)")
        for fr, c in g["own"].most_common(top):
            print(f"  {100 * c / total:5.1f}  {100 * g['incl'][fr] / total:5.1f}  {fr}")
        print("   -- by inclusive time --")
        for fr, c in g["incl"].most_common(top):
            print(f"  {100 * g['own'][fr] / total:5.1f}  {100 * c / total:5.1f}  {fr}")


def _cell_title(key: str) -> str:
    shape, n = key.split(":")
    n = int(n)
    size = f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)
    return {"fanout": f"fan {size}", "chain": f"chain {size}", "payload": "payload MB/s"}[shape]


def _print_rows(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(  # noqa: E731
        (c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])) for i, c in enumerate(r))
    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(fmt(r))


if __name__ == "__main__":
    main()
