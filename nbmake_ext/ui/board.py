"""What the job board shows, as plain data: the jobs of a store with their details, and the
changes of a run, in the compact JSON the front end reads (``js/src/store.js``).

No IPython and no widgets here: the widget (``widget.py``) sends this data, the text and HTML
fallbacks (``views.board_view``) and the console's ``show`` read it.

The JSON of a snapshot (``Board.to_json``), one entry per job in parallel arrays::

    {"fns": [function names], "ids": [job ids], "st": "ddfbt..." (one letter per job),
     "fn": [index into fns], "par": [index of the parent or -1], "deps": [[indices]],
     "x": {index: extras}, "run": [indices of the jobs of the run], "fin": [... finished in it],
     "tl": the timeline's bars (timeline.py; absent when no job ran)}

Extras (short keys, present only when known): ``dur`` ``cpu`` ``t0`` ``t1`` (duration, cpu,
started, ended; seconds, epoch), ``eng`` engine, ``err`` error line, ``tb`` traceback, ``out``
``se`` captured stdout and stderr, ``by`` the failed job that blocks it, ``why`` reasons it is
not up to date, ``ran`` reasons of its last run, ``part`` true when the logs were not loaded
(the front end asks for them when the kernel is idle). Also: ``pg`` [done, total(,
message)] what a running job reported with ``nbmake_ext.progress``; ``rss`` peak memory
of its last run (bytes); ``att`` its failed attempts before the last one (job_retries:
attempt, error, traceback, started, ended, duration, engine, peak_rss); ``try`` the attempt
it is on (running again after a failed one); ``opt`` its options (timeout, retries,
resources), which stay with the job whatever its state.

A delta (``Board.take_delta``) maps job ids to ``{"s": state letter, "x": extras}`` plus, for a
job new to the board (a dynamic child), ``"p"`` parent, ``"f"`` function, ``"d"`` dependencies;
``"r": 1`` puts it in the run, ``"F": 1`` counts it as finished in the run. Forgotten jobs are
listed under ``"gone"``.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..core.signature import short_label
from ..core.states import STATES
from ..files.paths import show
from . import timeline

LETTER = {"todo": "t", "stale": "s", "running": "r", "done": "d", "failed": "f", "blocked": "b"}
FINISHED = ("done", "failed", "blocked")

TEXT_CAP = 12_000             # characters kept of one traceback or captured output
TEXT_HEAD = 2_000             # ... of which from its start
ALL_DETAILS_UP_TO = 1_000     # stores this small push every job's logs with the snapshot
PROBLEM_DETAILS_UP_TO = 300   # failed and blocked jobs whose logs are pushed in any store
WHY_UP_TO = 100               # stale jobs whose reasons are worked out for the snapshot
TEXT_BUDGET = 3_000_000       # characters of logs in one snapshot, all jobs together


def clip(text: str | None, cap: int = TEXT_CAP) -> str:
    """Long logs keep their start and their end (where the error usually is)."""
    if not text:
        return ""
    if len(text) <= cap:
        return text
    cut = len(text) - cap
    return (text[:TEXT_HEAD] + f"\n... [{cut} characters cut; `%nbmake details JOB` shows "
            "all] ...\n" + text[-(cap - TEXT_HEAD):])


def extras_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """Extras from a ``Store.details`` row (what the store remembers of the last run)."""
    x: dict[str, Any] = {}
    for key, column in (("t0", "started"), ("t1", "ended"), ("dur", "duration"),
                        ("cpu", "cpu"), ("eng", "engine"), ("err", "error"),
                        ("by", "blocked_by")):
        value = row.get(column)
        if value not in (None, ""):
            x[key] = value
    if row.get("reasons"):
        try:
            x["ran"] = list(json.loads(row["reasons"]))
        except ValueError:
            pass
    for key, column in (("tb", "traceback"), ("out", "stdout"), ("se", "stderr")):
        text = clip(row.get(column))
        if text:
            x[key] = text
    x.update(run_extras(row.get("peak_rss"), row.get("attempts"), row.get("options")))
    x.update(file_extras(row.get("inputs"), row.get("options")))
    return x


def _value(stored: Any) -> Any:
    """A json text as the store keeps it, read (None if it is not json), or a value."""
    if isinstance(stored, str):
        try:
            return json.loads(stored)
        except ValueError:
            return None
    return stored


def file_extras(inputs: Any, options: Any) -> dict[str, Any]:
    """``files``: the job's input and output files, {"in": [[path, status]], "out": ...}
    (no status: the board was not told one)."""
    ins = _value(inputs) or ()
    outs = (_value(options) or {}).get("outputs") or ()
    if not ins and not outs:
        return {}
    return {"files": {"in": [[show(p), ""] for p in ins], "out": [[show(p), ""] for p in outs]}}


def run_extras(peak_rss: int | None, attempts: Any, options: Any) -> dict[str, Any]:
    """``rss``, ``att`` and ``opt`` extras (json texts as the store keeps them, or values)."""
    x: dict[str, Any] = {}
    if peak_rss:
        x["rss"] = peak_rss
    attempts, options = _value(attempts), _value(options)
    if attempts:
        x["att"] = [{**a, "traceback": clip(a.get("traceback"), 4_000)} for a in attempts]
    if options:
        x["opt"] = options
    return x


def extras_from_details(d: Any) -> dict[str, Any]:
    """Extras from ``Context.details`` (everything, including why)."""
    x = extras_from_row({"started": d.started, "ended": d.ended, "duration": d.duration,
                         "cpu": d.cpu, "engine": d.engine, "error": d.error,
                         "blocked_by": d.blocked_by, "traceback": d.traceback,
                         "stdout": d.stdout, "stderr": d.stderr})
    if d.reasons_last_run:
        x["ran"] = list(d.reasons_last_run)
    x["why"] = list(d.why)
    x.update(run_extras(d.peak_rss, d.attempts, d.options))
    if d.input_files or d.output_files:
        x["files"] = {"in": [list(f) for f in d.input_files],
                      "out": [list(f) for f in d.output_files]}
    if d.command:
        x["cmd"] = d.command
    return x


def extras_from_info(info: dict[str, Any]) -> dict[str, Any]:
    """Extras from what the run loop tells an observer (``Observer.job_changed``)."""
    x: dict[str, Any] = {}
    for key, name in (("dur", "duration"), ("eng", "engine"), ("err", "error"),
                      ("by", "blocked_by")):
        value = info.get(name)
        if value not in (None, ""):
            x[key] = value
    if info.get("reasons"):
        x["ran"] = list(info["reasons"])
    for key, name in (("tb", "traceback"), ("out", "stdout"), ("se", "stderr")):
        text = clip(info.get(name))
        if text:
            x[key] = text
    if info.get("attempt"):
        x["try"] = info["attempt"]
    x.update(run_extras(info.get("peak_rss"), info.get("attempts"), None))
    return x


@dataclass(slots=True)
class Job:
    job_id: str
    state: str
    function: str
    parent: str | None
    deps: tuple[str, ...]
    x: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """The command the board follows, and how far it got."""

    command: str = ""
    started: float = 0.0               # epoch, kernel clock
    ended: float = 0.0
    active: bool = False
    expected: set[str] = field(default_factory=set)   # jobs the run has to finish
    finished: set[str] = field(default_factory=set)
    summary: str = ""                  # the line the command ended with
    outcome: str = ""                  # "", finished, failed, interrupted, error
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        now = time.time()
        until = now if self.active or not self.ended else self.ended
        return {"cmd": self.command, "active": self.active, "t0": self.started, "now": now,
                "el": (until - self.started) if self.started else 0.0,
                "exp": len(self.expected),
                "fin": len(self.finished), "summary": self.summary, "outcome": self.outcome,
                "error": self.error}


class Board:
    """The jobs a board shows, kept in step with a run, and the changes not yet sent."""

    def __init__(self, jobs: Iterable[Job] = (), scope: tuple[str, ...] = (), own: bool = False):
        self.jobs: dict[str, Job] = {j.job_id: j for j in jobs}
        self.scope = scope                 # targets of `show`; () is every job
        self.own = own                     # instead: the context's own jobs (own_jobs)
        self.run = Run()
        self.bars: list[timeline.Bar] = []   # the stored runs of its jobs (timeline.py)
        self._changed: dict[str, dict[str, Any]] = {}
        self._gone: list[str] = []

    # -- from the store ---------------------------------------------------------------------

    @classmethod
    def from_context(cls, ctx: Any, targets: Iterable[str] = (),
                     known: dict[str, tuple[str, dict[str, Any]]] | None = None,
                     own: bool = False) -> "Board":
        """Every job the targets select (all when none) and their dynamic descendants, with
        the store's details: logs of every job in a small store, of the failed and blocked
        ones in a big one. ``known`` maps job ids to a state and its extras (from a run just
        observed): used as they are for a job still in that state. With ``own``, the jobs
        the context registered and what they need (every job when it registered none),
        worked out again at every reload."""
        targets = tuple(targets)
        rows = ctx.own_rows() if own else ctx.ls(*targets)
        graph = ctx.graph
        if targets and not own:
            chosen = {r.job_id for r in rows}
            more = [c for r in rows for c in graph.descendants(r.job_id) if c not in chosen]
            if more:
                rows += ctx.ls(*dict.fromkeys(more))
        known = known or {}
        full = len(rows) <= ALL_DETAILS_UP_TO
        budget = TEXT_BUDGET
        problems = 0
        # Reasons in words for the first stale jobs (worked out together: one read).
        stale = [r.job_id for r in rows if r.state == "stale" or r.restorable
                 or (r.state == "todo" and r.has_result)][:WHY_UP_TO]
        try:
            why = ctx.why_many(stale) if stale else {}
        except Exception:  # noqa: BLE001 - only words for the details panel
            why = {}
        jobs = []
        for r in rows:
            spec = graph.specs[r.job_id]
            seen = known.get(r.job_id)
            x = dict(seen[1]) if seen is not None and seen[0] == r.state else {}
            if not x:
                wants_logs = full or (r.state in ("failed", "blocked")
                                      and problems < PROBLEM_DETAILS_UP_TO)
                if wants_logs and budget > 0:
                    problems += r.state in ("failed", "blocked")
                    x = extras_from_row(ctx.store.details(r.job_id))
                    budget -= sum(len(x.get(k, "")) for k in ("tb", "out", "se"))
                else:
                    if r.duration is not None:
                        x["dur"] = r.duration
                    if r.error:
                        x["err"] = r.error
                    if r.blocked_by:
                        x["by"] = r.blocked_by
                    if r.ended:
                        x["t1"] = r.ended
                    x["part"] = True
            if r.state == "blocked" and r.blocked_by:
                x["by"] = r.blocked_by  # the failed job at the root, as ls names it
            if r.job_id in why and "why" not in x:
                x["why"] = why[r.job_id]
            if r.state == "done":
                x.pop("why", None)  # up to date: no reasons
            if spec.options and "opt" not in x:
                x["opt"] = spec.options.as_dict()
            jobs.append(Job(r.job_id, r.state, r.function, spec.parent, tuple(spec.deps), x))
        board = cls(jobs, scope=() if own else targets, own=own)
        board.bars = timeline.read_bars(ctx.store, board.jobs)
        return board

    def reload(self, ctx: Any) -> "Board":
        """The same scope, read again from the store; the run and what it learnt stay."""
        known = {j: (job.state, job.x) for j, job in self.jobs.items()
                 if job.x and not job.x.get("part")}
        fresh = Board.from_context(ctx, self.scope, known, own=self.own)
        fresh.run = self.run
        return fresh

    # -- a run ------------------------------------------------------------------------------

    def start_run(self, command: str, expected: Iterable[str]) -> None:
        self.run = Run(command=command, started=time.time(), active=True,
                       expected={j for j in expected if j in self.jobs})
        self._changed.clear()
        self._gone.clear()

    def change(self, job_id: str, state: str, info: dict[str, Any]) -> None:
        """One change told by the run loop (``Observer.job_changed``)."""
        run = self.run
        if state == "forgotten":
            if self.jobs.pop(job_id, None) is not None:
                self._changed.pop(job_id, None)
                self._gone.append(job_id)
                run.expected.discard(job_id)
                run.finished.discard(job_id)
            return
        entry = self._changed.setdefault(job_id, {})
        job = self.jobs.get(job_id)
        if job is None:
            function = info.get("function") or "?"
            job = self.jobs[job_id] = Job(job_id, state, short_label(function),
                                          info.get("parent"), tuple(info.get("deps") or ()))
            entry.update({"p": job.parent, "f": job.function, "d": list(job.deps)})
        options = job.x.get("opt")  # (stays with the job, whatever the run tells)
        if state == "running":
            job.x = {"t0": time.time(), **extras_from_info(info)}
        elif state in FINISHED:
            if info or state != "done":
                x = extras_from_info(info)
                started = job.x.get("t0")
                if started is not None and state != "blocked":
                    x["t0"] = started
                x["t1"] = time.time()
                job.x = x
            elif "why" in job.x:  # a Skip ("done", no info) keeps its logs; it is up to date
                job.x = {k: v for k, v in job.x.items() if k != "why"}
        else:
            job.x = extras_from_info(info)
        if options is not None and "opt" not in job.x:
            job.x = {**job.x, "opt": options}
        job.state = state
        entry["s"] = LETTER[state]
        entry["x"] = job.x
        if run.active:
            if job_id not in run.expected and (state == "running" or "p" in entry):
                run.expected.add(job_id)
                entry["r"] = 1
            if state in FINISHED and job_id in run.expected:
                run.finished.add(job_id)
                entry["F"] = 1

    @property
    def pending(self) -> bool:
        return bool(self._changed or self._gone)

    def take_delta(self) -> dict[str, Any]:
        delta = {"t": "delta", "j": self._changed, "run": self.run.to_json()}
        if self._gone:
            delta["gone"] = self._gone
        self._changed, self._gone = {}, []
        return delta

    def progress(self, job_id: str, done: float, total: float, message: str = "") -> bool:
        """What a running job reported with ``nbmake_ext.progress``: kept in its extras
        (``pg``) until it ends, and sent with the next batch. False if the job is not
        running on this board."""
        job = self.jobs.get(job_id)
        if job is None or job.state != "running":
            return False
        job.x = {**job.x, "pg": [done, total, message] if message else [done, total]}
        entry = self._changed.setdefault(job_id, {})
        entry["s"] = LETTER["running"]
        entry["x"] = job.x
        return True

    # -- reading ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for job in self.jobs.values():
            counts[job.state] += 1
        return counts

    def by_function(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for job in self.jobs.values():
            row = out.setdefault(job.function, dict.fromkeys(STATES, 0))
            row[job.state] += 1
        return out

    def blocker(self, job: Job) -> str | None:
        """The failed job at the root of a blocked job's block: the one it names, or, when
        that is not failed here (blocked itself, or not told), the nearest failed job
        upstream through blocked ones."""
        jobs, named = self.jobs, job.x.get("by")
        by, seen = named, {job.job_id}
        while by is not None and by not in seen and by in jobs and jobs[by].state == "blocked":
            seen.add(by)
            by = jobs[by].x.get("by")
        if by is not None and by in jobs and jobs[by].state == "failed":
            return by
        queue, seen = deque([job]), {job.job_id}
        while queue:
            below = queue.popleft()
            ups = (*below.deps, below.parent) if below.parent else below.deps
            for up in ups:
                if up in seen or up not in jobs:
                    continue
                seen.add(up)
                if jobs[up].state == "failed":
                    return up
                if jobs[up].state == "blocked":
                    queue.append(jobs[up])
        return by if by is not None else named

    def problems(self) -> list[Job]:
        """Failed jobs first, then blocked ones, each in board order."""
        failed = [j for j in self.jobs.values() if j.state == "failed"]
        return failed + [j for j in self.jobs.values() if j.state == "blocked"]

    def to_json(self) -> dict[str, Any]:
        fns: dict[str, int] = {}
        index = {jid: i for i, jid in enumerate(self.jobs)}
        ids, st, fn, par, deps, x = [], [], [], [], [], {}
        for i, job in enumerate(self.jobs.values()):
            ids.append(job.job_id)
            st.append(LETTER[job.state])
            fn.append(fns.setdefault(job.function, len(fns)))
            par.append(index.get(job.parent, -1) if job.parent else -1)
            deps.append([index[d] for d in job.deps if d in index])
            if job.x:
                x[str(i)] = job.x  # JSON object keys are strings anyway
        run = self.run
        out = {"fns": list(fns), "ids": ids, "st": "".join(st), "fn": fn, "par": par,
               "deps": deps, "x": x,
               "run": [index[j] for j in run.expected if j in index],
               "fin": [index[j] for j in run.finished if j in index]}
        bars = timeline.to_json(self.bars, index)
        if bars is not None:
            out["tl"] = bars
        return out


def expected_jobs(board: Board, graph: Any, command: str, targets: Iterable[str]) -> set[str]:
    """The jobs a make, parmake or remake of ``targets`` is expected to finish: what the
    targets need that is not done (for remake: the targets, all that depends on them, and
    what those need that is not done). Jobs that turn out to need a run anyway (a
    dependency produced a new result) join the run as they start. ``board`` holds every
    job; ``graph`` is the context's job graph. An unknown target raises ``UnknownTarget``
    here, before anything is shown."""
    states = {j: job.state for j, job in board.jobs.items()}
    selected = graph.select(list(targets), lambda j: states.get(j, "todo"))
    if command == "remake":
        down = graph.downstream(selected)
        return set(down) | {j for j in graph.upstream(down) if states.get(j, "todo") != "done"}
    return {j for j in graph.upstream(selected) if states.get(j, "todo") != "done"}
