"""Runs jobs one at a time in the calling process (``make`` and ``debug``)."""

from __future__ import annotations

import time
from collections import deque

from ..shared.call import run_call
from ..shared.outcomes import Call, Outcome, Started
from .runner import Capabilities


class InKernelRunner:
    """The serial runner: ``poll`` reports the next submitted job started, and the next
    ``poll`` runs it to completion (so views show it running while it runs)."""

    capabilities = Capabilities(remote=False, runs_ahead=False, holds_values=False,
                                stops_running_jobs=True)
    capacity = 1

    def __init__(self, echo: bool = False):
        self.echo = echo
        self._queue: deque[Call] = deque()
        self._started = False  # the job at the head of the queue was reported started
        # What the job reports with nbmake_ext.progress, told at once (the run loop does
        # not turn while the job runs here): set by the run loop (Driver).
        self.on_progress = None

    def attach(self) -> None:
        pass

    def detach(self) -> None:
        pass

    def send_ahead(self, job, place, behind) -> None:
        raise NotImplementedError("the kernel runs no job ahead")  # runs_ahead is False

    def drop(self, job_ids: list[str]) -> None:
        pass

    def listen_progress(self, tell) -> None:
        self.on_progress = tell  # called from within the job (shared/progress.py)

    def place_of(self, job_id: str) -> None:
        return None

    def ended_before_interrupt(self) -> list[Outcome]:
        return []  # a job ends within ``poll``: its outcome is never left behind

    def has_capacity(self) -> bool:
        return not self._queue

    def free_slots(self) -> int:
        return 0 if self._queue else 1

    def submit(self, job: Call) -> None:
        self._queue.append(job)

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    def poll(self, timeout: float) -> list[Outcome]:
        if not self._queue:
            if timeout:
                time.sleep(min(timeout, 0.05))
            return []
        call = self._queue[0]
        if not self._started:
            self._started = True
            return [Started(call.job_id, "kernel", time.time())]
        children: list[Outcome] = []
        outcomes = run_call(call, children.append, self.echo, progress=self.on_progress,
                            progress_later=True)
        self._queue.popleft()
        self._started = False
        return children + outcomes

    def interrupt(self) -> list[str]:
        """Jobs that were running and go back to their earlier state."""
        ids = [c.job_id for c in self._queue]
        self._queue.clear()
        self._started = False
        return ids

    def close(self) -> None:
        pass
