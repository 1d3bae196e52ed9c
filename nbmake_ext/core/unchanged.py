"""The digest of a set of job definitions, for the record of a clean make
(store/unchanged.py): equal digests, equal definitions as the store keeps them (what
``StoredJob.same_definition`` compares: code, arguments, dependencies, options), in the same
order of registration.

Only plain jobs count: a job that reads or writes files depends on more than the store
(the files, looked at afresh by every make), and a dynamic job's children are defined by
its runs, not registered. A set holding one of those has no digest, and every make of it
reads and judges each job."""

from __future__ import annotations

from hashlib import blake2b
from typing import Iterable, Mapping

from .jobspec import JobSpec
from .options import NO_OPTIONS, to_json


def definitions_digest(job_ids: Iterable[str], specs: Mapping[str, JobSpec]) -> str | None:
    lines = []
    add = lines.append
    for jid in job_ids:
        spec = specs[jid]
        if spec.dynamic or spec.parent is not None or spec.inputs or spec.options.outputs:
            return None
        options = "" if spec.options is NO_OPTIONS else to_json(spec.options) or ""
        add(f"{jid}\0{spec.code_fp}\0{spec.args_fp}\0{options}\0{len(spec.deps)}\0")
        add("\0".join(spec.deps))
        add("\n")
    return blake2b("".join(lines).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
