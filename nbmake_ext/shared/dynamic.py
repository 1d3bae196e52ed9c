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

    def comp(self, func: Any, /, *args: Any, job_id: str | None = None, **kwargs: Any) -> Promise:
        """As ``comp`` in a notebook, options (``job_timeout=``, ...) included."""
        return self._define(func, args, kwargs, job_id, dynamic=False)

    def comp_dynamic(self, func: Any, /, *args: Any, job_id: str | None = None,
                     **kwargs: Any) -> Promise:
        return self._define(func, args, kwargs, job_id, dynamic=True)

    def sh(self, command: str, /, inputs: Any = None, outputs: Any = None, *,
           job_id: str | None = None, **options: Any) -> Promise:
        """A shell step, as ``sh`` in a notebook (its inputs are paths or ``File``s)."""
        def no_promises(promise):
            raise ValueError(f"inside a dynamic job, pass {promise.job_id}.outputs (Files), "
                             f"not the promise")
        spec = shell_spec(command, inputs, outputs, job_id, options, no_promises,
                          parent=self.job_id)
        self._sink(ChildSpec(spec))
        return Promise(spec.job_id)

    def _define(self, func, args, kwargs, job_id, dynamic) -> Promise:
        spec = comp_spec(func, args, kwargs, job_id, parent=self.job_id, dynamic=dynamic)
        self._sink(ChildSpec(spec))
        return Promise(spec.job_id)

    def __repr__(self) -> str:
        return f"<DynamicContext of {self.job_id}>"
