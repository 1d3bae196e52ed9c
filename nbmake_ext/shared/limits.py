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
import time
from contextlib import contextmanager
from typing import Iterator

import _signal  # the functions of ``signal`` without its enum conversions (per job)


class JobTimedOut(BaseException):
    """Raised inside a job at its timeout. A BaseException: ``except Exception`` in the
    job's own code does not swallow it."""


def timed_out_message(seconds: float) -> str:
    return f"timed out after {seconds:g} s"


class time_limit:
    """``with time_limit(seconds):`` raises JobTimedOut inside the block at ``seconds``
    (None or 0: no limit). A class, not a generator: it is entered once per job."""

    __slots__ = ("seconds", "_inner")

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self._inner = None

    def __enter__(self) -> None:
        if not self.seconds:
            return
        if threading.current_thread() is threading.main_thread():
            self._inner = _Alarm(self.seconds)
        else:
            self._inner = _async_raise_after(self.seconds)
        self._inner.__enter__()

    def __exit__(self, *exc) -> None:
        if self._inner is not None:
            self._inner.__exit__(*exc)


_OWN_ALARM = False  # this process's SIGALRM is ours for good (an engine's)


def own_alarm() -> None:
    """A process that runs only jobs (an engine) keeps the alarm's handler installed: a
    job's limit then costs two system calls, not four."""
    global _OWN_ALARM
    _signal.signal(signal.SIGALRM, _on_alarm)
    _OWN_ALARM = True


_limit: float = 0.0  # the limit of the job the alarm is for


def _on_alarm(signum, frame):
    if _limit:
        raise JobTimedOut(timed_out_message(_limit))


class _Alarm:
    """SIGALRM at the limit (the main thread only), its handler raising JobTimedOut; the
    handler there before is put back after, unless this process owns the alarm."""

    __slots__ = ("seconds", "_previous")

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._previous = None

    def __enter__(self) -> None:
        global _limit
        _limit = self.seconds
        if not _OWN_ALARM:
            self._previous = _signal.signal(signal.SIGALRM, _on_alarm)
        _signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc) -> None:
        global _limit
        _signal.setitimer(signal.ITIMER_REAL, 0)
        _limit = 0.0
        if not _OWN_ALARM:
            _signal.signal(signal.SIGALRM, self._previous)


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


class _NoBounds:
    """What ``bounds`` gives a job without a time limit or an environment (most jobs)."""

    __slots__ = ()

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc) -> None:
        pass


_NO_BOUNDS = _NoBounds()


class _Bounds:
    __slots__ = ("_env", "_limit")

    def __init__(self, env: dict[str, str] | None, seconds: float | None):
        self._env, self._limit = environment(env), time_limit(seconds)

    def __enter__(self) -> None:
        self._env.__enter__()
        try:
            self._limit.__enter__()
        except BaseException:
            self._env.__exit__(None, None, None)
            raise

    def __exit__(self, *exc) -> None:
        try:
            self._limit.__exit__(*exc)
        finally:
            self._env.__exit__(*exc)


def bounds(env: dict[str, str] | None, seconds: float | None):
    """``with environment(env), time_limit(seconds):`` as one context, and a shared one
    that does nothing for a job that has neither (thousands of short jobs a second)."""
    return _Bounds(env, seconds) if env or seconds else _NO_BOUNDS


class environment:
    """``with environment(env):`` sets ``env`` in os.environ while the job runs, and puts
    back what was there after (None or empty: nothing)."""

    __slots__ = ("env", "_saved")

    def __init__(self, env: dict[str, str] | None):
        self.env = env
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        if self.env:
            self._saved = {name: os.environ.get(name) for name in self.env}
            os.environ.update(self.env)

    def __exit__(self, *exc) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class PeakMemory:
    """The peak resident memory of this process while a job ran, in bytes.

    The process's high-water mark is brought down to the memory resident now
    (``/proc/self/clear_refs``) before a job, when the mark rose since it was last brought
    down, or when that was more than ``RESET_EVERY`` ago. Not before every job: the reset
    takes the process's memory map lock for writing, which waits for the page faults of
    its other threads, and the ``os`` call lets go of the interpreter lock, which the
    store's writer then takes: a serial make of trivial jobs spent a fifth of its time
    there. A job's peak is the most its process held while it ran or, for a job that
    started less than ``RESET_EVERY`` after the last reset with no rise since, what the
    process held at that reset."""

    RESET_EVERY = 0.05  # seconds

    def __init__(self) -> None:
        self._opened = False
        self._fd: int | None = None
        self._mark = 0                         # ru_maxrss just after the last reset
        self._reset_at = float("-inf")        # when (time.monotonic())
        if hasattr(os, "register_at_fork"):  # /proc/self is resolved when opened: a child
            os.register_at_fork(after_in_child=self._forked)  # opens its own

    def _forked(self) -> None:
        if self._fd is not None:  # the parent's: a child opens its own when it resets
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._opened, self._fd = False, None
        self._mark, self._reset_at = 0, float("-inf")

    def reset(self) -> None:
        """Bring the high-water mark down to what is resident now."""
        if not self._opened:
            self._opened, self._fd = True, _open_clear_refs()
        if self._fd is not None:
            try:
                os.pwrite(self._fd, b"5", 0)
            except OSError:
                self._fd = None
                return
            self._mark = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self._reset_at = time.monotonic()

    def start(self) -> float:
        """A job starts: the high-water mark is reset if it must be (see the class); the
        CPU seconds this process has used so far (as ``cpu``)."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        if (usage.ru_maxrss > self._mark or time.monotonic() - self._reset_at > self.RESET_EVERY) \
                and (self._fd is not None or not self._opened):
            self.reset()
        return usage.ru_utime + usage.ru_stime

    @staticmethod
    def peak() -> int:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss if sys.platform == "darwin" else maxrss * 1024

    @staticmethod
    def cpu() -> float:
        """The CPU seconds this process has used (as ``time.process_time``)."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    @staticmethod
    def cpu_and_peak() -> tuple[float, int]:
        """``(cpu(), peak())`` from one system call (a job's end, thousands a second)."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        maxrss = usage.ru_maxrss
        return usage.ru_utime + usage.ru_stime, \
            maxrss if sys.platform == "darwin" else maxrss * 1024


def _open_clear_refs() -> int | None:
    try:
        return os.open("/proc/self/clear_refs", os.O_WRONLY)
    except OSError:
        return None


peak_memory = PeakMemory()
