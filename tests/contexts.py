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


def record_elsewhere_when_claimed(ctx: Context, other: Context, job_id: str,
                                  inputs: dict[str, object], monkeypatch) -> list[str]:
    """When ``ctx`` first claims ``job_id`` alone (as it does to send it ahead), ``other``
    (the same store, opened again: another process, as far as claims go) stores a result
    of it, "made elsewhere", made from ``inputs`` (input job -> its value). Returns the list
    that holds ``job_id`` once that happened."""
    from nbmake_ext.core.jobspec import RunRecord
    from nbmake_ext.fingerprint import digest
    from nbmake_ext.store.store import dumps_value

    spec = ctx.graph.specs[job_id]
    claim, stored = ctx.store.claim, []

    def claim_after_the_other_process(job_ids):
        job_ids = list(job_ids)
        if job_ids == [job_id] and not stored:
            value = "made elsewhere"
            record = RunRecord(spec.code_fp, spec.code_parts, spec.args_fp,
                               {dep: digest(v) for dep, v in inputs.items()}, digest(value))
            other.store.record_success(job_id, record, dumps_value(value), {}, ("", ""))
            other.store.flush()
            stored.append(job_id)
        return claim(job_ids)

    monkeypatch.setattr(ctx.store, "claim", claim_after_the_other_process)
    return stored
