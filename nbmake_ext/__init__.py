"""nbmake_ext: make for Jupyter notebooks.

Jobs registered with ``comp(f, *args)`` are cached in a store on disk and run again only
when their code, arguments or dependencies' results change.
"""

import importlib
import os as _os
import sys as _sys
from typing import TYPE_CHECKING

if _os.name != "posix":  # byte-range locks (fcntl) guard the store, engines use ipc sockets
    raise ImportError(
        "nbmake_ext runs on POSIX systems only (Linux, macOS, WSL): its store is guarded by "
        "fcntl byte-range locks and its engines talk over ipc sockets")

__version__ = "0.1.0"  # the one place of the version (pyproject.toml reads it)

# What the package exports. An engine (``python -m nbmake_ext.engine``) imports the package
# too, and must not bring the kernel's side along (the context, the run loop, the store's
# writer): it starts sooner and holds less. There, the names are imported when first asked
# for (PEP 562); anywhere else, with the package, so that ``import nbmake_ext`` costs
# what it costs at once, not at the first ``comp``.
_EXPORTS = {
    "Context": "context", "comp": "context", "comp_dynamic": "context",
    "current_context": "context", "sh": "context",
    "NbmakeError": "errors", "JobsFailed": "errors", "JobFailed": "errors",
    "NotDone": "errors", "InvalidJob": "errors", "UnknownTarget": "errors",
    "StoreError": "errors",
    "File": "files.paths", "Promise": "promise", "progress": "shared.progress",
}
__all__ = [
    "Context", "Promise", "File", "comp", "comp_dynamic", "current_context", "sh",
    "NbmakeError", "JobsFailed", "JobFailed", "NotDone", "InvalidJob", "UnknownTarget",
    "StoreError", "progress",
]

if TYPE_CHECKING:  # (for readers and type checkers: the names, where they live)
    from .context import Context, comp, comp_dynamic, current_context, sh
    from .errors import (InvalidJob, JobFailed, JobsFailed, NbmakeError, NotDone, StoreError,
                         UnknownTarget)
    from .files.paths import File
    from .promise import Promise
    from .shared.progress import progress


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nbmake_ext' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if "nbmake_ext.engine" not in getattr(_sys, "orig_argv", ()):
    for _name in __all__:
        __getattr__(_name)
    del _name


def load_ipython_extension(ipython):  # pragma: no cover - exercised through real kernels
    """``%load_ext nbmake_ext``: imports the IPython layer only when asked for."""
    from .ipython.extension import load

    load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover
    from .ipython.extension import unload

    unload(ipython)
