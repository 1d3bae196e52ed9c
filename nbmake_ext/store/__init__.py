"""The store: one directory holding the graph, results, tracebacks, logs and timings.

``Store`` and its kin are imported when first asked for: an engine reads results
(``results.py``, ``blobs.py``, ``pickles.py``) and must not import the store's writer,
claims and database schema with them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["Store", "StoredJob", "ResultUnavailable"]

if TYPE_CHECKING:
    from .store import ResultUnavailable, Store, StoredJob


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".store", __name__), name)
    globals()[name] = value
    return value
