"""The scheduler's whole vocabulary: events in, actions out."""

from __future__ import annotations

from dataclasses import dataclass, field

from .jobspec import JobSpec, RunRecord

# -- events: what happened (fed to Scheduler.handle) ------------------------------------


@dataclass(frozen=True, slots=True)
class Succeeded:
    """A job's result is stored; ``result_fp`` is the fingerprint of that result."""

    job_id: str
    result_fp: str


@dataclass(frozen=True, slots=True)
class Failed:
    """A job raised, its engine died, or its result could not be stored."""

    job_id: str
    error: str


@dataclass(frozen=True, slots=True)
class Returned:
    """A dynamic job's function returned; it now waits for its children."""

    job_id: str


@dataclass(frozen=True, slots=True)
class ChildDefined:
    """A running dynamic job defined (or redefined) a child."""

    spec: JobSpec


@dataclass(frozen=True, slots=True)
class Reconsider:
    """The stored record of a queued job changed (another process made it): decide again.
    ``last`` is the job's last outcome as now stored ("done", "failed", "blocked", ...)."""

    job_id: str
    record: RunRecord | None
    last: str | None = None


@dataclass(frozen=True, slots=True)
class ResultLost:
    """The stored result of ``job_id`` is missing or corrupt; ``consumer`` needed it."""

    job_id: str
    consumer: str


Event = Succeeded | Failed | Returned | ChildDefined | Reconsider | ResultLost

# -- actions: what to do (returned by the scheduler) ------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    job_id: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Skip:
    """Up to date: nothing to run. ``restored``: its last run failed or was blocked, and its
    stored result (from an earlier successful run) is up to date again: it is taken back."""

    job_id: str
    restored: bool = False


@dataclass(frozen=True, slots=True)
class Block:
    job_id: str
    by: str  # the failed job that blocks it


@dataclass(frozen=True, slots=True)
class Fail:
    """The scheduler itself fails a job (a child of a dynamic job failed, ...)."""

    job_id: str
    error: str


@dataclass(frozen=True, slots=True)
class Retry:
    """A job failed and may run again (``job_retries``): its ``attempt`` (2, 3, ...) runs
    as soon as it can; ``error`` is the failure of the attempt before."""

    job_id: str
    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class Complete:
    """Every child of a dynamic job is done: resolve its returned value and store it."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Forget:
    """Dynamic children the parent no longer defines (with their own children)."""

    job_ids: tuple[str, ...] = field(default=())


Action = Run | Skip | Block | Fail | Retry | Complete | Forget
