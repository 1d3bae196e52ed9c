"""What the run loop (driver.py) asks of a runner, and what a runner says it can do.

A runner executes the jobs the run loop hands it and reports what happened; it decides
nothing about the graph. The in-kernel runner (``make``), the engine pool (``parmake N``)
and the Dask runner (``parmake --dask``) implement all of ``Runner``; one that cannot do
something declares it in its ``capabilities`` (and implements the method as a no-op), so
the run loop never probes a runner for what it has.

Told:
  ``attach()`` / ``detach()``  a run begins / ends
  ``submit(job)``      run this job: a ``Call`` (values in hand) or, for a ``remote``
                       runner, a ``RemoteJob`` (bytes and the places of its inputs)
  ``send_ahead(job, place, behind)``  (``runs_ahead``) run this job, not decided yet, at
                       ``place``, right behind its inputs ``behind`` made there: it takes
                       their results where they are made, and does not run if one of them
                       fails there (then it reports ``Requeue``). Its outcomes carry
                       ``consumed``, the checksums of the results it took
  ``drop(job_ids)``    (``runs_ahead``) jobs sent ahead that will not run (or ran on other
                       results than the run recorded): take them out, ignore their outcomes
  ``interrupt()``      stop everything submitted: returns the ids of the jobs that go
                       back to their earlier state
  ``close()``          let go of processes and connections
Asked:
  ``has_capacity()``, ``free_slots()``  room for more jobs now
  ``busy``             something submitted has not been reported yet
  ``place_of(job_id)`` (``runs_ahead``) where this job's result is being made, or held
                       unreported, in this run: an engine, the cluster; None if nowhere.
                       The run loop asks it when it decides what to send ahead. (A
                       question rather than events: the answer changes with every job an
                       engine takes, ends, gives back or loses when it dies, which the
                       runner knows first; mirroring that in events would copy its queues.)
Reports, from ``poll(timeout)`` (shared/outcomes.py): ``Started`` when a job begins executing
(not when it is handed over or queued), then ``JobReturned`` / ``JobStored`` /
``JobRaised`` (a place that died while running it is a ``JobRaised`` too), ``ChildSpec``
(a dynamic job defined a child), ``Durable``, ``Requeue`` (handed back unrun),
``DependencyLost``; and from ``ended_before_interrupt()``, once after ``interrupt``, the
outcomes of submitted jobs that had ended before it (to be recorded, not lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Protocol, runtime_checkable

from ..shared.outcomes import Call, Outcome, RemoteJob


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a runner can do, declared once."""

    remote: bool
    """Jobs run in other processes: they are submitted as ``RemoteJob`` (bytes, places of
    results), and results are written where those processes read them."""
    runs_ahead: bool
    """It can run jobs sent ahead, before the run decides them (``send_ahead``)."""
    holds_values: bool
    """It keeps results in memory where the jobs run, so dependents skip the disk."""
    stops_running_jobs: bool
    """``interrupt`` stops a job that is executing (else it runs to its end somewhere and
    its result is dropped)."""
    reports_started: bool = True
    """It reports ``Started`` when a job begins executing."""
    ahead_per_place: int = 0
    """At most this many undecided jobs sent ahead wait at one place."""
    ahead_takes_slots: bool = False
    """A job sent ahead takes one of its ``free_slots`` (else it rides on its inputs'
    place, whatever the free slots)."""


@runtime_checkable
class Runner(Protocol):
    capabilities: Capabilities

    def attach(self) -> None:
        """A run begins."""

    def detach(self) -> None:
        """The run ended (however): nothing of it is followed any more."""

    def has_capacity(self) -> bool:
        """Room for one more job now."""

    def free_slots(self) -> int:
        """How many more jobs it can take now."""

    @property
    def busy(self) -> bool:
        """Something submitted has not been reported yet."""

    def submit(self, job: Call | RemoteJob) -> None:
        """Run this job (``remote`` runners get a ``RemoteJob``)."""

    def send_ahead(self, job: RemoteJob, place: Hashable, behind: tuple[str, ...]) -> None:
        """Run this undecided job at ``place``, right behind ``behind``."""

    def drop(self, job_ids: list[str]) -> None:
        """Jobs sent ahead that will not count: take them out, ignore their outcomes."""

    def place_of(self, job_id: str) -> Hashable | None:
        """Where this job's result is being made (or held, unreported) in this run."""

    def poll(self, timeout: float) -> list[Outcome]:
        """What happened since the last poll, waiting up to ``timeout`` seconds for it."""

    def interrupt(self) -> list[str]:
        """Stop everything submitted; the ids of the jobs that go back."""

    def ended_before_interrupt(self) -> list[Outcome]:
        """(After ``interrupt``, once.) Outcomes of submitted jobs that ended before it."""

    def listen_progress(self, tell: Callable[[str, float, float, str], None] | None) -> None:
        """Where to report, from within a job, what it says with ``nbmake_ext.progress``
        (a runner that runs jobs in this thread does; others report ``Progress`` outcomes
        from ``poll`` and ignore this). None: nobody listens."""

    def close(self) -> None:
        """Let go of every process and connection."""
