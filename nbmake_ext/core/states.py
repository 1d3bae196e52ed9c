"""The six public job states, their colours, and the words a target may use."""

from __future__ import annotations

from typing import Literal

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
