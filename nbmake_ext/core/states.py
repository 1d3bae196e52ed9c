"""Job states: the six public ones (what views show, derived from the store), and the
per-run statuses of the scheduler with the moves it may make between them."""

from __future__ import annotations

from typing import Final, Literal, Mapping

from . import signature
from .jobspec import JobSpec, RunRecord

# -- public states ----------------------------------------------------------------------

State = Literal["todo", "stale", "running", "done", "failed", "blocked"]

STATES: tuple[State, ...] = ("todo", "stale", "running", "done", "failed", "blocked")

#: SPEC colours, shared by the text view and the widget legend.
COLOURS: dict[str, str] = {
    "done": "#2e9e44",      # green
    "running": "#f0a202",   # amber
    "failed": "#d62828",    # red
    "blocked": "#7b2cbf",   # purple
    "todo": "#9e9e9e",      # grey
    "stale": "#a7d9a0",     # light green
}

#: Words accepted as targets, selecting jobs by state.
STATE_WORDS = frozenset({"todo", "stale", "failed", "blocked", "done", "running"})

#: The target that means every job in the store, wherever it is given.
ALL = "all"

#: What the store remembers of the last run of a job; `stale` and `running` are derived.
PersistedState = Literal["todo", "done", "failed", "blocked"]


def public_state(spec: JobSpec, outcome: PersistedState | str | None, record: RunRecord | None,
                 *, forced: bool, dep_results: Mapping[str, str | None],
                 running: bool, files: signature.FileLookup | None = None) -> State:
    """The state views show for a job (SPEC 2), from what the store holds of it.

    ``outcome`` is its stored last outcome (None: the store does not know the job),
    ``record`` what its stored result was made from, ``forced`` whether a remake marked it
    to run again, ``dep_results`` the fingerprints of its dependencies' current results,
    ``running`` whether a make is executing it now, ``files`` the current fingerprints of
    its files (signature.FileLookup). ``failed`` and ``blocked`` stay until
    a make reaches the job again; a result is ``stale`` when its signature changed (a
    dependency with no result, cleaned, changes nothing until it is remade)."""
    if running:
        return "running"
    if outcome == "failed" or outcome == "blocked":
        return outcome
    if record is None or not record.present:
        return "todo"
    return "done" if signature.is_current(spec, record, dep_results, forced, files) else "stale"


def restorable(spec: JobSpec, outcome: PersistedState | str | None, record: RunRecord | None,
               *, forced: bool, dep_results: Mapping[str, str | None],
               files: signature.FileLookup | None = None) -> bool:
    """A failed or blocked job whose stored result (from an earlier successful run) is up
    to date again: the next make that reaches it takes that result back, without running
    it (what the scheduler decides: ``Skip(job, restored=True)``)."""
    return (outcome == "failed" or outcome == "blocked") \
        and signature.is_current(spec, record, dep_results, forced, files)


# -- per-run statuses of the scheduler --------------------------------------------------

Status = Literal["waiting", "queued", "returned", "done", "skipped", "failed", "blocked"]

WAITING: Final = "waiting"    # some dependency (or the dynamic parent) is not final yet
QUEUED: Final = "queued"      # Run emitted: the driver runs it (or waits on another process)
RETURNED: Final = "returned"  # dynamic job returned; waits for its children
DONE: Final = "done"          # ran in this run
SKIPPED: Final = "skipped"    # was up to date
FAILED: Final = "failed"
BLOCKED: Final = "blocked"

STATUSES: tuple[Status, ...] = (WAITING, QUEUED, RETURNED, DONE, SKIPPED, FAILED, BLOCKED)
OK = frozenset({DONE, SKIPPED})
FINAL = frozenset({DONE, SKIPPED, FAILED, BLOCKED})

#: Every move the scheduler makes, (from, to) -> what makes it. ``None``: not (or no
#: longer: a dynamic child forgotten) part of the run.
TRANSITIONS: dict[tuple[Status | None, Status], str] = {
    (None, WAITING): "needed by the run: waits for its dependencies",
    (None, SKIPPED): "up to date along with its whole upstream (the first sweep)",
    (WAITING, QUEUED): "its inputs are final and it is not up to date: run it",
    (WAITING, SKIPPED): "its inputs are final and it is up to date",
    (WAITING, BLOCKED): "a dependency (or its dynamic parent) failed or is blocked",
    (WAITING, WAITING): "a dynamic child redefined before it was decided",
    (QUEUED, QUEUED): "reconsidered after another process changed its record: runs still; "
                      "or failed with attempts left (job_retries): runs again",
    (QUEUED, SKIPPED): "reconsidered after another process made it: up to date",
    (QUEUED, RETURNED): "a dynamic job returned: waits for its children",
    (QUEUED, DONE): "succeeded",
    (QUEUED, FAILED): "raised, its engine died, or its result could not be stored",
    (QUEUED, WAITING): "not started yet, and a result it needs was lost: waits for it; or "
                       "a dynamic child redefined before it started",
    (RETURNED, DONE): "its children done, its value stored",
    (RETURNED, FAILED): "a child failed or is blocked, or its value could not be stored",
    (DONE, WAITING): "its result was lost (made again), or a dynamic child redefined",
    (SKIPPED, WAITING): "its result was lost (made again), a dependency was made again to "
                        "another result, or a dynamic child redefined",
    (FAILED, WAITING): "a dynamic child redefined after it failed",
    (BLOCKED, WAITING): "a dynamic child redefined after it was blocked, or the job that "
                        "blocked it (failed or blocked) was redefined: waits for it again",
}

LEGAL: frozenset[tuple[Status | None, Status]] = frozenset(TRANSITIONS)


def legal_from(status: Status | None) -> list[Status]:
    """The statuses a job in ``status`` may move to."""
    return [b for a, b in TRANSITIONS if a == status]
