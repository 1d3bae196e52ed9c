"""The store: one directory holding the graph, results, tracebacks, logs and timings."""

from .store import Store, StoredJob, ResultUnavailable

__all__ = ["Store", "StoredJob", "ResultUnavailable"]
