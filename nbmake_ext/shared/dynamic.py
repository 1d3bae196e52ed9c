"""The context a ``comp_dynamic`` job receives: it defines children while the job runs."""

from __future__ import annotations

from typing import Any, Callable

from ..promise import Promise
from ..registration import comp_spec, shell_spec
from .outcomes import ChildSpec


class DynamicContext:
    """Handed to a dynamic job as its first argument. ``comp`` returns a Promise at once;
    the child's definition travels to the scheduler, which may start it right away."""

    def __init__(self, job_id: str, sink: Callable[[ChildSpec], None]):
        self.job_id = job_id
        self._sink = sink
        self._specs: dict[str, Any] = {}  # the children it defined, for promise.outputs

    def comp(self, func: Any, /, *args: Any, job_id: str | None = None, **kwargs: Any) -> Promise:
        """As ``comp`` in a notebook, options (``job_timeout=``, ...) included."""
        return self._define(func, args, kwargs, job_id, dynamic=False)

    def comp_dynamic(self, func: Any, /, *args: Any, job_id: str | None = None,
                     **kwargs: Any) -> Promise:
        return self._define(func, args, kwargs, job_id, dynamic=True)

    def sh(self, command: str, /, inputs: Any = None, outputs: Any = None, *,
           job_id: str | None = None, **options: Any) -> Promise:
        """A shell step, as ``sh`` in a notebook (its inputs are paths or ``File``s)."""
        spec = shell_spec(command, inputs, outputs, job_id, options,
                          lambda promise: Promise(promise.job_id, self).outputs,
                          parent=self.job_id)
        return self._child(spec)

    def definition(self, job_id: str) -> Any:
        """The definition of a child this job defined (``promise.outputs`` reads it)."""
        spec = self._specs.get(job_id)
        if spec is None:
            from ..errors import UnknownTarget

            raise UnknownTarget(f"{job_id!r} is no child that {self.job_id} defined in this run")
        return spec

    def _child(self, spec: Any) -> Promise:
        self._specs[spec.job_id] = spec
        self._sink(ChildSpec(spec))
        return Promise(spec.job_id, self)

    def _define(self, func, args, kwargs, job_id, dynamic) -> Promise:
        spec = comp_spec(func, args, kwargs, job_id, parent=self.job_id, dynamic=dynamic)
        return self._child(spec)

    def __repr__(self) -> str:
        return f"<DynamicContext of {self.job_id}>"
