"""The live progress line of a make on a terminal (the console, and scripts whose stderr is
a terminal): a run observer that counts what it is told and shows the counts, the elapsed
time and the jobs running now, on one line of stderr that rich redraws in place.

Cheap whatever the pace of the run: ``job_changed`` only moves a job between counts (a few
dictionary operations, no output), and the line is drawn by rich's refresh thread at most
``REFRESH_PER_SECOND`` times a second, not per job. The line is taken away when the run
ends (``run_ended``, before the summary line prints), also when it is interrupted.

Shown only where ``wanted()`` says so: stderr is a terminal and ``$NBMAKE_PROGRESS`` is not
``0``. Elsewhere (pipes, CI logs, a Jupyter kernel, ``jupyter nbconvert --execute``)
nothing is created and rich is not imported.
"""

from __future__ import annotations

import os
import sys
import time
from itertools import islice
from typing import Any, Callable, TextIO

from ..shared.progress import as_text

REFRESH_PER_SECOND = 10
RUNNING_SHOWN = 3      # running job ids named on the line, oldest first
ID_WIDTH = 24          # each cut to this many characters
BAR_WIDTH = 12

#: $NBMAKE_PROGRESS values that switch the line off.
OFF = frozenset({"0", "no", "off", "false"})

# What a job counts as on the line, by the state a run tells.
RAN, UP_TO_DATE, FAILED, BLOCKED, RUNNING, WAITING = (
    "ran", "up to date", "failed", "blocked", "running", "waiting")
_FINISHED = (RAN, UP_TO_DATE, FAILED, BLOCKED)


def wanted(stream: TextIO | None = None) -> bool:
    """Whether a live line belongs on ``stream`` (default: ``sys.stderr``): a terminal
    (not a dumb one), and ``$NBMAKE_PROGRESS`` does not switch it off."""
    if os.environ.get("NBMAKE_PROGRESS", "").strip().lower() in OFF:
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or closed
        return False


class ProgressLine:
    """A run observer (``kernel/observer.py``) that draws one live line on a terminal.

    ``run_started`` (called by ``Context`` once the run is set up) starts the display;
    ``run_ended`` takes it away. ``needed()`` given to ``run_started`` tells how many jobs
    the run has to decide so far (it grows as dynamic jobs define children)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream
        self.command = ""
        self.state: dict[str, str] = {}           # job id -> one of the counts above
        self.counts: dict[str, int] = dict.fromkeys(
            (RAN, UP_TO_DATE, FAILED, BLOCKED, RUNNING, WAITING), 0)
        self.running: dict[str, None] = {}        # in the order they started
        self.progress: dict[str, str] = {}        # running job -> "done/total" it reported
        self.needed: Callable[[], int] = lambda: len(self.state)
        self.started = time.monotonic()
        self._live: Any = None
        self._bar_char = "#"

    # -- the observer ---------------------------------------------------------------------

    def job_changed(self, job_id: str, state: str, info: dict[str, Any]) -> None:
        old = self.state.get(job_id)
        if state == "running":
            new = RUNNING
        elif state == "done":
            # A job that ran comes with its timings; one found up to date with none.
            new = RAN if old == RUNNING or "duration" in info else UP_TO_DATE
        elif state == "failed":
            new = FAILED
        elif state == "blocked":
            new = BLOCKED
        elif state == "forgotten":
            new = None
        else:  # "todo" (a new dynamic child) and anything else: waiting to be decided
            new = WAITING
        if old == new:
            return
        counts = self.counts
        if old is not None:
            counts[old] -= 1
            if old == RUNNING:
                self.running.pop(job_id, None)
                self.progress.pop(job_id, None)
        if new is None:
            self.state.pop(job_id, None)
            return
        counts[new] += 1
        self.state[job_id] = new
        if new == RUNNING:
            self.running[job_id] = None

    def job_progress(self, job_id: str, done: float, total: float, message: str) -> None:
        """A running job said how far it is (nbmake_ext.progress): shown after its id."""
        if job_id in self.running:
            self.progress[job_id] = as_text(done, total)

    def tick(self) -> None:
        pass  # rich's own thread redraws the line; nothing to do per loop turn

    # -- the run --------------------------------------------------------------------------

    def run_started(self, command: str, needed: Callable[[], int] | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.command = command
        if needed is not None:
            self.needed = needed
        self.started = time.monotonic()
        stream = self.stream if self.stream is not None else sys.stderr
        console = Console(file=stream)
        self._bar_char = "━" if console.encoding.lower().startswith("utf") else "#"
        # What the jobs print (--echo) and log records go above the line when they would
        # reach this terminal; stdout sent elsewhere (a pipe, a file) stays where it goes.
        self._live = Live(self, console=console, transient=True, auto_refresh=True,
                          refresh_per_second=REFRESH_PER_SECOND,
                          redirect_stdout=_same_terminal(sys.stdout, stream),
                          redirect_stderr=stream is sys.stderr)
        self._live.start()

    def run_ended(self) -> None:
        live, self._live = self._live, None
        try:
            if live is not None:
                live.stop()  # draws a last time, then takes the line away
        finally:
            self.needed = lambda: len(self.state)  # lets go of the run

    # -- drawing (on rich's refresh thread) -----------------------------------------------

    def text(self) -> str:
        """The line, as plain text: ``12/40 · 9 done · 1 failed · 2 blocked · 26 to go ·
        3.2s · 2 running: fit-3 40/100, fit-4`` (after a job's id, what it last reported
        with nbmake_ext.progress)."""
        c = self.counts
        finished = sum(c[k] for k in _FINISHED)
        running = c[RUNNING]
        total = max(self._needed(), finished + running)
        parts = [f"{finished}/{total}", f"{c[RAN]} done"]
        if c[UP_TO_DATE]:
            parts.append(f"{c[UP_TO_DATE]} up to date")
        if c[FAILED]:
            parts.append(f"{c[FAILED]} failed")
        if c[BLOCKED]:
            parts.append(f"{c[BLOCKED]} blocked")
        parts += [f"{total - finished - running} to go", clock(time.monotonic() - self.started),
                  f"{running} running"]
        line = " · ".join(parts)
        shown = _first(self.running, RUNNING_SHOWN)
        if shown:
            progress = self.progress
            line += ": " + ", ".join(
                _cut(j) + (f" {p}" if (p := progress.get(j)) else "") for j in shown)
            if running > len(shown):
                line += f" +{running - len(shown)}"
        return line

    def _needed(self) -> int:
        try:
            return self.needed()
        except Exception:  # noqa: BLE001 - a run being taken down: count what was told
            return len(self.state)

    def fraction(self) -> float:
        c = self.counts
        finished = sum(c[k] for k in _FINISHED)
        total = max(self._needed(), finished)
        return finished / total if total else 0.0

    def __rich__(self) -> Any:
        from rich.text import Text

        done = round(self.fraction() * BAR_WIDTH)
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        line.append(self.command, "bold")
        line.append(" ")
        line.append(self._bar_char * done, "red" if self.counts[FAILED] else "green")
        line.append(self._bar_char * (BAR_WIDTH - done), "grey37")
        line.append(" ")
        line.append(self.text())
        return line


def clock(seconds: float) -> str:
    """Elapsed time: ``8.2s``, ``3:05``, ``1:02:03``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _first(running: dict[str, None], n: int) -> list[str]:
    # Read while the run loop changes it: a copy in one step, retried if it moved meanwhile.
    for _ in range(3):
        try:
            return list(islice(running, n))
        except RuntimeError:
            continue
    return []


def _cut(job_id: str) -> str:
    return job_id if len(job_id) <= ID_WIDTH else job_id[:ID_WIDTH - 1] + "…"


def _same_terminal(stream: Any, terminal: Any) -> bool:
    """``stream`` writes to the terminal ``terminal`` writes to (the same tty device)."""
    try:
        if stream is terminal:
            return True
        if not stream.isatty():
            return False
        a, b = os.fstat(stream.fileno()), os.fstat(terminal.fileno())
        return (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)
    except (AttributeError, ValueError, OSError):
        return False
