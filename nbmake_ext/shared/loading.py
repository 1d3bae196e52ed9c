"""Unpickling a job's arguments where it runs (an engine, a Dask worker), and saying which
argument could not be loaded when that fails.

The arguments travel as one pickle of ``(args, kwargs)``. When it cannot be loaded (an
object whose ``__reduce__`` or ``__setstate__`` raises, a class the process cannot
import), it is loaded again by a slower unpickler that puts a placeholder where an object
failed to load and goes on; the placeholders' places in ``(args, kwargs)`` name the
culprits, e.g. ``args[1]`` or ``kwargs['cfg']['model']``.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from .call import error_line, format_job_traceback


class ArgumentsUnloadable(Exception):
    """``message`` names the argument(s) and the exception; ``traceback`` is that of the
    first failure."""

    def __init__(self, message: str, traceback: str = ""):
        super().__init__(message)
        self.message, self.traceback = message, traceback


def load_arguments(payload: bytes, where: str) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of a job; raises ArgumentsUnloadable naming the culprit and
    ``where`` (``engine 1234``, ``worker tcp://...``)."""
    try:
        args, kwargs = pickle.loads(payload)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure of a __reduce__ or an import
        raise _explain(payload, exc, where) from None
    return args, kwargs


class _Broken:
    """Stands for an object that could not be loaded. Containers being built take it as
    an element; a call or an instantiation of it gives itself."""

    def __init__(self, exc: BaseException):
        self.exc = exc

    def __call__(self, *args, **kwargs):
        return self

    def append(self, item) -> None:
        pass

    def extend(self, items) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass

    def add(self, item) -> None:
        pass


class _Tolerant(pickle._Unpickler):  # the pure-Python one: its steps can be replaced
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
            return _Broken(exc)

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        try:
            stack[-1] = func(*args)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
            stack[-1] = _Broken(exc)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(_new(cls, args, {}))

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(_new(cls, args, kwargs))

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def load_build(self) -> None:
        if isinstance(self.stack[-2], _Broken):
            self.stack.pop()
            return
        try:
            pickle._Unpickler.load_build(self)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - its __setstate__ raised
            self.stack[-1] = _Broken(exc)

    dispatch[pickle.BUILD[0]] = load_build


def _new(cls, args, kwargs) -> Any:
    if isinstance(cls, _Broken):
        return cls
    try:
        return cls.__new__(cls, *args, **kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001
        return _Broken(exc)


def _explain(payload: bytes, exc: BaseException, where: str) -> ArgumentsUnloadable:
    first = error_line(exc)
    try:
        call = _Tolerant(io.BytesIO(payload)).load()
        args, kwargs = call
        culprits = list(_find_broken(("args", tuple(args)), ("kwargs", dict(kwargs))))
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - too damaged to say more
        culprits = []
    if not culprits:
        return ArgumentsUnloadable(f"its arguments cannot be loaded on {where}: {first}",
                                   format_job_traceback(exc))
    names = ", ".join(path for path, _ in culprits[:3])
    more = f" (and {len(culprits) - 3} more)" if len(culprits) > 3 else ""
    what = "argument" if len(culprits) == 1 else "arguments"
    return ArgumentsUnloadable(f"its {what} {names}{more} cannot be loaded on {where}: {first}",
                               format_job_traceback(exc))


def _find_broken(*roots: tuple[str, Any], limit: int = 10):
    """(path, placeholder) of each object that failed to load, in containers and in the
    attributes of loaded objects; at most ``limit``."""
    seen: set[int] = set()
    stack = list(reversed(roots))
    found = 0
    while stack and found < limit:
        path, obj = stack.pop()
        if isinstance(obj, _Broken):
            found += 1
            yield path, obj
            continue
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            items = [(f"{path}[{i}]", x) for i, x in enumerate(obj)]
        elif isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                items.append((f"{path}[{k!r}]" if not isinstance(k, _Broken) else
                              f"a key of {path}", k))
                items.append((f"{path}[{k!r}]", v))
        elif isinstance(obj, (set, frozenset)):
            items = [(f"an element of {path}", x) for x in obj]
        else:
            attrs = getattr(obj, "__dict__", None)
            items = [(f"{path}.{k}", v) for k, v in attrs.items()] \
                if isinstance(attrs, dict) else []
        stack.extend(reversed(items))
