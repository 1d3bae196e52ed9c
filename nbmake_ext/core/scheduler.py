"""The make decision engine: a pure state machine over one run.

``Scheduler(graph, records, targets).start()`` returns the first actions; every later
event goes through ``handle(event)`` and returns more actions. A job is decided only when
all its dependencies are final in this run, so an upstream that re-runs to an equal result
leaves its dependents up to date (early cutoff). No I/O happens here.

Here: setting up the needed jobs, decisions, results. A failure and what it blocks (and
reopens): scheduler_failures.py; dynamic jobs' children: scheduler_dynamic.py; the checks
of every move and the invariants: scheduler_checks.py (mixins of ``Scheduler``). The
states and the transition table: states.py.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from ..errors import InternalError
from . import signature
from .sweep import fresh as fresh_jobs, upstream as upstream_of
from .events import (
    Action, ChildDefined, Event, Failed, Reconsider, ResultLost, Retry, Returned, Run, Skip,
    Succeeded,
)
from .graph import Graph
from .jobspec import RunRecord
from .scheduler_checks import STORY, Checks, _describe  # noqa: F401 - STORY: read by tests
from .scheduler_dynamic import DynamicJobs
from .scheduler_failures import Failures
# The per-run statuses of a needed job and the legal moves between them (runners read the
# statuses from here too).
from .states import (
    BLOCKED, DONE, FAILED, FINAL, LEGAL, OK, QUEUED, RETURNED, SKIPPED, WAITING,
)

_WAITS_ON_NOTHING: frozenset[str] = frozenset()

# Jobs that run for the same reasons share one tuple of them (most share "never ran" or
# "code changed: f"): at 100,000 jobs, one tuple each is megabytes.
_REASONS: dict[tuple[str, ...], tuple[str, ...]] = {}
_NEVER_RAN = (signature.NEVER_RAN,)  # (signature.reasons of a job with no record)


def _shared_reasons(why: tuple[str, ...]) -> tuple[str, ...]:
    if len(_REASONS) > 4096:
        _REASONS.clear()
    return _REASONS.setdefault(why, why)


def _gate(parent: str) -> str:
    # The dependency a stored child has on its dynamic parent being decided first.
    return "\x00parent:" + parent


@dataclass
class Summary:
    ran: int
    skipped: int              # up to date (not counting the restored ones)
    failed: dict[str, str]    # job id -> error
    blocked: dict[str, str]   # job id -> failed job that blocks it
    targets: list[str]
    restored: int = 0         # up to date again after a failed (or blocked) last run


class Scheduler(Checks, DynamicJobs, Failures):
    """Decides, for one make, which jobs run, which are up to date, which are blocked.

    It owns changes to ``graph`` during the run (dynamic children added and forgotten).
    ``records`` maps job ids to what their stored results were made from; ``forced`` are
    jobs to run regardless (remake). ``arg_fps`` computes per-argument digests lazily, so
    reasons can name the argument that changed.

    ``unsettled`` maps the jobs whose last run failed or was blocked to that word
    ("failed", "blocked"). Such a job found up to date is restored: its stored result, from
    an earlier successful run, is taken back (``Skip(job, restored=True)``). A failed one
    that runs again gives "its last run failed" as a reason, followed by what
    ``since_failure(job)`` says changed since (computed lazily) when it has no result.

    ``files(path)`` is the current fingerprint of an input or output file (None: it is
    missing): a job is up to date only if its files are as its stored result had them.
    The driver keeps it current as jobs write their outputs.
    """

    def __init__(
        self,
        graph: Graph,
        records: Mapping[str, RunRecord],
        targets: Iterable[str],
        *,
        forced: Mapping[str, str] | None = None,
        arg_fps: Callable[[str], Mapping[str, str]] | None = None,
        validate: bool = False,
        unsettled: Mapping[str, str] | None = None,
        since_failure: Callable[[str], Iterable[str]] | None = None,
        files: signature.FileLookup | None = None,
    ):
        self.graph = graph
        # The current fingerprints of the jobs' files (None: files are not looked at).
        self.files = files
        self.records: dict[str, RunRecord] = dict(records)
        self.targets = list(dict.fromkeys(targets))
        self.forced = dict(forced or {})  # job -> why it must run whatever its signature
        self._completing: set[str] = set()  # dynamic jobs told to Complete
        self._to_resolve: list[str] = []
        self._started: set[str] = set()  # handed to a runner (see started())
        self._resolving = False
        self._arg_fps = arg_fps
        self._since_failure = since_failure
        self.unsettled = dict(unsettled or {})  # job -> "failed" or "blocked", last time
        self.restored: set[str] = set()  # skipped in this run, taken back after a failure
        self.validate = validate
        # With validate, each job's recent moves and what caused them (its story).
        self._story: dict[str, deque[str]] | None = {} if validate else None
        self._cause = "start"
        self.status: dict[str, str] = {}
        self.active: set[str] = set()  # QUEUED or RETURNED
        self.waiting_on: dict[str, set[str]] = {}
        self.results: dict[str, str | None] = {
            j: r.result_fp if r.present else None for j, r in self.records.items()
        }
        self.errors: dict[str, str] = {}
        self.blocked_by: dict[str, str] = {}
        self.reasons: dict[str, tuple[str, ...]] = {}
        self._dependents_of: dict[str, list[str]] | None = None  # see _dependents
        self._defined: dict[str, set[str]] = {}  # dynamic parent -> children defined this run
        self.attempts: dict[str, int] = {}  # job -> its attempts so far, once it was retried
        self._out: list[Action] = []

    @property
    def _dependents(self) -> dict[str, list[str]]:
        """Job -> the jobs that take its result, built when first needed: a make where
        nothing runs (a no-op of 100,000 jobs) never needs it."""
        if self._dependents_of is None:
            self._dependents_of = self.graph.dependents()
        return self._dependents_of

    # -- public ---------------------------------------------------------------------------

    def detach(self) -> None:
        """The run is over: let go of the callbacks that word reasons (they hold the run
        loop, which holds this scheduler: a cycle that would keep every job's state until a
        full garbage collection)."""
        self._arg_fps = self._since_failure = None

    def start(self) -> list[Action]:
        self._include(self.targets, sweep=True)
        return self._flush()

    def handle(self, event: Event) -> list[Action]:
        self._on(event)
        return self._flush()

    def handle_many(self, events: Iterable[Event]) -> list[Action]:
        """The events in order, as ``handle`` each (and checked after each with
        ``validate``): their actions in one list (a batch of results is one call)."""
        on = self._on
        for event in events:
            on(event)
        return self._flush()

    def _on(self, event: Event) -> None:
        kind = type(event)
        if self._story is not None:
            self._cause = _describe(event)
        if kind is Succeeded:
            self._on_succeeded(event.job_id, event.result_fp)
        elif kind is Failed:
            if not self._retry(event.job_id, event.error):
                self._expect_move(event.job_id, FAILED)
                self._fail(event.job_id, event.error)
        elif kind is Returned:
            self._on_returned(event.job_id)
        elif kind is ChildDefined:
            self._on_child(event.spec)
        elif kind is Reconsider:
            self._expect(event.job_id, QUEUED)
            if event.record is None:
                self.records.pop(event.job_id, None)
            else:
                self.records[event.job_id] = event.record
            if event.last in (FAILED, BLOCKED):
                self.unsettled[event.job_id] = event.last
            else:
                self.unsettled.pop(event.job_id, None)
            self._set_result(event.job_id)
            self._decide(event.job_id)
        elif kind is ResultLost:
            self._on_result_lost(event.job_id, event.consumer)
        else:
            raise InternalError(f"unknown event {event!r}")
        if self.validate:
            self.check()

    @property
    def finished(self) -> bool:
        return not self.active

    def state(self, job_id: str) -> str | None:
        return self.status.get(job_id)

    def summary(self) -> Summary:
        counts = Counter(self.status.values())
        stuck = [j for j, s in self.status.items() if s not in FINAL]
        if stuck and self.finished:
            raise InternalError(f"make ended with jobs never decided: {stuck[:10]}")
        targets = [t for t in self.targets if t in self.status]
        restored = sum(1 for j in self.restored if self.status.get(j) == SKIPPED)
        return Summary(
            ran=counts[DONE],
            skipped=counts[SKIPPED] - restored,
            restored=restored,
            failed={j: self.errors[j] for j, s in self.status.items() if s == FAILED},
            blocked={j: self.blocked_by[j] for j, s in self.status.items() if s == BLOCKED},
            targets=targets,
        )

    # -- setting up the needed set --------------------------------------------------------

    def _include(self, job_ids: Iterable[str], sweep: bool = False) -> None:
        """Add jobs, their upstream closure, dynamic children and ancestors to the run.
        ``sweep`` (at the start, when nothing waits yet) first skips, in one pass, every job
        that is up to date along with its whole upstream."""
        specs = self.graph.specs
        status = self.status
        children = self.graph.children
        seen = {j: None for j in job_ids if j not in status}  # insertion-ordered
        stack = list(seen)
        push, mark = stack.append, seen.__setitem__
        while stack:  # the closure: one pass, no list built per job
            spec = specs.get(stack.pop())
            if spec is None:
                missing = [j for j in seen if j not in specs]
                raise InternalError(f"job {missing[0]!r} is needed but not defined")
            for m in spec.deps:
                if m not in seen and m not in status:
                    mark(m, None)
                    push(m)
            if spec.parent is not None and spec.parent not in seen and spec.parent not in status:
                mark(spec.parent, None)
                push(spec.parent)
            if spec.dynamic:
                for m in children(spec.job_id):
                    if m not in seen and m not in status:
                        mark(m, None)
                        push(m)
        # Jobs of ``seen`` are new to the run: None -> SKIPPED and None -> WAITING are
        # legal moves, set here without _set (the whole of a no-op make goes this way).
        story = self._story
        if sweep:
            swept = self._fresh(seen)
            status.update(dict.fromkeys(swept, SKIPPED))
            # (nothing to restore: plain skips)
            self._out.extend(map(self._skip if self.unsettled else Skip, swept))
            if len(swept) == len(seen):
                seen = {}
            else:
                for jid in swept:
                    del seen[jid]
            if story is not None:
                for jid in swept:
                    self._tell(jid, None, SKIPPED)
        waiting_on = self.waiting_on
        for jid in seen:
            status[jid] = WAITING
            waiting_on[jid] = set()
            if story is not None:
                self._tell(jid, None, WAITING)
        for jid in seen:
            if status[jid] == WAITING:
                self._init_waiting(jid)
        for jid in seen:
            if status[jid] == WAITING and not waiting_on[jid]:
                self._decide(jid)

    def _fresh(self, among: Mapping[str, None]) -> list[str]:
        """The jobs of ``among`` that are up to date, and their upstream too, dependencies
        first (core/sweep.py)."""
        return fresh_jobs(among, self.graph.specs, self.records, self.results, self.forced,
                          self.status, self._defined, self.files)

    _upstream = staticmethod(upstream_of)

    def _init_waiting(self, jid: str) -> None:
        spec = self.graph.specs[jid]
        status = self.status
        waits = set()
        for dep in spec.deps:
            s = status.get(dep)
            if s in (FAILED, BLOCKED):
                self._block(jid, self._root(dep))
                return
            if s not in OK:
                waits.add(dep)
        parent = spec.parent
        if parent is not None and jid not in self._defined.get(parent, ()):
            ps = status.get(parent)
            if ps in (FAILED, BLOCKED):
                self._block(jid, self._root(parent))
                return
            if ps != SKIPPED:
                waits.add(_gate(parent))
        self.waiting_on[jid] = waits

    # -- decisions ------------------------------------------------------------------------

    def _decide(self, jid: str) -> None:
        # Waiting on nothing now: one shared empty set rather than one per job (a job that
        # waits again gets a set of its own).
        self.waiting_on[jid] = _WAITS_ON_NOTHING
        record = self.records.get(jid)
        if record is None and self.unsettled.get(jid) != FAILED:  # (a first make: most jobs)
            self._queue(jid, _NEVER_RAN)
            return
        spec = self.graph.specs[jid]
        forced = self.forced.get(jid)
        if signature.is_up_to_date(spec, record, self.results, forced, self.files):
            self._set(jid, SKIPPED)
            self._out.append(self._skip(jid))
            self._resolve(jid)
            return
        arg_fps = self._arg_fps(jid) if self._arg_fps and record is not None \
            and record.args_fp != spec.args_fp else None
        why = signature.reasons(spec, record, self.results, forced=forced, arg_fps=arg_fps,
                                files=self.files)
        if self.unsettled.get(jid) == FAILED:
            # Not "never ran": it did, and failed. What changed since, when it has no
            # result to compare with.
            why = [r for r in why if r != signature.NEVER_RAN]
            if record is None and self._since_failure is not None:
                why = [*self._since_failure(jid), *why]
            why = [signature.LAST_RUN_FAILED, *why]
        self._queue(jid, _shared_reasons(tuple(why)))

    def _queue(self, jid: str, why: tuple[str, ...]) -> None:
        """``jid`` must run, for these reasons."""
        self.reasons[jid] = why
        self.restored.discard(jid)
        self._set(jid, QUEUED)
        self._out.append(Run(jid, why))

    def _skip(self, jid: str) -> Skip:
        """``jid`` is up to date; restored when its last run failed or was blocked (from
        then on, its last outcome is this one)."""
        if self.unsettled.pop(jid, None) is None:
            return Skip(jid)
        self.restored.add(jid)
        return Skip(jid, restored=True)

    def _resolve(self, jid: str) -> None:
        """``jid`` reached DONE or SKIPPED: release what waited on it. A worklist, not
        recursion: a no-op make of a chain of 100,000 jobs resolves them one by one."""
        self._to_resolve.append(jid)
        if self._resolving:
            return
        self._resolving = True
        try:
            while self._to_resolve:
                self._resolved(self._to_resolve.pop())
        finally:
            self._resolving = False

    def _resolved(self, jid: str) -> None:
        status = self.status
        for dependent in self._dependents.get(jid, ()):
            if status.get(dependent) == WAITING:
                self._release(dependent, jid)
        spec = self.graph.specs[jid]
        if spec.dynamic and status[jid] == SKIPPED:
            gate = _gate(jid)
            for child in self.graph.children(jid):
                if status.get(child) == WAITING:
                    self._release(child, gate)
        if spec.parent is not None and status.get(spec.parent) == RETURNED:
            self._check_complete(spec.parent)

    def _release(self, jid: str, what: str) -> None:
        waits = self.waiting_on[jid]
        waits.discard(what)
        if not waits:
            self._decide(jid)

    def _on_succeeded(self, jid: str, result_fp: str) -> None:
        self._expect_move(jid, DONE)
        self.results[jid] = result_fp
        self._set(jid, DONE)
        self.forced.pop(jid, None)
        self._completing.discard(jid)
        # Dependents already judged up to date against another result must look again
        # (only possible when a lost result was remade to a different value).
        for dependent in self._dependents.get(jid, ()):
            if self.status.get(dependent) == SKIPPED:
                consumed = self.records[dependent].dep_fps
                if consumed.get(jid) != result_fp:
                    self._set(dependent, WAITING)
                    self.waiting_on[dependent] = set()
                    self._decide(dependent)
        self._resolve(jid)

    def _set_result(self, jid: str) -> None:
        record = self.records.get(jid)
        self.results[jid] = record.result_fp if record is not None and record.present else None

    def started(self, jid: str) -> None:
        """The driver handed ``jid`` to a runner: its inputs are loaded (or being loaded)."""
        self._started.add(jid)

    def _retry(self, jid: str, error: str) -> bool:
        """A running job failed: True (and Retry emitted) if it has attempts left. Not a
        dynamic job that defined children in this run (they were made by the attempt that
        failed), nor one that already returned."""
        if self.status.get(jid) != QUEUED or self._defined.get(jid):
            return False
        made = self.attempts.get(jid, 1)
        if made > self.graph.specs[jid].options.retries:
            return False
        self.attempts[jid] = made + 1
        self._set(jid, QUEUED)
        self._started.discard(jid)
        self._out.append(Retry(jid, made + 1, error))
        return True

    # -- for runners that send jobs ahead (parmake --dask) --------------------------------

    def runs_whatever(self, jid: str) -> bool:
        """``jid`` waits for its dependencies but will run whatever results they bring: no
        stored result of it can turn out up to date (none, forced, missing, or made from
        other code, arguments or dependencies), so there is no early cutoff to wait for.
        A runner may send it ahead, chained to its inputs; it is still decided (Run, Block)
        only once they are final. Not a dynamic child still waiting for its parent, nor a
        job that holds resources."""
        if self.status.get(jid) != WAITING:
            return False
        gate = _gate("")
        if any(w.startswith(gate) for w in self.waiting_on[jid]):
            return False
        spec = self.graph.specs[jid]
        if spec.options.resources:
            return False  # it starts only once what it holds fits: never ahead of time
        if spec.inputs or spec.options.outputs:
            return False  # its files are looked at when it is decided: never ahead of time
        record = self.records.get(jid)
        if record is None or self.forced.get(jid) or not record.present:
            return True
        if record.code_fp != spec.code_fp or record.args_fp != spec.args_fp:
            return True
        consumed = record.dep_fps
        return len(consumed) != len(spec.deps) or any(d not in consumed for d in spec.deps)

    def dependents(self, jid: str) -> tuple[str, ...] | list[str]:
        """The jobs that take ``jid``'s result as an input (not dynamic children)."""
        return self._dependents.get(jid, ())

    def _on_result_lost(self, jid: str, consumer: str) -> None:
        record = self.records.get(jid)
        if record is not None:
            record.present = False
        self._started.discard(consumer)
        if self.status.get(consumer) == RETURNED:
            self._completing.discard(consumer)  # it completes once the child is remade
        # Every dependent that has not started waits (again, or also) for the result to be
        # remade.
        for dependent in {consumer, *self._dependents.get(jid, ())}:
            s = self.status.get(dependent)
            if s == QUEUED and dependent not in self._started:
                self._set(dependent, WAITING)
                self.waiting_on[dependent] = {jid}
            elif s == WAITING:
                self.waiting_on[dependent].add(jid)
        if self.status.get(jid) in OK:
            # Made again once its own inputs are there: one of them may be lost too (and
            # queued to be made again) by the time this loss is found.
            self.results[jid] = None
            self._set(jid, WAITING)
            self._init_waiting(jid)
            if self.status[jid] == WAITING and not self.waiting_on[jid]:
                self._decide(jid)

    # -- moves ----------------------------------------------------------------------------

    def _set(self, jid: str, s: str) -> None:
        status = self.status
        old = status.get(jid)
        if (old, s) not in LEGAL:
            self._illegal(jid, old, s)
        if self._story is not None:
            self._tell(jid, old, s)
        status[jid] = s
        if s == QUEUED or s == RETURNED:
            self.active.add(jid)
        else:
            self.active.discard(jid)

    def _flush(self) -> list[Action]:
        out, self._out = self._out, []
        return out
