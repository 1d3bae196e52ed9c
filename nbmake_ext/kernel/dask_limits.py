"""``parmake --dask``, job options on the kernel's side (SPEC 5, "Job options"): time limits
of tasks that do not stop, and resources that no worker offers. A mixin of ``DaskRunner``
(dask.py): it uses its state.

- ``job_timeout``: the worker runs the job under its time limit (shared/limits.py: an
  asynchronous exception in the worker's thread), which reports "timed out after N s" as
  the other runners do. A job that never returns to Python (a C call) is not stopped by
  it, and Dask cannot stop a running task: the kernel fails such a job GRACE seconds past
  its timeout, counted from its task's start (the "started" event; a task whose start the
  kernel has not heard of is looked for on the workers), cancels the task and drops its
  late result. A task queued in Dask has not started: its time does not run.
- ``job_resources``: the task's Dask worker resources (amounts of 0 are no constraint). Dask
  shares them out per worker, as the workers declare them (``dask worker --resources
  "gpus=1"``); a job that no worker of the cluster could ever run (a name no worker
  offers, more than the most one offers) fails at once rather than waiting for ever.
"""

from __future__ import annotations

import heapq
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Mapping

from ..core.options import format_amount
from ..dask_worker.task import running_for
from ..shared.limits import timed_out_message
from ..shared.outcomes import JobRaised, RemoteJob, Timing

if TYPE_CHECKING:
    from .dask import _InFlight

GRACE = 0.25        # seconds past a timeout before the kernel fails the job (its worker's
                    # own limit reports first when it can)
ASK_EVERY = 2.0     # seconds between looks on the workers for tasks not known to have started
SWEEP_EVERY = 0.1   # ... and between looks at which of those the kernel heard of meanwhile
OFFERS_FRESH = 0.5  # a job that no worker seems to fit is checked against offers this recent


class DaskLimits:
    def _init_limits(self) -> None:
        self._timed: dict[str, _InFlight] = {}   # key -> task with a timeout, while in Dask
        self._deadlines: list[tuple[float, str]] = []  # (monotonic time to look, key): a heap
        self._began_at: dict[str, float] = {}    # key -> when it started (time.monotonic())
        self._unsure: set[str] = set()           # past their timeout since sent; start unknown
        self._asked_at = -ASK_EVERY
        self._swept_at = -SWEEP_EVERY
        self._asks: dict[str, dict[str, float]] = {}  # key -> resources, until sent
        self._offers: list[dict[str, float]] | None = None  # each worker's resources
        self._offers_at = -OFFERS_FRESH

    # -- timeouts -------------------------------------------------------------------------

    def _timing_sent(self, tasks: list[_InFlight]) -> None:
        """These tasks go to Dask now: their time limits are watched (before they can start:
        the client's loop records starts of tasks that are in ``_timed``)."""
        now = time.monotonic()
        for task in tasks:
            if task.timeout:
                task.sent = now
                self._timed[task.key] = task
                heapq.heappush(self._deadlines, (now + task.timeout + GRACE, task.key))

    def _started_at(self, key: str) -> None:
        """On the client's event loop: a task started."""
        if key in self._timed:
            self._began_at.setdefault(key, time.monotonic())

    def _untime(self, key: str) -> None:
        """The task left Dask (ended, dropped, cancelled)."""
        if self._timed.pop(key, None) is not None:
            self._began_at.pop(key, None)
            self._unsure.discard(key)
            heap = self._deadlines
            if len(heap) > 2 * len(self._timed) + 64:  # mostly stale entries (in place:
                heap[:] = [d for d in heap if d[1] in self._timed]  # it may be looped over)
                heapq.heapify(heap)

    def _forget_limits(self) -> None:
        self._timed.clear()
        self._deadlines.clear()
        self._began_at.clear()
        self._unsure.clear()
        self._asks.clear()

    def _check_deadlines(self, out: list) -> None:
        """Fail the jobs whose tasks have run GRACE past their timeout (the worker's limit
        did not stop them), cancel their tasks; their late results are dropped."""
        if not self._timed:
            return
        now = time.monotonic()
        heap, late = self._deadlines, []
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            task = self._timed.get(key)
            if task is None:
                continue
            if key not in self.by_key:
                self._untime(key)
                continue
            start = self._began_at.get(key)
            if start is None:  # queued in Dask, or its start was not heard of
                self._unsure.add(key)
                continue
            due = start + task.timeout + GRACE
            if due > now:
                heapq.heappush(heap, (due, key))
                continue
            late.append(self._timed_out(task, start, now))
        if self._unsure and now - self._swept_at >= SWEEP_EVERY:
            self._swept_at = now
            self._look_for_starts(now)
        if late:
            out.extend(outcome for _, outcome in late)
            try:
                self.client.cancel([future for future, _ in late if future is not None])
            except Exception:  # noqa: BLE001 - their results are dropped anyway
                pass

    def _timed_out(self, task: _InFlight, start: float, now: float) -> tuple:
        """(its future, its outcome): it is no longer this run's."""
        key = task.key
        del self.by_key[key]
        self._untime(key)
        worker = self.started.pop(key, None)
        if self.inflight.get(task.job_id) is task:
            del self.inflight[task.job_id]
        ran = now - start
        ended = time.time()
        return task.future, JobRaised(
            task.job_id, timed_out_message(task.timeout), "", "", "",
            Timing(started=ended - ran, ended=ended, duration=ran, engine=worker or "dask"),
            self._consumed(task) if task.ahead else None)

    def _look_for_starts(self, now: float) -> None:
        """Tasks past their timeout counted from when they were sent, whose start the kernel
        has not heard of: most are queued in Dask (their time does not run), but a start
        event may have been lost. Every ASK_EVERY seconds the workers say which of them run,
        and for how long."""
        for key in list(self._unsure):
            task = self._timed.get(key)
            if task is None or key not in self.by_key:
                self._untime(key)
                self._unsure.discard(key)
                continue
            start = self._began_at.get(key)
            if start is not None:
                self._unsure.discard(key)
                heapq.heappush(self._deadlines, (start + task.timeout + GRACE, key))
        if not self._unsure or now - self._asked_at < ASK_EVERY:
            return
        self._asked_at = now
        try:
            found = self.client.run(running_for)
        except Exception:  # noqa: BLE001 - asked again later
            return
        now = time.monotonic()
        for worker, ran in found.items():
            for key, seconds in (ran or {}).items():
                task = self._timed.get(key)
                if task is None or key not in self._unsure:
                    continue  # (a task of another run, or known already)
                self._unsure.discard(key)
                start = self._began_at.setdefault(key, now - seconds)
                if key not in self.started:  # (its Started, for the views)
                    self.started[key] = worker
                    self._began.append((key, worker, time.time() - seconds))
                heapq.heappush(self._deadlines, (start + task.timeout + GRACE, key))

    # -- resources ------------------------------------------------------------------------

    def _ask(self, key: str, job: RemoteJob) -> None:
        """The job's resources go with its task."""
        need = _needs(job.resources)
        if need:
            self._asks[key] = need

    def _resources_of(self, keys) -> dict:
        """``resources=`` for ``Client.get`` of a graph of these keys: per task (Dask calls a
        callable annotation with each key, on the scheduler: a builtin, so the scheduler
        needs nothing of nbmake_ext), or nothing if none of them asks."""
        asks = {k: self._asks.pop(k) for k in keys if k in self._asks}
        if not asks:
            return {}
        return {"resources": defaultdict(dict, asks).__getitem__}

    def _cannot_place(self, job: RemoteJob) -> str | None:
        """Why no worker of the cluster could ever run this job (its resources), or None."""
        need = _needs(job.resources)
        if not need:
            return None
        why = cannot_place(need, self._offered())
        if why is not None and time.monotonic() - self._offers_at > OFFERS_FRESH:
            why = cannot_place(need, self._offered(fresh=True))  # a worker may have joined
        return why

    def _offered(self, fresh: bool = False) -> list[dict[str, float]] | None:
        """The resources each worker of the cluster declares (None: not known)."""
        now = time.monotonic()
        if fresh or self._offers is None or now - self._offers_at > 2.0:
            try:
                workers = self.client.scheduler_info()["workers"]
                self._offers = [dict(w.get("resources") or {}) for w in workers.values()]
                self._offers_at = now
            except Exception:  # noqa: BLE001 - keep what was known
                pass
        return self._offers


def _needs(resources: Mapping[str, float] | None) -> dict[str, float]:
    """What a task asks of Dask: amounts of 0 ask nothing (Dask would still want a worker
    that declares the name)."""
    return {n: a for n, a in (resources or {}).items() if a > 0}


def _words(amounts: Mapping[str, float]) -> str:
    return ", ".join(f"{n}={format_amount(n, a)}" for n, a in sorted(amounts.items()))


def cannot_place(need: Mapping[str, float], offers: list[Mapping[str, float]] | None) -> str | None:
    """Why no worker among ``offers`` (each worker's resources) could run a task that asks
    ``need``, or None if one could (or no worker is known: the cluster may be starting)."""
    if not offers or not need:
        return None
    if any(all(o.get(n, 0) >= a for n, a in need.items()) for o in offers):
        return None
    ask = _words(need)
    missing = [name for name in sorted(need) if not any(name in o for o in offers)]
    if missing:
        declare = ",".join(f"{name}={_plain(need[name])}" for name in missing)
        return (f"it asks for {ask}, but no Dask worker offers {' or '.join(missing)} (workers "
                f"declare resources: dask worker --resources \"{declare}\")")
    for name, amount in sorted(need.items()):
        most = max(o[name] for o in offers if name in o)
        if most < amount:
            return (f"it asks for {ask}, more than any Dask worker offers (at most "
                    f"{name}={format_amount(name, most)})")
    offered = "; ".join(sorted({_words(o) for o in offers if o}))
    return f"it asks for {ask}, but no one Dask worker offers all of it (workers offer {offered})"


def _plain(amount: float) -> str:
    """An amount as a command line takes it (bytes of memory as a whole number)."""
    return str(int(amount)) if float(amount).is_integer() else f"{amount:g}"
