"""An independent model of what make must do, for the fuzz test.

It knows only the contract (SPEC sections 2, 3, 5): a job is up to date when it has a present
result made from the same code, the same arguments and the same dependency results; make
decides a job once its dependencies are final; a dynamic job redefines its children and
forgets those it no longer defines; failures block what depends on them; an interrupt keeps
what finished. It never looks at the product's fingerprints: "code" is what the generated
source stands for (see ``nbfuzz_notebook.job_code``), values are the oracle's.

``Model.plan`` predicts one make: for every job it needs, whether it must run, must not run,
may run (the few cases the contract leaves open), fails or is blocked, and what running it
yields. ``Model.apply`` then takes the jobs that really ran (the probe's log, in order) and
updates the model, including after an interrupt at any call.

The few cases left open ("may run"): children defined by a dynamic job that then raised
(they may run, or be blocked), and a corrupt result (same size and time: only reading it
tells) that nothing read. Everything else is exact.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from nbfuzz_notebook import (
    ChildCall, GDef, JobDef, Notebook, child_code, job_code, resolve, run_child, run_job,
    call_order, top_args_key, top_job_id,
)

INF = float("inf")
STATE_WORDS = ("todo", "stale", "running", "done", "failed", "blocked")

SKIP, RUN, FAIL, BLOCKED, MAY = "skip", "run", "fail", "blocked", "may"
REMAKE, UNFINISHED = "forced by remake", "its last run did not finish"


@dataclass
class Spec:
    jid: str
    slot: str                      # what the job passes to probe.enter
    parent: str | None
    dynamic: bool
    args: Any
    deps: tuple[str, ...]
    job: JobDef | None = None      # top-level jobs: the definition registered
    g: GDef | None = None          # children: the g they were defined with
    call: ChildCall | None = None  # children: the ctx.comp call
    # A job whose function lives in this kernel runs it with the helpers the notebook has
    # now, and its code fingerprint is taken again before every command. A child read back
    # from the store after a restart runs the function pickled with it: its code is frozen,
    # as it was when its parent defined it or when it last started, whichever came last.
    live: bool = True
    frozen: dict | None = None
    snap: Notebook | None = None   # what a frozen child's pickled function captured
    stored_nb: Notebook | None = None  # a live child: the notebook its stored definition saw


@dataclass
class Record:
    code: dict[str, Any]
    args: Any
    consumed: dict[str, Any]       # dependency -> value it was made from
    value: Any
    present: bool = True
    corrupt: bool = False


@dataclass
class Plan:
    targets: list[str]
    forced: dict[str, str]
    needed: set[str]
    outcome: dict[str, str] = field(default_factory=dict)
    consumed: dict[str, dict] = field(default_factory=dict)
    value: dict[str, Any] = field(default_factory=dict)        # RUN: the new value
    template: dict[str, Any] = field(default_factory=dict)     # dynamic: returned template
    returned: set[str] = field(default_factory=set)            # dynamic jobs that returned
    defined: dict[str, list[Spec]] = field(default_factory=dict)
    gone: dict[str, list[str]] = field(default_factory=dict)
    failed_after_return: set[str] = field(default_factory=set)  # "end" or a child failed
    child_failed: set[str] = field(default_factory=set)
    specs: dict[str, Spec] = field(default_factory=dict)       # every spec the plan saw
    may_rerun: set[str] = field(default_factory=set)           # corrupt results nobody read
    rerun_corrupt: set[str] = field(default_factory=set)       # corrupt results that were read
    blocked_by: dict[str, list[str]] = field(default_factory=dict)
    gate: dict[str, str] = field(default_factory=dict)         # child -> parent it waited on

    def allowed(self) -> set[str]:
        return {j for j, o in self.outcome.items() if o in (RUN, FAIL, MAY)} | self.may_rerun

    def must(self) -> set[str]:
        return {j for j, o in self.outcome.items() if o in (RUN, FAIL)}


def _few(names: list[str], one: str, many: str) -> list[str]:
    """A reason per job for up to three jobs; for more, one that counts them and names the
    first three, as the product words them."""
    if len(names) <= 3:
        return [one.format(name) for name in names]
    return [many.format(n=len(names), names=", ".join(names[:3]) + ", ...")]


class ModelError(AssertionError):
    pass


class Model:
    def __init__(self, nb: Notebook):
        self.specs: dict[str, Spec] = {}
        self.children: dict[str, list[str]] = {}
        self.records: dict[str, Record] = {}
        self.forced: dict[str, str] = {}    # job -> why it runs whatever its signature says
        self.field: dict[str, str] = {}     # last outcome: done failed blocked todo
        self.top: dict[int, str] = {}       # slot -> job id
        self.cur = nb                       # the notebook as the kernel has it now
        self.synced = nb                    # ... when the product last took fingerprints
        self.registered: tuple[JobDef, ...] = ()  # the jobs as last registered

    # -- code and the notebook a job runs with --------------------------------------------

    def code(self, s: Spec, nb: Notebook | None = None) -> dict[str, Any]:
        nb = nb or self.cur
        if s.job is not None:
            return job_code(nb, s.job)
        if not s.live:
            return s.frozen
        return child_code(dataclasses.replace(nb, g=s.g))

    def runs_with(self, s: Spec) -> Notebook:
        if s.job is not None:
            return dataclasses.replace(self.cur, jobs=self.registered)
        if not s.live:
            return s.snap
        return dataclasses.replace(self.cur, g=s.g)

    def same(self, a: Spec, b: Spec) -> bool:
        return (self.code(a) == self.code(b) and a.args == b.args and a.deps == b.deps
                and a.dynamic == b.dynamic and a.parent == b.parent)

    def restart(self) -> None:
        """A new kernel: children's functions are read back from the store, with the code
        and helpers they had when the old kernel last took fingerprints."""
        for s in self.specs.values():
            if s.job is None and s.live:
                nb = s.stored_nb or self.synced
                s.frozen = self.code(s, nb)
                s.snap = dataclasses.replace(nb, g=s.g)
                s.live = False

    # -- the graph ------------------------------------------------------------------------

    def register(self, nb: Notebook) -> None:
        """The registration cell ran: every top-level job is (re)defined."""
        self.cur = nb
        self.registered = nb.jobs
        for j in nb.jobs:
            jid = self.top_id(nb, j)
            self.top[j.slot] = jid
            spec = Spec(jid, f"s{j.slot}", None, j.dynamic, top_args_key(j, self.top.__getitem__),
                        tuple(dict.fromkeys(self.top[s] for s in call_order(j))), job=j)
            old = self.specs.get(jid)
            if old is None or not self.same(old, spec):
                self.specs[jid] = spec
            else:
                old.job = j   # the same definition (comments may differ)

    def top_id(self, nb: Notebook, j: JobDef) -> str:
        return top_job_id(j, self.top.__getitem__)

    def define_child(self, spec: Spec) -> None:
        old = self.specs.get(spec.jid)
        spec.stored_nb = self.cur
        if old is not None and self.same(old, spec):
            if not old.live:  # the in-kernel definition replaces the stored one
                self.specs[spec.jid] = spec
            else:
                old.stored_nb = self.cur
            return
        if old is None:
            self.children.setdefault(spec.parent, []).append(spec.jid)
        self.specs[spec.jid] = spec

    def forget(self, jid: str) -> None:
        spec = self.specs.pop(jid)
        for c in self.children.pop(jid, []):
            self.forget(c)
        if spec.parent is not None:
            self.children[spec.parent].remove(jid)
        self.records.pop(jid, None)
        self.forced.pop(jid, None)
        self.field.pop(jid, None)

    def dependents(self) -> dict[str, list[str]]:
        rev: dict[str, list[str]] = {}
        for s in self.specs.values():
            for d in s.deps:
                rev.setdefault(d, []).append(s.jid)
        return rev

    def closure(self, targets) -> set[str]:
        out: set[str] = set()
        stack = list(targets)
        while stack:
            j = stack.pop()
            if j in out:
                continue
            out.add(j)
            s = self.specs[j]
            stack += s.deps
            if s.parent is not None:
                stack.append(s.parent)
            if s.dynamic:
                stack += self.children.get(j, [])
        return out

    def downstream(self, ids) -> set[str]:
        rev = self.dependents()
        out: set[str] = set()
        stack = list(ids)
        while stack:
            j = stack.pop()
            if j not in out:
                out.add(j)
                stack += rev.get(j, [])
        return out

    def select(self, targets: list[str]) -> list[str] | None:
        """Job ids the targets name; None when an id or a glob matches nothing
        (UnknownTarget). A state word no job is in selects nothing; `all` is every job."""
        chosen: dict[str, None] = {}
        for t in targets:
            if t in self.specs:
                m = [t]
            elif t in STATE_WORDS:
                chosen.update(dict.fromkeys(j for j in self.specs if self.state(j) == t))
                continue
            elif t == "all":
                continue
            elif set("*?[") & set(t):
                m = fnmatch.filter(self.specs, t)
            else:
                m = []
            if not m:
                return None
            chosen.update(dict.fromkeys(m))
        if not targets or "all" in targets:
            return list(self.specs)
        return list(chosen)

    # -- states ---------------------------------------------------------------------------

    def value(self, jid: str) -> Any:
        r = self.records.get(jid)
        return r.value if r is not None and r.present else None

    def present(self, jid: str) -> bool:
        r = self.records.get(jid)
        return r is not None and r.present

    def state(self, jid: str) -> str:
        f = self.field.get(jid)
        if f in ("failed", "blocked"):
            return f
        r = self.records.get(jid)
        if r is None or not r.present:
            return "todo"
        s = self.specs[jid]
        if jid in self.forced or r.code != self.code(s) or r.args != s.args:
            return "stale"
        if set(r.consumed) != set(s.deps):
            return "stale"
        for d in s.deps:
            dr = self.records.get(d)
            if dr is not None and dr.present and dr.value != r.consumed[d]:
                return "stale"
        return "done"

    def up_to_date(self, jid: str, values: dict[str, Any], forced,
                   specs: dict[str, Spec] | None = None) -> bool:
        r = self.records.get(jid)
        s = (specs or self.specs)[jid]
        if r is None or not r.present or jid in forced or r.code != self.code(s) \
                or r.args != s.args:
            return False
        if set(r.consumed) != set(s.deps):
            return False
        return all(d in values and r.consumed[d] == values[d] for d in s.deps)

    def reasons(self, jid: str) -> list[str] | None:
        """Phrases the product's `why` must contain, or None when it must be empty."""
        s = self.specs[jid]
        r = self.records.get(jid)
        bad = self.field.get(jid) in ("failed", "blocked")
        values = {d: self.value(d) for d in s.deps if self.present(d)}
        if r is not None:  # a dependency with no result (cleaned) changes nothing yet
            values = {**{d: r.consumed[d] for d in s.deps if d in r.consumed}, **values}
        if not bad and self.up_to_date(jid, values, self.forced):
            return None
        if r is None:
            return ["never ran"] if not bad else []
        out = []
        if jid in self.forced:
            out.append(self.forced[jid])
        if not r.present:
            out.append("result file missing or corrupt")
        code = self.code(s)
        for label, v in code.items():
            if label not in r.code:
                out.append(f"now reads {label}" if label.startswith("global ")
                           else f"now calls {label}")
            elif r.code[label] != v:
                out.append(f"{label} changed" if label.startswith("global ")
                           else f"code of {label} changed")
        for label in r.code:
            if label not in code:
                out.append(f"no longer reads {label}" if label.startswith("global ")
                           else f"no longer calls {label}")
        if r.args != s.args:
            out.append("argument")
        new = [d for d in s.deps if d not in r.consumed]
        missing = [d for d in s.deps if d in r.consumed and d not in values]
        changed = [d for d in s.deps
                   if d in r.consumed and d in values and values[d] != r.consumed[d]]
        out += _few(new, "new dependency {}", "{n} new dependencies ({names})")
        out += _few(missing, "dependency {} has no result yet",
                    "{n} dependencies ({names}) have no result yet")
        out += _few(changed, "dependency {} produced a new result",
                    "{n} dependencies ({names}) produced new results")
        out += _few([d for d in r.consumed if d not in s.deps], "no longer depends on {}",
                    "no longer depends on {n} jobs ({names})")
        return out

    # -- one make ---------------------------------------------------------------------------

    def plan(self, targets: list[str], forced: dict[str, str]) -> Plan:
        p = Plan(list(targets), {**self.forced, **forced}, self.closure(targets))
        specs = dict(self.specs)              # the plan's view; children change it
        children = {k: list(v) for k, v in self.children.items()}
        p.specs = specs
        values: dict[str, Any] = {j: r.value for j, r in self.records.items() if r.present}
        outcome = p.outcome
        final: set[str] = set()
        pending = sorted(p.needed)
        waiting_parents: set[str] = set()
        may: set[str] = set()

        def block(j: str, by: list[str]) -> None:
            outcome[j] = BLOCKED
            p.blocked_by[j] = by
            final.add(j)

        def need_value(d: str) -> None:
            # A job that runs reads its dependency's result: a corrupt one runs again.
            r = self.records.get(d)
            if outcome.get(d) == SKIP and r is not None and r.corrupt:
                p.rerun_corrupt.add(d)
                p.may_rerun.discard(d)

        progress = True
        while pending and progress:
            progress = False
            for j in list(pending):
                if j not in pending:     # forgotten meanwhile
                    continue
                if j not in specs:
                    pending.remove(j)
                    progress = True
                    continue
                s = specs[j]
                par = s.parent
                defined_now = par is not None and any(c.jid == j for c in p.defined.get(par, []))
                if par is not None and par in p.needed and not defined_now:
                    if par not in outcome or (outcome[par] == RUN and par not in p.returned):
                        continue
                    if outcome[par] in (FAIL, BLOCKED):
                        pending.remove(j)
                        p.gate[j] = par
                        block(j, [par])
                        progress = True
                        continue
                    p.gate[j] = par
                if any(d not in final for d in s.deps):
                    continue
                pending.remove(j)
                progress = True
                bad = [d for d in s.deps if outcome.get(d) in (FAIL, BLOCKED)]
                if defined_now:
                    p.gate[j] = par
                if bad:
                    block(j, bad)
                    continue
                if j in may or any(outcome.get(d) == MAY for d in s.deps):
                    outcome[j] = MAY
                    may.add(j)
                    final.add(j)
                    continue
                if self.up_to_date(j, values, p.forced, specs):
                    outcome[j] = SKIP
                    final.add(j)
                    r = self.records[j]
                    if r.corrupt:
                        p.may_rerun.add(j)
                    continue
                # runs
                for d in s.deps:
                    need_value(d)
                consumed = {d: values[d] for d in s.deps}
                p.consumed[j] = consumed
                if s.call is not None:
                    out = run_child(self.runs_with(s), s.call, values.__getitem__)
                else:
                    out = run_job(self.runs_with(s), s.job, j, lambda slot: values[self.top[slot]])
                if s.call is not None or not s.dynamic:
                    if out.ok:
                        outcome[j] = RUN
                        values[j] = p.value[j] = out.value
                    else:
                        outcome[j] = FAIL
                    final.add(j)
                    continue
                # a dynamic job
                if out.children is None:            # raised before defining children
                    outcome[j] = FAIL
                    final.add(j)
                    continue
                p.returned.add(j)
                new_specs = []
                for call in out.children:
                    cs = Spec(call.job_id, call.slot, j, False, call.key(), call.deps,
                              g=self.cur.g, call=call)
                    old = specs.get(call.job_id)
                    if old is not None and self.same(old, cs) and old.live:
                        cs = old
                    new_specs.append(cs)
                p.defined[j] = new_specs
                for cs in new_specs:
                    if cs.jid not in specs:
                        children.setdefault(j, []).append(cs.jid)
                    specs[cs.jid] = cs
                    if cs.jid not in outcome and cs.jid not in pending:
                        pending.append(cs.jid)
                    p.needed.add(cs.jid)
                new_ids = {cs.jid for cs in new_specs}
                if out.ok:
                    gone = [c for c in children.get(j, []) if c not in new_ids]
                    p.gone[j] = gone
                    for c in gone:
                        del specs[c]
                        children[j].remove(c)
                        if c in pending:
                            pending.remove(c)
                        p.needed.discard(c)
                    outcome[j] = RUN
                    p.template[j] = out.value
                    waiting_parents.add(j)
                else:                              # "end": raised after defining children
                    outcome[j] = FAIL
                    p.failed_after_return.add(j)
                    final.add(j)
                    may.update(new_ids)
            # dynamic jobs whose children are all final
            for par in sorted(waiting_parents):
                kids = [c.jid for c in p.defined[par]]
                if all(k in final for k in kids):
                    waiting_parents.discard(par)
                    progress = True
                    if any(outcome[k] in (FAIL, BLOCKED) for k in kids):
                        outcome[par] = FAIL
                        p.failed_after_return.add(par)
                        p.child_failed.add(par)
                    else:
                        for k in kids:
                            need_value(k)
                        values[par] = p.value[par] = resolve(p.template[par], values.__getitem__)
                    final.add(par)
        if pending or waiting_parents:
            raise ModelError(f"model stuck with {pending} / {waiting_parents}")
        # A corrupt result that runs again reads its own inputs: a corrupt one among them
        # is found then, and runs again too.
        found = list(p.rerun_corrupt)
        while found:
            for d in specs[found.pop()].deps:
                if d not in p.rerun_corrupt:
                    need_value(d)
                    if d in p.rerun_corrupt:
                        found.append(d)
        for j in p.rerun_corrupt:
            outcome[j] = RUN
            p.consumed[j] = {d: values[d] for d in specs[j].deps}
            p.value[j] = self.records[j].value
            s = specs[j]
            if s.dynamic:  # runs again to the same children, now defined in this kernel
                out = run_job(self.runs_with(s), s.job, j, lambda slot: values[self.top[slot]])
                p.defined[j] = []
                for call in out.children:
                    cs = Spec(call.job_id, call.slot, j, False, call.key(), call.deps,
                              g=self.cur.g, call=call)
                    old = specs.get(call.job_id)
                    p.defined[j].append(old if old is not None and old.live else cs)
        return p

    def apply(self, p: Plan, ran: list[str], interrupted_at: int | None,
              adopt: dict[str, str]) -> set[str]:
        """Update the model after the make: ``ran`` are the jobs the probe saw, in order; the
        one at index ``interrupted_at`` raised KeyboardInterrupt. ``adopt`` maps jobs whose
        outcome the model left open (MAY, not run) to the state the product shows.
        Returns the jobs that ran and whose outcome (success or failure) was recorded."""
        recorded: set[str] = set()
        for j in ran:  # a child that starts records the definition it runs with
            s = self.specs.get(j)
            if s is not None and s.job is None and s.live:
                s.stored_nb = self.cur
        K = INF if interrupted_at is None else interrupted_at
        pos = {j: i for i, j in enumerate(ran)}
        outcome = p.outcome
        memo: dict[str, float] = {}

        def t_run(j: str) -> float:
            i = pos.get(j)
            return INF if i is None or i >= K else i

        def time(j: str) -> float:
            """When j became final in this make (a call index; -1: at the start), INF if it
            did not before the interrupt."""
            if j in memo:
                return memo[j]
            memo[j] = INF
            o = outcome.get(j)
            s = p.specs[j]
            if j in p.rerun_corrupt:
                t = t_run(j)
                if s.dynamic:  # its result is whole once its children's are read again
                    t = max([t] + [time(c.jid) for c in p.defined.get(j, [])])
            elif o == SKIP:
                t = max([time(d) for d in s.deps] + [-1.0])
                par = p.gate.get(j)
                if par in p.rerun_corrupt:  # decided when the parent was first skipped
                    t = max([t] + [time(d) for d in p.specs[par].deps])
                elif par is not None:
                    t = max(t, t_run(par) if par in p.returned else time(par))
            elif o == RUN and s.dynamic:
                t = max([t_run(j)] + [time(c.jid) for c in p.defined.get(j, [])])
            elif o == RUN:
                t = t_run(j)
            elif o == MAY:
                t = t_run(j) if j in pos else (-1.0 if j in adopt else INF)
            elif o == FAIL and j in p.child_failed:
                t = max([t_run(j)] + [time(c.jid) for c in p.defined.get(j, [])])
            elif o == FAIL:
                t = t_run(j)
            elif o == BLOCKED:
                t = min(time(b) for b in p.blocked_by[j])
            else:
                raise ModelError(f"no outcome for {j}")
            memo[j] = t
            return t

        # dynamic jobs that returned before the interrupt: their children are (re)defined
        for par, new_specs in p.defined.items():
            if t_run(par) == INF:
                continue
            for c in p.gone.get(par, []):
                if c in self.specs:
                    self.forget(c)
            for cs in new_specs:
                self.define_child(cs)
            if new_specs:  # until it completes (below), its old result no longer fits
                self.forced[par] = UNFINISHED
        for j, o in outcome.items():
            if j not in self.specs:
                continue
            t = time(j)
            if t >= K:
                continue
            s = self.specs[j]
            if o == RUN or (o == MAY and j in pos):
                if o == MAY:
                    out = run_child(self.runs_with(s), s.call, lambda d: self.records[d].value)
                    if not out.ok:
                        self.field[j] = "failed"
                        recorded.add(j)
                        continue
                    value = out.value
                    consumed = {d: self.records[d].value for d in s.deps}
                else:
                    value, consumed = p.value[j], p.consumed[j]
                self.records[j] = Record(dict(self.code(s)), s.args, consumed, value)
                recorded.add(j)
                self.forced.pop(j, None)
                self.field[j] = "done"
            elif o == FAIL:
                self.field[j] = "failed"
                recorded.add(j)
            elif o == BLOCKED:
                self.field[j] = "blocked"
            elif o == SKIP:
                self.field[j] = "done"
            elif o == MAY:  # skipped, blocked, or (interrupted) not reached since it failed
                self.field[j] = adopt[j] if adopt[j] in ("blocked", "failed") else "done"
        return recorded

    # -- commands without a make ----------------------------------------------------------

    def clean(self, ids: list[str]) -> list[str]:
        """Returns the ids whose results are cleaned; their dynamic children are forgotten,
        also when selected themselves."""
        kids: list[str] = []
        for j in ids:
            stack = list(self.children.get(j, []))
            while stack:
                c = stack.pop()
                kids.append(c)
                stack += self.children.get(c, [])
        kids = list(dict.fromkeys(kids))
        ids = [j for j in ids if j not in set(kids)]
        for c in kids:
            if c in self.specs:
                self.forget(c)
        for j in ids:
            self.records.pop(j, None)
            self.forced.pop(j, None)
            self.field[j] = "todo"
        return ids
