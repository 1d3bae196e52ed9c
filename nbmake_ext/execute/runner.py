"""What the run loop (driver.py) asks of a runner, and what a runner says it can do.

A runner executes the jobs the run loop hands it and reports what happened; it decides
nothing about the graph. The in-kernel runner (``make``), the engine pool (``parmake N``)
and the Dask runner (``parmake --dask``) implement all of ``Runner``; one that cannot do
something declares it in its ``capabilities`` (and implements the method as a no-op), so
the run loop never probes a runner for what it has.

Told:
  ``attach(driver)`` / ``detach()``  a run begins / ends (a runner that sends jobs ahead
                       follows the run's decisions in between; ``detach`` drops what it
                       sent ahead that the run did not decide to run)
  ``submit(job)``      run this job: a ``Call`` (values in hand) or, for a ``remote``
                       runner, a ``RemoteJob`` (bytes and the places of its inputs)
  ``interrupt()``      stop everything submitted: returns the ids of the jobs that go
                       back to their earlier state
  ``close()``          let go of processes and connections
Asked:
  ``has_capacity()``, ``free_slots()``  room for more jobs now
  ``busy``             something submitted has not been reported yet
  ``holds(job_id)``    the runner has this job already (sent ahead): it is submitted
                       without its definition and needs no free slot
Reports, from ``poll(timeout)`` (outcomes.py): ``Started`` when a job begins executing
(not when it is handed over or queued), then ``JobReturned`` / ``JobStored`` /
``JobRaised`` (a place that died while running it is a ``JobRaised`` too), ``ChildSpec``
(a dynamic job defined a child), ``Durable``, ``Requeue`` (handed back unrun),
``DependencyLost``; and from ``ended_before_interrupt()``, once after ``interrupt``, the
outcomes of submitted jobs that had ended before it (to be recorded, not lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .outcomes import Call, Outcome, RemoteJob


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a runner can do, declared once."""

    remote: bool
    """Jobs run in other processes: they are submitted as ``RemoteJob`` (bytes, places of
    results), and results are written where those processes read them."""
    runs_ahead: bool
    """It sends jobs ahead, before the run decides them (``attach`` gives it the run), and
    may hold a job when the driver submits it (``holds``)."""
    holds_values: bool
    """It keeps results in memory where the jobs run, so dependents skip the disk."""
    stops_running_jobs: bool
    """``interrupt`` stops a job that is executing (else it runs to its end somewhere and
    its result is dropped)."""
    reports_started: bool = True
    """It reports ``Started`` when a job begins executing."""


@runtime_checkable
class Runner(Protocol):
    capabilities: Capabilities

    def attach(self, driver) -> None:
        """A run begins; ``driver`` is its run loop (its core, its store)."""

    def detach(self) -> None:
        """The run ended (however): nothing of it is followed any more."""

    def has_capacity(self) -> bool:
        """Room for one more job now."""

    def free_slots(self) -> int:
        """How many more jobs it can take now."""

    @property
    def busy(self) -> bool:
        """Something submitted has not been reported yet."""

    def holds(self, job_id: str) -> bool:
        """It has this job already (sent ahead)."""

    def submit(self, job: Call | RemoteJob) -> None:
        """Run this job (``remote`` runners get a ``RemoteJob``)."""

    def poll(self, timeout: float) -> list[Outcome]:
        """What happened since the last poll, waiting up to ``timeout`` seconds for it."""

    def interrupt(self) -> list[str]:
        """Stop everything submitted; the ids of the jobs that go back."""

    def ended_before_interrupt(self) -> list[Outcome]:
        """(After ``interrupt``, once.) Outcomes of submitted jobs that ended before it."""

    def close(self) -> None:
        """Let go of every process and connection."""
