"""What a job is (JobSpec) and what its last successful run was made from (RunRecord)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from .options import NO_OPTIONS, JobOptions


def short_hash(*parts: str, n: int = 8) -> str:
    # The bytes hashed are each part followed by a NUL, all in one update.
    text = "\x00".join(parts) + "\x00" if parts else ""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()[:n]


def default_job_id(name: str, function_label: str, args_fp: str, parent: str | None = None) -> str:
    """`<func.__name__>-<8 hex>`: deterministic across processes and kernel restarts."""
    return f"{name}-{short_hash(function_label, args_fp, parent or '')}"


@dataclass(slots=True)
class JobSpec:
    """One job's definition. The core reads only the fingerprint fields; the payload
    (``func``, ``args``, ``kwargs``) rides along for the runners, and so do the
    ``options`` (timeout, retries, resources), which are not part of ``def_fp``: changing
    them never makes a job run again."""

    job_id: str
    function: str                     # "module.qualname", for display and `stats`
    code_fp: str
    code_parts: Mapping[str, str]     # label -> digest, so `why` can name what changed
    args_fp: str
    deps: tuple[str, ...]
    parent: str | None = None
    dynamic: bool = False
    func: Any = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    options: JobOptions = NO_OPTIONS
    # the files it reads (``File`` arguments): absolute paths, in the order found; their
    # content counts in its signature (its outputs are ``options.outputs``)
    inputs: tuple[str, ...] = ()
    # ``def_fp``, once asked for: a no-op make of 100,000 jobs never hashes one (what it
    # stands for is compared field by field, see ``same_definition``)
    _def_fp: str = field(default="", compare=False, repr=False)

    @property
    def def_fp(self) -> str:
        """The fingerprint of the definition: its code, arguments, kind and parent."""
        if not self._def_fp:
            self._def_fp = short_hash(
                self.code_fp, self.args_fp, "dyn" if self.dynamic else "", self.parent or "", n=32
            )
        return self._def_fp

    def same_definition(self, other: "JobSpec") -> bool:
        """What ``def_fp`` stands for, compared without hashing either."""
        return self.code_fp == other.code_fp and self.args_fp == other.args_fp \
            and self.dynamic == other.dynamic and self.parent == other.parent


NO_FILES: dict[str, str] = {}


@dataclass(slots=True)
class RunRecord:
    """What the stored result of a job was computed from."""

    code_fp: str
    code_parts: Mapping[str, str]
    args_fp: str
    dep_fps: Mapping[str, str]        # dependency id -> fingerprint of the result consumed
    result_fp: str
    arg_fps: Mapping[str, str] = field(default_factory=dict)  # per argument, for `why`
    present: bool = True              # False when the result file is missing or corrupt
    # path -> content fingerprint of each input file it read and each output it wrote
    # (replaced, never changed: records without files share one empty dict)
    files: Mapping[str, str] = field(default_factory=lambda: NO_FILES)
