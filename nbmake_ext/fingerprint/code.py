"""Fingerprints of the user's code that survive kernel restarts.

Tracked code is what the user wrote: functions and classes of ``__main__`` (a notebook or
a script) and of modules loaded from files under the tracked root (the working directory
unless ``set_tracked_root`` says otherwise), never installed packages. A function's
fingerprint covers its normalised source (AST without comments, formatting or docstrings)
and, transitively, the tracked functions, classes and simple constants it references.
Functions are named ``module.qualname``, never by ipykernel's temporary cell file.
"""

from __future__ import annotations

import ast
import functools
import itertools
import os
import textwrap
import weakref
from dataclasses import dataclass, field
from hashlib import blake2b
from types import FunctionType, MethodType, ModuleType
from typing import Any

from .values import digest as value_digest
from .source import (  # noqa: F401  (re-exported)
    _DEF_START,
    _CodeInfo,
    _code_info,
    _def_of,
    _hex,
    _parse_block,
    _source_node,
    _ast_digest,
)
from .tracking import (  # noqa: F401  (re-exported)
    _class_tracked,
    _function_tracked,
    _library_dirs,
    _module_tracked,
    _roots,
    _set_root,
    function_label,
    is_tracked,
)

__all__ = [
    "CodeFingerprint",
    "cell_fingerprint",
    "code_fingerprint",
    "function_label",
    "is_tracked",
    "set_tracked_root",
]


@dataclass(frozen=True)
class CodeFingerprint:
    """``parts`` maps a label of each tracked piece of code to its own digest:
    ``"mod.func"``, ``"mod.Class"``, ``"global mod.NAME"``, ``"closure mod.func.name"``."""

    digest: str
    parts: dict[str, str] = field(hash=False)


def set_tracked_root(path: str | os.PathLike[str] | None) -> None:
    """Track modules loaded from files under ``path`` (None: the working directory)."""
    _set_root(path)
    _cache.clear()




def cell_fingerprint(source: str) -> str:
    """Digest of a cell's code: comments, formatting and docstrings do not count."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:  # IPython syntax (magics, !cmd): the raw text
        return _hex(b"raw:", source.encode("utf-8", "surrogatepass"))
    return _hex(b"ast:", _ast_digest(tree).encode())


# --- walking from a callable over the tracked code it reaches -----------------------------

_MISSING = object()
_SIMPLE = (int, float, str, bytes, bool, type(None), complex)
_FOLLOW = (FunctionType, MethodType, functools.partial)
_MAX_CONST_REPR = 1000


def _is_simple(obj: Any) -> bool:
    """A small constant: a scalar, or a tuple/frozenset of those, whose repr is short."""
    t = type(obj)
    if t in _SIMPLE:
        return _short(obj)
    if (t is tuple or t is frozenset) and len(obj) <= _MAX_CONST_REPR:
        return all(type(x) in _SIMPLE or type(x) in (tuple, frozenset) and _is_simple(x) for x in obj) \
            and _short(obj)
    return False


def _short(obj: Any) -> bool:
    try:
        return len(repr(obj)) <= _MAX_CONST_REPR
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        return False


class _Walk:
    """Collects the parts reached from some roots and the lookups they depended on."""

    def __init__(self) -> None:
        self.parts: dict[str, str] = {}
        # (owner, name, expected, by identity?), re-checked on cache hits. The owner is a
        # function (the name is looked up in its globals), a module or a class.
        self.lookups: list[tuple[Any, str, Any, bool]] = []
        self.cells: list[tuple[FunctionType, int, Any]] = []  # (function, cell index, content)
        self.functions: list[FunctionType] = []  # their __code__ may be swapped (autoreload)
        self.seen: dict[Any, Any] = {}

    def _first_visit(self, key: Any, obj: Any) -> bool:
        if key in self.seen:
            return False
        self.seen[key] = obj  # keeps obj alive so its id is not reused during the walk
        return True

    def callable(self, obj: Any) -> None:
        if not self._first_visit(id(obj), obj):
            return
        t = type(obj)
        if t is FunctionType:
            self.function(obj)
        elif t is MethodType:
            owner = obj.__self__
            self.callable(obj.__func__)
            self.callable(owner if isinstance(owner, type) else type(owner))
        elif t is functools.partial:
            self.callable(obj.func)
        elif isinstance(obj, type):
            self.klass(obj)
        elif _class_tracked(t):
            self.callable(t)
        else:
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:
                self.callable(wrapped)

    def function(self, f: FunctionType) -> None:
        if not _function_tracked(f):
            wrapped = f.__dict__.get("__wrapped__")
            if wrapped is not None:
                self.callable(wrapped)
            return
        info = _code_info(f.__code__)
        label = function_label(f)
        self.parts[label] = _with_defaults(info.digest, f)
        self.references(f, info, label)

    def references(self, f: FunctionType, info: _CodeInfo, label: str) -> None:
        self.functions.append(f)
        ns = f.__globals__
        modname = ns.get("__name__") or "__main__"
        for name in info.globals:
            self.lookup(f, name, f"global {modname}.{name}", info.names)
        if f.__closure__:
            for index, (name, cell) in enumerate(zip(f.__code__.co_freevars, f.__closure__)):
                obj = _cell_contents(cell)
                self.cells.append((f, index, obj))
                self.value(obj, f"closure {label}.{name}", info.names)
        defaults = list(f.__defaults__ or ()) + list((f.__kwdefaults__ or {}).values())
        for obj in defaults:
            if isinstance(obj, _FOLLOW) or isinstance(obj, type):
                self.callable(obj)

    def lookup(self, owner: Any, name: str, label: str, names: tuple[str, ...]) -> None:
        obj = _namespace(owner).get(name, _MISSING)
        # Code and constants are checked by identity; other data only by type, so the
        # cache does not keep old data alive and rebinding data does not invalidate it.
        t = type(obj)
        by_identity = obj is _MISSING or t in _SIMPLE or t in (tuple, frozenset, ModuleType) \
            or isinstance(obj, _FOLLOW) or isinstance(obj, type)
        self.lookups.append((owner, name, obj if by_identity else t, by_identity))
        self.value(obj, label, names)

    def value(self, obj: Any, label: str, names: tuple[str, ...]) -> None:
        if obj is _MISSING:
            return
        if isinstance(obj, _FOLLOW) or isinstance(obj, type):
            self.callable(obj)
        elif type(obj) is ModuleType:
            self.module(obj, names)
        elif _is_simple(obj):
            self.parts[label] = value_digest(obj)
        elif _class_tracked(type(obj)):  # a global instance of the user's class
            self.callable(type(obj))

    def module(self, module: ModuleType, names: tuple[str, ...]) -> None:
        # ``mod.attr`` in code: attr is among the code's co_names; look those up on mod.
        if not self._first_visit((id(module), id(names)), (module, names)) or not _module_tracked(module):
            return
        ns = module.__dict__
        for name in names:
            if name in ns:
                self.lookup(module, name, f"global {module.__name__}.{name}", names)

    def klass(self, cls: type) -> None:
        if not _class_tracked(cls):
            return
        h = blake2b(digest_size=16)
        for base in cls.__bases__:
            h.update(b"base " + function_label(base).encode() + b"\n")
            self.callable(base)
        ns = cls.__dict__
        for name in sorted(ns):
            if name in _CLASS_BOOKKEEPING:
                continue
            attr = ns[name]
            functions = _functions_of(attr)
            if functions:
                for f in functions:
                    # Methods count even when generated (dataclass __init__ from a string);
                    # only the user's own code is followed further.
                    info = _code_info(f.__code__)
                    h.update(f"def {name} {_with_defaults(info.digest, f)}\n".encode())
                    if _function_tracked(f):
                        self.references(f, info, function_label(f))
            elif _is_simple(attr):
                h.update(f"attr {name} {value_digest(attr)}\n".encode())
            elif isinstance(attr, type):
                h.update(f"class {name} {function_label(attr)}\n".encode())
                self.callable(attr)
            else:
                continue
            self.lookups.append((cls, name, attr, True))
        self.parts[function_label(cls)] = h.hexdigest()


def _with_defaults(own: str, f: FunctionType) -> str:
    """A def's digest with its default values: ``k=K`` evaluates K when the def runs, so
    the source alone does not say what the default is."""
    defaults = (*(f.__defaults__ or ()), *(f.__kwdefaults__ or {}).values())
    if not defaults:
        return own
    marks = [value_digest(d) if _is_simple(d) else function_label(type(d)) for d in defaults]
    return _hex(own.encode(), *(m.encode() for m in marks))


_CLASS_BOOKKEEPING = {"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__",
                      "__firstlineno__", "__static_attributes__"}


def _functions_of(attr: Any) -> list[FunctionType]:
    """The functions behind a class attribute (method, property, cached method, ...)."""
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    elif isinstance(attr, property):
        return [f for a in (attr.fget, attr.fset, attr.fdel) if a is not None for f in _functions_of(a)]
    elif isinstance(attr, functools.cached_property):
        attr = attr.func
    for _ in range(_MAX_UNWRAP):  # look through installed decorators (lru_cache, ...)
        if type(attr) is FunctionType and (_function_tracked(attr) or "__wrapped__" not in attr.__dict__):
            return [attr]
        attr = getattr(attr, "__wrapped__", None) if callable(attr) else None
        if attr is None:
            break
    return []


_MAX_UNWRAP = 20


def _namespace(owner: Any) -> dict:
    return owner.__globals__ if type(owner) is FunctionType else owner.__dict__


# --- the cache ------------------------------------------------------------------------------
# An entry must not keep its roots alive, or it would never be dropped: it holds functions,
# classes and modules (and so namespaces) by weak reference and is dropped when any of them
# dies. It holds strongly only constants and code objects, which do not lead to a root.

_MISSINGS = itertools.repeat(_MISSING)  # endless: map(ns.get, names, _MISSINGS)


def _cell_contents(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # not assigned yet
        return _MISSING


def _drop(key: Any, token: object, _ref: weakref.ref) -> None:
    entry = _cache.get(key)
    if entry is not None and entry.token is token:
        del _cache[key]


class _Entry:
    """A computed fingerprint and the lookups that must still hold for it to be current."""

    __slots__ = ("token", "refs", "fp", "by_id", "by_type", "functions", "cells", "held")

    def __init__(self, key: Any, roots: tuple[Any, ...], fp: CodeFingerprint, walk: _Walk):
        self.token = token = object()
        drop = functools.partial(_drop, key, token)
        held: list[Any] = []  # keeps every checked id unique while the entry is cached

        def hold(obj: Any) -> int:
            try:
                held.append(weakref.ref(obj, drop))
            except TypeError:  # constants, the missing marker
                held.append(obj)
            return id(obj)

        self.refs = tuple(weakref.ref(root, drop) for root in roots)  # TypeError: not cached
        self.fp = fp
        groups: dict[tuple[int, bool], tuple[Any, dict[str, int]]] = {}  # per namespace
        for owner, name, expected, by_identity in walk.lookups:
            _, ids = groups.setdefault((id(_namespace(owner)), by_identity), (owner, {}))
            if name not in ids:
                ids[name] = hold(expected)
        self.by_id, self.by_type = (
            tuple((weakref.ref(owner, drop), type(owner) is FunctionType, tuple(ids), tuple(ids.values()))
                  for (_, ident), (owner, ids) in groups.items() if ident is wanted)
            for wanted in (True, False))
        # each function and the code it had (the code objects are held: compared by identity)
        self.functions = tuple((weakref.ref(f, drop), f.__code__) for f in walk.functions)
        self.cells = tuple((weakref.ref(f, drop), index, hold(obj)) for f, index, obj in walk.cells)
        self.held = held

    def current(self) -> bool:
        try:
            for owner, is_function, names, ids in self.by_id:
                ns = owner().__globals__ if is_function else owner().__dict__
                if tuple(map(id, map(ns.get, names, _MISSINGS))) != ids:
                    return False
            for owner, is_function, names, ids in self.by_type:
                ns = owner().__globals__ if is_function else owner().__dict__
                if tuple(map(id, map(type, map(ns.get, names, _MISSINGS)))) != ids:
                    return False
            for function, code in self.functions:
                if function().__code__ is not code:
                    return False
            for f, index, expected in self.cells:
                if id(_cell_contents(f().__closure__[index])) != expected:
                    return False
        except AttributeError:  # a weakly held object died just now
            return False
        return True


_cache: dict[Any, _Entry] = {}  # id(root) or tuple of ids -> entry, dropped with its roots


def code_fingerprint(func: Any) -> CodeFingerprint:
    """Fingerprint of the code ``func`` runs; see the module docstring."""
    if type(func) is FunctionType:  # the hot path: a cache hit on a plain function
        entry = _cache.get(id(func))
        if entry is not None and entry.refs[0]() is func and entry.current():
            return entry.fp
        return _compute((func,), id(func))
    roots = _roots(func)
    key = id(roots[0]) if len(roots) == 1 else tuple(map(id, roots))
    entry = _cache.get(key)
    if entry is not None and all(r() is o for r, o in zip(entry.refs, roots)) and entry.current():
        return entry.fp
    return _compute(roots, key, func)


def code_files(func: Any) -> set[str]:
    """The files of the user's code that ``func`` runs (its own and what it calls)."""
    walk = _Walk()
    for root in _roots(func):
        walk.callable(root)
    return {f.__code__.co_filename for f in walk.functions}


def _compute(roots: tuple[Any, ...], key: Any, func: Any = None) -> CodeFingerprint:
    walk = _Walk()
    for root in roots:
        walk.callable(root)
    parts = walk.parts
    if parts:
        body = "".join(f"{label}\0{d}\n" for label, d in sorted(parts.items()))
        fp = CodeFingerprint(_hex(body.encode("utf-8", "surrogatepass")), parts)
    else:  # untracked: only its name counts
        label = function_label(roots[0] if func is None else func)
        d = _hex(b"untracked:", label.encode("utf-8", "surrogatepass"))
        fp = CodeFingerprint(d, {label: d})
    try:
        _cache[key] = _Entry(key, roots, fp, walk)
    except TypeError:  # a root that cannot be weakly referenced: not cached
        pass
    return fp
