"""The scheduler's checks: a move the transition table (states.py) does not allow raises
an InternalError naming the job, its move and, with ``validate=True``, its recent story
(the moves it made and the events that caused them); ``check`` asserts the invariants
tests switch on. A mixin of ``Scheduler`` (scheduler.py): it uses its state.
"""

from __future__ import annotations

from collections import deque

from ..errors import InternalError
from .events import ChildDefined, Event, Reconsider, ResultLost
from .states import BLOCKED, FAILED, LEGAL, OK, QUEUED, WAITING, legal_from

#: How many moves of each job a validating scheduler remembers, for its error messages.
STORY = 12


def _describe(event: Event) -> str:
    """An event in a few words, for a job's story."""
    kind = type(event)
    if kind is ChildDefined:
        return f"ChildDefined({event.spec.job_id})"
    if kind is ResultLost:
        return f"ResultLost({event.job_id}, for {event.consumer})"
    if kind is Reconsider:
        return f"Reconsider({event.job_id}, last {event.last})"
    return f"{kind.__name__}({getattr(event, 'job_id', '?')})"


class Checks:
    def _expect(self, jid: str | None, *allowed: str) -> None:
        if self.status.get(jid) not in allowed:
            raise InternalError(
                f"job {jid!r} is {self.status.get(jid)!r} here, expected one of {allowed} "
                f"({self._told(jid)})"
            )

    def _expect_move(self, jid: str, new: str) -> None:
        """An event is about to move ``jid`` to ``new``: raise now, before anything
        changes, when the table does not allow it."""
        old = self.status.get(jid)
        if (old, new) not in LEGAL:
            self._illegal(jid, old, new)

    def _tell(self, jid: str, old: str | None, new: str | None) -> None:
        story = self._story[jid] if jid in self._story else \
            self._story.setdefault(jid, deque(maxlen=STORY))
        story.append(f"{old or 'new'} -> {new or 'forgotten'} ({self._cause})")

    def story(self, jid: str) -> list[str]:
        """The recent moves of ``jid`` and what caused each (kept with validate=True)."""
        return list(self._story.get(jid, ())) if self._story is not None else []

    def _told(self, jid: str | None) -> str:
        if self._story is None:
            return "its story is kept with validate=True only"
        return f"on {self._cause}; its story: " + ("; ".join(self.story(jid)) or "nothing yet")

    def _illegal(self, jid: str, old: str | None, new: str) -> None:
        allowed = ", ".join(legal_from(old)) or "nothing"
        raise InternalError(
            f"job {jid!r}: illegal move {old or 'new'} -> {new}, from {old or 'new'} it may "
            f"only go to {allowed} ({self._told(jid)})"
        )

    def check(self) -> None:
        """Invariants, switched on by tests (``validate=True``) after every event."""
        specs = self.graph.specs
        for jid, s in self.status.items():
            spec = specs[jid]
            if s == WAITING:
                waits = self.waiting_on[jid]
                assert waits, f"{jid} waits on nothing"
                for d in spec.deps:
                    ds = self.status.get(d)
                    assert ds not in (FAILED, BLOCKED), f"{jid} waits but {d} is {ds}"
            if s == QUEUED and jid not in self._started:
                for d in spec.deps:
                    assert self.status.get(d) in OK, f"{jid} is {s} but dependency {d} is not done"
            if s == BLOCKED:
                root = self.blocked_by[jid]
                assert self.status.get(root) == FAILED, f"{jid} blocked by {root} which did not fail"
        if self.finished:
            stuck = [j for j, s in self.status.items() if s == WAITING]
            assert not stuck, f"finished with waiting jobs: {stuck[:5]}"
