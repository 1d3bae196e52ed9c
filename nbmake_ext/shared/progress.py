"""``progress(done, total, message="")``: a running job says how far it is.

Wherever a job runs (the kernel's ``make``, an engine, a Dask worker), the code that runs it
(``shared/call.py``, ``dask_worker/task.py``) installs a ``Reporter`` for the job while it
runs; ``progress`` hands the numbers to it, and does nothing at all outside a job.

A job may call ``progress`` in a tight loop, so a call costs little (a clock read and a
comparison) and sends nothing most of the time. A reporter sends:

- the first report of the job at once;
- then at most one report every ``INTERVAL`` seconds (so at most ~5 a second per job),
  and only if something changed since the last one sent;
- a report held back that way goes with the next call that comes after the interval or,
  where the place allows it (``later``: the kernel's ``make``), by a timer when the
  interval is over, so that a burst of calls followed by a long step still shows its last
  numbers. On engines and Dask workers a held-back report waits for the next call (or is
  superseded by the job's end).

What it sends, ``send(job_id, done, total, message)``, is the place's business: in the
kernel it goes straight to the run's observer, from an engine it is a ``progress`` message
to the kernel (``engine/main.py``), from a Dask worker a worker event
(``dask_worker/task.py``).
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Callable

INTERVAL = 0.2        # seconds between two reports of one job, at least
MESSAGE_MAX = 200     # characters of a message that are kept

Send = Callable[[str, float, float, str], None]

_local = threading.local()      # .reporter: the job this thread runs
_process: list = [None]         # the job this process runs, when it runs one at a time
# Between a job's thread and a timer sending what it held back. One for every reporter:
# reports are a few a second, and a reporter is made for every job, however short.
_emitting = threading.Lock()


class Reporter:
    """The progress of one run of one job, throttled (see the module's docstring)."""

    __slots__ = ("job_id", "_send", "_later", "_clock", "_next", "_last", "_held", "_timer",
                 "closed")

    def __init__(self, job_id: str, send: Send, later: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        self.job_id = job_id
        self._send = send
        self._later = later
        self._clock = clock
        self._next = 0.0       # no report is sent before then
        self._last: tuple | None = None   # the last report sent
        self._held: tuple | None = None   # a report held back by the interval
        self._timer: threading.Timer | None = None
        self.closed = False

    def report(self, done: float, total: float, message: str) -> None:
        now = self._clock()
        if now < self._next:
            self._held = (done, total, message)
            if self._later and self._timer is None:
                self._start_timer(self._next - now)
            return
        self._held = None
        self._emit((done, total, message), now)

    def _emit(self, numbers: tuple, now: float) -> None:
        done, total, message = numbers
        try:
            done, total = float(done), float(total)
        except (TypeError, ValueError):
            raise TypeError(f"progress(done, total): numbers expected, got {numbers[0]!r} "
                            f"and {numbers[1]!r}") from None
        message = message if isinstance(message, str) else str(message)
        report = (done, total, message[:MESSAGE_MAX])
        with _emitting:  # (the job's thread, or the timer's)
            if report == self._last:
                return
            self._last = report
            self._next = now + INTERVAL
            self._send(self.job_id, *report)

    def _start_timer(self, delay: float) -> None:
        # In the job's context: in a kernel, what the timer sends keeps the cell as parent.
        context = contextvars.copy_context()
        timer = threading.Timer(delay + 0.001, context.run, args=(self._flush_held,))
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _flush_held(self) -> None:
        self._timer = None
        held, self._held = self._held, None
        if held is None or self.closed:
            return
        try:
            self._emit(held, self._clock())
        except Exception:  # noqa: BLE001 - a timer has nobody to tell; the job goes on
            pass

    def close(self) -> None:
        """The job ended: nothing more is sent, a timer pending is cancelled."""
        self.closed = True
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()


def progress(done: float, total: float, message: str = "") -> None:
    """Says how far the running job is: ``done`` of ``total`` (any numbers: items, bytes,
    steps), with an optional short ``message``. The job board shows it on the job while
    it runs, and so does the console's live line. Cheap enough for a tight loop (it sends
    at most a few reports a second). Outside a job it does nothing."""
    reporter = getattr(_local, "reporter", None) or _process[0]
    if reporter is not None:
        reporter.report(done, total, message)


class reporting:
    """``with reporting(job_id, send, ...):`` the job runs with its reporter installed:
    for this thread, and with ``whole_process`` for any thread of the process (a job that
    runs alone in its process: the kernel's make, an engine). The Reporter is made when
    the job first reports: most jobs never do, and thousands may run a second."""

    __slots__ = ("job_id", "send", "later", "reporter", "whole_process", "_saved")

    def __init__(self, job_id: str, send: Send | None, whole_process: bool = True,
                 later: bool = False):
        self.job_id, self.send, self.later = job_id, send, later
        self.reporter: Reporter | None = None
        self.whole_process = whole_process
        self._saved = None

    def report(self, done: float, total: float, message: str) -> None:
        reporter = self.reporter
        if reporter is None:
            reporter = self.reporter = Reporter(self.job_id, self.send, self.later)
        reporter.report(done, total, message)

    def __enter__(self) -> "reporting | None":
        if self.send is None:
            return None
        self._saved = (getattr(_local, "reporter", None), _process[0])
        _local.reporter = self
        if self.whole_process:
            _process[0] = self
        return self

    def __exit__(self, *exc) -> None:
        if self.send is not None:
            if self.reporter is not None:
                self.reporter.close()
            _local.reporter, process = self._saved
            if self.whole_process:
                _process[0] = process


def number(value: float) -> str:
    """``3``, ``2.5``, ``1.23e+06``: a reported number as short text."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.3g}"


def as_text(done: float, total: float) -> str:
    """``done/total`` as the board and the console's line show it."""
    return f"{number(done)}/{number(total)}"
