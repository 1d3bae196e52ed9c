"""A make of jobs that are all as the last clean make left them: said so from the record
that make left (store/unchanged.py), without reading and judging every job again. What a
no-op make of 100,000 jobs costs is then mostly the registering of them.

The record is left by a make or parmake of jobs registered in this process (and no other),
each of which ended up to date; it holds the digest of every job registered here (the
make wrote them all to the store). The next make of the same targets, over the same
definitions, with nothing written to the store since, is a no-op of as many jobs. Any
doubt (another target, a job added or changed, a write by anyone, a result file touched,
jobs with files or dynamic jobs, a view that follows each job) and the make goes the
usual way."""

from __future__ import annotations

import time
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

from ..core.states import DONE, SKIPPED
from ..core.unchanged import definitions_digest
from .driver import Driver, RunReport

if TYPE_CHECKING:
    from ..context import Context


def unchanged_report(ctx: "Context", targets: tuple[str, ...], command: str,
                     observer: Any) -> RunReport | None:
    """The report of a make that finds every job as the last clean make left it, or None
    (the make then runs as usual)."""
    registered = ctx._registered
    if observer is not None or ctx._lagging or not registered \
            or any(t not in registered for t in targets):
        return None  # (a view is told of each job; a glob or state word needs the store)
    t0 = time.perf_counter()
    ids = ctx._select(targets)

    def definitions() -> str | None:
        ctx._refresh_code()
        specs = ctx.graph.specs
        return definitions_digest([j for j in registered if j in specs], specs)

    # (The digest of every definition is taken only once the record's targets and count
    # of writes match: a make of other targets, or after a write, does not pay for it.)
    jobs = ctx.store.clean_make_jobs(definitions, _digest(ids))
    if jobs is None:
        return None
    ctx._pending.clear()  # the store has these very definitions
    report = RunReport(command, skipped=jobs, targets=ids, seconds=time.perf_counter() - t0)
    ctx.report(report.line())
    return report


def record_if_clean(ctx: "Context", driver: Driver, ids: list[str], command: str,
                    report: RunReport) -> None:
    """After a make: leave the record of a clean make if this one was (see the module)."""
    if command not in ("make", "parmake") or report.interrupted or report.failed \
            or report.blocked or ctx._stored_mark is None or ctx._lagging:
        return
    status = driver.sched.status
    registered = ctx._registered
    # (set operations: this runs as the make returns, over every job of it)
    if not set(status.values()) <= _UP_TO_DATE or not registered.keys() >= status.keys():
        return  # (a job not registered here: defined by another notebook, or a child)
    # All written to the store by this make. Their digest is taken on the store's writer
    # thread, with the record, or not at all if another make comes first (specs are
    # replaced, never changed: copies of the lists).
    specs, own = dict(ctx.graph.specs), list(registered)

    def definitions() -> str | None:
        return definitions_digest([j for j in own if j in specs], specs)

    ctx.store.record_clean_make(ctx._stored_mark, definitions, _digest(ids), len(status))


_UP_TO_DATE = frozenset((DONE, SKIPPED))


def _digest(ids: list[str]) -> str:
    return blake2b("\0".join(ids).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
