"""What bounds one job while it runs, wherever it runs (kernel, engine, Dask worker): its
time limit (``job_timeout``), its environment (``CUDA_VISIBLE_DEVICES`` for the GPUs it
holds), and the measure of its peak memory.

The time limit raises ``JobTimedOut`` inside the job. In a process's main thread (the
kernel's make, an engine) it comes from ``SIGALRM``, which also interrupts a blocking call
such as ``time.sleep``; in another thread (a Dask worker's) it is raised asynchronously
and takes effect at the job's next Python instruction. Code that never returns to Python
(a C loop) is not stopped by either: an engine's kernel then kills the engine
(kernel/pool.py), and on Dask the kernel fails the job at its timeout and drops its late
result (kernel/dask_limits.py).

Peak memory: on Linux the process's high-water mark of resident memory is reset before
the job (``/proc/self/clear_refs``) and read after it (``getrusage``): about two
microseconds. Elsewhere the process's peak since it started is what is known.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator


class JobTimedOut(BaseException):
    """Raised inside a job at its timeout. A BaseException: ``except Exception`` in the
    job's own code does not swallow it."""


def timed_out_message(seconds: float) -> str:
    return f"timed out after {seconds:g} s"


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds:
        yield
        return
    if threading.current_thread() is threading.main_thread():
        with _alarm(seconds):
            yield
    else:
        with _async_raise_after(seconds):
            yield


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def on_alarm(signum, frame):
        raise JobTimedOut(timed_out_message(seconds))

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _async_raise_after(seconds: float) -> Iterator[None]:
    target = threading.get_ident()
    lock = threading.Lock()  # the job ending and the watcher firing exclude each other
    ended = threading.Event()
    fired = []

    def watch() -> None:
        if ended.wait(seconds):
            return
        with lock:
            if not ended.is_set():
                fired.append(True)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(target), ctypes.py_object(JobTimedOut))

    threading.Thread(target=watch, name="nbmake-time-limit", daemon=True).start()
    try:
        yield
    finally:
        with lock:
            ended.set()
            if fired:  # it may not have been raised yet: it must not be raised later
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)


@contextmanager
def environment(env: dict[str, str] | None) -> Iterator[None]:
    """``env`` set in os.environ while the job runs, as it was afterwards."""
    if not env:
        yield
        return
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class PeakMemory:
    """The peak resident memory of this process while a job ran, in bytes."""

    def __init__(self) -> None:
        self._pid = 0
        self._fd: int | None = None

    def reset(self) -> None:
        pid = os.getpid()
        if pid != self._pid:  # opened per process: /proc/self is resolved when opened
            self._pid, self._fd = pid, _open_clear_refs()
        if self._fd is not None:
            try:
                os.pwrite(self._fd, b"5", 0)
            except OSError:
                self._fd = None

    @staticmethod
    def peak() -> int:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss if sys.platform == "darwin" else maxrss * 1024


def _open_clear_refs() -> int | None:
    try:
        return os.open("/proc/self/clear_refs", os.O_WRONLY)
    except OSError:
        return None


peak_memory = PeakMemory()
