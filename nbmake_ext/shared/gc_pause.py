"""Pausing Python's cyclic garbage collector while bookkeeping builds many objects."""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: for the phases that build an object or more
    per job and keep them (reading the store, deciding every job at the start of a make).
    Each collection their allocations would trigger walks every object alive, so at
    100,000 jobs the collections cost as much as the work itself. Only bounded work of the
    package goes inside, never a job. Collection resumes after (if it was on)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _frozen_here:
            # Inside a freeze of ours: what was built joins the frozen objects. Else the
            # first young collection after the pause would walk all of it (0.1 s at
            # 100,000 jobs) only to find it alive.
            gc.freeze()
        if was:
            gc.enable()


_frozen_here = 0  # objects_frozen blocks of this package open now (theirs to undo)


@contextlib.contextmanager
def objects_frozen() -> Iterator[None]:
    """The objects alive now are left out of garbage collection inside (``gc.freeze``):
    for a make, whose definitions, stored records and states of every job live through it.
    Collections still run and still find the garbage of what is made inside (jobs that run
    in this process included); they no longer walk the whole graph each time (at 100,000
    jobs, a full collection took about 0.1 s). Those objects are collected normally again
    after. Not done when someone else froze objects: their freeze is theirs to undo. Inside,
    what a ``gc_paused`` phase built is frozen too as the phase ends."""
    global _frozen_here
    if _frozen_here or not gc.isenabled() or gc.get_freeze_count():
        yield  # (nested in one of ours, or someone else's freeze)
        return
    gc.freeze()
    _frozen_here += 1
    try:
        yield
    finally:
        _frozen_here -= 1
        gc.unfreeze()


# Allocations between two young collections while a run's loop does nothing but bookkeeping
# (the default is 700: a 1,000-job fan-out made 12 collections, 0.9 ms of its 30).
BOOKKEEPING_THRESHOLD = 50_000


@contextlib.contextmanager
def fewer_collections(on: bool = True) -> Iterator[None]:
    """Young collections at most every ``BOOKKEEPING_THRESHOLD`` allocations inside: for
    the loop of a run whose jobs all run in other processes, where this process only
    records their outcomes (objects that mostly live as long as the run). Garbage is still
    collected, in larger batches (a few MB at most). Inside a freeze of ours, what was
    built since the last collection joins the frozen objects as it ends, so the collection
    it put off does not fall on the end of the command: its garbage, if any, waits for a
    full collection. ``on``: False does nothing (a run whose jobs run here)."""
    threshold = gc.get_threshold()
    if not on or threshold[0] == 0 or threshold[0] >= BOOKKEEPING_THRESHOLD:
        yield  # (collection off, or someone chose a higher threshold: theirs)
        return
    gc.set_threshold(BOOKKEEPING_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        if _frozen_here:
            gc.freeze()
        gc.set_threshold(*threshold)
