"""The one run loop: scheduler actions -> claims and a runner -> outcomes -> store + events.

It runs in the calling thread (the thread that executes the notebook cell), so display
updates and Ctrl-C behave as the kernel expects.
"""

from __future__ import annotations

import functools
import pickle
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..core import events as ev
from ..core import signature
from ..core.ahead import Ahead, DropAhead
from ..core.graph import Graph
from ..core.jobspec import RunRecord
from ..core.scheduler import QUEUED, Scheduler
from ..errors import InternalError, InvalidJob
from ..fingerprint import Unpicklable, digest
from ..promise import resolve
from ..registration import arg_fingerprints, function_blob, function_sources, payload
from ..shared.outcomes import (Call, ChildSpec, DependencyLost, Durable, JobRaised, JobReturned,
                               JobStored, Outcome, RemoteJob, Requeue, Started, Timing)
from ..shared.values_cache import ByteLRU
from ..store import ResultUnavailable, Store, StoredJob
from ..store.store import FORCED_UNFINISHED, dumps_value
from ..store import blobs
from ..store.results import INLINE, ResultReader
from .observer import NoObserver, Observer
from .runner import Runner

ELSEWHERE_POLL = 0.2
# Jobs are claimed just before they start, a few at a time when they are short: enough to
# keep this much work claimed ahead (one lock call and one read of the store per batch,
# rather than per job), at most CLAIM_AHEAD_MAX jobs.
CLAIM_AHEAD_SECONDS = 0.01
CLAIM_AHEAD_MAX = 64
VALUES_BYTES = 256 << 20  # results of this run kept in memory for their dependents
LOOK_EVERY = 0.2  # seconds between looks for jobs sent ahead that the core decided otherwise


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


class _Lost(Exception):
    def __init__(self, job_id: str, why: str):
        self.job_id, self.why = job_id, why


class Driver:
    def __init__(self, store: Store, graph: Graph, stored: dict[str, StoredJob],
                 targets: list[str], runner: Runner, *, forced: dict[str, str] | None = None,
                 command: str = "make", validate: bool = False,
                 observer: Observer | None = None, lagging: set[str] | None = None,
                 read_at: tuple | None = None):
        self.store = store
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
        records = {j: s.record for j, s in stored.items() if s.record is not None}
        unsettled = {j: s.state for j, s in stored.items() if s.state in ("failed", "blocked")}
        self.sched = Scheduler(graph, records, targets, forced=forced,
                               arg_fps=self._current_arg_fps, validate=validate,
                               unsettled=unsettled, since_failure=self._since_failure)
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
                warnings.warn(f"nbmake: running jobs could not all be put back: {exc!r}",
                              RuntimeWarning, stacklevel=2)
            raise
        finally:
            if self.ahead is not None:  # jobs sent ahead that this run did not decide to run
                self._drop_ahead(self.ahead.stop())
            self.runner.detach()
            self.reader.close()
            self.store.flush()
            self.count(report)
            report.seconds = time.perf_counter() - t0
        return report

    def count(self, report: RunReport) -> None:
        """Fill in the counts of ``report`` from how far the run got."""
        s = self.sched
        status = s.status
        report.ran = sum(1 for v in status.values() if v == "done")
        skipped = sum(1 for v in status.values() if v == "skipped")
        report.restored = sum(1 for j in s.restored if status.get(j) == "skipped")
        report.skipped = skipped - report.restored
        report.failed = {j: s.errors[j] for j, v in status.items() if v == "failed"}
        report.blocked = {j: s.blocked_by[j] for j, v in status.items() if v == "blocked"}

    def _put_back(self) -> None:
        """Interrupted: running jobs go back to their earlier state; nothing of them is kept.
        Jobs that had ended before (their outcome not handled yet) are recorded."""
        try:
            stopped = set(self.runner.interrupt())
        except Exception as exc:  # noqa: BLE001 - what this process holds is let go anyway
            warnings.warn(f"nbmake: the running jobs could not all be stopped: {exc!r}",
                          RuntimeWarning, stacklevel=3)
            stopped = set()
        ended = [*self._unhandled, *self._replay, *self.runner.ended_before_interrupt()]
        self._unhandled, self._replay = deque(), []
        if ended:
            ended = [o for o in ended if type(o) is Durable or type(o) in _ENDED
                     and o.job_id in self.running]
            try:
                self._handle(ended)
            except Exception as exc:  # noqa: BLE001 - the interrupt must reach the user
                warnings.warn(f"nbmake: results that ended as the run was interrupted were not "
                              f"recorded: {exc!r}", RuntimeWarning, stacklevel=2)
        stopped |= set(self.running) | set(self.claimed)
        stopped |= set(self.ready) | set(self.templates)
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
        for action in actions:
            kind = type(action)
            if kind is ev.Skip:
                jid = action.job_id
                st = self.stored.get(jid)
                if st is None or st.state != "done" or st.forced or action.restored:
                    self.store.record_skipped(jid, restored=action.restored)
                self.tell(jid, "done", {"restored": True} if action.restored else {})
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
        while True:
            if not self.claimed:
                if not self.ready:
                    return
                if not runner.has_capacity() and not holds(self.ready[0]):
                    return
                self._claim_batch()
                continue
            if not runner.has_capacity() and not holds(self.claimed[0]):
                return
            jid = self.claimed.popleft()
            if self.sched.state(jid) != QUEUED or jid in self.running:
                continue
            held = ahead is not None and ahead.waiting(jid)
            call = self._prepare(jid)
            if call is not None:
                # Handed over, maybe queued behind others: "running" once it starts (Started).
                self.sched.started(jid)
                if held and self._adopt(call):
                    continue
                self.runner.submit(call)
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
            warnings.warn(f"{why}; {job_id} will run again", UserWarning, stacklevel=3)
            self.lost.add(job_id)
            self.store.mark_unreadable(job_id)
        self.locations.pop(job_id, None)
        self._apply(self.sched.handle(ev.ResultLost(job_id, consumer)))

    def _failed_elsewhere(self, jid: str, new: StoredJob) -> bool:
        """Another process ran this very definition during this make and it failed: that
        is this make's outcome too (running it again would run it twice)."""
        if new.state != "failed" or (new.ended or 0) < self.started_at \
                or new.spec.def_fp != self.graph.specs[jid].def_fp:
            return False
        error = f"{new.error} (in another process)"
        self._apply(self.sched.handle(ev.Failed(jid, error)))
        self.tell(jid, "failed", {"error": error})
        return True

    def _prepare(self, jid: str) -> Call | RemoteJob | None:
        spec = self.graph.specs[jid]
        if jid in self.lagging:
            self.lagging.discard(jid)
            self.store.define([(spec, *function_blob(spec), payload(spec))])
        if self.remote:
            return self._prepare_remote(jid, spec)
        try:
            if spec.func is not None:
                func, args, kwargs = spec.func, spec.args, spec.kwargs
            else:
                func, args, kwargs = self.store.load_call(jid)
        except Exception as exc:  # noqa: BLE001 - e.g. a module the console cannot import
            self._fail(jid, f"cannot load the job's definition: {exc!r}", "", None)
            return None
        try:
            r_args = resolve(args, self._value)
            r_kwargs = resolve(kwargs, self._value)
        except _Lost as lost:
            # Our claim stays; the job runs again once the dependency is remade.
            self._result_lost(lost.job_id, jid, lost.why)
            return None
        except LookupError as exc:  # a %%comp output its cell did not bind
            self._fail(jid, str(exc), "", None)
            return None
        results = self.sched.results
        self.running[jid] = ({d: results[d] for d in spec.deps}, args, kwargs)
        return Call(jid, func, r_args, r_kwargs, spec.dynamic)

    def _prepare_remote(self, jid: str, spec) -> RemoteJob | None:
        """Engines get bytes and the places of their inputs; no value is loaded here. A job
        sent ahead gets no definition: the runner has it (see ``_adopt``)."""
        if self.ahead is not None and self.ahead.waiting(jid):
            key, blob, data, sources = "", b"", b"", b"{}"
        else:
            try:
                key, blob, data, sources = self._definition(jid)
            except Exception as exc:  # noqa: BLE001
                self._fail(jid, f"cannot load the job's definition: {exc!r}", "", None)
                return None
        args, kwargs = (spec.args, spec.kwargs) if spec.func is not None else ((), {})
        deps, inline = {}, {}
        for dep in spec.deps:
            where = self._location(dep)
            if where is None:
                self._result_lost(dep, jid, f"the result of {dep!r} is missing")
                return None
            deps[dep] = where
            pending = self.store.pending_result(dep)
            if pending is not None:  # its file may not be written yet: it travels along
                inline[dep] = pending
        results = self.sched.results
        self.running[jid] = ({d: results[d] for d in spec.deps}, args, kwargs)
        return RemoteJob(jid, key, blob, data, deps, spec.dynamic, inline, sources)

    def describe(self, jid: str) -> RemoteJob:
        """A job as a runner would send it ahead, before it is decided: with the places of
        those inputs that have a stored result (a runner that sends jobs ahead prefers the
        ones it is making). Raises if the definition cannot be loaded."""
        spec = self.graph.specs[jid]
        deps, inline = {}, {}
        for dep in spec.deps:
            where = self._location(dep)
            if where is not None:
                deps[dep] = where
                pending = self.store.pending_result(dep)
                if pending is not None:
                    inline[dep] = pending
        key, blob, data, sources = self._definition(jid)
        return RemoteJob(jid, key, blob, data, deps, spec.dynamic, inline, sources)

    def _definition(self, jid: str) -> tuple[str, bytes, bytes, bytes]:
        """(function key, function pickle, arguments pickle, function sources) of a job, as
        engines get it."""
        spec = self.graph.specs[jid]
        sources = b"{}"
        if spec.func is not None:
            key, blob = function_blob(spec)
            sources = function_sources(spec)
            data = payload(spec)
        elif jid in self.child_calls:
            key, blob, data, sources = self.child_calls[jid]
        else:
            key = self.stored[jid].func_key
            blob = self._blobs.get(key) or self.store.function_blob(key)
            data = self.store.load_payload(jid)
        self._blobs[key] = blob
        return key, blob, data, sources

    def _location(self, job_id: str) -> tuple[str, str] | None:
        where = self.locations.get(job_id)
        if where is not None:
            return where
        st = self.stored.get(job_id)
        if st is None or st.record is None or not st.record.present or not st.r_file \
                or job_id in self.lost:
            return None
        return st.r_file, st.r_checksum

    def _value(self, job_id: str) -> Any:
        found, value = self.values.get(job_id)
        if found:
            return value
        pending = self.store.pending_result(job_id)
        if pending is not None:
            return pickle.loads(pending)
        where = self.locations.get(job_id)
        if where is not None:  # made by an engine in this run; maybe not committed yet
            try:
                return pickle.loads(self.reader.read(job_id, *where))
            except (OSError, blobs.CorruptResult, pickle.UnpicklingError) as exc:
                raise _Lost(job_id, f"the result file of {job_id!r} is unreadable: {exc}") from None
        try:
            return self.store.load_result(job_id)
        except ResultUnavailable as exc:
            raise _Lost(job_id, str(exc)) from None

    # -- sending ahead --------------------------------------------------------------------
    # A waiting job that will run whatever its inputs bring goes to the place making its
    # inputs, right behind them, before the core decides it (core/ahead.py decides which
    # and where; README "Engines").

    def _send_ahead(self) -> None:
        ahead = self.ahead
        if ahead.held and time.monotonic() - self._looked_at > LOOK_EVERY:
            self._looked_at = time.monotonic()
            self._drop_ahead(ahead.settle())
        if not ahead.frontier:
            return
        room = None
        if self.runner.capabilities.ahead_takes_slots:
            room = self.runner.free_slots()
            if room <= 0:
                return
        plan = ahead.plan(self.runner.place_of, room)
        if not plan:
            return
        mine, _ = self.store.claim([p.job_id for p in plan])
        mine = set(mine)
        skip: set[str] = set()
        for p in plan:
            jid = p.job_id
            if jid in skip:
                continue
            job = None
            if jid in mine:  # else another process runs it: the run loop waits for that
                try:
                    job = self.describe(jid)
                except Exception:  # noqa: BLE001 - met again once the core decides it
                    pass
            if job is None:
                drop = ahead.not_sent(jid)
                skip.update(drop.job_ids)
                self.store.release([j for j in drop.release if j in mine])
                continue
            for dep in p.behind:  # its place has them; an older stored result is not wanted
                job.deps.pop(dep, None)
                job.inline.pop(dep, None)
            job.after = p.behind
            ahead.sent_with(jid, {d: where[1] for d, where in job.deps.items()})
            self.runner.send_ahead(job, p.place, p.behind)

    def _drop_ahead(self, drop: DropAhead | None) -> None:
        if drop is None or not drop.job_ids:
            return
        for jid in drop.job_ids:
            self._early.pop(jid, None)
        self.runner.drop(list(drop.job_ids))
        if drop.release:
            self.store.release(list(drop.release))

    def _adopt(self, job: RemoteJob) -> bool:
        """The core decided Run for a job sent ahead: its outcomes (held here, or to come)
        count from now on. False: it was given other stored inputs than the core recorded;
        it is sent again (with its definition)."""
        jid = job.job_id
        drop = self.ahead.adopt(jid, {d: where[1] for d, where in job.deps.items()})
        if drop is None:
            self._replay.extend(self._early.pop(jid, ()))
            return True
        self._drop_ahead(drop)
        try:
            job.func_key, job.func_blob, job.payload, job.sources = self._definition(jid)
        except Exception as exc:  # noqa: BLE001
            self._fail(jid, f"cannot load the job's definition: {exc!r}", "", None)
            return True
        return False

    def _sort_ahead(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Outcomes of undecided jobs sent ahead are held until the core decides them; an
        adopted one's outcome counts only if it took the results the core recorded."""
        ahead, out = self.ahead, []
        for o in outcomes:
            kind = type(o)
            if kind is Durable or kind is Requeue:
                ids = [j for j in o.job_ids if ahead.waiting(j)]
                if not ids:
                    out.append(o)
                    continue
                rest = [j for j in o.job_ids if j not in ids]
                for jid in ids:
                    if kind is Durable:
                        self._early.setdefault(jid, []).append(Durable([jid]))
                    else:  # it did not run at its place: dropped
                        self._drop_ahead(ahead.requeued(jid))
                if rest:
                    out.append(kind(rest))
                continue
            if kind is ChildSpec:
                out.append(o)
                continue
            jid = o.job_id
            held = ahead.held.get(jid)
            if held is None:
                out.append(o)
            elif held.expected is None:  # undecided
                if kind is DependencyLost:
                    self._drop_ahead(ahead.requeued(jid))
                else:
                    self._early.setdefault(jid, []).append(o)
            elif kind is JobStored or kind is JobRaised:
                drop = ahead.ended(jid, o.consumed)
                if drop is None:
                    out.append(o)
                else:  # it took other results than the core recorded: it runs again
                    self._drop_ahead(drop)
                    out.append(Requeue([jid]))
            elif kind is DependencyLost:
                self._drop_ahead(ahead.requeued(jid))
                out.append(o)
            else:
                out.append(o)
        return out

    # -- outcomes from the runner ---------------------------------------------------------

    def _handle(self, outcomes: list[Outcome]) -> None:
        if self.ahead is not None and self.ahead.held:
            outcomes = self._sort_ahead(outcomes)
        children = [o for o in outcomes if type(o) is ChildSpec]
        if children:
            self._define_children(children)
        # Ctrl-C may stop this loop anywhere (the store holds it back while it commits, and
        # raises it after): the outcomes not reached yet are recorded by _put_back.
        self._unhandled = unhandled = deque(outcomes)
        while unhandled:
            outcome = unhandled.popleft()
            kind = type(outcome)
            if kind is Started:
                if outcome.job_id in self.running:  # (not if it ended or went back meanwhile)
                    self.tell(outcome.job_id, "running",
                              {"reasons": list(self.sched.reasons.get(outcome.job_id, ())),
                               "engine": outcome.where})
                continue
            if kind is JobReturned or kind is JobStored:
                seconds = outcome.timing.duration or 0.0
                mean = self._mean_seconds
                self._mean_seconds = seconds if mean is None else 0.8 * mean + 0.2 * seconds
            if kind is JobReturned:
                jid = outcome.job_id
                if jid in self.bad_children:
                    self._fail(jid, self.bad_children.pop(jid), "", outcome)
                elif self.graph.specs[jid].dynamic:
                    self.templates[jid] = outcome
                    self._apply(self.sched.handle(ev.Returned(jid)))
                else:
                    self._persist(jid, outcome.value, outcome)
            elif kind is JobRaised:
                self._fail(outcome.job_id, outcome.error, outcome.traceback, outcome)
            elif kind is JobStored:
                self._stored_by_engine(outcome)
            elif kind is Durable:
                self._commit_durable(outcome.job_ids)
            elif kind is Requeue:
                for jid in outcome.job_ids:
                    if self.ahead is not None:  # what was sent ahead behind it
                        self._drop_ahead(self.ahead.requeued(jid))
                    self.running.pop(jid, None)
                    self.claimed.appendleft(jid)
            elif kind is DependencyLost:
                self.running.pop(outcome.job_id, None)
                self._result_lost(outcome.dependency, outcome.job_id, outcome.why)

    def _define_children(self, children: list[ChildSpec]) -> None:
        parents = {c.spec.parent for c in children} - self._redefining
        if parents:
            # Its old result no longer matches the children in the store until it finishes.
            self.store.set_forced(parents, FORCED_UNFINISHED)
            self._redefining |= parents
        entries = []
        for child in children:
            spec = child.spec
            self.lagging.discard(spec.job_id)
            try:
                if child.func_blob is None:
                    key, blob = function_blob(spec)
                    data = payload(spec)
                else:
                    key, blob, data = _blob_key(child.func_blob), child.func_blob, child.payload
                    self.child_calls[spec.job_id] = (key, blob, data, child.sources)
                self._apply(self.sched.handle(ev.ChildDefined(spec)))
                if self.sched.state(spec.job_id) in ("waiting", "queued"):
                    self.tell(spec.job_id, "todo", {"parent": spec.parent, "deps": list(spec.deps),
                                                    "function": spec.function})
            except InvalidJob as exc:
                self.bad_children.setdefault(spec.parent, f"defined an invalid child: {exc}")
                continue
            entries.append((spec, key, blob, data))
        self.store.define(entries)

    def _persist(self, jid: str, value: Any, out: JobReturned) -> None:
        consumed, args, kwargs = self.running.pop(jid, ({}, (), {}))
        spec = self.graph.specs[jid]
        try:
            data = dumps_value(value)
            result_fp = digest(value)
        except (Unpicklable, Exception) as exc:  # noqa: BLE001
            self._fail(jid, f"its result cannot be pickled: {exc}", "", out)
            return
        record = RunRecord(spec.code_fp, spec.code_parts, spec.args_fp, consumed, result_fp,
                           _lazy_arg_fps(args, kwargs))
        timing = out.timing.as_dict(self.sched.reasons.get(jid, ()))
        if self.remote:  # engines will read it: write it before anyone is told
            sum_ = blobs.checksum(data)
            name = blobs.file_name(jid, sum_)
            stamp = blobs.write_atomic(self.store.results_dir, name, data,
                                       durable=self.store.durable)
            self.locations[jid] = (name, sum_)
            self.store.record_stored(jid, record, name, sum_, stamp, timing,
                                     (out.stdout, out.stderr))
        else:
            self.store.record_success(jid, record, data, timing, (out.stdout, out.stderr))
        self.values.put(jid, value, len(data))
        self.sched.records[jid] = record
        self._apply(self.sched.handle(ev.Succeeded(jid, result_fp)))
        self.tell(jid, "done", _info(out.timing, out.stdout, out.stderr))

    def _stored_by_engine(self, out: JobStored) -> None:
        jid = out.job_id
        consumed, args, kwargs = self.running.pop(jid, ({}, (), {}))
        spec = self.graph.specs[jid]
        record = RunRecord(spec.code_fp, spec.code_parts, spec.args_fp, consumed, out.result_fp,
                           _lazy_arg_fps(args, kwargs) if spec.func is not None else {})
        timing = out.timing.as_dict(self.sched.reasons.get(jid, ()))
        logs = (out.stdout, out.stderr)
        if out.data is not None:  # a small result: the store writes its file
            self.store.record_success(jid, record, out.data, timing, logs)
            name = INLINE if len(out.data) <= self.store.inline_max \
                else blobs.file_name(jid, out.checksum)
            self.locations[jid] = (name, out.checksum)
        else:
            self.locations[jid] = (out.file, out.checksum)
            self.pending_durable[jid] = (record, out.file, out.checksum, out.stamp, timing, logs)
        self.sched.records[jid] = record
        self._apply(self.sched.handle(ev.Succeeded(jid, out.result_fp)))
        self.tell(jid, "done", _info(out.timing, out.stdout, out.stderr))

    def _commit_durable(self, job_ids: list[str]) -> None:
        for jid in job_ids:
            pending = self.pending_durable.pop(jid, None)
            if pending is not None:
                self.store.record_stored(jid, *pending)

    def _fail(self, jid: str, error: str, tb: str, out: JobReturned | JobRaised | None) -> None:
        self.running.pop(jid, None)
        self._record_failure(jid, error, tb, out)
        self._apply(self.sched.handle(ev.Failed(jid, error)))

    def _record_failure(self, jid: str, error: str, tb: str,
                        out: JobReturned | JobRaised | None) -> None:
        timing = out.timing if out is not None else Timing()
        logs = (out.stdout, out.stderr) if out is not None else ("", "")
        self.store.record_failure(jid, error, tb, timing.as_dict(self.sched.reasons.get(jid, ())),
                                  logs, self.graph.specs.get(jid))
        self.tell(jid, "failed", {**_info(timing, *logs), "error": error, "traceback": tb})

    def _since_failure(self, jid: str) -> list[str]:
        """What changed in the job since the definition whose run failed."""
        try:
            row = self.store.details(jid)
        except Exception:  # noqa: BLE001 - only used to word a reason
            return []
        return signature.since_failure(self.graph.specs[jid], row.get("f_code_fp"),
                                       row.get("f_code_parts"), row.get("f_args_fp"))

    def _current_arg_fps(self, jid: str) -> dict[str, str]:
        spec = self.graph.specs[jid]
        try:
            if spec.func is not None:
                return arg_fingerprints(spec.args, spec.kwargs)
            _, args, kwargs = self.store.load_call(jid)
            return arg_fingerprints(args, kwargs)
        except Exception:  # noqa: BLE001 - only used to word a reason
            return {}


def _never(job_id: str) -> bool:
    return False


def _info(timing: Timing, stdout: str, stderr: str) -> dict[str, Any]:
    return {"duration": timing.duration, "engine": timing.engine, "stdout": stdout,
            "stderr": stderr}


_ONE_ARGUMENT = signature.one_argument("0")
_ENDED = (JobReturned, JobStored, JobRaised)  # outcomes of jobs that finished


def _lazy_arg_fps(args: tuple, kwargs: dict) -> Callable[[], dict[str, str]] | str:
    """Per-argument digests, taken when the record is written (on the store's writer
    thread) or a reason is asked for: not between a result and its dependent's start.
    A call of one argument records only its name: when the arguments' fingerprint
    differs, that argument changed (``signature.UNRECORDED``)."""
    if len(args) + len(kwargs) == 1:
        return _ONE_ARGUMENT if args else signature.one_argument(next(iter(kwargs)))
    return functools.partial(_arg_fps_or_none, args, kwargs)


def _arg_fps_or_none(args: tuple, kwargs: dict) -> dict[str, str]:
    try:
        return arg_fingerprints(args, kwargs)
    except Exception:  # noqa: BLE001 - only used to word a reason; never stop the writer
        return {}


def _same_record(a: RunRecord | None, b: RunRecord | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.result_fp == b.result_fp and a.code_fp == b.code_fp and a.args_fp == b.args_fp
            and a.present == b.present and dict(a.dep_fps) == dict(b.dep_fps))


def _blob_key(blob: bytes) -> str:
    import hashlib

    return hashlib.blake2b(blob, digest_size=16).hexdigest()
