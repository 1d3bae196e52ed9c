"""What a run tells the views as it goes (the widget, progress displays).

The run loop calls ``job_changed`` for every state change, with what a click on the job
should show (error, traceback, captured output, timings, reasons), so a view never needs to
ask the kernel while it is busy; and ``tick`` at least every ~50 ms from the thread that
runs the cell, so a view can send its batch of changes from there.

An observer that follows the run as a whole (the console's live line) also has the methods
of ``RunObserver``: ``Context`` calls ``run_started`` once the run is set up and
``run_ended`` when it is over, interrupted or not, before its summary line prints.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol


class Observer(Protocol):
    def job_changed(self, job_id: str, state: str, info: dict[str, Any]) -> None:
        """``state`` is a public state, or "forgotten" for a dynamic child no longer defined.
        ``info`` may hold: reasons, duration, engine, error, traceback, stdout, stderr,
        blocked_by, peak_rss, attempts (the failed attempts before, job_retries), attempt
        (the one it is on), and for a new dynamic child: parent, function, deps."""

    def tick(self) -> None:
        """Called often from the run loop: a chance to flush batched updates."""

    # Optional: ``job_progress(job_id, done, total, message)``, what a running job reports
    # with ``nbmake_ext.progress`` (at most a few times a second per job). In the kernel's
    # make it is called from within the job (the loop does not turn meanwhile), or from a
    # timer's thread; elsewhere from the run loop.


class RunObserver(Observer, Protocol):
    def run_started(self, command: str, needed: Callable[[], int]) -> None:
        """The run of ``command`` (make, parmake, remake) begins; ``needed()`` is how many
        jobs it has to decide so far (more as dynamic jobs define children)."""

    def run_ended(self) -> None:
        """The run is over: take the view down (the summary line follows)."""


class NoObserver:
    def job_changed(self, job_id: str, state: str, info: dict[str, Any]) -> None:
        pass

    def tick(self) -> None:
        pass


def progress_listener(observer: Observer) -> Callable[[str, float, float, str], None] | None:
    """The observer's optional ``job_progress``, or None when it shows no progress."""
    return getattr(observer, "job_progress", None)
