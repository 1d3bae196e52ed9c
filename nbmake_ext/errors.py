"""One exception tree for everything nbmake_ext raises at users.

Errors that reach a notebook render themselves short (``_render_traceback_``): a one-line
summary and, for failed jobs, the job's own traceback, never the library's frames. The
exception is InternalError, a bug of nbmake_ext: its whole traceback is what a report needs.
"""

from __future__ import annotations


class NbmakeError(Exception):
    """Base class of every error nbmake_ext raises."""

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing our internal frames.
        return [f"{type(self).__name__}: {self}"]


class InvalidJob(NbmakeError):
    """A job definition is wrong (not callable, unpicklable argument, cycle, ...).

    Raised at registration, before anything is recorded, so nothing computed is lost.
    """

    def __init__(self, job: str, culprit: str):
        self.job = job
        self.culprit = culprit
        super().__init__(f"job {job!r}: {culprit}")


class UnknownTarget(NbmakeError):
    """A job id or a glob matched no job (a state word that matches none selects none)."""


class BadUsage(NbmakeError, ValueError):
    """A command was given a value it cannot take (``parmake 0``); nothing ran."""


class StoreError(NbmakeError):
    """The store cannot be opened or written."""


class NotDone(NbmakeError):
    """The job has no up-to-date result yet."""


class JobFailed(NbmakeError):
    """Reading the result of a job whose last run failed."""

    def __init__(self, job_id: str, error: str, traceback: str = ""):
        self.job_id = job_id
        self.error = error
        self.traceback = traceback
        super().__init__(f"job {job_id!r} failed: {error}")

    def _render_traceback_(self) -> list[str]:
        lines = [f"JobFailed: job {self.job_id!r} failed: {self.error}"]
        if self.traceback:
            lines += ["", *self.traceback.rstrip("\n").splitlines()]
        return lines


class JobsFailed(NbmakeError):
    """A make ended with targets failed or blocked.

    ``failed`` maps job id -> error line; ``blocked`` maps job id -> the failed job that
    blocks it; ``tracebacks`` maps failed job id -> the job's own traceback text.
    """

    def __init__(
        self,
        failed: dict[str, str],
        blocked: dict[str, str],
        tracebacks: dict[str, str] | None = None,
    ):
        self.failed = dict(failed)
        self.blocked = dict(blocked)
        self.tracebacks = dict(tracebacks or {})
        parts = []
        if failed:
            parts.append(f"{len(failed)} failed: {_preview(failed)}")
        if blocked:
            parts.append(f"{len(blocked)} blocked: {_preview(blocked)}")
        super().__init__("; ".join(parts) or "jobs failed")

    def _render_traceback_(self) -> list[str]:
        lines = [f"JobsFailed: {self}"]
        for job_id, error in list(self.failed.items())[:3]:
            lines += ["", f"--- {job_id}: {error}"]
            tb = self.tracebacks.get(job_id, "")
            if tb:
                lines += tb.rstrip("\n").splitlines()
        if len(self.failed) > 3:
            lines += ["", f"... and {len(self.failed) - 3} more failed jobs (see `ls failed`)"]
        return lines


class InternalError(NbmakeError):
    """nbmake_ext broke one of its own invariants: this is a bug, please report it.

    Unlike the errors of users, it renders with its whole traceback (nbmake_ext's own
    frames are what a report needs), and says it is a bug to report.
    """

    NOTE = "this is a bug in nbmake_ext, not in your jobs: please report it with this traceback"

    def __init__(self, message: str):
        self.message = message
        super().__init__(f"{message} ({self.NOTE})")

    def _render_traceback_(self) -> list[str]:
        import traceback

        text = "".join(traceback.format_exception(type(self), self, self.__traceback__))
        return text.rstrip("\n").splitlines()


def _preview(ids: dict[str, str], n: int = 5) -> str:
    names = list(ids)
    text = ", ".join(names[:n])
    return text + (f", ... (+{len(names) - n})" if len(names) > n else "")
