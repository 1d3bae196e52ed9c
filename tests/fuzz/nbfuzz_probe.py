"""What the fuzz notebook's jobs call besides their own code.

It is an ordinary module (imported by name, so cloudpickle references it instead of copying
it) outside the tracked root, so it is never part of a code fingerprint. Every job calls
``enter(slot)`` first: that logs the run, and raises KeyboardInterrupt at the chosen call.
"""

from __future__ import annotations

import contextlib

calls: list[str] = []          # slots entered since the last reset(), in order
interrupt_at: int | None = None  # 1-based call number that raises KeyboardInterrupt
_quiet = 0


def reset(interrupt: int | None = None) -> None:
    global interrupt_at
    calls.clear()
    interrupt_at = interrupt


def enter(slot: str) -> None:
    if _quiet:
        return
    calls.append(slot)
    if interrupt_at is not None and len(calls) == interrupt_at:
        raise KeyboardInterrupt(f"fuzz interrupt in {slot}")


@contextlib.contextmanager
def quiet():
    """The oracle evaluates the same functions: no logging, no interrupts."""
    global _quiet
    _quiet += 1
    try:
        yield
    finally:
        _quiet -= 1


def total(*values) -> int:
    """Sum of the ints inside nested lists, tuples and dict values."""
    out = 0
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, bool):
            raise TypeError("no bools here")
        if isinstance(v, int):
            out += v
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        else:
            raise TypeError(f"unexpected {type(v).__name__} in a job's inputs: {v!r}")
    return out
