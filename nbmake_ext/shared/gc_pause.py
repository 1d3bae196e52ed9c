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
        if was:
            gc.enable()
