"""A job as the store knows it (StoredJob), as ``Store.snapshot`` reads it back."""

from __future__ import annotations

import json
from typing import Any, Callable

from ..core.jobspec import JobSpec
from ..core.options import NO_OPTIONS, from_json
from .parts import _CODE_PARTS, _Parts

FORCED_BY_REMAKE, FORCED_UNFINISHED = 1, 2
FORCED_REASONS = {FORCED_BY_REMAKE: "forced by remake",
                  FORCED_UNFINISHED: "its last run did not finish"}

# What a job's row holds only to be shown: its function's name, its last error, the failed
# job that blocked it, how long its last run took and when it ended.
Shown = tuple[str, "str | None", "str | None", "float | None", "float | None"]
_NOTHING_SHOWN: Shown = ("", None, None, None, None)


class ShownLater:
    """What a snapshot leaves out of its read (a no-op make never looks at it), read for
    every job of the snapshot at once when first asked for: views want it for all of them.
    It is read then, so it may be newer than the snapshot's states; it is only shown."""

    __slots__ = ("_read", "_rows")

    def __init__(self, read: Callable[[], dict[str, Shown]]):
        self._read, self._rows = read, None

    def of(self, job_id: str) -> Shown:
        rows = self._rows
        if rows is None:
            rows = self._rows = self._read()
        return rows.get(job_id, _NOTHING_SHOWN)


class StoredJob:
    """A job as the store knows it: its outcome, and (built when first asked for, since a
    process that registered the job itself never needs it) its stored definition.

    A store of 100,000 jobs holds 100,000 of these: slots, and no tuple of the row kept
    beside them."""

    __slots__ = ("job_id", "record", "state", "forced", "func_key", "r_file", "r_checksum",
                 "_shown", "_parent", "_dynamic", "_code_fp", "_args_fp", "_deps", "_options",
                 "_inputs", "_spec", "_store")

    def __init__(self, job_id, record, state, forced, func_key, r_file, r_checksum, shown,
                 parent, dynamic, code_fp, args_fp, deps, options, inputs, store):
        self.job_id, self.record, self.state, self.forced = job_id, record, state, forced
        self.func_key, self.r_file, self.r_checksum = func_key, r_file, r_checksum
        self._shown = shown  # a Shown, or the ShownLater of its snapshot
        self._parent, self._dynamic = parent, dynamic
        self._code_fp, self._args_fp, self._deps = code_fp, args_fp, deps
        self._options, self._inputs = options, inputs
        self._spec, self._store = None, store

    def _shown_values(self) -> Shown:
        shown = self._shown
        if type(shown) is not tuple:
            shown = self._shown = shown.of(self.job_id)
        return shown

    @property
    def function(self) -> str:
        return self._shown_values()[0]

    @property
    def error(self) -> str | None:
        return self._shown_values()[1]

    @property
    def blocked_by(self) -> str | None:
        return self._shown_values()[2]

    @property
    def duration(self) -> float | None:
        return self._shown_values()[3]

    @property
    def ended(self) -> float | None:
        return self._shown_values()[4]

    def same_definition(self, spec: JobSpec) -> bool:
        """Whether ``spec`` is what is stored (without building the stored JobSpec),
        options included."""
        # (what def_fp stands for, field by field: neither is hashed)
        if self._code_fp != spec.code_fp or self._args_fp != spec.args_fp \
                or self.func_key is None or bool(self._dynamic) != spec.dynamic \
                or self._parent != spec.parent:
            return False
        if spec.options is NO_OPTIONS:
            if self._options is not None:
                return False
        elif from_json(self._options) != spec.options:
            return False
        deps = self._deps
        if deps == "[]":  # most jobs: no dependency, nothing to decode
            return not spec.deps
        return tuple(loads_json(deps)) == spec.deps

    def outputs(self) -> tuple[str, ...]:
        """The files it declares as outputs (read from its options only if it has any)."""
        options = self._options
        if options is None or '"outputs"' not in options:
            return ()
        return from_json(options).outputs

    @property
    def spec(self) -> JobSpec:
        if self._spec is None:
            self._spec = JobSpec(self.job_id, self.function, self._code_fp,
                                 _Parts(self._store, _CODE_PARTS, self._code_fp), self._args_fp,
                                 tuple(loads_json(self._deps)), self._parent,
                                 bool(self._dynamic), options=from_json(self._options),
                                 inputs=tuple(loads_json(self._inputs)) if self._inputs else ())
        return self._spec


_json_memo: dict[str, Any] = {}
_MEMO_MAX_TEXT = 1024  # longer texts (a job with thousands of dependencies) are not kept


def loads_json(text: str | None) -> Any:
    # Thousands of jobs share the same small json ("[]", one function's parts): memoise.
    if text is None:
        return None
    value = _json_memo.get(text)
    if value is None:
        value = json.loads(text)
        if len(_json_memo) < 50_000 and len(text) <= _MEMO_MAX_TEXT:
            _json_memo[text] = value
    return value
