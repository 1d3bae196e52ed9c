"""Sending ahead, the run loop's part: a waiting job that will run whatever its inputs
bring goes to the place making them, right behind them, before the core decides it.

core/ahead.py decides which jobs and where; this part of the Driver claims them, describes
them, tells the runner (``send_ahead``, ``drop``) and holds the outcomes of the undecided
ones until the core decides them (README "Engines"). A mixin of ``Driver``: it uses the
run loop's state (``self.ahead``, ``self.runner``, ``self.store``...).
"""

from __future__ import annotations

import time

from ..core.ahead import DropAhead
from ..shared.outcomes import (ChildSpec, DependencyLost, Durable, JobRaised, JobStored,
                               Outcome, Progress, RemoteJob, Requeue)

LOOK_EVERY = 0.2  # seconds between looks for jobs sent ahead that the core decided otherwise


class SendAhead:

    def _send_ahead(self) -> None:
        ahead = self.ahead
        if ahead.held and time.monotonic() - self._looked_at > LOOK_EVERY:
            self._looked_at = time.monotonic()
            self._drop_ahead(ahead.settle())
        if not ahead.frontier:
            return
        room = None
        if self.runner.capabilities.ahead_takes_slots:
            room = self.runner.free_slots()
            if room <= 0:
                return
        plan = ahead.plan(self.runner.place_of, room)
        if not plan:
            return
        mine, _ = self.store.claim([p.job_id for p in plan])
        mine = set(mine)
        skip: set[str] = set()
        for p in plan:
            jid = p.job_id
            if jid in skip:
                continue
            job = None
            if jid in mine:  # else another process runs it: the run loop waits for that
                try:
                    job = self.describe(jid)
                except Exception:  # noqa: BLE001 - met again once the core decides it
                    pass
            if job is None:
                drop = ahead.not_sent(jid)
                skip.update(drop.job_ids)
                self.store.release([j for j in drop.release if j in mine])
                continue
            for dep in p.behind:  # its place has them; an older stored result is not wanted
                job.deps.pop(dep, None)
                job.inline.pop(dep, None)
            job.after = p.behind
            ahead.sent_with(jid, {d: where[1] for d, where in job.deps.items()})
            self.runner.send_ahead(job, p.place, p.behind)

    def _drop_ahead(self, drop: DropAhead | None) -> None:
        if drop is None or not drop.job_ids:
            return
        for jid in drop.job_ids:
            self._early.pop(jid, None)
        self.runner.drop(list(drop.job_ids))
        if drop.release:
            self.store.release(list(drop.release))

    def _adopt(self, job: RemoteJob) -> bool:
        """The core decided Run for a job sent ahead: its outcomes (held here, or to come)
        count from now on. False: it was given other stored inputs than the core recorded;
        it is sent again (with its definition)."""
        jid = job.job_id
        drop = self.ahead.adopt(jid, {d: where[1] for d, where in job.deps.items()})
        if drop is None:
            self._replay.extend(self._early.pop(jid, ()))
            return True
        self._drop_ahead(drop)
        try:
            job.func_key, job.func_blob, job.payload, job.sources = self._definition(jid)
        except Exception as exc:  # noqa: BLE001
            self._fail(jid, f"cannot load the job's definition: {exc!r}", "", None)
            return True
        return False

    def _sort_ahead(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Outcomes of undecided jobs sent ahead are held until the core decides them; an
        adopted one's outcome counts only if it took the results the core recorded."""
        ahead, out = self.ahead, []
        for o in outcomes:
            kind = type(o)
            if kind is Durable or kind is Requeue:
                ids = [j for j in o.job_ids if ahead.waiting(j)]
                if not ids:
                    out.append(o)
                    continue
                rest = [j for j in o.job_ids if j not in ids]
                for jid in ids:
                    if kind is Durable:
                        self._early.setdefault(jid, []).append(Durable([jid]))
                    else:  # it did not run at its place: dropped
                        self._drop_ahead(ahead.requeued(jid))
                if rest:
                    out.append(kind(rest))
                continue
            if kind is ChildSpec or kind is Progress:  # (progress: only of running jobs)
                out.append(o)
                continue
            jid = o.job_id
            held = ahead.held.get(jid)
            if held is None:
                out.append(o)
            elif held.expected is None:  # undecided
                if kind is DependencyLost:
                    self._drop_ahead(ahead.requeued(jid))
                else:
                    self._early.setdefault(jid, []).append(o)
            elif kind is JobStored or kind is JobRaised:
                drop = ahead.ended(jid, o.consumed)
                if drop is None:
                    out.append(o)
                else:  # it took other results than the core recorded: it runs again
                    self._drop_ahead(drop)
                    out.append(Requeue([jid]))
            elif kind is DependencyLost:
                self._drop_ahead(ahead.requeued(jid))
                out.append(o)
            else:
                out.append(o)
        return out
