"""Which waiting job a runner may send ahead to the place that makes its inputs (pure).

Engines (``parmake``) send a job the core has not decided yet to the engine that is making
its inputs, right behind them, so a chain does not wait for the kernel between links. The
decisions here take the scheduler's state and a ``holder`` (which place, if any, is making
a job's result now); the runner does the claiming and the sending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable, Mapping

from .scheduler import OK, Scheduler
from .states import QUEUED, WAITING

MAX_INPUTS = 8  # a job with more inputs is not sent ahead (a fan-in waits for the core)


def place_ahead(sched: Scheduler, jid: str, holder: Callable[[str], Hashable | None],
                max_inputs: int = MAX_INPUTS) -> tuple[Hashable, tuple[str, ...]] | None:
    """(place, inputs made there) if ``jid`` may be sent ahead to that place, else None.

    It may if it is a plain job that will run whatever its inputs bring
    (``Scheduler.runs_whatever``) and each input is final with a stored result, or a plain
    job being made at one and the same place (``holder(dep)``); at least one must be the
    latter (a job whose inputs are all final is decided at once: nothing to send ahead)."""
    specs = sched.graph.specs
    spec = specs.get(jid)
    if spec is None or spec.dynamic or len(spec.deps) > max_inputs:
        return None
    if not sched.runs_whatever(jid):
        return None
    state = sched.state
    place, made = None, []
    for dep in spec.deps:
        if state(dep) in OK:
            continue
        if specs[dep].dynamic:  # its value is made in the kernel, from its children's
            return None
        where = holder(dep)
        if where is None or (place is not None and where != place):
            return None
        place = where
        made.append(dep)
    if place is None:
        return None
    return place, tuple(made)


def consumed_as_decided(recorded: Mapping[str, str], consumed: Mapping[str, str]) -> bool:
    """Did a job sent ahead take the very results the core recorded for its inputs?
    ``recorded``: input -> checksum of its result as the core has it now; ``consumed``:
    input -> checksum of what the job took. Every recorded input must have been taken."""
    return all(consumed.get(dep) == checksum for dep, checksum in recorded.items())


# -- the kernel's side of sending ahead: stimuli in, instructions out ----------------------

@dataclass(frozen=True, slots=True)
class SendAhead:
    """Claim ``job_id`` and send it to ``place``, right behind ``behind`` (its inputs made
    there); the others are stored results."""

    job_id: str
    place: Hashable
    behind: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DropAhead:
    """Forget these jobs sent ahead (the runner drops them at their place); ``release``:
    the claims to let go (of those the core did not decide to run)."""

    job_ids: tuple[str, ...]
    release: tuple[str, ...]


@dataclass(slots=True)
class Held:
    """A job sent ahead. ``stored``: checksums of the stored inputs it was given;
    ``expected`` (once adopted): checksums the core recorded for the inputs behind."""

    place: Hashable
    behind: tuple[str, ...]
    stored: dict[str, str] = field(default_factory=dict)
    expected: dict[str, str] | None = None

    @property
    def adopted(self) -> bool:
        return self.expected is not None


class Ahead:
    """Which jobs go ahead, where, and when one sent ahead is dropped or runs again.

    Pure: it reads the scheduler (states, ``runs_whatever``, dependents) and a
    ``place_of`` (where a job's result is being made in this run), and answers with
    instructions; the run loop claims, describes and tells the runner.

    ``per_place``: at most this many undecided jobs wait ahead at one place. A job sent
    ahead is *adopted* when the core decides Run for it: its outcome then counts if it
    consumed the very results the core recorded (``ended``)."""

    def __init__(self, sched: Scheduler, per_place: int, max_inputs: int = MAX_INPUTS):
        self.sched = sched
        self.per_place = per_place
        self.max_inputs = max_inputs
        self.held: dict[str, Held] = {}
        self.users: dict[str, list[str]] = {}   # input -> jobs sent ahead behind it
        self.frontier: dict[str, None] = {}     # jobs that may be sent ahead now
        self.deferred: dict[str, None] = {}     # ... once their place has room
        self.counts: dict[Hashable, int] = {}   # undecided jobs held per place
        self.sent = 0                           # how many jobs were sent ahead (ever)

    def waiting(self, job_id: str) -> bool:
        """Sent ahead, not adopted: its outcomes wait for the core's decision."""
        held = self.held.get(job_id)
        return held is not None and held.expected is None

    # -- stimuli ------------------------------------------------------------------------

    def handed(self, job_id: str) -> None:
        """The job went to the runner: its dependents may go ahead behind it."""
        spec = self.sched.graph.specs.get(job_id)
        if spec is not None and not spec.dynamic:
            for dependent in self.sched.dependents(job_id):
                self.frontier[dependent] = None

    def plan(self, place_of: Callable[[str], Hashable | None],
             room: int | None = None) -> list[SendAhead]:
        """Jobs to send ahead now (at most ``room`` if given), in order: a job planned
        brings its dependents along, so a chain goes out at once up to ``per_place``."""
        out: list[SendAhead] = []

        def where(dep: str) -> Hashable | None:
            held = self.held.get(dep)
            if held is not None and held.expected is None:
                return held.place
            return place_of(dep)

        while self.frontier and (room is None or len(out) < room):
            jid = next(iter(self.frontier))
            del self.frontier[jid]
            if jid in self.held:
                continue
            found = place_ahead(self.sched, jid, where, self.max_inputs)
            if found is None:
                continue  # back on the frontier when an input of it is handed over
            place, behind = found
            if self.counts.get(place, 0) >= self.per_place:
                self.deferred[jid] = None
                continue
            self.held[jid] = Held(place, behind)
            self.counts[place] = self.counts.get(place, 0) + 1
            for dep in behind:
                self.users.setdefault(dep, []).append(jid)
            self.handed(jid)
            self.sent += 1
            out.append(SendAhead(jid, place, behind))
        return out

    def sent_with(self, job_id: str, stored: Mapping[str, str]) -> None:
        """It was sent, with these stored inputs (dep -> checksum)."""
        self.held[job_id].stored = dict(stored)

    def not_sent(self, job_id: str) -> DropAhead:
        """It could not be claimed or described: it and what was planned behind it."""
        return self.drop([job_id])

    def adopt(self, job_id: str, recorded: Mapping[str, str]) -> DropAhead | None:
        """The core decided Run for a job sent ahead; ``recorded``: input -> checksum of
        its result as the core has it. None: adopted (its outcome counts if it took those
        results); else it was given other stored inputs: dropped, to be sent again."""
        held = self.held[job_id]
        if not consumed_as_decided({d: s for d, s in recorded.items() if d not in held.behind},
                                   held.stored):
            return self.drop([job_id])
        self._room(held)
        held.expected = {d: recorded.get(d, "") for d in held.behind}
        return None

    def ended(self, job_id: str, consumed: Mapping[str, str] | None) -> DropAhead | None:
        """An adopted job's outcome came. None: it counts; else it took other results than
        the core recorded: it runs again, and what was sent ahead behind it is dropped."""
        held = self.held.pop(job_id)
        if consumed_as_decided(held.expected or {}, consumed or {}):
            return None
        return self.drop(self.users.pop(job_id, ()), also=(job_id,))

    def requeued(self, job_id: str) -> DropAhead | None:
        """The job did not run at its place (handed back, an input failed or was lost
        there, its place died): what was sent ahead behind it is dropped, and so is it if
        it was sent ahead."""
        held = self.held.get(job_id)
        if held is not None and held.expected is not None:  # adopted: it runs again
            del self.held[job_id]
        drop = self.drop([job_id, *self.users.pop(job_id, ())])
        if held is not None and held.expected is not None:
            drop = DropAhead((job_id, *drop.job_ids), drop.release)
        return drop if drop.job_ids else None

    def settle(self) -> DropAhead | None:
        """Jobs sent ahead that the core decided otherwise than Run (blocked, made by
        another process, up to date after all): dropped."""
        state = self.sched.state
        gone = [j for j, h in self.held.items()
                if h.expected is None and state(j) not in (WAITING, QUEUED)]
        return self.drop(gone) if gone else None

    def stop(self) -> DropAhead:
        """The run ends: every job still held is dropped."""
        adopted = tuple(j for j, h in self.held.items() if h.expected is not None)
        for jid in adopted:
            del self.held[jid]
        drop = self.drop(list(self.held))
        self.frontier.clear()
        self.deferred.clear()
        self.users.clear()
        return DropAhead(adopted + drop.job_ids, drop.release)

    def drop(self, job_ids, also: tuple[str, ...] = ()) -> DropAhead:
        """Undecided jobs sent ahead, and every one sent ahead behind them."""
        stack, dropped, release = list(job_ids), list(also), []
        state = self.sched.state
        while stack:
            jid = stack.pop()
            held = self.held.get(jid)
            if held is None or held.expected is not None:
                continue
            del self.held[jid]
            self._room(held)
            dropped.append(jid)
            if state(jid) != QUEUED:  # else the run loop holds its claim and runs it
                release.append(jid)
            stack.extend(self.users.pop(jid, ()))
        return DropAhead(tuple(dropped), tuple(release))

    def _room(self, held: Held) -> None:
        self.counts[held.place] -= 1
        if self.deferred:
            self.frontier.update(self.deferred)
            self.deferred.clear()
