"""The scheduler's failures: a job that failed blocks everything waiting below it (by its
root, the failed job), completes a returned dynamic parent that waited on it, and a job
redefined after it failed or was blocked reopens what it blocked. A mixin of ``Scheduler``
(scheduler.py): it uses its state.
"""

from __future__ import annotations

from .events import Block
from .states import BLOCKED, FAILED, RETURNED, WAITING


class Failures:
    def _fail(self, jid: str, error: str) -> None:
        self._set(jid, FAILED)
        self.errors[jid] = error
        self._block_downstream(jid, jid)
        parent = self.graph.specs[jid].parent
        if parent is not None and self.status.get(parent) == RETURNED:
            self._check_complete(parent)

    def _block(self, jid: str, root: str) -> None:
        self._mark_blocked(jid, root)
        self._block_downstream(jid, root)

    def _mark_blocked(self, jid: str, root: str) -> None:
        self._set(jid, BLOCKED)
        self.blocked_by[jid] = root
        self.waiting_on.pop(jid, None)
        self._out.append(Block(jid, root))

    def _below(self, spec) -> list[str]:
        """What a failure of ``spec``'s job reaches: its dependents and, for a dynamic job,
        its children."""
        below = list(self._dependents.get(spec.job_id, ()))
        if spec.dynamic:
            below += self.graph.children(spec.job_id)
        return below

    def _block_downstream(self, jid: str, root: str) -> None:
        """Everything waiting below ``jid`` is blocked by ``root`` (a worklist: chains of
        any length)."""
        status, specs = self.status, self.graph.specs
        stack = [jid]
        parents = []
        while stack:
            below = self._below(specs[stack.pop()])
            for k in below:
                if status.get(k) == WAITING:
                    self._mark_blocked(k, root)
                    stack.append(k)
                    if specs[k].parent is not None:
                        parents.append(specs[k].parent)
        own_parent = specs[jid].parent
        for parent in [own_parent, *parents] if own_parent else parents:
            if self.status.get(parent) == RETURNED:
                self._check_complete(parent)

    def _reopen(self, jid: str, root: str) -> list[str]:
        """``jid``, failed or blocked by ``root``, waits again (redefined): what it blocked,
        transitively, with that root, waits again too, for its inputs to be final. Not what
        another input, failed or blocked by the same root, still blocks."""
        status, specs, blocked_by = self.status, self.graph.specs, self.blocked_by
        found: dict[str, None] = {}  # insertion-ordered: downstream of jid, blocked by root
        stack = [jid]
        while stack:
            below = self._below(specs[stack.pop()])
            for k in below:
                if k not in found and status.get(k) == BLOCKED and blocked_by.get(k) == root:
                    found[k] = None
                    stack.append(k)
        kept = True
        while kept:  # until nothing more stays blocked
            kept = False
            for k in list(found):
                for i in self._upstream(specs[k], self._defined):
                    if i != jid and i not in found and status.get(i) in (FAILED, BLOCKED) \
                            and self._root(i) == root:
                        del found[k]
                        kept = True
                        break
        for k in found:
            self._set(k, WAITING)
            self.waiting_on[k] = set()
            self.unsettled[k] = BLOCKED  # up to date again: its result is taken back
            del blocked_by[k]
        for k in found:
            if status[k] == WAITING:  # (not when blocked again, by another root, meanwhile)
                self._init_waiting(k)
        return list(found)

    def _root(self, jid: str) -> str:
        return jid if self.status.get(jid) == FAILED else self.blocked_by.get(jid, jid)
