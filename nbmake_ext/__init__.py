"""nbmake_ext: make for Jupyter notebooks.

Jobs registered with ``comp(f, *args)`` are cached in a store on disk and run again only
when their code, arguments or dependencies' results change.
"""

import os as _os

if _os.name != "posix":  # byte-range locks (fcntl) guard the store, engines use ipc sockets
    raise ImportError(
        "nbmake_ext runs on POSIX systems only (Linux, macOS, WSL): its store is guarded by "
        "fcntl byte-range locks and its engines talk over ipc sockets")

__version__ = "0.1.0"  # the one place of the version (pyproject.toml reads it)

from .context import Context, comp, comp_dynamic, current_context, sh
from .errors import InvalidJob, JobFailed, JobsFailed, NbmakeError, NotDone, StoreError, UnknownTarget
from .files.paths import File
from .promise import Promise
from .shared.progress import progress

__all__ = [
    "Context", "Promise", "File", "comp", "comp_dynamic", "current_context", "sh",
    "NbmakeError", "JobsFailed", "JobFailed", "NotDone", "InvalidJob", "UnknownTarget",
    "StoreError", "progress",
]


def load_ipython_extension(ipython):  # pragma: no cover - exercised through real kernels
    """``%load_ext nbmake_ext``: imports the IPython layer only when asked for."""
    from .ipython.extension import load

    load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover
    from .ipython.extension import unload

    unload(ipython)
