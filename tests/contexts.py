"""A Context on a fresh store, as most in-process tests want it."""

from __future__ import annotations

from pathlib import Path

from nbmake_ext import Context


def new_context(path: Path) -> Context:
    """Not durable (no waits on the disk); the scheduler checks itself after every event;
    ``ctx.lines`` keeps the summary line of every command."""
    ctx = Context(path, durable=False)
    ctx.validate = True
    ctx.lines = []
    ctx.report = ctx.lines.append
    return ctx
