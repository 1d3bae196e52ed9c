"""What a runner is given (a job) and what it reports back to the driver (in the kernel,
from engines, from Dask): one type per kind, shared by every runner."""

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
    timeout: float | None = None  # seconds (job_timeout)
    env: dict[str, str] | None = None  # set while it runs (the GPUs it holds)
    files: tuple[tuple[str, ...], tuple[str, ...]] | None = None  # (inputs, outputs)


@dataclass(slots=True)
class Timing:
    started: float = 0.0
    ended: float = 0.0
    duration: float = 0.0
    cpu: float = 0.0
    engine: str = "kernel"
    peak_rss: int = 0  # bytes: the most resident memory its process had while it ran

    def as_dict(self, reasons: tuple[str, ...] = ()) -> dict:
        return {"started": self.started, "ended": self.ended, "duration": self.duration,
                "cpu": self.cpu, "engine": self.engine, "reasons": reasons,
                "peak_rss": self.peak_rss}


@dataclass(slots=True)
class JobReturned:
    """The function returned ``value`` (for a dynamic job: a template that may hold
    promises of its children)."""

    job_id: str
    value: Any
    stdout: str = ""
    stderr: str = ""
    timing: Timing = field(default_factory=Timing)
    files: dict[str, list] | None = None  # its outputs' stamps (files/fingerprints.py)


@dataclass(slots=True)
class JobRaised:
    job_id: str
    error: str           # one line: "ValueError: bad input"
    traceback: str       # the job's own frames only
    stdout: str = ""
    stderr: str = ""
    timing: Timing = field(default_factory=Timing)
    consumed: dict[str, str] | None = None  # (sent ahead) checksums of the inputs it took


@dataclass(slots=True)
class ChildSpec:
    """A running dynamic job defined a child."""

    spec: JobSpec
    func_blob: bytes | None = None
    payload: bytes | None = None
    sources: bytes = b"{}"  # (from an engine) registration.function_sources of its function


@dataclass(slots=True)
class Started:
    """The job began executing (not merely handed over or queued): only now is it
    ``running`` to the views. ``where``: the kernel, an engine, a Dask worker; ``at``: when
    (time.time())."""

    job_id: str
    where: str
    at: float


@dataclass(slots=True)
class Progress:
    """A running job said how far it is (``nbmake_ext.progress``): ``done`` of ``total``."""

    job_id: str
    done: float
    total: float
    message: str = ""


@dataclass(slots=True)
class RemoteJob:
    """A job as it travels: bytes and where its dependencies' results are."""

    job_id: str
    func_key: str
    func_blob: bytes
    payload: bytes
    deps: dict[str, tuple[str, str]]   # dependency -> (result file, checksum)
    dynamic: bool
    inline: dict[str, bytes] = field(default_factory=dict)  # results not in a file yet
    sources: bytes = b"{}"   # json {file: text}: the function's code only the kernel has
    after: tuple[str, ...] = ()  # (sent ahead) inputs its engine makes just before it
    timeout: float | None = None  # seconds (job_timeout)
    env: dict[str, str] | None = None  # set while it runs (the GPUs it holds)
    resources: dict[str, float] | None = None  # what it holds while it runs (job_resources)
    files: tuple[tuple[str, ...], tuple[str, ...]] | None = None  # (inputs, outputs)


# A job as the kernel sends it to an engine (``jobs``, kernel/pool.py, engine/main.py): a
# list. Its fields, in order: the job, its function's key, whether it is dynamic, its
# inputs' places {dep: [file, checksum]}, the inputs whose results travel along (``inline``),
# those it takes from its engine's memory (``after``; or None), its time limit, environment
# and files [inputs, outputs] (or None each). The engine adds what it took of its ``after``
# inputs (JOB_CONSUMED).
(JOB_ID, JOB_FUNC, JOB_DYNAMIC, JOB_DEPS, JOB_INLINE, JOB_AFTER, JOB_TIMEOUT, JOB_ENV,
 JOB_FILES, JOB_CONSUMED) = range(10)


@dataclass(slots=True)
class JobStored:
    """An engine made a result: a small one is ``data`` (the kernel stores it), a large
    one is in ``file`` (readable now; durable once ``Durable`` names it)."""

    job_id: str
    result_fp: str
    file: str                # "" when the result is ``data``
    checksum: str
    stamp: tuple[int, int]   # size, mtime in ns
    timing: Timing
    stdout: str = ""
    stderr: str = ""
    data: bytes | None = None
    consumed: dict[str, str] | None = None  # (sent ahead) checksums of the inputs it took
    files: dict[str, list] | None = None  # its outputs' stamps (files/fingerprints.py)


# The META of an engine's ``done`` message (engine/main.py): a list, not a dict, as
# thousands travel a second. Its fields, in order: the job, its result's fingerprint, its
# checksum, its timing (``Timing``'s fields in order), the jobs whose files are now durable,
# its result's file ("" when the result travels as DATA) and that file's stamp (or None),
# its outputs' stamps (or None), the checksums of the inputs it took (sent ahead; or None).
(DONE_JOB, DONE_RESULT_FP, DONE_CHECKSUM, DONE_TIMING, DONE_DURABLE, DONE_FILE, DONE_STAMP,
 DONE_FILES, DONE_CONSUMED) = range(9)


def done_meta(job_id: str, result_fp: str, checksum: str, t: Timing, durable: list[str],
              files: dict | None = None, consumed: dict | None = None) -> list:
    """The META of a ``done`` message, its result travelling as DATA (else the engine sets
    DONE_FILE and DONE_STAMP)."""
    return [job_id, result_fp, checksum,
            [t.started, t.ended, t.duration, t.cpu, t.engine, t.peak_rss],
            durable, "", None, files, consumed]


@dataclass(slots=True)
class Durable:
    job_ids: list[str]


@dataclass(slots=True)
class Requeue:
    """Jobs sent to an engine that died before starting them: they did not run."""

    job_ids: list[str]


@dataclass(slots=True)
class DependencyLost:
    job_id: str
    dependency: str
    why: str


Outcome = JobReturned | JobRaised | ChildSpec | Started | JobStored | Durable | Requeue \
    | DependencyLost | Progress
