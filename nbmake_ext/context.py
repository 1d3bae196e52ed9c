"""Context: the facade every surface calls (the API, the console, the magics)."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .core import signature
from .core.graph import Graph
from .core.jobspec import JobSpec
from .core.states import ALL, STATE_WORDS, STATES, public_state
from .core.states import restorable as can_restore
from .commands import engine_count
from .errors import InvalidJob, JobFailed, JobsFailed, NbmakeError, NotDone, UnknownTarget
from .kernel.driver import Driver, RunReport
from .kernel.inkernel import InKernelRunner
from .kernel.observer import Observer
from .promise import Promise
from .registration import arg_fingerprints, code_of, function_blob, make_spec, payload
from .store import ResultUnavailable, Store, StoredJob

DEFAULT_STORE = ".nbmake"

logger = logging.getLogger(__name__)


def default_store_path() -> Path:
    """``$NBMAKE_STORE`` or ``./.nbmake``; relative paths are relative to the working dir."""
    return Path(os.environ.get("NBMAKE_STORE") or DEFAULT_STORE).absolute()


@dataclass(frozen=True)
class JobRow:
    """One line of ``ls`` (the first five fields are what it prints)."""

    job_id: str
    state: str
    function: str
    duration: float | None
    parent: str | None
    error: str | None = None        # of its last run, when that failed
    blocked_by: str | None = None   # the failed job that blocked it
    ended: float | None = None      # when its last run ended (epoch seconds)
    has_result: bool = False        # a stored result exists (perhaps made from older inputs)
    restorable: bool = False        # failed or blocked, but the next make restores its result


@dataclass(frozen=True)
class Details:
    """Everything ``details`` shows about one job."""

    job_id: str
    state: str
    function: str
    parent: str | None
    children: list[str]
    dependencies: list[str]
    dependents: list[str]
    why: list[str]
    started: float | None
    ended: float | None
    duration: float | None
    cpu: float | None
    engine: str | None
    error: str | None
    blocked_by: str | None
    traceback: str
    stdout: str
    stderr: str
    reasons_last_run: list[str] = field(default_factory=list)


class Context:
    """Jobs on one store. ``comp`` registers; commands run and inspect them."""

    def __init__(self, store: str | os.PathLike | None = None, *, durable: bool = True):
        path = Path(store).absolute() if store is not None else default_store_path()
        self.store = Store(path, durable=durable)
        self.graph = Graph()
        self._pending: dict[str, JobSpec] = {}
        self._registered: dict[str, None] = {}  # ids registered here, in order (own_jobs)
        # Dynamic children whose code changed since their parent defined them: recorded in
        # the store only when they run (see _refresh_code).
        self._lagging: set[str] = set()
        self._stored: dict[str, StoredJob] = {}
        self._stored_mark: tuple | None = None
        self._loaded = False
        self.report: Callable[[str], None] = print
        self.validate = False  # scheduler self-checks after every event (tests switch it on)
        # A live progress line on stderr during make/parmake/remake when no observer is
        # given, where stderr is a terminal and $NBMAKE_PROGRESS is not 0
        # (ui/progress_line.py); False: never.
        self.progress = True
        self._pool = None  # engines, started by the first parmake
        self._closed = False
        _open_contexts.add(self)

    def __repr__(self) -> str:
        return f"<Context store={str(self.store.path)!r} jobs={len(self.graph)}>"

    # -- defining jobs --------------------------------------------------------------------

    def comp(self, func: Any, /, *args: Any, job_id: str | None = None, **kwargs: Any) -> Promise:
        """Register ``func(*args, **kwargs)`` as a job; runs nothing. Returns its Promise."""
        return self.register(make_spec(func, args, kwargs, job_id))

    def comp_dynamic(self, func: Any, /, *args: Any, job_id: str | None = None,
                     **kwargs: Any) -> Promise:
        """Like ``comp``, but ``func`` receives a context first and may define more jobs."""
        return self.register(make_spec(func, args, kwargs, job_id, dynamic=True))

    def register(self, spec: JobSpec) -> Promise:
        """Register a job from its definition (``comp`` builds one with ``make_spec``;
        ``%%comp`` cells build their own). Runs nothing; recorded in the store at the next
        command, or at the end of the notebook cell."""
        function_blob(spec)  # an unpicklable function is an error now, not at make time
        try:
            outcome = self.graph.add(spec)
        except InvalidJob:
            if self._loaded or not any(d not in self.graph for d in spec.deps):
                raise
            self._load()  # the dependency may be a stored job this process has not seen
            outcome = self.graph.add(spec)
        if outcome != "same":
            self._pending[spec.job_id] = spec
        self._registered[spec.job_id] = None
        return Promise(spec.job_id, self)

    def own_jobs(self, needs: bool = True) -> list[str]:
        """The jobs registered through this context since it opened (``comp``,
        ``comp_dynamic``, ``%%comp`` cells) and, with ``needs``, what they need: their
        dependencies and dynamic children, transitively; in the order of the graph. Empty
        when it registered none. In a kernel, this is what a magic with no targets means
        (commands of the Python API take every job then)."""
        graph = self.graph
        own = [j for j in self._registered if j in graph]
        if not needs or not own:
            return own
        self.sync()  # dynamic children the store knows of
        seen = set(own)
        stack = list(own)
        while stack:
            spec = graph.specs.get(stack.pop())
            if spec is None:
                continue
            for other in (*spec.deps, *graph.children(spec.job_id)):
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        return [j for j in graph.specs if j in seen]

    @property
    def has_pending(self) -> bool:
        """Definitions registered since the store last heard of them."""
        return bool(self._pending)

    def sync(self) -> None:
        """Record pending definitions in the store and reread what is stored."""
        self._refresh_code()
        self._load()
        stored = self._stored
        entries = []
        for jid, spec in self._pending.items():
            st = stored.get(jid)
            if st is not None and st.same_definition(spec):
                continue
            key, blob = function_blob(spec)
            entries.append((spec, key, blob, payload(spec)))
        self.store.define(entries)
        self._pending.clear()

    def _refresh_code(self, job_ids: Iterable[str] | None = None) -> None:
        """A job runs with the functions as they are when it runs, so its code fingerprint
        is taken again before every command: a helper edited after ``comp()`` counts."""
        seen: dict[int, Any] = {}
        specs = self.graph.specs
        chosen = specs.items() if job_ids is None else [(j, specs[j]) for j in job_ids]
        for jid, spec in list(chosen):
            func = spec.func
            if func is None:
                continue
            key = id(func)
            code = seen.get(key)
            if code is None:
                code = seen[key] = code_of(func)
            if code.digest != spec.code_fp:
                new = dataclasses.replace(spec, code_fp=code.digest, code_parts=code.parts,
                                          def_fp="")
                self.graph.specs[jid] = new
                if spec.parent is None:
                    self._pending[jid] = new
                else:
                    # A child is defined by its parent's run: after a restart the store must
                    # give back that definition (the parent, up to date, does not redefine
                    # it), not one taken from the notebook at some later command, unless
                    # the child ran with it.
                    self._lagging.add(jid)

    def _load(self) -> None:
        self._stored_mark = self.store.activity()  # before the read: see Driver._reread
        self._stored = {}  # the old snapshot goes before the new one is read, not after
        self._stored = self.store.snapshot()
        self._loaded = True
        specs = self.graph.specs
        for jid, st in self._stored.items():
            mine = specs.get(jid)
            if mine is None or mine.func is None:
                self.graph.put_stored(st.spec)

    # -- running --------------------------------------------------------------------------

    def make(self, *targets: str, echo: bool = False, observer: Observer | None = None) -> RunReport:
        """Run, here and one at a time, every job the targets need that is not up to date.
        ``observer`` (a view such as the job board) is told of every change as it happens."""
        self.sync()
        ids = self._select(targets)
        return self._run(ids, InKernelRunner(echo=echo), "make", observer=observer)

    def parmake(self, *targets: str, n: int | None = None, echo: bool = False,
                dask: Any = None, observer: Observer | None = None) -> RunReport:
        """Like make, on ``n`` engine processes (default: the number of CPUs). Engines start
        on first use and are reused by later parmakes. ``dask`` (a scheduler address or a
        ``distributed.Client``) runs the jobs on that Dask cluster instead. ``n`` must be
        a whole number >= 1 (``BadUsage``, a ValueError, before anything runs)."""
        if n is not None:
            n = engine_count(n, word=False)
        self.sync()
        ids = self._select(targets)
        if dask is not None:
            from .kernel.dask import DaskRunner

            runner = DaskRunner(dask, self.store.path, n=n, durable=self.store.durable)
            try:
                return self._run(ids, runner, "parmake", observer=observer)
            finally:
                runner.close()
        return self._run(ids, self._engines(n), "parmake", observer=observer)

    def _engines(self, n: int | None):
        from .kernel.pool import EnginePool

        n = n or os.cpu_count() or 1
        if self._pool is None:
            self._pool = EnginePool(self.store.path, n, durable=self.store.durable)
        else:
            self._pool.resize(n)
        return self._pool

    def remake(self, *targets: str, echo: bool = False,
               observer: Observer | None = None) -> RunReport:
        """Force the targets to run again, then make them and what depends on them."""
        if not targets:
            raise UnknownTarget("remake needs targets (job ids, globs or state words)")
        self.sync()
        ids = self._select(targets)
        self.store.set_forced(ids)
        self._load()
        wanted = self.graph.downstream(ids)
        order = ids + [j for j in wanted if j not in set(ids)]
        return self._run(order, InKernelRunner(echo=echo), "remake",
                         forced=dict.fromkeys(ids, "forced by remake"), observer=observer)

    def _run(self, ids: list[str], runner, command: str, forced: dict[str, str] | None = None,
             observer: Observer | None = None) -> RunReport:
        stored = self._stored
        forced = {**{j: st.forced for j, st in stored.items() if st.forced}, **(forced or {})}
        if observer is None:
            observer = self._progress_line()
        driver = Driver(self.store, self.graph, dict(stored), ids, runner, forced=forced,
                        command=command, validate=self.validate, observer=observer,
                        lagging=self._lagging, read_at=self._stored_mark)
        report: RunReport | None = None
        # Observers that follow the run as a whole (kernel/observer.py, RunObserver).
        started = getattr(observer, "run_started", None)
        ended = getattr(observer, "run_ended", None)
        try:
            if started is not None:
                sched = driver.sched
                try:
                    started(command, lambda: len(sched.status))
                except Exception:  # noqa: BLE001 - a view must not stop the run
                    logger.debug("the run's observer failed to start", exc_info=True)
            report = driver.run()
        finally:
            if ended is not None:
                try:
                    ended()  # before the summary line
                except Exception:  # noqa: BLE001 - a view must not hide the run's outcome
                    logger.debug("the run's observer failed to end", exc_info=True)
            self._loaded = False
            if report is None:  # interrupted or broken: still say how far it got
                report = RunReport(command, interrupted=True)
                driver.count(report)
            self.report(report.line())
        targets = set(ids)
        failed_targets = [j for j in report.failed if j in targets]
        blocked_targets = {j: by for j, by in report.blocked.items() if j in targets}
        if failed_targets or blocked_targets:
            roots = {j: report.failed[j] for j in report.failed
                     if j in targets or j in blocked_targets.values()}
            raise JobsFailed(roots, blocked_targets,
                             {j: self.store.logs(j)[2] for j in list(roots)[:3]})
        return report

    def _progress_line(self) -> Observer | None:
        """The live line of a run that has no observer, where it belongs (``progress``)."""
        if not self.progress:
            return None
        from .ui import progress_line

        return progress_line.ProgressLine() if progress_line.wanted() else None

    # -- cleaning -------------------------------------------------------------------------

    def clean(self, *targets: str) -> list[str]:
        """Forget the results (and dynamic children) of the targets; none means all."""
        self.sync()
        ids = self._select(targets)
        # Dynamic children go with their parent's result, also when selected themselves.
        children = set(c for j in ids for c in self.graph.descendants(j))
        ids = [j for j in ids if j not in children]
        for c in children:
            self.graph.remove(c)
        self.store.forget(children)
        self.store.clean(ids)
        self._loaded = False
        return ids

    # -- inspecting -----------------------------------------------------------------------

    def ls(self, *targets: str) -> list[JobRow]:
        self.sync()
        states = self._states()
        ids = self._select(targets, states)
        specs, stored = self.graph.specs, self._stored
        results: dict[str, str] | None = None
        roots: dict[str, str | None] = {}
        rows = []
        for j in ids:
            st = stored.get(j)
            if st is None:
                rows.append(JobRow(j, states[j], signature.short_label(specs[j].function), None,
                                   specs[j].parent))
                continue
            state, blocked_by, restorable = states[j], st.blocked_by, False
            if state in ("failed", "blocked"):
                if results is None:
                    results = self._current_results()
                restorable = self._restorable(j, results)
                if state == "blocked":
                    blocked_by = self._root_failure(j, states, roots)
            rows.append(JobRow(j, state, signature.short_label(specs[j].function),
                               st.duration, specs[j].parent, st.error, blocked_by,
                               st.ended, st.record is not None, restorable))
        return rows

    def why(self, job_id: str) -> list[str]:
        """Reasons the job is not up to date, in words; empty when it is."""
        return self.why_many([job_id])[job_id]

    def why_many(self, job_ids: Iterable[str]) -> dict[str, list[str]]:
        """``why`` of several jobs, from one read of the store."""
        self.sync()
        job_ids = list(job_ids)
        for job_id in job_ids:
            self._require(job_id)
        states, results = self._states(), self._current_results()
        return {j: self._why(j, states, results) for j in job_ids}

    def definition(self, job_id: str) -> JobSpec:
        """The job's definition as this context knows it."""
        self._require(job_id)
        return self.graph.specs[job_id]

    def _why(self, job_id: str, states: dict[str, str], results: dict[str, str]) -> list[str]:
        spec = self.graph.specs[job_id]
        st = self._stored.get(job_id)
        state = states[job_id]
        record = st.record if st is not None else None
        forced = st is not None and st.forced
        fresh = state in ("failed", "blocked") and self._restorable(job_id, results)
        out = []
        if state == "failed" and st is not None:
            if fresh:  # what make does too: it takes the stored result back
                out.append(f"{signature.LAST_RUN_FAILED} ({st.error}), but {signature.RESTORES}")
            else:
                out.append(f"{signature.LAST_RUN_FAILED}: {st.error}")
            out += self._changed_since_failure(spec)
        elif state == "blocked" and st is not None:
            root = self._root_failure(job_id, states) or "a job"
            if not fresh:
                out.append(f"blocked by {root}, which failed")
            elif root not in self.graph or self._result_current(root, results):
                out.append(f"blocked by {root}, which failed, but {signature.RESTORES}")
            else:
                out.append(f"blocked by {root}, which failed; its stored result matches its "
                           f"inputs as they are: the next make restores it if {root} "
                           f"succeeds with an equal result")
        elif state == "running":
            out.append("it is running now")
        if record is not None:
            # A dependency with no result (cleaned) changes nothing until it is remade.
            results = {**{d: record.dep_fps[d] for d in spec.deps if d in record.dep_fps},
                       **results}
        if not signature.is_up_to_date(spec, record, results, forced) or state in ("failed", "blocked"):
            arg_fps = None
            if record is not None and record.args_fp != spec.args_fp:
                arg_fps = self._arg_fps(spec)
            reasons = signature.reasons(spec, record, results, forced=forced, arg_fps=arg_fps)
            if state == "failed":
                reasons = [r for r in reasons if r != "never ran"]
            out += reasons
        return out

    def _changed_since_failure(self, spec: JobSpec) -> list[str]:
        row = self.store.details(spec.job_id)
        return signature.since_failure(spec, row.get("f_code_fp"), row.get("f_code_parts"),
                                       row.get("f_args_fp"))

    def _restorable(self, job_id: str, results: dict[str, str]) -> bool:
        """Failed or blocked, and the next make that reaches it takes its stored result
        back (as make decides)."""
        st = self._stored.get(job_id)
        return st is not None and can_restore(self.graph.specs[job_id], st.state, st.record,
                                              forced=st.forced, dep_results=results)

    def _result_current(self, job_id: str, results: dict[str, str]) -> bool:
        """Its stored result is up to date as the store is now, whatever its last run."""
        st = self._stored.get(job_id)
        return st is not None and signature.is_current(self.graph.specs[job_id], st.record,
                                                       results, st.forced)

    def _root_failure(self, job_id: str, states: dict[str, str],
                      memo: dict[str, str | None] | None = None) -> str | None:
        """The failed job at the root of a blocked job's block: the job it was blocked by
        when that one is failed; else (it is blocked itself, or was made since) the failed
        job found first upstream through blocked ones; else the recorded blocker. ``memo``
        carries what was found for other jobs (one ls: each job is looked at once)."""
        memo = {} if memo is None else memo
        stored, specs = self._stored, self.graph.specs

        def blocker(jid: str) -> str | None:
            st = stored.get(jid)
            return st.blocked_by if st is not None else None

        def upstream(jid: str) -> list[str]:
            spec = specs.get(jid)
            ups = [] if spec is None else [*spec.deps, *([spec.parent] if spec.parent else [])]
            by = blocker(jid)
            return [by, *ups] if by is not None else ups

        stack, on_stack = [job_id], {job_id}
        while stack:  # depth first, without recursion: blocked chains may be long
            jid = stack[-1]
            if jid in memo:
                stack.pop()
                on_stack.discard(jid)
                continue
            ups = upstream(jid)
            todo = [u for u in ups if states.get(u) == "blocked" and u not in memo
                    and u not in on_stack]
            if todo and states.get(ups[0]) != "failed":
                stack += todo
                on_stack.update(todo)
                continue
            found = None
            for up in ups:
                state = states.get(up)
                if state == "failed":
                    found = up
                elif state == "blocked":
                    found = memo.get(up)
                if found is not None:
                    break
            memo[jid] = found
            stack.pop()
            on_stack.discard(jid)
        return memo[job_id] or blocker(job_id)

    def details(self, job_id: str) -> Details:
        self.sync()
        self._require(job_id)
        states = self._states()
        spec = self.graph.specs[job_id]
        row = self.store.details(job_id)
        rev = self.graph.dependents()
        import json

        return Details(
            job_id=job_id, state=states[job_id], function=signature.short_label(spec.function),
            parent=spec.parent, children=self.graph.children(job_id),
            dependencies=list(spec.deps), dependents=rev.get(job_id, []),
            why=self._why(job_id, states, self._current_results()),
            started=row.get("started"), ended=row.get("ended"), duration=row.get("duration"),
            cpu=row.get("cpu"), engine=row.get("engine"), error=row.get("error"),
            blocked_by=self._root_failure(job_id, states) if states[job_id] == "blocked"
            else row.get("blocked_by"), traceback=row.get("traceback") or "",
            stdout=row.get("stdout") or "", stderr=row.get("stderr") or "",
            reasons_last_run=json.loads(row["reasons"]) if row.get("reasons") else [],
        )

    def stats(self, *targets: str) -> dict[str, dict]:
        """Counts per state and per function of the jobs the targets select (none: all)."""
        self.sync()
        states = self._states()
        chosen = self._select(targets, states) if targets else states
        by_state = {s: 0 for s in STATES}
        by_function: dict[str, dict[str, int]] = {}
        for jid in chosen:
            state = states[jid]
            by_state[state] += 1
            fn = signature.short_label(self.graph.specs[jid].function)
            by_function.setdefault(fn, {}).setdefault(state, 0)
            by_function[fn][state] += 1
        return {"by_state": by_state, "by_function": by_function}

    def state_of(self, job_id: str) -> str:
        if job_id in self.graph:
            self._refresh_code([job_id])
        just_read = not self._loaded or job_id in self._pending
        if just_read:
            self.sync()
        self._require(job_id)
        ids = [job_id, *self.graph.specs[job_id].deps]
        if not just_read:  # another process may have made it since: reread the job and its deps
            self._stored.update(self.store.snapshot_of(ids))
        results = {j: st.record.result_fp for j in ids
                   if (st := self._stored.get(j)) is not None and st.record is not None
                   and st.record.present}
        return self._state(job_id, results, self.store.running_among([job_id]))

    def result_of(self, job_id: str) -> Any:
        state = self.state_of(job_id)
        if state == "done":
            try:
                return self.store.load_result(job_id)
            except ResultUnavailable as exc:
                # SPEC 9: not done any more, and it runs again at the next make.
                logger.warning("%s; the job will run again at the next make", exc)
                self.store.mark_unreadable(job_id)
                self.store.flush()
                raise ResultUnavailable(f"{exc}; run make to compute it again") from None
        if state == "failed":
            st = self._stored[job_id]
            raise JobFailed(job_id, st.error or "failed", self.store.logs(job_id)[2])
        raise NotDone(f"job {job_id!r} is {state}: run make first")

    # -- states ---------------------------------------------------------------------------

    def _states(self) -> dict[str, str]:
        results = self._current_results()
        running = self.store.running_among(self.graph.specs)
        return {j: self._state(j, results, running) for j in self.graph.specs}

    def _current_results(self) -> dict[str, str]:
        return {j: st.record.result_fp for j, st in self._stored.items()
                if st.record is not None and st.record.present}

    def _state(self, jid: str, results: dict[str, str], running: set[str]) -> str:
        st = self._stored.get(jid)
        if st is None:
            return "running" if jid in running else "todo"
        return public_state(self.graph.specs[jid], st.state, st.record, forced=st.forced,
                            dep_results=results, running=jid in running)

    def _select(self, targets: Iterable[str], states: dict[str, str] | None = None) -> list[str]:
        targets = list(targets)
        needs_states = ALL not in targets and any(t in STATE_WORDS and t not in self.graph
                                                  for t in targets)
        if needs_states and states is None:
            states = self._states()
        return self.graph.select(targets, (states or {}).__getitem__)

    def _require(self, job_id: str) -> None:
        if job_id not in self.graph:
            raise UnknownTarget(f"no job {job_id!r}" + self.graph._suggest(job_id))

    def _arg_fps(self, spec: JobSpec) -> dict[str, str]:
        try:
            if spec.func is not None:
                return arg_fingerprints(spec.args, spec.kwargs)
            _, args, kwargs = self.store.load_call(spec.job_id)
            return arg_fingerprints(args, kwargs)
        except Exception:  # noqa: BLE001 - only used to word a reason
            return {}

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Record pending definitions, finish writes and release the store."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending:
                self.sync()
        finally:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            self.store.close()
            _open_contexts.discard(self)

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the current context, used by module-level comp / comp_dynamic ------------------------

_open_contexts: "weakref.WeakSet[Context]" = weakref.WeakSet()
_current: Context | None = None


def current_context() -> Context:
    """The kernel's context once the extension is loaded, else one on the default store."""
    global _current
    if _current is None or _current._closed:
        _current = Context()
    return _current


def set_current_context(ctx: Context | None) -> None:
    global _current
    _current = ctx


def comp(func: Any, /, *args: Any, job_id: str | None = None, **kwargs: Any) -> Promise:
    return current_context().comp(func, *args, job_id=job_id, **kwargs)


def comp_dynamic(func: Any, /, *args: Any, job_id: str | None = None, **kwargs: Any) -> Promise:
    return current_context().comp_dynamic(func, *args, job_id=job_id, **kwargs)


@atexit.register
def _close_all() -> None:
    # Definitions reach the store at the latest when the process exits.
    for ctx in list(_open_contexts):
        try:
            ctx.close()
        except NbmakeError:
            pass
