"""Promise: the handle ``comp`` returns; finding and resolving promises in nested values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .context import Context


class Promise:
    """A job's future result. Passing it to another ``comp`` makes a dependency.

    ``output`` names one value of a ``%%comp`` cell's outputs (the job's result is the
    dict of them)."""

    __slots__ = ("job_id", "_context", "output")

    def __init__(self, job_id: str, context: "Context | None" = None, output: str | None = None):
        self.job_id = job_id
        self._context = context
        self.output = output

    @property
    def state(self) -> str:
        return self._ctx().state_of(self.job_id)

    def result(self) -> Any:
        """The cached value; raises ``JobFailed`` or ``NotDone`` when there is none."""
        value = self._ctx().result_of(self.job_id)
        return value if self.output is None else value[self.output]

    @property
    def outputs(self) -> list:
        """``File``s of the output files the job declares (``job_outputs``, or the
        ``outputs`` of ``sh``): passed to another job, they make this job its dependency."""
        from .files.paths import File

        spec = self._ctx().definition(self.job_id)
        return [File(path, producer=self.job_id) for path in spec.options.outputs]

    def _ctx(self) -> "Context":
        if self._context is None:
            from .context import current_context

            return current_context()
        return self._context

    def __repr__(self) -> str:
        try:
            state = self.state
        except Exception:  # a repr must never raise (closed store, ...)
            state = "?"
        what = self.job_id if self.output is None else f"{self.job_id}.{self.output}"
        return f"<Promise {what}: {state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Promise) and (other.job_id, other.output) == (self.job_id, self.output)

    def __hash__(self) -> int:
        return hash(("nbmake-promise", self.job_id, self.output))

    # Promises travel to engines and into the store as bare ids.
    def __reduce__(self):
        return (Promise, (self.job_id, None, self.output))


def _value_of(promise: Promise, lookup: Callable[[str], Any]) -> Any:
    value = lookup(promise.job_id)
    if promise.output is None:
        return value
    try:
        return value[promise.output]
    except (KeyError, TypeError):
        raise LookupError(f"job {promise.job_id!r} did not bind {promise.output!r}") from None


_CONTAINERS = (list, tuple, dict, set, frozenset)


def resolve(value: Any, lookup: Callable[[str], Any]) -> Any:
    """Return ``value`` with every Promise inside lists/tuples/dicts/sets replaced by
    ``lookup(job_id)``. Values without promises are returned as they are (no copy)."""
    if isinstance(value, Promise):
        return _value_of(value, lookup)
    if not isinstance(value, _CONTAINERS) or not _has_promise(value):
        return value
    return _rebuild(value, lookup)


def _has_promise(value: Any) -> bool:
    if isinstance(value, Promise):
        return True
    if isinstance(value, dict):
        return any(_has_promise(k) or _has_promise(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_has_promise(v) for v in value)
    return False


def _rebuild(value: Any, lookup: Callable[[str], Any]) -> Any:
    kind = type(value)
    if kind is tuple or kind is list:  # (first: a fan-in's thousand arguments)
        out = [_value_of(v, lookup) if type(v) is Promise else _rebuild(v, lookup)
               for v in value]
        return out if kind is list else tuple(out)
    if isinstance(value, Promise):
        return _value_of(value, lookup)
    if isinstance(value, dict):
        return type(value)((_rebuild(k, lookup), _rebuild(v, lookup)) for k, v in value.items()) \
            if type(value) is dict else _rebuild_mapping(value, lookup)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(_rebuild(v, lookup) for v in value))
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(_rebuild(v, lookup) for v in value)
    return value


def _rebuild_mapping(value: dict, lookup: Callable[[str], Any]) -> dict:
    out = value.copy()
    out.clear()
    for k, v in value.items():
        out[_rebuild(k, lookup)] = _rebuild(v, lookup)
    return out


def promises_in(value: Any) -> list[str]:
    """Job ids of the promises inside ``value``, in order of first appearance."""
    found: dict[str, None] = {}

    def walk(v: Any) -> None:
        if isinstance(v, Promise):
            found[v.job_id] = None
        elif isinstance(v, dict):
            for k, item in v.items():
                walk(k)
                walk(item)
        elif isinstance(v, (list, tuple, set, frozenset)):
            for item in v:
                walk(item)

    walk(value)
    return list(found)
