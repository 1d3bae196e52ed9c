"""``parmake --dask``, what comes back from the cluster to the kernel: tasks that started,
tasks that ended (finished, erred, lost with a worker), and the fetcher thread that gathers
finished results, writes their files and makes batches of them durable, so the run loop
never waits for a result's bytes. A mixin of ``DaskRunner`` (dask.py): it uses its state.
"""

from __future__ import annotations

import pickle
import time
from typing import TYPE_CHECKING

from ..dask_worker.task import _unpack
from ..shared.outcomes import (ChildSpec, JobRaised, JobReturned, JobStored, Progress, Requeue,
                               Started, Timing)
from ..store import blobs
from ..store.pickles import loads_value
from ..store.results import INLINE_MAX

if TYPE_CHECKING:
    from .dask import _InFlight

ATTEMPTS = 2              # a job queued on a worker that died is sent again, once


class ComingBack:
    def _on_started(self, key: str, address: str) -> None:
        """On the client's event loop, for every task of this run that starts."""
        self.started[key] = address
        self._started_at(key)
        self._began.append((key, address, time.time()))

    def _on_progress(self, key: str, done: float, total: float, message: str) -> None:
        """On the client's event loop: a running task's job reported how far it is."""
        self._progressed.append((key, done, total, message))

    def _report_progress(self, out: list) -> None:
        """``Progress`` of the tasks still running in Dask (the last report of each)."""
        last = {}
        progressed = self._progressed
        for _ in range(len(progressed)):
            key, done, total, message = progressed.popleft()
            last[key] = (done, total, message)
        for key, (done, total, message) in last.items():
            job_id = self.by_key.get(key)
            if job_id is not None and key in self.started:
                out.append(Progress(job_id, done, total, message))

    def _report_started(self, out: list) -> None:
        """``Started`` for the tasks that began since the last poll (and still run in
        Dask)."""
        began = self._began
        for _ in range(len(began)):
            key, address, at = began.popleft()
            job_id = self.by_key.get(key)
            if job_id is None:
                continue  # ended already, or cancelled
            out.append(Started(job_id, f"worker {address}", at))

    def _ended(self, done: list, out: list) -> None:
        finished = []
        for future in done:
            job_id = self.by_key.pop(future.key, None)
            if job_id is None:
                continue  # cancelled by an interrupt, a drop or a timeout, or sent again
            self._untime(future.key)
            task = self.inflight[job_id]
            if future.status == "finished":
                self.started.pop(task.key, None)
                finished.append(task)
            else:
                del self.inflight[job_id]
                self._failed(task, out)
        if finished:
            with self._cond:
                self._to_fetch.extend(finished)
                if self._fetch_idle:
                    self._fetch_idle = False
                    self._fetcher.submit(self._fetch_all)

    def _failed(self, task: _InFlight, out: list) -> None:
        """The task erred in Dask (its worker died, ...) or was cancelled by someone else.
        A job sent ahead that did not kill its worker is handed back (an input of it was
        lost?): the run loop decides again."""
        future = task.future
        started_on = self.started.pop(task.key, None)
        if future.status == "error":
            exc = future.exception()
            if isinstance(exc, self._KilledWorker):
                worker = getattr(exc.last_worker, "address", None) or str(exc.last_worker)
                self._lost_inputs()
                if started_on is None and (task.ahead or self._send_again(task.job_id)):
                    out.append(Requeue([task.job_id]))  # only queued there: it never ran
                    return
                out.append(JobRaised(task.job_id, f"worker {worker} died while running it: "
                                     f"KilledWorker: {exc}", "", "", "", Timing(engine=worker),
                                     self._consumed(task) if task.ahead else None))
                return
            if task.ahead:
                out.append(Requeue([task.job_id]))
                return
            out.append(JobRaised(task.job_id, f"Dask could not run it: {type(exc).__name__}: "
                                 f"{exc}", _format_tb(exc, future.traceback()), "", "",
                                 Timing(engine=started_on or "dask")))
            return
        # Cancelled, not by us: e.g. an input of it (scattered data) was lost with a worker.
        self._lost_inputs()
        if task.ahead or self._send_again(task.job_id):
            out.append(Requeue([task.job_id]))
        else:
            out.append(JobRaised(task.job_id, "Dask cancelled it (an input was lost with its "
                                 "worker?)", "", "", "", Timing(engine=started_on or "dask")))

    def _send_again(self, job_id: str) -> bool:
        """Whether a job whose task did not run (lost with its worker, cancelled) is sent
        again: once (ATTEMPTS in all). Attempts of job_retries do not count here."""
        resent = self.resent.get(job_id, 0)
        if resent >= ATTEMPTS - 1:
            return False
        self.resent[job_id] = resent + 1
        return True

    def _fetch_all(self) -> None:
        """The fetcher thread: everything that ended meanwhile, in one gather each time."""
        while True:
            with self._cond:
                tasks = list(self._to_fetch)
                self._to_fetch.clear()
                if not tasks or self._stopped:
                    self._fetch_idle = True
                    return
            try:
                self._fetch(tasks)
            except BaseException:
                with self._cond:
                    self._fetch_idle = True
                raise

    def _fetch(self, tasks: list[_InFlight]) -> None:
        """Gather results, write their files, make the batch durable."""
        try:
            results = self.client.gather([t.future for t in tasks])
        except Exception:  # noqa: BLE001 - one of them was lost meanwhile: one at a time
            results = []
            for task in tasks:
                try:
                    results.append(task.future.result())
                except Exception as exc:  # noqa: BLE001
                    results.append(("raised", f"its result was lost on the cluster: "
                                    f"{type(exc).__name__}: {exc}", "", "", "",
                                    (0.0, 0.0, 0.0, 0.0, "dask", 0, 0)))
        written = []
        for task, result in zip(tasks, results):
            if self._stopped:
                return
            item = self._outcomes(task, result)
            if _file_of(item):
                written.append((task.job_id, _file_of(item)))
            with self._cond:
                self._fetched.append(item)
                self._cond.notify()
        if not written:
            return
        try:
            if self.durable:
                blobs.make_durable(self.results_dir, [name for _, name in written])
        finally:
            with self._cond:
                self._synced.extend(job_id for job_id, _ in written)
                self._cond.notify()

    def _outcomes(self, task: _InFlight, result: tuple) -> tuple:
        """(task, outcomes, checksum of a stored result or "", its size)."""
        job_id = task.job_id
        if isinstance(result, bytes):
            result = _unpack(result)
        kind = result[0]
        if kind == "dynamic":
            _, template, children, stdout, stderr, timing, stamps = result
            outcomes = [ChildSpec(pickle.loads(body), blob, data, sources)
                        for body, blob, data, sources in children]
            outcomes.append(JobReturned(job_id, loads_value(template), stdout, stderr,
                                        _timing(timing), stamps))
            return task, outcomes, "", 0
        if kind != "ok":
            _, error, tb, stdout, stderr, timing = result
            return task, [JobRaised(job_id, error, tb, stdout, stderr, _timing(timing))], \
                "", 0
        _, data, result_fp, worker_sum, stdout, stderr, timing, stamps = result
        timing = _timing(timing)
        sum_ = blobs.checksum(data)
        if sum_ != worker_sum:
            return task, [JobRaised(job_id, "its result was damaged on its way from the worker "
                                    "(checksum mismatch)", "", stdout, stderr, timing)], "", 0
        if len(data) <= INLINE_MAX:  # a row of the store's database, which the store writes
            return task, [JobStored(job_id, result_fp, "", sum_, (0, 0), timing, stdout, stderr,
                                    data, files=stamps)], sum_, len(data)
        name = blobs.file_name(job_id, sum_)
        try:
            stamp = blobs.write_atomic(self.results_dir, name, data, durable=False)
        except OSError as exc:
            return task, [JobRaised(job_id, f"could not store the result: {exc}", "", stdout,
                                    stderr, timing)], "", 0
        return task, [JobStored(job_id, result_fp, name, sum_, stamp, timing, stdout, stderr,
                                files=stamps)], sum_, len(data)

    def _lost_inputs(self) -> None:
        """A worker died: results and functions it held are gone from the cluster. Let
        Dask forget them rather than compute them again; dependents get the stored files."""
        self.held.clear()
        self.functions.clear()


def _timing(timing: tuple) -> Timing:
    """A task's (started, ended, duration, cpu, worker, thread, peak memory)."""
    started, ended, duration, cpu, where, _, peak = timing
    return Timing(started, ended, duration, cpu, where, peak)


def _file_of(item: tuple) -> str:
    """The result file a fetched task's outcome wrote ("" for none: failed, dynamic, or a
    small result the store keeps as a row)."""
    return item[1][0].file if item[2] else ""


def _format_tb(exc: BaseException, tb) -> str:
    import traceback

    try:
        return "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:  # noqa: BLE001
        return ""
