"""The one run loop: scheduler actions -> claims and a runner -> outcomes -> store + events.

It runs in the calling thread (the thread that executes the notebook cell), so display
updates and Ctrl-C behave as the kernel expects. This module holds the loop, the claims
and what a job is handed over as; recording.py what is done with its outcomes,
sending_ahead.py the sending of jobs ahead, handing_over.py what a job is handed to a
runner as (mixins of ``Driver``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Mapping

from ..core import events as ev
from ..core.ahead import Ahead
from ..core.graph import Graph
from ..core.jobspec import RunRecord
from ..core.resources import Holdings
from ..core.scheduler import QUEUED, Scheduler
from ..errors import InternalError
from ..files.fingerprints import FileState
from ..promise import resolve
from ..shared.gc_pause import gc_paused
from ..shared.outcomes import Durable, JobRaised, JobReturned, JobStored, Outcome
from ..shared.values_cache import ByteLRU
from ..store import Store, StoredJob
from ..store.results import ResultReader
from .handing_over import HandingOver, Lost as _Lost
from .machine import gpu_devices
from .observer import NoObserver, Observer, progress_listener
from .recording import Recording
from .runner import Runner
from .sending_ahead import SendAhead

ELSEWHERE_POLL = 0.2
# Jobs are claimed just before they start, a few at a time when they are short: enough to
# keep this much work claimed ahead (one lock call and one read of the store per batch,
# rather than per job), at most CLAIM_AHEAD_MAX jobs.
CLAIM_AHEAD_SECONDS = 0.01
CLAIM_AHEAD_MAX = 64
VALUES_BYTES = 256 << 20  # results of this run kept in memory for their dependents

logger = logging.getLogger(__name__)


@dataclass
class RunReport:
    """The outcome of one make: what ran, what was up to date, what failed."""

    command: str
    ran: int = 0
    skipped: int = 0      # up to date
    failed: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False
    targets: list[str] = field(default_factory=list)
    restored: int = 0     # up to date again after a failed or blocked last run: taken back

    def line(self) -> str:
        parts = [f"{self.ran} done"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.blocked:
            parts.append(f"{len(self.blocked)} blocked")
        if self.restored:
            parts.append(f"{self.restored} restored")
        parts.append(f"{self.skipped} up to date")
        tail = " (interrupted)" if self.interrupted else ""
        return f"{self.command}: {', '.join(parts)} in {self.seconds:.2f}s{tail}"


class Driver(Recording, SendAhead, HandingOver):
    def __init__(self, store: Store, graph: Graph, stored: dict[str, StoredJob],
                 targets: list[str], runner: Runner, *, forced: dict[str, str] | None = None,
                 command: str = "make", validate: bool = False,
                 observer: Observer | None = None, lagging: set[str] | None = None,
                 read_at: tuple | None = None, resources: Mapping[str, float] | None = None,
                 files: FileState | None = None):
        self.store = store
        # The files of the jobs as this make sees them (files/fingerprints.py): looked at
        # once each, kept current as jobs write their outputs.
        self.files = files if files is not None else FileState(store.file_stats)
        # What the jobs running at once may hold in all (a parmake's totals, see
        # core/options.py; a name missing from a Totals has 1); None: no limit (make).
        self.resource_totals = resources
        self.holdings = Holdings(resources, gpu_devices()) if resources is not None else None
        self.deferred: deque[str] = deque()  # claimed, waiting for resources to start
        self.attempts: dict[str, list[dict]] = {}  # failed attempts of jobs retried
        # When ``stored`` was read (Store.activity): until another store opens, what this
        # make claims cannot have changed since, and needs no second look.
        self.read_at = read_at
        # Jobs whose definition changed in memory only (see Context._refresh_code): it is
        # recorded when they start, so the store holds the definition their result has.
        self.lagging = lagging if lagging is not None else set()
        self.graph = graph
        self.stored = stored
        self.runner = runner
        self.command = command
        self.observer = observer or NoObserver()
        self.tell = self.observer.job_changed
        # Whether a view follows the jobs: without one, what it would be told of each job
        # (a dict per job, in the loops over thousands of results) is not made.
        self.watched = type(self.observer) is not NoObserver
        # Views that show how far a running job is (nbmake_ext.progress); a runner that
        # runs jobs in this thread tells it from within the job (InKernelRunner).
        self._job_progress = progress_listener(self.observer)
        runner.listen_progress(self._progress if self._job_progress is not None else None)
        records = {j: s.record for j, s in stored.items() if s.record is not None}
        unsettled = {j: s.state for j, s in stored.items() if s.state in ("failed", "blocked")}
        self.sched = Scheduler(graph, records, targets, forced=forced,
                               arg_fps=self._current_arg_fps, validate=validate,
                               unsettled=unsettled, since_failure=self._since_failure,
                               files=self.files)
        self.ready: deque[str] = deque()
        self.claimed: deque[str] = deque()
        self.elsewhere: dict[str, str] = {}
        self.running: dict[str, tuple[dict[str, str], tuple, dict]] = {}
        self.templates: dict[str, JobReturned] = {}
        self.bad_children: dict[str, str] = {}
        self.values = ByteLRU(VALUES_BYTES)  # results made in this run, for their dependents
        self.remote = runner.capabilities.remote  # jobs travel as bytes (RemoteJob)
        self.reader = ResultReader(store.path)
        self._mean_seconds: float | None = None  # how long jobs take, lately
        self.locations: dict[str, tuple[str, str]] = {}   # results made this run: file, sum
        self.pending_durable: dict[str, tuple] = {}       # engine results awaiting fsync
        self.child_calls: dict[str, tuple[str, bytes, bytes, bytes]] = {}  # engine-made children
        self.lost: set[str] = set()  # results found unreadable: they stay lost in this run
        self._redefining: set[str] = set()  # dynamic jobs that redefined children this run
        self._blobs: dict[str, bytes] = {}
        self._unhandled: deque[Outcome] = deque()  # of the outcomes being handled
        self._last_elsewhere_check = 0.0
        self.started_at = time.time()
        # Sending ahead (core/ahead.py decides; this loop claims, describes, tells the
        # runner, and holds the outcomes of undecided jobs until the core decides them).
        caps = runner.capabilities
        self.ahead = Ahead(self.sched, caps.ahead_per_place) if caps.runs_ahead else None
        self._early: dict[str, list[Outcome]] = {}  # outcomes of jobs sent ahead, undecided
        self._replay: list[Outcome] = []            # ... of jobs just decided: handled next
        self._looked_at = time.monotonic()
        runner.attach()

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> RunReport:
        t0 = time.perf_counter()
        report = RunReport(self.command, targets=list(self.sched.targets))
        try:
            self.store.run_alone()  # claims in memory while no other store is open
            with gc_paused():  # every job decided at once: objects per job, kept
                self._apply(self.sched.start())
            while True:
                self._dispatch()
                if self.sched.finished and not self.pending_durable:
                    break
                if self.ahead is not None:
                    self._send_ahead()
                if not (self.runner.busy or self.ready or self.claimed or self.elsewhere
                        or self.pending_durable or self._replay):
                    raise InternalError(
                        f"make stalled with jobs in flight: {sorted(self.sched.active)[:10]}")
                outcomes = self.runner.poll(0 if self._replay else 0.05)
                if self._replay:
                    outcomes, self._replay = self._replay + outcomes, []
                self._handle(outcomes)
                self.observer.tick()
                if self.elsewhere:
                    self._check_elsewhere()
        except KeyboardInterrupt:
            report.interrupted = True
            self._put_back()
            raise
        except BaseException:
            # Broken (a bug, a store that cannot be written): as for an interrupt, running
            # jobs go back and what finished stays; nothing is left running in the store.
            report.interrupted = True
            try:
                self._put_back()
            except BaseException as exc:  # noqa: BLE001 - the first error is the one to see
                logger.warning("running jobs could not all be put back: %r", exc)
            raise
        finally:
            if self.ahead is not None:  # jobs sent ahead that this run did not decide to run
                self._drop_ahead(self.ahead.stop())
            self.runner.detach()
            self.reader.close()
            if report.interrupted:  # (nothing is left to the writer: see _put_back)
                try:
                    self.store.flush()
                finally:
                    self.store.run_over()
            else:  # its last records are committed after it returns (within MAX_AGE)
                self.store.end_run()
            self.count(report)
            report.seconds = time.perf_counter() - t0
            self.sched.detach()
        return report

    def count(self, report: RunReport) -> None:
        """Fill in the counts of ``report`` from how far the run got."""
        s = self.sched
        status = s.status
        counts = Counter(status.values())
        report.ran = counts["done"]
        report.restored = sum(1 for j in s.restored if status.get(j) == "skipped")
        report.skipped = counts["skipped"] - report.restored
        report.failed = {j: s.errors[j] for j, v in status.items() if v == "failed"} \
            if counts["failed"] else {}
        report.blocked = {j: s.blocked_by[j] for j, v in status.items() if v == "blocked"} \
            if counts["blocked"] else {}

    def _put_back(self) -> None:
        """Interrupted: running jobs go back to their earlier state; nothing of them is kept.
        Jobs that had ended before (their outcome not handled yet) are recorded."""
        try:
            stopped = set(self.runner.interrupt())
        except Exception as exc:  # noqa: BLE001 - what this process holds is let go anyway
            logger.warning("the running jobs could not all be stopped: %r", exc)
            stopped = set()
        ended = [*self._unhandled, *self._replay, *self.runner.ended_before_interrupt()]
        self._unhandled, self._replay = deque(), []
        if ended:
            ended = [o for o in ended if type(o) is Durable or type(o) in _ENDED
                     and o.job_id in self.running]
            try:
                self._handle(ended)
            except Exception as exc:  # noqa: BLE001 - the interrupt must reach the user
                logger.warning("results that ended as the run was interrupted were not "
                               "recorded: %r", exc)
        stopped |= set(self.running) | set(self.claimed)
        stopped |= set(self.ready) | set(self.templates) | set(self.deferred)
        if self.ahead is not None:  # their claims, also of those that ended already
            stopped |= set(self.ahead.held)
            self.ahead.held.clear()
            self._early.clear()
        self._commit_durable(list(self.pending_durable))  # finished jobs stay finished
        self.store.flush()
        self.store.release(stopped)
        self.store.release_all()  # also jobs that were waiting again for a lost input

    # -- actions from the scheduler -------------------------------------------------------

    def _apply(self, actions: list[ev.Action]) -> None:
        stored, tell = self.stored, self.tell  # (a no-op make: 100,000 skips in one list)
        watched = self.watched
        for action in actions:
            kind = type(action)
            if kind is ev.Skip:
                jid = action.job_id
                st = stored.get(jid)
                if st is None or st.state != "done" or st.forced or action.restored:
                    self.store.record_skipped(jid, restored=action.restored)
                if watched:
                    tell(jid, "done", {"restored": True} if action.restored else {})
            elif kind is ev.Run:
                self.ready.append(action.job_id)
            elif kind is ev.Block:
                self.store.record_blocked(action.job_id, action.by)
                self.tell(action.job_id, "blocked", {"blocked_by": action.by})
            elif kind is ev.Fail:
                # A dynamic job failed through a child: its own run's timings still count.
                returned = self.templates.pop(action.job_id, None)
                self._record_failure(action.job_id, action.error, "", returned)
            elif kind is ev.Complete:
                self._complete(action.job_id)
            elif kind is ev.Forget:
                for jid in action.job_ids:
                    self.values.drop(jid)
                    self.tell(jid, "forgotten", {})
                self.store.forget(action.job_ids)
            else:
                raise InternalError(f"unknown action {action!r}")

    def _complete(self, jid: str) -> None:
        returned = self.templates.pop(jid)
        try:
            value = resolve(returned.value, self._value)
        except _Lost as lost:
            self.templates[jid] = returned  # it completes once the child is remade
            self._result_lost(lost.job_id, jid, lost.why)
            return
        self._persist(jid, value, returned)

    # -- dispatching ----------------------------------------------------------------------

    def _dispatch(self) -> None:
        runner = self.runner
        ahead = self.ahead
        holds = ahead.waiting if ahead is not None else _never  # sent ahead: need no slot
        claimed, ready, running = self.claimed, self.ready, self.running
        state, started, submit = self.sched.state, self.sched.started, runner.submit
        # The runner's free slots, asked once and counted down (asked again when used up):
        # one question per batch of jobs handed over rather than one per job.
        room = 0
        while True:
            if not claimed:
                if not ready:
                    return
                if room <= 0:
                    room = runner.free_slots()
                if room <= 0 and not holds(ready[0]):
                    return
                self._claim_batch()
                continue
            if room <= 0:
                room = runner.free_slots()
            if room <= 0 and not holds(claimed[0]):
                return
            jid = claimed.popleft()
            if state(jid) != QUEUED or jid in running:
                continue
            held = holds(jid)
            env = self._hold_resources(jid) if self.holdings is not None else None
            if env is False:
                continue
            call = self._prepare(jid, env)
            if call is None:
                self._release_held(jid)
            else:
                # Handed over, maybe queued behind others: "running" once it starts (Started).
                started(jid)
                if held and self._adopt(call):
                    continue
                submit(call)
                room -= 1
                if ahead is not None:
                    ahead.handed(jid)

    def _claim_batch(self) -> None:
        # Claim only what is about to start: a claim is what other processes see as running.
        batch = []
        slots = max(1, self.runner.free_slots())
        if self._mean_seconds is not None:
            ahead = CLAIM_AHEAD_SECONDS / max(self._mean_seconds, 1e-6)
            slots = max(slots, min(CLAIM_AHEAD_MAX, int(ahead)))
        while self.ready and len(batch) < slots:
            jid = self.ready.popleft()
            if self.sched.state(jid) == QUEUED and jid not in self.running:
                batch.append(jid)
        if not batch:
            return
        mine, elsewhere = self.store.claim(batch)
        self.elsewhere.update(elsewhere)
        fresh = self._reread(mine)
        for jid in mine:
            new = fresh.get(jid)  # None: unchanged since this make read the store
            if new is not None and self._failed_elsewhere(jid, new):
                self.store.release([jid])
                continue
            if new is not None and not _same_record(new.record, self.sched.records.get(jid)):
                # Another process stored a result meanwhile: decide again.
                self.stored[jid] = new
                self._apply(self.sched.handle(ev.Reconsider(jid, new.record, new.state)))
                if self.sched.state(jid) != QUEUED:
                    self.store.release([jid])
                continue
            self.claimed.append(jid)

    def _check_elsewhere(self) -> None:
        now = time.monotonic()
        if now - self._last_elsewhere_check < ELSEWHERE_POLL:
            return
        self._last_elsewhere_check = now
        still = self.store.claimed_elsewhere(self.elsewhere)
        released = [j for j in self.elsewhere if j not in still]
        if not released:
            return
        fresh = self._reread(released)
        for jid in released:
            del self.elsewhere[jid]
            new = fresh.get(jid)
            if new is None:  # unchanged: the other process stopped without an outcome
                record = self.sched.records.get(jid)
                st = self.stored.get(jid)
                last = st.state if st is not None else None
            else:
                self.stored[jid] = new
                if self._failed_elsewhere(jid, new):
                    continue
                record, last = new.record, new.state
            self._apply(self.sched.handle(ev.Reconsider(jid, record, last)))

    def _reread(self, job_ids: list[str]) -> dict[str, StoredJob]:
        """What changed in the store for these jobs since this make read it."""
        if self.read_at is not None:
            if self.store.quiet_since(self.read_at):
                return {}
            self.read_at = None  # another store is or was open: look every time from now
        fresh = self.store.changed(self.stored, job_ids)
        for jid in self.lost.intersection(fresh):
            if fresh[jid].record is not None:
                fresh[jid].record.present = False
        return fresh

    def _result_lost(self, job_id: str, consumer: str, why: str) -> None:
        """A dependency's stored result is unreadable: say so, forget the file, remake it."""
        if job_id not in self.lost:  # once, however many dependents find out
            logger.warning("%s; %s will run again", why, job_id)
            self.lost.add(job_id)
            self.store.mark_unreadable(job_id)
        self.locations.pop(job_id, None)
        self._apply(self.sched.handle(ev.ResultLost(job_id, consumer)))

    def _failed_elsewhere(self, jid: str, new: StoredJob) -> bool:
        """Another process ran this very definition during this make and it failed: that
        is this make's outcome too (running it again would run it twice)."""
        if new.state != "failed" or (new.ended or 0) < self.started_at \
                or not new.spec.same_definition(self.graph.specs[jid]):
            return False
        error = f"{new.error} (in another process)"
        self._apply(self.sched.handle(ev.Failed(jid, error)))
        self.tell(jid, "failed", {"error": error})
        return True

    def _hold_resources(self, jid: str) -> dict[str, str] | None | bool:
        """The job's resources, held for it if they fit now: the environment it runs with
        (its GPUs), or None. False if it does not start now: it waits for others to
        let go of what it needs, or it asks for more than a total and failed."""
        need = self.graph.specs[jid].options.resources
        if not need:
            return None
        holdings = self.holdings
        over = holdings.over_total(need)
        if over is not None:
            self._fail(jid, over, "", None)
            return False
        if not holdings.fits(need):
            self.deferred.append(jid)
            return False
        devices = holdings.take(jid, need)
        return {"CUDA_VISIBLE_DEVICES": ",".join(devices)} if devices else None


def _never(job_id: str) -> bool:
    return False


_ENDED = (JobReturned, JobStored, JobRaised)  # outcomes of jobs that finished


def _same_record(a: RunRecord | None, b: RunRecord | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.result_fp == b.result_fp and a.code_fp == b.code_fp and a.args_fp == b.args_fp
            and a.present == b.present and dict(a.dep_fps) == dict(b.dep_fps)
            and dict(a.files) == dict(b.files))
