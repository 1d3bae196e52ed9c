"""The ``%%comp`` cells of one kernel: each cell body becomes a job (SPEC 1), and its
output names are bound in the user's namespace to values or Promises."""

from __future__ import annotations

import builtins
from typing import Any

from ..context import Context
from ..core.options import NO_OPTIONS, JobOptions
from ..errors import InvalidJob
from ..fingerprint import cell_fingerprint
from ..promise import Promise
from ..registration import make_spec
from . import cellcode
from .celljob import CellJob

_SHELL_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "_ih", "_oh", "_dh"})


class Cells:
    """Defines cell jobs, and remembers what it bound each output name to: a name the
    user has rebound since is the user's value again, not the cell's output."""

    def __init__(self, ctx: Context, shell: Any):
        self.ctx = ctx
        self.shell = shell
        self.owner: dict[str, str] = {}                 # output name -> the job binding it
        self.outputs: dict[str, tuple[str, ...]] = {}   # job -> its output names
        self.inputs: dict[str, dict[str, Any]] = {}     # job -> inputs of its last definition
        self.bound: dict[str, Any] = {}                 # name -> the object we bound it to
        self.bound_result: dict[str, str | None] = {}   # job -> result fp of bound values

    @property
    def ns(self) -> dict[str, Any]:
        return self.shell.user_ns

    # -- defining -----------------------------------------------------------------------

    def define(self, job_id: str | None, source: str, options: JobOptions = NO_OPTIONS) -> str:
        """Register the cell as a job (with ``options``: its ``%%comp`` flags), then bind
        its outputs. Returns the job id."""
        try:
            compile(source, "<%%comp>", "exec")  # also what parses but cannot run: `return`
            names = cellcode.analyse(source)
        except SyntaxError as exc:
            raise InvalidJob(job_id or "cell", f"the cell is not valid Python: {exc}") from None
        job_id = job_id or cellcode.default_job_id(names.outputs, cell_fingerprint(source))
        inputs: dict[str, Any] = {}
        captured: dict[str, Any] = {}
        for name in names.inputs:
            value = self._input(job_id, name)
            if value is _BUILTIN:
                continue
            inputs[name] = value
            if not isinstance(value, Promise):
                captured[name] = value
        spec = make_spec(CellJob(job_id, source, names.outputs, captured), (), inputs, job_id,
                         label="cell", options=options)
        self.ctx.register(spec)
        for name, owner in list(self.owner.items()):
            if owner == job_id and name not in names.outputs:
                del self.owner[name]
        self.owner.update(dict.fromkeys(names.outputs, job_id))
        self.outputs[job_id] = names.outputs
        self.inputs[job_id] = inputs
        self.ctx.sync()
        self._bind(job_id, self._result(job_id))
        return job_id

    def _input(self, job_id: str, name: str) -> Any:
        """What the job reads for ``name``: a Promise (a dependency) or a captured value."""
        owner = self.owner.get(name) if self._is_ours(name) else None
        if owner == job_id:
            # The cell reads a name it binds itself (``x = x + 1``): on re-execution it
            # keeps reading what it read the first time, so running it again is a no-op.
            previous = self.inputs.get(job_id, {})
            if name in previous:
                return previous[name]
            raise InvalidJob(job_id, f"reads {name!r}, which is an output of {job_id!r} "
                                     "itself; to build on another cell's "
                                     f"{name!r}, give this cell an id: %%comp NEW_ID")
        if owner is not None and owner in self.ctx.graph:
            return Promise(owner, self.ctx, output=name)
        ns = self.ns
        if name in ns and not _is_shell_name(name):
            return ns[name]  # a Promise stays a dependency; anything else is captured
        if hasattr(builtins, name):
            return _BUILTIN
        raise InvalidJob(job_id, f"name {name!r} is not defined")

    def _is_ours(self, name: str) -> bool:
        """Still bound to what a cell bound it to (not rebound by the user since)?"""
        return name in self.ns and name in self.bound and self.ns[name] is self.bound[name]

    # -- binding ------------------------------------------------------------------------

    def _result(self, job_id: str) -> tuple[dict[str, Any], str] | None:
        """The job's values and their fingerprint, when it is up to date."""
        if self.ctx.state_of(job_id) != "done":
            return None
        stored = self.ctx.store.snapshot_of([job_id]).get(job_id)
        try:
            return self.ctx.result_of(job_id), stored.record.result_fp
        except Exception:  # noqa: BLE001 - unreadable: leave Promises, make will redo it
            return None

    def _bind(self, job_id: str, result: tuple[dict[str, Any], str] | None,
              only_ours: bool = False) -> None:
        """Outputs to their values when there are some, else to Promises."""
        ns = self.ns
        values, self.bound_result[job_id] = result or (None, None)
        for name in self.outputs[job_id]:
            if only_ours and not (self.owner.get(name) == job_id and self._is_ours(name)):
                continue  # rebound since, by the user or by another cell
            if values is None:
                ns[name] = self.bound[name] = Promise(job_id, self.ctx, output=name)
            elif name in values:
                ns[name] = self.bound[name] = values[name]
            elif self._is_ours(name):
                del ns[name]  # the cell did not bind it this time (``if`` at top level)

    def bind_done(self) -> None:
        """After a command: names still bound to a cell's Promises, or to the values of an
        earlier result (a remake), get the values of the job's current result."""
        jobs = {self.owner[n] for n in self.bound if n in self.owner and self._is_ours(n)}
        stored = self.ctx.store.snapshot_of(j for j in jobs if j in self.ctx.graph)
        for job_id, st in stored.items():
            current = st.record.result_fp if st.record is not None else None
            if current is not None and current != self.bound_result.get(job_id):
                result = self._result(job_id)
                if result is not None:
                    self._bind(job_id, result, only_ours=True)


_BUILTIN = object()


def _is_shell_name(name: str) -> bool:
    return name in _SHELL_NAMES or (name.startswith("_") and name.lstrip("_i").isdigit())
