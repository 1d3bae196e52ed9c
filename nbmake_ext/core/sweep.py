"""The sweep at a make's start: every job that is up to date along with its whole upstream,
found in one pass (the whole of a no-op make), before anything is decided one by one."""

from __future__ import annotations

from typing import Mapping

from . import signature
from .jobspec import JobSpec, RunRecord
from .states import SKIPPED


def upstream(spec: JobSpec, defined: Mapping[str, set[str]]) -> tuple[str, ...]:
    """What a job waits for: its dependencies, and its dynamic parent until that parent
    defined it in this run."""
    parent = spec.parent
    if parent is None or spec.job_id in defined.get(parent, ()):
        return spec.deps
    return (*spec.deps, parent)


def fresh(among: Mapping[str, None], specs: Mapping[str, JobSpec],
          records: Mapping[str, RunRecord], results: Mapping[str, str | None],
          forced: Mapping[str, str], status: Mapping[str, str],
          defined: Mapping[str, set[str]], files: signature.FileLookup | None) -> list[str]:
    """The jobs of ``among`` that are up to date and whose upstream is too (in ``among``
    and fresh, or already ``SKIPPED``), dependencies first: what deciding them one by one
    would skip, without the bookkeeping."""
    up_to_date = signature.is_up_to_date
    judged: dict[str, bool] = {}
    order: list[str] = []

    def judge(jid: str, spec: JobSpec, ups: tuple[str, ...]) -> None:
        for u in ups:
            if not (judged[u] if u in judged else status.get(u) == SKIPPED):
                judged[jid] = False
                return
        if up_to_date(spec, records.get(jid), results, forced.get(jid), files):
            judged[jid] = True
            order.append(jid)
        else:
            judged[jid] = False

    # First the jobs with nothing upstream (most jobs: a fan-out's), in one plain loop.
    record_of, forced_of = records.get, forced.get
    for jid in among:
        spec = specs[jid]
        if spec.deps or spec.parent is not None:
            continue
        if up_to_date(spec, record_of(jid), results, forced_of(jid), files):
            judged[jid] = True
            order.append(jid)
        else:
            judged[jid] = False
    # Then the others, each after what it waits for.
    for root in among:  # mostly in dependency order already: jobs are defined so
        if root in judged:
            continue
        spec = specs[root]
        ups = upstream(spec, defined)
        stack = [(root, spec, ups, iter(ups))]  # depth first (iterative: long chains)
        while stack:
            jid, spec, ups, it = stack[-1]
            for up in it:
                if up in among and up not in judged:
                    u_spec = specs[up]
                    u_ups = upstream(u_spec, defined)
                    stack.append((up, u_spec, u_ups, iter(u_ups)))
                    break
            else:
                stack.pop()
                judge(jid, spec, ups)
    return order
