"""Which waiting job a runner may send ahead to the place that makes its inputs (pure).

Engines (``parmake``) send a job the core has not decided yet to the engine that is making
its inputs, right behind them, so a chain does not wait for the kernel between links. The
decisions here take the scheduler's state and a ``holder`` (which place, if any, is making
a job's result now); the runner does the claiming and the sending.
"""

from __future__ import annotations

from typing import Callable, Hashable, Mapping

from .scheduler import OK, Scheduler

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
