"""Context: the facade every surface calls (the API, the console, the magics).

This module defines jobs, runs, cleans and closes; what a context answers without
running anything (``ls``, ``why``, ``details``, ``stats``, ...) is in queries.py.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import logging
import os
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .core.graph import Graph
from .core.jobspec import JobSpec
from .core.options import parse_totals
from .commands import engine_count
from .errors import InvalidJob, JobsFailed, NbmakeError, UnknownTarget
from .files.declared import DeclaredFiles
from .files.fingerprints import FileState
from .kernel import clean_makes
from .kernel.driver import Driver, RunReport
from .kernel.inkernel import InKernelRunner
from .kernel.machine import machine_totals
from .kernel.observer import Observer
from .promise import Promise
from .queries import Details, JobRow, Queries  # noqa: F401  (JobRow, Details: re-exported)
from .registration import code_of, comp_spec, function_blob, payload, shell_spec
from .store import Store, StoredJob
from .shared.gc_pause import fewer_collections, gc_paused, objects_frozen

DEFAULT_STORE = ".nbmake"

logger = logging.getLogger(__name__)


def default_store_path() -> Path:
    """``$NBMAKE_STORE`` or ``./.nbmake``; relative paths are relative to the working dir."""
    return Path(os.environ.get("NBMAKE_STORE") or DEFAULT_STORE).absolute()


def _kept_out_of_collections(command: Callable) -> Callable:
    """A make's bookkeeping (the store read, every job's definition and state) lives through
    it: what is alive at its start and what its bookkeeping builds are left out of garbage
    collection until it ends (shared/gc_pause.py)."""
    @functools.wraps(command)
    def run(self, *args, **kwargs):
        with objects_frozen():
            return command(self, *args, **kwargs)
    return run


class Context(Queries, DeclaredFiles):
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
        # The resource totals of the latest parmake (core/options.py Totals), None before.
        self.resource_totals: Mapping[str, float] | None = None
        # The files of jobs as the current command sees them (a cache of fingerprints by
        # size, mtime and inode, kept in the store) and which job writes which file.
        self.files = FileState(self.store.file_stats)
        self._producers: dict[str, str] = {}   # declared output -> the job that writes it
        self._dir_outputs = False  # some of them are directories
        self._outputs_added = False  # new declared outputs: inputs are linked again at sync
        self._closed = False
        _open_contexts.add(self)

    def __repr__(self) -> str:
        return f"<Context store={str(self.store.path)!r} jobs={len(self.graph)}>"

    # -- defining jobs --------------------------------------------------------------------

    def comp(self, func: Any, /, *args: Any, job_id: str | None = None, **kwargs: Any) -> Promise:
        """Register ``func(*args, **kwargs)`` as a job; runs nothing. Returns its Promise.

        Keywords that start with ``job_`` are the job's options, not the function's:
        ``job_timeout=SECONDS``, ``job_retries=N``, ``job_resources={"gpus": 1, "mem":
        "8GB", ...}`` (README, "Job options"). They are not part of its signature:
        changing one never makes the job run again."""
        return self.register(comp_spec(func, args, kwargs, job_id))

    def comp_dynamic(self, func: Any, /, *args: Any, job_id: str | None = None,
                     **kwargs: Any) -> Promise:
        """Like ``comp``, but ``func`` receives a context first and may define more jobs."""
        return self.register(comp_spec(func, args, kwargs, job_id, dynamic=True))

    def sh(self, command: str, /, inputs: Any = None, outputs: Any = None, *,
           job_id: str | None = None, **options: Any) -> Promise:
        """Register a shell step: ``command`` run by ``/bin/sh`` with ``{input}``,
        ``{inputs}``, ``{output}``, ``{outputs}`` filled in (shell-quoted paths). ``inputs``:
        paths, ``File``s or promises (their declared outputs); ``outputs``: the paths it
        writes. The command is its code; options as for ``comp`` (``job_timeout=`` or
        ``timeout=``, ``retries=``, ``resources=``). Its stdout and stderr are its log;
        a non-zero exit fails it."""
        return self.register(shell_spec(command, inputs, outputs, job_id, options,
                                        lambda p: Promise(p.job_id, self).outputs))

    def register(self, spec: JobSpec) -> Promise:
        """Register a job from its definition (``comp`` builds one with ``make_spec``;
        ``%%comp`` cells build their own). Runs nothing; recorded in the store at the next
        command, or at the end of the notebook cell."""
        function_blob(spec)  # an unpicklable function is an error now, not at make time
        if spec.options.outputs:
            self._declare_outputs(spec)
        if spec.inputs:
            spec = self._with_producers(spec, check=True)
        old = self.graph.specs.get(spec.job_id)
        try:
            outcome = self.graph.add(spec)
        except InvalidJob:
            if self._loaded or not any(d not in self.graph for d in spec.deps):
                raise
            self._load()  # the dependency may be a stored job this process has not seen
            old = self.graph.specs.get(spec.job_id)
            outcome = self.graph.add(spec)
        if outcome != "same" or old.options is not spec.options and old.options != spec.options:
            # (the same definition with other options: stored anew, and nothing runs again)
            self._pending[spec.job_id] = spec
        self._registered[spec.job_id] = None
        return Promise(spec.job_id, self)

    def own_jobs(self, needs: bool = True) -> list[str]:
        """The jobs registered through this context since it opened (``comp``,
        ``comp_dynamic``, ``%%comp`` cells) and, with ``needs``, what they need: their
        dependencies and dynamic children, transitively; in the order of the graph. Empty
        when it registered none. In a kernel, this is what a magic with no targets means
        (commands of the Python API take every job then)."""
        own = [j for j in self._registered if j in self.graph]
        if not needs or not own:
            return own
        self.sync()  # dynamic children the store knows of
        return self._needed_by(own)

    def own_rows(self) -> list[JobRow]:
        """``ls`` of ``own_jobs()`` (of every job when it registered none), from one read
        of the store (what a kernel's board shows)."""
        self.sync(shown=True)
        own = [j for j in self._registered if j in self.graph]
        return self._rows(self._needed_by(own) if own else ())

    def _needed_by(self, own: list[str]) -> list[str]:
        """``own``, their dependencies and dynamic children, transitively, in the order of
        the graph (as the last ``sync`` knows them)."""
        graph = self.graph
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

    def sync(self, shown: bool = False) -> None:
        """Record pending definitions in the store and reread what is stored (``shown``:
        with what only views show, for a view of every job)."""
        with gc_paused():  # (objects per job, kept: nothing to collect)
            self._sync(shown)

    def _sync(self, shown: bool = False) -> None:
        self._refresh_code()
        if self._outputs_added:
            self._link_inputs()
        self.files.moment()  # a command looks at each file afresh
        self._keep_file_stats()
        self._load(shown)
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
        last = code = None  # (jobs of one function mostly come one after another)
        for jid, spec in list(chosen):
            func = spec.func
            if func is None:
                continue
            if func is not last:
                key = id(func)
                code = seen.get(key)
                if code is None:
                    code = seen[key] = code_of(func)
                last = func
            if code.digest != spec.code_fp:
                new = dataclasses.replace(spec, code_fp=code.digest, code_parts=code.parts,
                                          _def_fp="")
                self.graph.specs[jid] = new
                if spec.parent is None:
                    self._pending[jid] = new
                else:
                    # A child is defined by its parent's run: after a restart the store must
                    # give back that definition (the parent, up to date, does not redefine
                    # it), not one taken from the notebook at some later command, unless
                    # the child ran with it.
                    self._lagging.add(jid)

    def _load(self, shown: bool = False) -> None:
        self._stored_mark = self.store.activity()  # before the read: see Driver._reread
        self._stored = {}  # the old snapshot goes before the new one is read, not after
        self._stored = self.store.snapshot(shown)
        self._loaded = True
        specs = self.graph.specs
        producers = self._producers
        for jid, st in self._stored.items():
            mine = specs.get(jid)
            if mine is None or mine.func is None:
                self.graph.put_stored(st.spec)
            if jid not in self._registered:
                for path in st.outputs():  # (what this process declared wins)
                    producers.setdefault(path, jid)
                    if path.endswith("/"):
                        self._dir_outputs = True

    # -- running --------------------------------------------------------------------------

    @_kept_out_of_collections
    def make(self, *targets: str, echo: bool = False, observer: Observer | None = None) -> RunReport:
        """Run, here and one at a time, every job the targets need that is not up to date.
        ``observer`` (a view such as the job board) is told of every change as it happens."""
        unchanged = clean_makes.unchanged_report(self, targets, "make", observer)
        if unchanged is not None:
            return unchanged
        self.sync()
        ids = self._select(targets)
        return self._run(ids, InKernelRunner(echo=echo), "make", observer=observer)

    @_kept_out_of_collections
    def parmake(self, *targets: str, n: int | None = None, echo: bool = False,
                dask: Any = None, observer: Observer | None = None,
                resources: Mapping[str, float | str] | None = None) -> RunReport:
        """Like make, on ``n`` engine processes (default: the number of CPUs). Engines start
        on first use and are reused by later parmakes. ``dask`` (a scheduler address or a
        ``distributed.Client``) runs the jobs on that Dask cluster instead. ``n`` must be
        a whole number >= 1 (``BadUsage``, a ValueError, before anything runs).

        ``resources`` sets totals of the amounts the jobs running at once may hold
        (``{"gpus": 2, "licence": 3, "mem": "64GB"}``); those it does not set are
        ``cpus`` the number of engines, ``mem`` the machine's memory, ``gpus`` the GPUs
        the kernel can see, any other 1. A name or an amount it cannot take is
        ``BadUsage`` before anything runs."""
        if n is not None:
            n = engine_count(n, word=False)
        given = parse_totals(resources)
        # A cluster's workers declare what they have: Dask shares it out (a job's resources
        # are its task's), not this kernel.
        self.resource_totals = dict(given) if dask is not None \
            else machine_totals(n or os.cpu_count() or 1, given)
        unchanged = clean_makes.unchanged_report(self, targets, "parmake", observer)
        if unchanged is not None:
            return unchanged
        self.sync()
        ids = self._select(targets)
        if dask is not None:
            from .kernel.dask import DaskRunner

            runner = DaskRunner(dask, self.store.path, n=n, durable=self.store.durable)
            try:
                return self._run(ids, runner, "parmake", observer=observer)
            finally:
                runner.close()
        n = n or os.cpu_count() or 1
        return self._run(ids, self._engines(n), "parmake", observer=observer,
                         resources=self.resource_totals)

    def _engines(self, n: int):
        from .kernel.pool import EnginePool

        if self._pool is None:
            self._pool = EnginePool(self.store.path, n, durable=self.store.durable)
        else:
            self._pool.resize(n)
        return self._pool

    @_kept_out_of_collections
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
             observer: Observer | None = None,
             resources: Mapping[str, float] | None = None) -> RunReport:
        stored = self._stored
        forced = {**{j: st.forced for j, st in stored.items() if st.forced}, **(forced or {})}
        if observer is None:
            observer = self._progress_line()
        driver = Driver(self.store, self.graph, dict(stored), ids, runner, forced=forced,
                        command=command, validate=self.validate, observer=observer,
                        lagging=self._lagging, read_at=self._stored_mark,
                        resources=resources, files=self.files)
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
            # (not while jobs run here: their garbage is collected as usual)
            with objects_frozen(), fewer_collections(runner.capabilities.remote):
                report = driver.run()
        finally:
            if ended is not None:
                try:
                    ended()  # before the summary line
                except Exception:  # noqa: BLE001 - a view must not hide the run's outcome
                    logger.debug("the run's observer failed to end", exc_info=True)
            self._loaded = False
            self._keep_file_stats()
            if report is None:  # interrupted or broken: still say how far it got
                report = RunReport(command, interrupted=True)
                driver.count(report)
            self.report(report.line())
        clean_makes.record_if_clean(self, driver, ids, command, report)
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

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Record pending definitions, finish writes and release the store."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending:
                self.sync()
            self._keep_file_stats()
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
    """``Context.comp`` on the current context (options ``job_timeout=``, ... included)."""
    return current_context().comp(func, *args, job_id=job_id, **kwargs)


def comp_dynamic(func: Any, /, *args: Any, job_id: str | None = None, **kwargs: Any) -> Promise:
    """``Context.comp_dynamic`` on the current context."""
    return current_context().comp_dynamic(func, *args, job_id=job_id, **kwargs)


def sh(command: str, /, inputs: Any = None, outputs: Any = None, *, job_id: str | None = None,
       **options: Any) -> Promise:
    """``Context.sh`` on the current context: a shell step."""
    return current_context().sh(command, inputs, outputs, job_id=job_id, **options)


@atexit.register
def _close_all() -> None:
    # Definitions reach the store at the latest when the process exits.
    for ctx in list(_open_contexts):
        try:
            ctx.close()
        except NbmakeError:
            pass
