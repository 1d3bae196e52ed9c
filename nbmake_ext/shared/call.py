"""Calling a job's function in this process, wherever that is (the kernel, an engine, a
Dask worker): its output captured, its exception turned into an error line and a traceback
that starts at the job's own code."""

from __future__ import annotations

import io
import os
import sys
import time
import traceback
from typing import TextIO

from ..files import run as job_files
from .dynamic import DynamicContext
from .limits import JobTimedOut, bounds, peak_memory, timed_out_message
from .outcomes import Call, JobRaised, JobReturned, Outcome, Timing
from .progress import Send, reporting


class _Tee(io.TextIOBase):
    """Captures a job's output and, when asked, shows it as it comes."""

    def __init__(self, echo_to: TextIO | None):
        self.parts: list[str] = []
        self.echo_to = echo_to

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.parts.append(text)
        if self.echo_to is not None:
            self.echo_to.write(text)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self.parts)

    def flush(self) -> None:
        if self.echo_to is not None:
            self.echo_to.flush()


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def format_job_traceback(exc: BaseException) -> str:
    """The traceback from the job's own first frame: our frames (the runner, the cell
    runner) are not the user's business."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR + os.sep):
        tb = tb.tb_next
    try:
        return "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:  # noqa: BLE001 - an exception whose str() raises is still reported
        frames = "".join(traceback.format_tb(tb))
        return f"Traceback (most recent call last):\n{frames}{error_line(exc)}\n"


def error_line(exc: BaseException) -> str:
    try:
        text = str(exc).strip().splitlines()
    except Exception:  # noqa: BLE001 - its __str__ raised: say so rather than die
        return f"{type(exc).__name__}: <the exception's message could not be printed>"
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def failure_line(exc: BaseException, timeout: float | None) -> str:
    """The error of a job that raised ``exc``: its time limit's message if that stopped
    it, else its exception's line."""
    if isinstance(exc, JobTimedOut):
        return timed_out_message(timeout or 0)
    return error_line(exc)


def run_call(call: Call, sink, echo: bool = False, engine: str = "kernel",
             interrupted=None, progress: Send | None = None,
             progress_later: bool = False) -> list[Outcome]:
    """Run one job here, capturing its output. ``sink`` receives ChildSpec outcomes of
    dynamic jobs. KeyboardInterrupt propagates: the caller puts the job back. With
    ``interrupted`` (a callable), only while it says the process was interrupted; a
    KeyboardInterrupt the job raised of itself is then its failure.

    A job with files (``call.files``): its inputs must exist and its old outputs are
    removed before it runs; after it returns each output must exist and is fingerprinted
    (``JobReturned.files``); when it fails or is stopped, its outputs are removed.
    ``progress`` receives what the job reports with ``nbmake_ext.progress`` (throttled:
    shared/progress.py; ``progress_later``: a report held back is sent by a timer)."""
    out, err = _Tee(sys.stdout if echo else None), _Tee(sys.stderr if echo else None)
    timing = Timing(time.time(), 0.0, 0.0, 0.0, engine)
    t0 = time.perf_counter()
    args = call.args
    if call.dynamic:
        args = (DynamicContext(call.job_id, sink), *args)
    files = call.files
    if files is not None:
        try:
            job_files.before(*files)
        except (job_files.FilesProblem, OSError) as exc:
            _finish(timing, t0, peak_memory.cpu())  # (it did not run: no CPU of its own)
            return [JobRaised(call.job_id, str(exc) if isinstance(exc, job_files.FilesProblem)
                              else f"could not prepare its files: {error_line(exc)}", "",
                              "", "", timing)]
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    # Its high-water mark reset, if it must be: not counted in its duration (tens of
    # microseconds, up to milliseconds in a large process; the first job of an engine
    # always pays it, and its duration tells the kernel how many jobs an engine holds).
    before_reset = time.perf_counter()
    c0 = peak_memory.start()
    t0 += time.perf_counter() - before_reset
    try:
        with bounds(call.env, call.timeout), \
                reporting(call.job_id, progress, later=progress_later):
            value = call.func(*args, **call.kwargs)
    except JobTimedOut as exc:
        _remove_outputs(files)
        return [_raised(call, exc, out, err, timing, t0, c0,
                        error=failure_line(exc, call.timeout))]
    except (KeyboardInterrupt, SystemExit) as exc:
        _remove_outputs(files)
        if isinstance(exc, SystemExit) or (interrupted is not None and not interrupted()):
            return [_raised(call, exc, out, err, timing, t0, c0)]
        raise
    except BaseException as exc:  # noqa: BLE001 - a job's failure must never stop the make
        _remove_outputs(files)
        return [_raised(call, exc, out, err, timing, t0, c0)]
    finally:
        sys.stdout, sys.stderr = saved
    stamps = None
    if files is not None and files[1]:
        try:
            stamps = job_files.after(files[1])
        except (job_files.FilesProblem, OSError) as exc:
            _remove_outputs(files)
            _finish(timing, t0, c0)
            error = str(exc) if isinstance(exc, job_files.FilesProblem) \
                else f"could not fingerprint its outputs: {error_line(exc)}"
            return [JobRaised(call.job_id, error, "", out.getvalue(), err.getvalue(), timing)]
    _finish(timing, t0, c0)
    return [JobReturned(call.job_id, value, out.getvalue(), err.getvalue(), timing, stamps)]


def _remove_outputs(files: tuple[tuple[str, ...], tuple[str, ...]] | None) -> None:
    """A job that failed, or was stopped, leaves no output behind."""
    if files is not None and files[1]:
        try:
            job_files.remove(files[1])
        except OSError:
            pass


def _raised(call, exc, out, err, timing, t0, c0, error: str = "") -> JobRaised:
    _finish(timing, t0, c0)
    return JobRaised(call.job_id, error or error_line(exc), format_job_traceback(exc),
                     out.getvalue(), err.getvalue(), timing)


def _finish(timing: Timing, t0: float, c0: float) -> None:
    timing.duration = time.perf_counter() - t0
    cpu, timing.peak_rss = peak_memory.cpu_and_peak()
    timing.cpu = max(cpu - c0, 0.0)
    timing.ended = timing.started + timing.duration
