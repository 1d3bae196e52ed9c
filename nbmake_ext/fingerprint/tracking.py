"""Which code is tracked (the user's, under the tracked root) and the labels of callables."""

from __future__ import annotations

import functools
import os
import sys
from types import FunctionType, MethodType, ModuleType
from typing import Any

from .source import _code_info


# --- which code is tracked ---------------------------------------------------------------

_root: str | None = None  # None: the working directory at call time
_file_status: dict[tuple[str, str], str] = {}  # (root, filename) -> tracked|installed|other
_real_cwds: dict[str, str] = {}


def _set_root(path: str | os.PathLike[str] | None) -> None:
    """Track modules loaded from files under ``path`` (None: the working directory)."""
    global _root
    _root = None if path is None else os.path.realpath(path)
    _file_status.clear()


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
