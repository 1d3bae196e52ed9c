"""``parmake --dask``, the worker's side: what a Dask task runs (one job), the output
capture per thread, and what a worker keeps between tasks (functions, recent values).
The kernel's side is kernel/dask.py; the two share only the shape of a task's outcome
(``_task`` returns it, ``_unpack`` reads it)."""

from __future__ import annotations

import io
import json
import pickle
import sys
import threading
import time
from typing import Any

from ..registration import install_sources
from ..shared.limits import peak_memory, time_limit
from ..shared.outcomes import ChildSpec
from ..shared.progress import reporting
from ..shared.values_cache import ByteLRU
from ..store import blobs
from ..store.pickles import loads_value

_local = threading.local()
# The worker event on which a job's nbmake_ext.progress reaches the kernel (throttled,
# shared/progress.py): [task key, done, total, message].
PROGRESS_TOPIC = "nbmake-progress"
_install_lock = threading.Lock()


class _Router(io.TextIOBase):
    """sys.stdout/sys.stderr on a worker: a job's thread writes to its own buffer, every
    other thread to the original stream."""

    def __init__(self, original, name: str):
        self._original = original
        self._name = name

    def write(self, text: str) -> int:
        buf = getattr(_local, self._name, None)
        if buf is not None:
            return buf.write(text)
        return self._original.write(text)

    def flush(self) -> None:
        if getattr(_local, self._name, None) is None:
            self._original.flush()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, isatty, ...
        return getattr(self._original, name)


def _install_capture() -> None:
    if isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router):
        return
    with _install_lock:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout, "out")
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr, "err")


class _WorkerCache:
    """Per worker process: unpickled functions, and values made or read lately (so a
    chain on one worker does not unpickle its inputs again)."""

    def __init__(self, budget: int = 128 << 20):
        self.lock = threading.Lock()
        self.functions: dict[str, Any] = {}
        self.values = ByteLRU(budget, threadsafe=True)  # keyed by (job id, result checksum)

    def function(self, key: str, bundle: bytes) -> Any:
        """``bundle``: the function's pickle and the json of its code files that exist only
        in the kernel (installed in linecache here)."""
        func = self.functions.get(key)
        if func is None:
            blob, sources = pickle.loads(bundle)
            install_sources(json.loads(sources))
            func = pickle.loads(blob)
            with self.lock:
                if len(self.functions) > 1000:
                    self.functions.clear()
                self.functions[key] = func
        return func

    def value(self, job_id: str, checksum: str, data: bytes) -> Any:
        """``data``: stored bytes, or the outcome of the dependency's task in this run (a
        job sent ahead learns its input's checksum from it)."""
        outcome = _unpack(data)  # ("ok", data, result_fp, checksum, ...) or None
        if outcome is not None:
            if outcome[0] != "ok":
                raise _InputFailed(job_id)
            data, checksum = outcome[1], outcome[3]
        key = (job_id, checksum)
        found, value = self.values.get(key)
        if found:
            return value
        value = loads_value(data)
        self.values.put(key, value, len(data))
        return value


_cache = _WorkerCache()


class _PeakWhileRunning:
    """The peak memory of this worker process while a job ran. Jobs run in several threads
    of one process at once: the high-water mark is reset only when no other job runs (a
    reset would lose the peak of a job still running), so a job's peak is the process's
    over a span that holds the job's (what the jobs beside it held counts too)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0

    def begin(self) -> None:
        with self.lock:
            self.running += 1
            if self.running == 1:
                peak_memory.reset()

    def end(self) -> int:
        with self.lock:
            self.running -= 1
            return peak_memory.peak()


_peak = _PeakWhileRunning()

# The tasks of nbmake running in this process: key -> time.monotonic() when it started.
_running: dict[str, float] = {}


def running_for() -> dict[str, float]:
    """(Run on each worker by the kernel: ``Client.run``.) How long each task of nbmake
    running in this worker now has been running: the kernel's timeouts count from a task's
    start, and the event that announces it may not have reached the kernel."""
    now = time.monotonic()
    return {k: now - t for k, t in list(_running.items())}


class _InputFailed(Exception):
    """An input of a job sent ahead did not succeed: the job does not run (the kernel
    blocks it)."""


# What a task returns: its outcome tuple, pickled, after this prefix. One bytes object is
# what Dask moves cheapest (it serializes each item of a tuple apart), and the prefix tells
# a dependent's task an input made in this run from a stored result (a pickle: b"\x80...").
OUTCOME = b"nbmake-outcome\x00"


def _task(*args) -> bytes:
    return OUTCOME + pickle.dumps(_run_job(*args), protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(data: bytes) -> tuple | None:
    """The outcome a task returned, or None for other bytes (a stored result)."""
    if not data.startswith(OUTCOME):
        return None
    return pickle.loads(memoryview(data)[len(OUTCOME):])


def _run_job(key: str, job_id: str, func_key: str, func_blob: bytes, payload: bytes,
             dynamic: bool, dep_ids: tuple, dep_sums: tuple, timeout: float | None,
             files: tuple | None, topic: str, inputs: list) -> tuple:
    """One job, on a Dask worker. Returns ("ok", data, result_fp, checksum, out, err,
    timing, stamps), ("dynamic", template, children, out, err, timing, stamps) or
    ("raised", error, traceback, out, err, timing); timing is (started, ended, duration,
    cpu, worker, thread, peak memory). Never raises: a job's failure is a result.
    ``files``: (inputs, outputs) of a job with files (files/run.py; they must be on a file
    system the workers share with the kernel), ``stamps`` the fingerprints of the outputs
    it wrote (None without files)."""
    from distributed import get_worker

    worker = get_worker()
    where = worker.address
    _running[key] = time.monotonic()
    try:
        if topic:
            worker.log_event(topic, [key, where])
    except Exception:  # noqa: BLE001 - only used to tell queued from started
        pass

    def progress(_job_id: str, done: float, total: float, message: str) -> None:
        try:
            worker.log_event(PROGRESS_TOPIC, [key, done, total, message])
        except Exception:  # noqa: BLE001 - only shown on the board
            pass

    try:
        return _run_job_here(job_id, func_key, func_blob, payload, dynamic, dep_ids, dep_sums,
                             timeout, files, inputs, where, progress)
    finally:
        _running.pop(key, None)


def _run_job_here(job_id: str, func_key: str, func_blob: bytes, payload: bytes, dynamic: bool,
                  dep_ids: tuple, dep_sums: tuple, timeout: float | None,
                  files: tuple | None, inputs: list, where: str, progress=None) -> tuple:
    from ..files import run as job_files
    from ..fingerprint import result_digest
    from ..promise import resolve
    from ..shared.call import error_line, failure_line, format_job_traceback
    from ..shared.loading import ArgumentsUnloadable, load_arguments
    from ..store.store import dumps_value

    started = time.time()
    try:
        func = _cache.function(func_key, func_blob)
        args, kwargs = load_arguments(payload, f"worker {where}")
        values = {d: _cache.value(d, s, x) for d, s, x in zip(dep_ids, dep_sums, inputs)}
        args = resolve(args, values.__getitem__)
        kwargs = resolve(kwargs, values.__getitem__)
    except _InputFailed as exc:
        return ("raised", f"its input {exc} did not succeed", "", "", "",
                (started, started, 0.0, 0.0, where, 0, 0))
    except ArgumentsUnloadable as exc:
        return ("raised", exc.message, exc.traceback, "", "",
                (started, started, 0.0, 0.0, where, 0, 0))
    except LookupError as exc:  # a %%comp output its cell did not bind
        return ("raised", str(exc), "", "", "", (started, started, 0.0, 0.0, where, 0, 0))
    except Exception as exc:  # noqa: BLE001 - e.g. a module the worker cannot import
        return ("raised", f"cannot load the job on worker {where}: {error_line(exc)}",
                format_job_traceback(exc), "", "", (started, started, 0.0, 0.0, where, 0, 0))

    if files is not None:
        try:
            job_files.before(*files)
        except (job_files.FilesProblem, OSError) as exc:
            error = str(exc) if isinstance(exc, job_files.FilesProblem) \
                else f"could not prepare its files: {error_line(exc)}"
            return ("raised", f"{error} (on worker {where})", "", "", "",
                    (started, started, 0.0, 0.0, where, 0, 0))
    _install_capture()
    out, err = io.StringIO(), io.StringIO()
    children: list = []
    if dynamic:
        from ..shared.dynamic import DynamicContext

        args = (DynamicContext(job_id, lambda child: children.append(_child(child))), *args)
    t0, c0 = time.perf_counter(), time.thread_time()
    _local.out, _local.err = out, err
    _peak.begin()
    try:
        # Several jobs run in threads of this process at once: progress() finds its job's
        # reporter through its thread only.
        with time_limit(timeout), reporting(job_id, progress, whole_process=False):
            value = func(*args, **kwargs)
        failure = None
    except BaseException as exc:  # noqa: BLE001 - a job's failure is its result
        failure = exc
    finally:
        _local.out = _local.err = None
        peak = _peak.end()
    duration = time.perf_counter() - t0
    timing = (started, started + duration, duration, time.thread_time() - c0, where,
              threading.get_ident(), peak)
    stdout, stderr = out.getvalue(), err.getvalue()
    stamps = None
    if files is not None and failure is None and files[1]:
        try:
            stamps = job_files.after(files[1])
        except (job_files.FilesProblem, OSError) as exc:
            failure = exc
    if failure is not None:
        if files is not None and files[1]:  # a failed job leaves no output behind
            try:
                job_files.remove(files[1])
            except OSError:
                pass
        if isinstance(failure, job_files.FilesProblem):
            return ("raised", str(failure), "", stdout, stderr, timing)
        return ("raised", failure_line(failure, timeout), format_job_traceback(failure), stdout,
                stderr, timing)
    try:
        if dynamic:
            return ("dynamic", dumps_value(value), children, stdout, stderr, timing, stamps)
        data = dumps_value(value)
        checksum = blobs.checksum(data)
        result_fp = result_digest(value, checksum)
    except Exception as exc:  # noqa: BLE001 - the job fails with that message
        return ("raised", f"its result cannot be pickled: {exc}", "", stdout, stderr, timing)
    _cache.values.put((job_id, checksum), value, len(data))
    return ("ok", data, result_fp, checksum, stdout, stderr, timing, stamps)


def _child(child: ChildSpec) -> tuple[bytes, bytes, bytes, bytes]:
    """A child a dynamic job defined, as it travels: its spec without the live call, the
    function's and the arguments' pickles, and its notebook lines (function_sources). An
    unpicklable one fails the parent there and then, as on engines."""
    from dataclasses import replace

    from ..registration import function_blob, function_sources, payload

    spec = child.spec
    _, blob = function_blob(spec)
    bare = replace(spec, func=None, args=(), kwargs={})
    return (pickle.dumps(bare, protocol=pickle.HIGHEST_PROTOCOL), blob, payload(spec),
            function_sources(spec))
