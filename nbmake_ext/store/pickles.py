"""Results and payloads as bytes: cloudpickle, so notebook-defined classes survive a
restart; the standard pickler for plain values, which it writes the same way at less cost.
A large result can be pickled straight into its file (``dump_value``, with
``blobs.write_pickled``), never held whole in memory as bytes."""

from __future__ import annotations

import pickle
import sys
from typing import Any, BinaryIO

import cloudpickle

_PLAIN = frozenset({int, float, complex, str, bytes, bool, type(None)})

# Results that report this many bytes of memory (``sys.getsizeof``: an array's or a data
# frame's counts its data) are pickled straight into a file by the engine that made them.
STREAM_FROM = 1 << 20


def _plain(value: Any) -> bool:
    kind = type(value)
    return kind in _PLAIN or (kind is tuple or kind is list) and len(value) <= 32 \
        and all(type(v) in _PLAIN for v in value)


def dumps_value(value: Any) -> bytes:
    if _plain(value):
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def dump_value(value: Any, file: BinaryIO) -> None:
    """``dumps_value`` into ``file``: the same bytes, written as they are made."""
    if _plain(value):
        pickle.Pickler(file, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    else:
        cloudpickle.CloudPickler(file, protocol=pickle.HIGHEST_PROTOCOL).dump(value)


def is_large(value: Any) -> bool:
    """Whether a result is worth pickling into its file as it is written."""
    try:
        return sys.getsizeof(value) >= STREAM_FROM
    except Exception:  # noqa: BLE001 - an object whose __sizeof__ fails is just not large
        return False
