"""``parmake --dask``: the same jobs as tasks of a Dask distributed cluster.

The driver, the scheduler of the core and the store are those of local engines: this
module is only a runner (``remote = True``: it receives each job as a RemoteJob, bytes and
the places of its dependencies' results in the kernel's store) that turns jobs into Dask
tasks and finished tasks into the outcomes engines report.

- The kernel decides what runs (the core's scheduler); Dask decides where and when, and
  moves data. A job is submitted once the core says it must run, or earlier, sent ahead
  (the run loop decides which: core/ahead.py; the place is the cluster, ``place_of`` a
  task of this run): Dask chains it to its inputs' tasks, so a chain does not wait for
  the kernel between links; its outcome says which results it took (``consumed``), and a
  task that sees a failed input does not run the job. The tasks queued between two polls
  go to the scheduler as one graph. A dependency made in this run is passed as the Dask future of
  its task, so its bytes go from worker to worker (or stay on one); a dependency from an
  earlier run is read from the kernel's store and sent along (scattered once if large).
  Workers never read the kernel's files.
- A task returns the pickled result (and its fingerprint, computed on the worker), all
  of its outcome in one bytes object (Dask would serialize each item of a tuple apart).
  A small result goes to the store as a row (``JobStored`` with its data); the kernel
  writes a large one's file itself and flushes batches of them to disk in a background
  thread (``Durable``), like engines do.
- A dynamic job's children travel back with its result (``ChildSpec`` outcomes before its
  ``JobReturned`` template), so the core always knows a child before its parent's value.
- Each task key is ``<job id>-<run nonce>-<n>``: unique per run and attempt, so Dask never
  shares a task between runs or attempts (and the dashboard groups tasks by function).
- Each task announces that it started (event topic ``nbmake-started``, one for all runs,
  so the scheduler's bounded event log does not grow with them). A worker that dies while
  a job runs makes it ``failed`` ("worker tcp://... died while running it: KilledWorker");
  a job that was only queued on that worker (never started) is sent again, once. (The
  cluster should not retry tasks itself: ``distributed.scheduler.allowed-failures: 0``;
  a warning says so otherwise.)
- How many jobs are in Dask at once (sent ahead or not): ``n`` if given, else 64 per
  worker thread of the cluster, at least 256; Dask queues them and places them as
  workers free up. What the driver hands over while Dask has most of that window queued
  waits to go in one graph with more (each graph costs the scheduler an update), and
  while Dask has a backlog the run loop takes finished tasks in batches (every 50 ms)
  rather than waking for each one.
- An interrupt cancels every task Dask can cancel; a task already running cannot be
  stopped by Dask: it is named, runs to its end on its worker, and its result is dropped.
- When a worker dies, the results it held are let go of (dependents then get them from
  the store); a result Dask still needed for a task already sent is computed again by Dask.
- Job options (dask_limits.py): a job runs under its timeout on its worker, and the kernel
  fails a task that runs past it (Dask cannot stop it: it is cancelled, its late result
  dropped); a job's resources are its task's worker resources, and a job that no worker
  could run fails at once; each job's peak memory is measured on its worker.

What a task runs on a worker is in nbmake_ext/dask_worker/task.py. Here: the runner and
what it sends; dask_fetch.py what comes back (the fetcher thread); dask_limits.py job
options; dask_cluster.py connecting to the cluster and the "started" event topic.
"""

from __future__ import annotations

import logging
import os
import pickle
import secrets
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dask_worker.task import _task
from ..shared.outcomes import (DependencyLost, Durable, JobRaised, JobStored, RemoteJob,
                               Requeue, Timing)
from ..shared.values_cache import ByteLRU
from ..store import blobs
from ..store.results import ResultReader
from .dask_cluster import (TOPIC, connect, import_distributed, listen, stop_listening,
                           warn_if_tasks_run_again)
from .dask_fetch import ComingBack, _file_of
from .dask_limits import DaskLimits
from .runner import Capabilities

logger = logging.getLogger(__name__)
PER_THREAD = 64           # jobs in Dask at once per worker thread (Dask queues them) ...
MIN_WINDOW = 256          # ... and at least this many
SEND_AS_DATA = 1 << 20    # inputs (results, payloads, functions) this large are scattered
HOLD_BYTES = 2 << 30      # results kept on the cluster for their dependents (then: the store)
REFRESH = 2.0             # seconds between looks at the cluster's size
COALESCE = 0.05           # seconds the run loop sleeps while Dask has a backlog
QUIET = 30.0              # seconds without an ended task before the futures are looked at



@dataclass(slots=True)
class _InFlight:
    job_id: str
    key: str
    future: Any
    dynamic: bool
    ahead: bool = False     # sent ahead (before the core decided it)
    made: tuple = ()        # (sent ahead) inputs from tasks of this run: (dep, its task's key)
    timeout: float | None = None  # job_timeout
    sent: float = 0.0       # (with a timeout) when it went to Dask (time.monotonic())


class DaskRunner(ComingBack, DaskLimits):
    """A runner for the driver on a Dask cluster (``parmake --dask``).

    Threads: the caller's (the driver's loop) submits and turns ended tasks into outcomes;
    the client's event loop says which tasks ended (``as_completed``) and which started
    (the event topic); one fetcher thread gathers finished results from the cluster, writes
    their files and flushes batches of them to disk, so the driver's loop never waits for
    a result's bytes.
    """

    capabilities = Capabilities(remote=True, runs_ahead=True, holds_values=True,
                                stops_running_jobs=False, ahead_per_place=1 << 30,
                                ahead_takes_slots=True)

    def __init__(self, dask: Any, store_path: str | os.PathLike, n: int | None = None, *,
                 durable: bool = True, hold_bytes: int = HOLD_BYTES):
        distributed = import_distributed()
        self._KilledWorker = distributed.KilledWorker
        from dask.task_spec import List, Task, TaskRef
        self._Task, self._TaskRef, self._List = Task, TaskRef, List
        self.client, self._own_client = connect(dask, distributed)
        self.results_dir = Path(store_path) / "results"
        self.reader = ResultReader(store_path)
        self.n = n if n and n > 0 else None
        self.durable = durable
        self.nonce = secrets.token_hex(5)
        self.topic = TOPIC
        self.inflight: dict[str, _InFlight] = {}  # sent, outcome not reported yet
        self.by_key: dict[str, str] = {}          # key -> job id, until the task ends in Dask
        self._made: dict[str, tuple[str, str]] = {}  # job -> key, checksum: result reported
        self.started: dict[str, str] = {}         # key -> worker (set on the client's loop)
        self._began: deque = deque()              # (key, worker, when): started, to report
        self._progressed: deque = deque()         # (key, done, total, message), to report
        self.resent: dict[str, int] = {}          # job -> times sent again (see dask_fetch)
        # Futures of results made in this run, kept so dependents get them from the
        # cluster: job id -> (future, checksum); beyond the budget, the stored file's bytes.
        self.held = ByteLRU(hold_bytes, largest=hold_bytes)
        self.functions: dict[str, Any] = {}       # func key -> future of a large function blob
        self.outbox: list = []
        self._queued: list[tuple] = []            # tasks not handed to Dask yet
        self._ahead_queued = False                # ... among them, jobs sent ahead
        self._count = 0
        self._threads = 0
        self._threads_at = -REFRESH
        self._unsynced: set[str] = set()          # reported stored, not durable yet
        self._stopped = False
        self._progress = time.monotonic()         # when a task last ended (or was sent)
        # Tasks that ended (or were cancelled), as the client's loop sees them; its
        # condition is also the one the fetcher thread notifies.
        self.ended = distributed.as_completed(loop=self.client.loop)
        self._cond = self.ended.thread_condition
        self._to_fetch: list = []                 # ended in Dask, to gather
        self._fetch_idle = True                   # no _fetch_all running or queued
        self._fetched: deque = deque()            # (task, outcomes, checksum, size)
        self._synced: deque = deque()             # job ids whose result files are on disk
        self._fetcher = ThreadPoolExecutor(1, thread_name_prefix="nbmake-dask-fetch")
        self._init_limits()
        try:
            listen(self.client, self.nonce, self._on_started, self._on_progress)
        except Exception:
            self.close()
            raise
        warn_if_tasks_run_again(self.client)

    def __repr__(self) -> str:
        return f"<DaskRunner {self.client.scheduler.address} in flight={len(self.inflight)}>"

    # -- the runner interface -------------------------------------------------------------

    def attach(self) -> None:
        pass

    def listen_progress(self, tell) -> None:
        pass  # reported from poll, as Progress outcomes

    def detach(self) -> None:
        """Nothing to do: the runner lives for one run."""

    def ended_before_interrupt(self) -> list:
        return []  # what ended before an interrupt is dropped with its task (see interrupt)

    def free_slots(self) -> int:
        # A task that ended in Dask frees its slot at once; its result is fetched meanwhile.
        return max(0, self._limit() - len(self.by_key))

    def has_capacity(self) -> bool:
        return self.free_slots() > 0

    @property
    def busy(self) -> bool:
        return bool(self.inflight or self.outbox or self._unsynced)

    def submit(self, job: RemoteJob) -> None:
        """Queue the job's task; queued tasks go to Dask together at the next ``poll``
        (one message to the scheduler for many tasks). A job that no worker could run (its
        resources) fails at once."""
        why = self._cannot_place(job)
        if why is not None:
            self.outbox.append(JobRaised(job.job_id, why, "", "", "", Timing(engine="dask")))
            return
        try:
            inputs = [self._stored_input(dep, where, job.inline.get(dep))
                      for dep, where in job.deps.items()]
        except (OSError, blobs.CorruptResult) as exc:
            self.outbox.append(DependencyLost(
                job.job_id, exc.dep, f"the result of {exc.dep!r} is unreadable: {exc}"))
            return
        self._queue(job, inputs)

    def _stored_input(self, dep: str, where: tuple[str, str], data: bytes | None) -> tuple:
        """(dep, its result as a task input, checksum), from this run's futures, ``data``
        (a result the store has not written yet) or the store. Raises (the error naming
        ``dep``) if it is unreadable."""
        name, checksum = where
        found, item = self.held.get(dep)
        future = item[0] if found and item[1] == checksum else None
        if future is None:
            try:
                if data is None:
                    data = self.reader.read(dep, name, checksum)
            except (OSError, blobs.CorruptResult) as exc:
                exc.dep = dep
                raise
            future = self._as_input(data)
            if future is not data:
                self.held.put(dep, (future, checksum), len(data))
        return dep, future, checksum

    def _queue(self, job: RemoteJob, inputs: list[tuple], ahead: bool = False) -> None:
        """``inputs``: (dependency, its result as bytes, a future or the key of a task
        queued with this one, its checksum or "" when not known yet)."""
        func = self.functions.get(job.func_key)
        if func is None:
            # With the lines of its notebook cells, so that its tracebacks show them.
            bundle = pickle.dumps((job.func_blob, job.sources), protocol=pickle.HIGHEST_PROTOCOL)
            func = self._as_input(bundle)
            if func is not bundle:
                self.functions[job.func_key] = func
        self._count += 1
        key = f"{job.job_id}-{self.nonce}-{self._count}"
        task = _InFlight(job.job_id, key, None, job.dynamic, ahead, timeout=job.timeout)
        self._ask(key, job)
        if ahead:
            task.made = tuple((d, x.key) for d, x, s in inputs if not s)
        self.inflight[job.job_id] = task
        self.by_key[key] = job.job_id
        deps, values, sums = zip(*inputs) if inputs else ((), (), ())
        self._queued.append((key, job.job_id, job.func_key, func, self._as_input(job.payload),
                             job.dynamic, deps, sums, job.timeout, job.files, self.topic,
                             list(values)))
        if ahead:
            self._ahead_queued = True

    def poll(self, timeout: float) -> list:
        if self._queued and self._send_due():
            self._send()
        # Asked before taking the condition: it may ask the cluster (a call through the
        # client's event loop), and that loop takes the condition to report an ended task.
        backlog = self._backlog()
        with self._cond:
            idle = timeout > 0 and not (self.outbox or self.ended.has_ready() or self._fetched
                                        or self._synced) and (self.inflight or self._unsynced)
            if idle and not backlog:
                self._cond.wait(timeout)
        if idle and backlog:
            # Dask has work queued for every worker thread: nothing here is urgent, so
            # take what ends meanwhile in one go rather than waking up for each task.
            time.sleep(min(timeout, COALESCE))
        done = self.ended.next_batch(block=False)
        out, self.outbox = self.outbox, []
        if self._began:
            self._report_started(out)
        if self._progressed:
            self._report_progress(out)
        if done or not self.by_key:
            self._progress = time.monotonic()
        elif time.monotonic() - self._progress > QUIET:
            done = self._look_at_futures()
        if done:
            self._ended(done, out)
        self._check_deadlines(out)
        with self._cond:
            synced = len(self._synced)  # each of these was fetched (and is drained) before
            fetched = list(self._fetched)
            self._fetched.clear()
            durable = [self._synced.popleft() for _ in range(synced)]
        for item in fetched:
            task = item[0]
            if self.inflight.get(task.job_id) is not task:
                continue  # interrupted or dropped meanwhile
            self._report(item, out)
        if durable:
            reported = [j for j in durable if j in self._unsynced]
            self._unsynced.difference_update(reported)
            if reported:
                out.append(Durable(reported))
        if not out and not self.busy and timeout > 0:
            time.sleep(min(timeout, 0.01))
        return out

    def _look_at_futures(self) -> list:
        """Nothing ended for a long while: the futures Dask says are over, in case their
        end was never reported to this runner (a make must not wait for ever)."""
        self._progress = time.monotonic()
        over = [t.future for t in self.inflight.values()
                if t.future is not None and t.key in self.by_key and t.future.done()]
        if over:
            logger.warning("%d Dask task(s) had ended without being reported; taken up now",
                           len(over))
        return over

    def _report(self, item: tuple, out: list) -> None:
        task, outcomes, checksum, size = item
        del self.inflight[task.job_id]
        if checksum:
            self.held.put(task.job_id, (task.future, checksum), size)
            self._made[task.job_id] = (task.key, checksum)
            if _file_of(item):
                self._unsynced.add(task.job_id)
        if task.ahead:
            consumed = self._consumed(task)
            for outcome in outcomes:
                if type(outcome) is JobStored or type(outcome) is JobRaised:
                    outcome.consumed = consumed
        out.extend(outcomes)

    def _consumed(self, task: _InFlight) -> dict[str, str]:
        """Checksums of the results of this run a job sent ahead took: its input tasks'
        whose results were reported (an input sent again meanwhile: not that one)."""
        made = self._made
        return {dep: made[dep][1] for dep, key in task.made
                if dep in made and made[dep][0] == key}

    # -- sending ahead (the run loop decides what; the place is the cluster) --------------

    def place_of(self, job_id: str) -> str | None:
        """"cluster" if a task of this run makes (or made) this job's result."""
        task = self.inflight.get(job_id)
        if task is not None:
            return None if task.dynamic else "cluster"
        made = self._made.get(job_id)
        found, item = self.held.get(job_id) if made is not None else (False, None)
        return "cluster" if found and item[1] == made[1] else None

    def send_ahead(self, job: RemoteJob, place: str, behind: tuple[str, ...]) -> None:
        """Queue its task with its inputs' tasks (or their results' futures) as inputs."""
        if self._cannot_place(job) is not None:
            # (The core sends no job with resources ahead; were it to, one that no worker
            # could run is not sent: it fails once the core decides it.)
            self.outbox.append(Requeue([job.job_id]))
            return
        inputs = []
        for dep in behind:
            task = self.inflight.get(dep)
            if task is not None:
                inputs.append((dep, task.future or self._TaskRef(task.key), ""))
                continue
            found, item = self.held.get(dep)
            if not found or dep not in self._made:
                self.outbox.append(Requeue([job.job_id]))  # gone meanwhile: not sent
                return
            inputs.append((dep, item[0], ""))
        try:
            inputs += [self._stored_input(dep, where, job.inline.get(dep))
                       for dep, where in job.deps.items()]
        except (OSError, blobs.CorruptResult):
            self.outbox.append(Requeue([job.job_id]))  # the run loop meets it again
            return
        self._queue(job, inputs, ahead=True)

    def drop(self, job_ids: list[str]) -> None:
        """Cancel the tasks of jobs sent ahead that will not count."""
        futures = []
        for jid in job_ids:
            self._unsynced.discard(jid)
            task = self.inflight.get(jid)
            if task is None or not task.ahead:
                continue
            del self.inflight[jid]
            self._untime(task.key)
            if self.by_key.pop(task.key, None) is not None and task.future is not None:
                futures.append(task.future)
        if futures:
            try:
                self.client.cancel(futures)
            except Exception:  # noqa: BLE001 - their results are ignored anyway
                pass

    def interrupt(self) -> list[str]:
        """Cancel every job's task; say which ones Dask cannot stop (already running)."""
        self._stopped = True
        stopped = list(self.inflight)
        running = [(t.job_id, self.started[t.key]) for t in self.inflight.values()
                   if t.key in self.started and t.key in self.by_key]
        futures = [t.future for t in self.inflight.values() if t.future is not None]
        self._forget()
        self.outbox.clear()
        self.ended.clear()
        if futures:
            try:
                self.client.cancel(futures)
            except Exception as exc:  # noqa: BLE001 - the interrupt must reach the user
                logger.warning("could not cancel the Dask tasks: %s", exc)
        if running:
            names = ", ".join(f"{j} (on {w})" for j, w in running[:5])
            more = f" and {len(running) - 5} more" if len(running) > 5 else ""
            logger.warning("Dask cannot stop a task that already started: %s%s will run to "
                           "its end on its worker; its result is discarded. The other %d "
                           "job(s) were cancelled.", names, more, len(stopped) - len(running))
        return stopped

    def close(self) -> None:
        self._stopped = True
        try:
            futures = [t.future for t in self.inflight.values() if t.future is not None]
            self._forget()
            if futures:
                self.client.cancel(futures)
            stop_listening(self.nonce)
        except Exception:  # noqa: BLE001 - closing must not hide the run's outcome
            pass
        finally:
            self._fetcher.shutdown(wait=True)
            self.reader.close()
            self.held.clear()
            self.functions.clear()
            if self._own_client:
                self.client.close()

    def _forget(self) -> None:
        """Every task, sent or about to be sent."""
        self.inflight.clear()
        self.by_key.clear()
        self._queued.clear()
        self._ahead_queued = False
        self._made.clear()
        self._forget_limits()

    # -- sending --------------------------------------------------------------------------

    def _limit(self) -> int:
        """How many jobs may be in Dask at once."""
        if self.n is not None:
            return self.n
        return max(MIN_WINDOW, self._cluster_threads() * PER_THREAD)

    def _cluster_threads(self) -> int:
        now = time.monotonic()
        if now - self._threads_at > REFRESH:
            self._threads_at = now
            try:
                self._threads = sum(self.client.nthreads().values())
            except Exception:  # noqa: BLE001 - keep the last known size
                pass
        return max(1, self._threads)

    def _backlog(self) -> bool:
        """More tasks in Dask than twice its worker threads."""
        return len(self.by_key) - len(self._queued) > 2 * self._cluster_threads()

    def _send_due(self) -> bool:
        """While Dask has most of the window queued, what the driver hands over waits to go
        with more (each graph sent costs the scheduler an update): one graph per quarter of
        the window rather than one per poll. Jobs sent ahead go at once (a chain waits for
        them)."""
        if self._ahead_queued:
            return True
        limit = self._limit()
        return len(self.by_key) - len(self._queued) <= limit - max(1, limit // 4)

    def _as_input(self, data: bytes) -> Any:
        """Small bytes travel inside the task; large ones are scattered (once)."""
        if len(data) < SEND_AS_DATA:
            return data
        return self.client.scatter(data, hash=False)

    def _send(self) -> None:
        """Hand the queued tasks to Dask in one go: one graph, in which a task takes the
        tasks it depends on (futures, or tasks of the same graph) as inputs."""
        queued, self._queued = self._queued, []
        self._ahead_queued = False
        Task, List = self._Task, self._List
        graph = {args[0]: Task(args[0], _task, *args[:-1], List(*args[-1])) for args in queued}
        tasks = [task for args in queued if (job_id := self.by_key.get(args[0])) is not None
                 and (task := self.inflight.get(job_id)) is not None and task.key == args[0]]
        self._timing_sent(tasks)
        futures = self.client.get(graph, list(graph), sync=False, **self._resources_of(graph))
        for future in futures:
            job_id = self.by_key.get(future.key)
            if job_id is not None:
                self.inflight[job_id].future = future
        self.client.loop.add_callback(self.ended.update, futures)
