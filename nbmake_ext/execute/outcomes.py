"""What a runner reports back to the driver (in the kernel, from engines, from Dask)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.jobspec import JobSpec


@dataclass(slots=True)
class Call:
    """Everything needed to run one job, dependencies already resolved to values."""

    job_id: str
    func: Any
    args: tuple
    kwargs: dict
    dynamic: bool


@dataclass(slots=True)
class Timing:
    started: float = 0.0
    ended: float = 0.0
    duration: float = 0.0
    cpu: float = 0.0
    engine: str = "kernel"

    def as_dict(self, reasons: tuple[str, ...] = ()) -> dict:
        return {"started": self.started, "ended": self.ended, "duration": self.duration,
                "cpu": self.cpu, "engine": self.engine, "reasons": reasons}


@dataclass(slots=True)
class JobReturned:
    """The function returned ``value`` (for a dynamic job: a template that may hold
    promises of its children)."""

    job_id: str
    value: Any
    stdout: str = ""
    stderr: str = ""
    timing: Timing = field(default_factory=Timing)


@dataclass(slots=True)
class JobRaised:
    job_id: str
    error: str           # one line: "ValueError: bad input"
    traceback: str       # the job's own frames only
    stdout: str = ""
    stderr: str = ""
    timing: Timing = field(default_factory=Timing)


@dataclass(slots=True)
class ChildSpec:
    """A running dynamic job defined a child."""

    spec: JobSpec
    func_blob: bytes | None = None
    payload: bytes | None = None
    sources: bytes = b"{}"  # (from an engine) registration.function_sources of its function


Outcome = JobReturned | JobRaised | ChildSpec
