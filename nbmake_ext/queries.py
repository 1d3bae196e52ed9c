"""What a Context answers without running anything: ``ls``, ``why``, ``details``, ``stats``,
the state and result of one job, and the states and target selection they share.

A mixin of ``Context`` (context.py): it reads the graph, the stored snapshot and the store
the context holds, after ``sync`` has recorded what was registered.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from .core import signature
from .core.graph import Graph
from .core.jobspec import JobSpec
from .core.states import ALL, STATE_WORDS, STATES, public_state
from .core.states import restorable as can_restore
from .errors import JobFailed, NotDone, UnknownTarget
from .files.paths import show
from .registration import arg_fingerprints
from .store import ResultUnavailable, Store, StoredJob

logger = logging.getLogger("nbmake_ext.context")


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
    # the options that are set: "timeout" (seconds), "retries", "resources" ({name: amount},
    # mem in bytes); empty when none is
    options: dict[str, Any] = field(default_factory=dict)
    peak_rss: int | None = None  # bytes: the peak resident memory of its process in its last run
    # the failed attempts before its last one (job_retries), oldest first: attempt, error,
    # traceback, started, ended, duration, engine, peak_rss
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # its input files and its declared outputs: (path as shown, what became of it since
    # its stored result was made: "unchanged", "changed", "missing", "not read yet";
    # "as written", "modified", "deleted", "not written yet")
    input_files: list[tuple[str, str]] = field(default_factory=list)
    output_files: list[tuple[str, str]] = field(default_factory=list)
    command: str | None = None  # a shell step's command


class Queries:
    """The inspecting methods of ``Context``."""

    graph: Graph
    store: Store
    _stored: dict[str, StoredJob]
    _pending: dict[str, JobSpec]
    _loaded: bool
    files: Any  # files/fingerprints.py FileState: the files as this command sees them

    # and ``sync`` and ``_refresh_code``, of Context

    def ls(self, *targets: str) -> list[JobRow]:
        self.sync(shown=True)
        return self._rows(targets)

    def _rows(self, targets: Iterable[str]) -> list[JobRow]:
        """``ls`` on what the last ``sync`` read."""
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
        """Reasons the job is not up to date, in words; empty when it is. ``job_id`` may
        also name a file the job declares as an output."""
        job_id = self.job_of(job_id)
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
        """The job's definition as this context knows it (its ``options`` included),
        or as the store does when this context did not define it."""
        if job_id not in self.graph:
            self.sync()
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
        files = self.files
        if not signature.is_up_to_date(spec, record, results, forced, files) \
                or state in ("failed", "blocked"):
            arg_fps = None
            if record is not None and record.args_fp != spec.args_fp:
                arg_fps = self._arg_fps(spec)
            reasons = signature.reasons(spec, record, results, forced=forced, arg_fps=arg_fps,
                                        files=files)
            if state == "failed":
                reasons = [r for r in reasons if r != signature.NEVER_RAN]
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
                                              forced=st.forced, dep_results=results,
                                              files=self.files)

    def _result_current(self, job_id: str, results: dict[str, str]) -> bool:
        """Its stored result is up to date as the store is now, whatever its last run."""
        st = self._stored.get(job_id)
        return st is not None and signature.is_current(self.graph.specs[job_id], st.record,
                                                       results, st.forced, self.files)

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
        """Everything about one job (``job_id`` may also name a file it declares as an
        output)."""
        job_id = self.job_of(job_id)
        self.sync()
        self._require(job_id)
        states = self._states()
        spec = self.graph.specs[job_id]
        row = self.store.details(job_id)
        rev = self.graph.dependents()

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
            options=spec.options.as_dict(), peak_rss=row.get("peak_rss"),
            attempts=json.loads(row["attempts"]) if row.get("attempts") else [],
            **self._files_of(spec),
        )

    def _files_of(self, spec: JobSpec) -> dict[str, Any]:
        """The ``details`` of a job's files: each with what became of it since its stored
        result was made; and a shell step's command."""
        out: dict[str, Any] = {}
        if spec.inputs or spec.options.outputs:
            st = self._stored.get(spec.job_id)
            known = st.record.files if st is not None and st.record is not None else {}
            files = self.files
            ins, outs = [], []
            for path in spec.inputs:
                now, then = files(path), known.get(path)
                ins.append((show(path), "missing" if now is None else "not read yet"
                            if then is None else "unchanged" if now == then else "changed"))
            for path in spec.options.outputs:
                now, then = files(path), known.get(path)
                outs.append((show(path), "not written yet" if then is None else "deleted"
                             if now is None else "as written" if now == then else "modified"))
            out["input_files"], out["output_files"] = ins, outs
        if spec.function == "sh":
            func = spec.func
            if func is None:
                try:
                    func = self.store.load_call(spec.job_id)[0]
                except Exception:  # noqa: BLE001 - only shown
                    func = None
            out["command"] = getattr(func, "command", None)
        return out

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
            self.files.moment()  # and its files may have changed
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
                            dep_results=results, running=jid in running, files=self.files)

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

    def job_of(self, name: str) -> str:
        """The job ``name`` names: its id, or a file it declares as an output (for
        ``why`` and ``details``); UnknownTarget if none (or several) do."""
        if name in self.graph:
            return name
        self.sync()
        if name not in self.graph:
            writer = self.graph.writer(name)
            if writer is not None:
                return writer
        self._require(name)
        return name

    def _arg_fps(self, spec: JobSpec) -> dict[str, str]:
        try:
            if spec.func is not None:
                return arg_fingerprints(spec.args, spec.kwargs)
            _, args, kwargs = self.store.load_call(spec.job_id)
            return arg_fingerprints(args, kwargs)
        except Exception:  # noqa: BLE001 - only used to word a reason
            return {}
