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
import dis
import functools
import inspect
import itertools
import linecache
import os
import re
import sys
import textwrap
import weakref
from dataclasses import dataclass, field
from hashlib import blake2b
from operator import attrgetter
from types import CodeType, FunctionType, MethodType, ModuleType
from typing import Any

from .values import Unpicklable
from .values import digest as value_digest

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


def _hex(*chunks: bytes) -> str:
    h = blake2b(digest_size=16)
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


# --- which code is tracked ---------------------------------------------------------------

_root: str | None = None  # None: the working directory at call time
_file_status: dict[tuple[str, str], str] = {}  # (root, filename) -> tracked|installed|other
_real_cwds: dict[str, str] = {}


def set_tracked_root(path: str | os.PathLike[str] | None) -> None:
    """Track modules loaded from files under ``path`` (None: the working directory)."""
    global _root
    _root = None if path is None else os.path.realpath(path)
    _file_status.clear()
    _cache.clear()


def _is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=1)
def _installed_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(install prefixes, library dirs): code under them is never tracked."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    libs = _library_dirs()
    libs.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # nbmake_ext itself
    return tuple(os.path.realpath(p) for p in prefixes), tuple(os.path.realpath(p) for p in libs)


def _library_dirs() -> set[str]:
    """sysconfig's stdlib, platstdlib, purelib and platlib, found without
    ``sysconfig.get_paths()`` (whose first call costs milliseconds): the standard library's
    directory, the site-packages directories and the lib directories that hold them."""
    import site

    packages = site.getsitepackages() if hasattr(site, "getsitepackages") else []
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    packages = [*packages, *([user] if isinstance(user, str) else [])]
    return {os.path.dirname(os.__file__), *packages, *map(os.path.dirname, packages)}


def _current_root() -> str:
    if _root is not None:
        return _root
    cwd = os.getcwd()
    real = _real_cwds.get(cwd)
    if real is None:
        real = _real_cwds[cwd] = os.path.realpath(cwd)
    return real


def _status(filename: str) -> str:
    root = _current_root()
    key = (root, filename)
    status = _file_status.get(key)
    if status is None:
        status = _file_status[key] = _classify(filename, root)
    return status


def _classify(filename: str, root: str) -> str:
    if not filename or (filename.startswith("<") and filename.endswith(">")):
        return "other"
    path = os.path.realpath(filename)
    prefixes, libs = _installed_dirs()
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts or any(_is_under(path, d) for d in libs):
        return "installed"
    # A prefix counts only when the root is outside it (a venv inside the project).
    if any(_is_under(path, p) and not _is_under(root, p) for p in prefixes):
        return "installed"
    return "tracked" if _is_under(path, root) else "other"


def _function_tracked(f: FunctionType) -> bool:
    status = _status(f.__code__.co_filename)
    # Notebook cells live in temporary files outside the root: __main__ counts anyway.
    return status == "tracked" or (status == "other" and f.__module__ in ("__main__", None))


def _module_tracked(module: ModuleType) -> bool:
    file = getattr(module, "__file__", None)
    return isinstance(file, str) and _status(file) == "tracked"


def _class_tracked(cls: type) -> bool:
    modname = getattr(cls, "__module__", None)
    if modname == "__main__":
        return True
    module = sys.modules.get(modname) if isinstance(modname, str) else None
    return module is not None and _module_tracked(module)


def _roots(func: Any) -> tuple[Any, ...]:
    """The functions/classes whose code ``func`` runs: a bound method is its function and
    its class, a partial its function, a callable object its class."""
    t = type(func)
    if t is functools.partial:
        return _roots(func.func)
    if t is MethodType:
        owner = func.__self__
        return (func.__func__, owner if isinstance(owner, type) else type(owner))
    if t is FunctionType:
        wrapped = func.__dict__.get("__wrapped__")
        if wrapped is not None and not _function_tracked(func):
            return _roots(wrapped)  # an installed decorator around the user's function
        return (func,)
    if isinstance(func, type):
        return (func,)
    if _class_tracked(t):
        return (t,)
    wrapped = getattr(func, "__wrapped__", None)
    return _roots(wrapped) if wrapped is not None else (func,)


def is_tracked(func: Any) -> bool:
    """Whether ``func`` runs code the user wrote (notebook or a module under the root)."""
    for root in _roots(func):
        if type(root) is FunctionType and _function_tracked(root):
            return True
        if isinstance(root, type) and _class_tracked(root):
            return True
    return False


# --- labels -------------------------------------------------------------------------------


def function_label(func: Any) -> str:
    """``module.qualname`` of a callable; stable across kernel restarts."""
    t = type(func)
    if t is functools.partial:
        return function_label(func.func)
    if t is MethodType:
        return function_label(func.__func__)
    if t is FunctionType:
        label = f"{func.__module__ or '__main__'}.{func.__qualname__}"
        if func.__name__ == "<lambda>":
            text = _code_info(func.__code__).lambda_text
            if text:
                label += f"[{text}]"
        return label
    if isinstance(func, type):
        return f"{func.__module__}.{func.__qualname__}"
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if not isinstance(name, str):  # a callable object: named by its class
        return function_label(t)
    module = getattr(func, "__module__", None)
    if not isinstance(module, str):  # builtin methods such as [].append
        owner = getattr(func, "__self__", None)
        bound = owner is not None and not isinstance(owner, ModuleType)
        module = type(owner).__module__ if bound else "builtins"
    return f"{module}.{name}"


# --- the code of one code object ----------------------------------------------------------


@dataclass(frozen=True)
class _CodeInfo:
    digest: str  # normalised source, or normalised bytecode when the source is unavailable
    globals: tuple[str, ...]  # names read as globals by the code and its nested code
    names: tuple[str, ...]  # all co_names: attribute candidates on referenced modules
    lambda_text: str | None  # a lambda's normalised source, for its label


# Keyed by identity, not by code equality: equal code objects can come from sources that
# differ outside the code object (defaults, decorators) or from a file without source.
_code_infos: dict[int, tuple[weakref.ref, _CodeInfo]] = {}

_DEF_START = re.compile(r"^(\s*def\s)|(\s*async\s+def\s)|(.*(?<!\w)lambda(:|\s))|^(\s*@)")
_NESTED_NAMES = {"<lambda>", "<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"}
_CO_OPTIMIZED = 0x1
_CO_HAS_DOCSTRING = 0x4000000  # Python >= 3.14 flags the docstring instead of co_consts[0]
_GLOBAL_OPS = {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS", "STORE_GLOBAL", "DELETE_GLOBAL"}


def _code_info(code: CodeType) -> _CodeInfo:
    key = id(code)
    hit = _code_infos.get(key)
    if hit is not None and hit[0]() is code:
        return hit[1]
    globals_: dict[str, None] = {}
    names: dict[str, None] = {}
    _collect_names(code, globals_, names)
    node = _source_node(code)
    if node is None:
        own, text = "bytecode:" + _bytecode_digest(code), None
    else:
        text = ast.unparse(node)[:80] if isinstance(node, ast.Lambda) else None
        own = "ast:" + _ast_digest(node)
    info = _CodeInfo(_hex(own.encode()), tuple(globals_), tuple(names), text)

    def drop(ref: weakref.ref, key: int = key) -> None:
        if _code_infos.get(key, (None,))[0] is ref:
            del _code_infos[key]

    _code_infos[key] = (weakref.ref(code, drop), info)
    return info


def _collect_names(code: CodeType, globals_: dict[str, None], names: dict[str, None]) -> None:
    for ins in dis.get_instructions(code):
        if ins.opname in _GLOBAL_OPS and isinstance(ins.argval, str):
            globals_[ins.argval] = None
    names.update(dict.fromkeys(code.co_names))
    for const in code.co_consts:
        if isinstance(const, CodeType):
            _collect_names(const, globals_, names)


def _source_node(code: CodeType) -> ast.AST | None:
    """The def/lambda node of ``code`` parsed from its source, None if the source is
    missing or does not match (a file edited since it was loaded)."""
    filename = code.co_filename
    linecache.checkcache(filename)  # drops edited files; ipykernel cells are kept
    lines = linecache.getlines(filename)
    lnum = code.co_firstlineno - 1
    if not lines or not 0 <= lnum < len(lines):
        return None
    while lnum > 0 and not _DEF_START.match(lines[lnum]):
        lnum -= 1
    if code.co_name != "<lambda>":
        parsed = _parse_block(_def_block(lines, lnum))
        if parsed is not None and _def_of(parsed[0], code) is not None:
            return _def_of(parsed[0], code)
    try:
        block = "".join(inspect.getblock(lines[lnum:]))
    except Exception:  # tokenize errors: a stale or partial block
        return None
    parsed = _parse_block(block)
    if parsed is None:
        return None
    tree, margin = parsed
    if code.co_name == "<lambda>":
        return _find_lambda(tree, code, lnum, margin)
    return _def_of(tree, code)


def _def_block(lines: list[str], lnum: int) -> str:
    """The lines of the def at ``lnum`` (from its decorators) up to the next line as little
    indented: the block ``inspect.getblock`` finds, without tokenizing (whose first use
    compiles a large regular expression). A line that ends the block early is inside an
    open bracket or string, so the block does not parse and the caller tokenizes."""
    indent = len(lines[lnum]) - len(lines[lnum].lstrip())
    end = lnum
    while end < len(lines) and not lines[end].lstrip().startswith(("def ", "async ")):
        end += 1  # decorators
    end += 1
    while end < len(lines):
        line = lines[end]
        text = line.strip()
        if text and not text.startswith("#") and len(line) - len(line.lstrip()) <= indent:
            break
        end += 1
    return "".join(lines[lnum:end])


def _def_of(tree: ast.Module, code: CodeType) -> ast.AST | None:
    first = tree.body[0] if tree.body else None
    if isinstance(first, (ast.FunctionDef, ast.AsyncFunctionDef)) and first.name == code.co_name:
        return first
    return None


def _parse_block(block: str) -> tuple[ast.Module, int] | None:
    """The parsed block and the number of columns its dedent removed."""
    dedented = textwrap.dedent(block)
    try:
        tree = ast.parse(dedented)
    except SyntaxError:
        pass
    else:
        return tree, len(block.split("\n", 1)[0]) - len(dedented.split("\n", 1)[0])
    try:  # dedent fails on multi-line strings less indented than the code
        wrapper = ast.parse("if 1:\n" + block).body[0]
    except SyntaxError:
        return None
    if not isinstance(wrapper, ast.If):
        return None
    tree = ast.Module(body=wrapper.body, type_ignores=[])
    ast.increment_lineno(tree, -1)
    return tree, 0


def _find_lambda(tree: ast.AST, code: CodeType, lnum: int, margin: int) -> ast.Lambda | None:
    """The lambda node of ``code``; block lines count from 1 at file line ``lnum + 1``."""
    line = code.co_firstlineno - lnum
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda) and n.lineno == line]
    if len(found) > 1:  # several lambdas on one line: those with the same parameters
        nargs = code.co_argcount + code.co_kwonlyargcount
        params = code.co_varnames[:nargs]
        found = [n for n in found if tuple(a.arg for a in (*n.args.posonlyargs, *n.args.args,
                                                           *n.args.kwonlyargs)) == params]
    if len(found) <= 1:
        return found[0] if found else None
    # Still ambiguous: the innermost lambda around the code's first positioned
    # instruction after RESUME (Python >= 3.11).
    positions = getattr(code, "co_positions", None)
    if positions is None:
        return None
    for pos_line, _, col, _ in positions():
        if pos_line is None or col is None or (pos_line == code.co_firstlineno and col == 0):
            continue
        here = (pos_line - lnum, col - margin)
        inside = [n for n in found if (n.lineno, n.col_offset) <= here <= (n.end_lineno, n.end_col_offset)]
        return min(inside, key=lambda n: (n.end_lineno, n.end_col_offset)) if inside else None
    return None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:]
    return tree


def _ast_digest(node: ast.AST) -> str:
    dump = ast.dump(_strip_docstrings(node), annotate_fields=False, include_attributes=False)
    return _hex(dump.encode("utf-8", "surrogatepass"))


def _bytecode_digest(code: CodeType) -> str:
    h = blake2b(digest_size=16)
    _feed_code(h.update, code)
    return h.hexdigest()


def _feed_code(up: Any, code: CodeType) -> None:
    """Bytecode without line numbers, file names or the docstring."""
    consts = list(code.co_consts)
    if consts and _has_docstring(code):
        consts[0] = None
    header = (code.co_name, code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
              code.co_flags & ~_CO_HAS_DOCSTRING, code.co_names, code.co_varnames,
              code.co_freevars, code.co_cellvars)
    up(value_digest(header).encode())
    up(b"%d:%s" % (len(code.co_code), code.co_code))
    up(getattr(code, "co_exceptiontable", b""))
    for const in consts:
        if isinstance(const, CodeType):
            up(b"C")
            _feed_code(up, const)
        else:
            try:
                up(value_digest(const).encode())
            except Unpicklable:  # consts are literals; be safe anyway
                up(repr(const).encode("utf-8", "surrogatepass"))


def _has_docstring(code: CodeType) -> bool:
    if sys.version_info >= (3, 14):
        return bool(code.co_flags & _CO_HAS_DOCSTRING)
    # Up to 3.13 a def's co_consts[0] is its docstring or None.
    return bool(code.co_flags & _CO_OPTIMIZED) and code.co_name not in _NESTED_NAMES \
        and isinstance(code.co_consts[0], str)


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
_code_of = attrgetter("__code__")
_deref = weakref.ref.__call__


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

    __slots__ = ("token", "refs", "fp", "by_id", "by_type", "functions", "codes", "cells", "held")

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
        self.functions = tuple(weakref.ref(f, drop) for f in walk.functions)
        self.codes = tuple(id(f.__code__) for f in walk.functions)
        held.extend(f.__code__ for f in walk.functions)
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
            if tuple(map(id, map(_code_of, map(_deref, self.functions)))) != self.codes:
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
