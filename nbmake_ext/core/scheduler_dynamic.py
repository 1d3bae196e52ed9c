"""The scheduler's handling of dynamic jobs: a child defined while its parent runs (new,
or redefined: then it and what it blocked wait again), a parent that returned (children it
no longer defines are forgotten), and a parent complete once all its children are final.
A mixin of ``Scheduler`` (scheduler.py): it uses its state.
"""

from __future__ import annotations

from ..errors import InternalError
from .events import Complete, Fail, Forget
from .states import BLOCKED, FAILED, FINAL, QUEUED, RETURNED, WAITING


class DynamicJobs:
    def _on_child(self, spec) -> None:
        parent = spec.parent
        self._expect(parent, QUEUED)
        self._defined.setdefault(parent, set()).add(spec.job_id)
        outcome = self.graph.add(spec)
        jid = spec.job_id
        for dep in spec.deps:
            dependents = self._dependents.setdefault(dep, [])
            if jid not in dependents:
                dependents.append(jid)
        state = self.status.get(jid)
        if state is None:
            self._include([jid])
        elif state == WAITING or outcome != "same":
            if state == RETURNED or state == QUEUED and jid in self._started:
                raise InternalError(f"child {jid!r} redefined while it runs")
            root = None
            if state in (FAILED, BLOCKED):
                root = self._root(jid)
                self.unsettled[jid] = state  # up to date again: its result is taken back
                self._started.discard(jid)
            self._set(jid, WAITING)
            reopened = self._reopen(jid, root) if root is not None else []
            self._include([d for d in spec.deps if d not in self.status])
            self._init_waiting(jid)
            if self.status[jid] == WAITING and not self.waiting_on[jid]:
                self._decide(jid)
            for k in reopened:  # (each waits for jid, through the others: none is ready)
                if self.status[k] == WAITING and not self.waiting_on[k]:
                    self._decide(k)

    def _on_returned(self, jid: str) -> None:
        self._expect_move(jid, RETURNED)
        defined = self._defined.get(jid, set())
        gone = [c for c in self.graph.children(jid) if c not in defined]
        if gone:
            removed: list[str] = []
            for child in gone:
                removed += self.graph.remove(child)
            for r in removed:
                if self._story is not None and r in self.status:
                    self._tell(r, self.status[r], None)
                self.status.pop(r, None)
                self.waiting_on.pop(r, None)
                self.results.pop(r, None)
                self.active.discard(r)
            self._out.append(Forget(tuple(removed)))
        self._set(jid, RETURNED)
        self._check_complete(jid)

    def _check_complete(self, jid: str) -> None:
        if jid in self._completing:
            return
        children = self.graph.children(jid)
        states = [self.status.get(c) for c in children]
        if any(s not in FINAL for s in states):
            return
        bad = [c for c, s in zip(children, states) if s in (FAILED, BLOCKED)]
        if bad:
            self._fail(jid, f"child {bad[0]} failed" if self.status[bad[0]] == FAILED
                       else f"child {bad[0]} is blocked by {self.blocked_by[bad[0]]}")
            self._out.append(Fail(jid, self.errors[jid]))
        else:
            self._completing.add(jid)
            self._out.append(Complete(jid))
