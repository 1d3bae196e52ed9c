"""Values kept in memory within a byte budget, least recently used first out.

One class for every place that keeps results for their dependents: the run loop (results
made in this run), an engine and a Dask worker (values made or read lately, so a chain on
one process skips the disk) and the Dask runner (futures of results held on the cluster).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import nullcontext
from typing import Any, Hashable


class ByteLRU:
    """``put(key, value, size)`` keeps the value while the sizes of all kept values stay
    within ``budget`` bytes, letting the least recently used go first. A value larger than
    ``largest`` (default: a quarter of the budget) is not kept, and neither is an older
    value under its key. ``get`` counts as a use. ``threadsafe``: for a cache shared by
    threads (a Dask worker runs several jobs at once)."""

    __slots__ = ("_items", "_size", "budget", "largest", "_lock")

    def __init__(self, budget: int, largest: int | None = None, *, threadsafe: bool = False):
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._size = 0
        self.budget = budget
        self.largest = budget // 4 if largest is None else largest
        self._lock = threading.Lock() if threadsafe else nullcontext()

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """(True, value), or (False, None) when it is not kept."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return False, None
            self._items.move_to_end(key)
            return True, item[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= old[1]
            if size > self.largest:
                return
            self._items[key] = (value, size)
            self._size += size
            while self._size > self.budget:
                _, (_, s) = self._items.popitem(last=False)
                self._size -= s

    def drop(self, key: Hashable) -> None:
        with self._lock:
            item = self._items.pop(key, None)
            if item is not None:
                self._size -= item[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0

    @property
    def size(self) -> int:
        """Bytes kept."""
        return self._size

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items
