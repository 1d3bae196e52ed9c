"""Results and payloads as bytes: cloudpickle, so notebook-defined classes survive a
restart; the standard pickler for plain values, which it writes the same way at less cost.
A large result can be pickled straight into its file (``dump_value``, with
``blobs.write_pickled``), never held whole in memory as bytes.

The large buffers of a value (a numpy array's data: pickle protocol 5) are written out of
band, after the pickle, so that loading takes them where they were read rather than
copying each into memory of its own (a job taking fifty 10 MB arrays spent most of its
loading in those copies). Such bytes end in a trailer: the lengths of the pickle and of
each buffer, their count, and ``TRAILER_MARK``. A pickle ends with its STOP opcode
(``.``), never with that mark, so a value without large buffers is a plain pickle, as
stored by earlier versions, and ``loads_value`` reads both.
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import Any, BinaryIO

import cloudpickle

_PLAIN = frozenset({int, float, complex, str, bytes, bool, type(None)})

# Results that report this many bytes of memory (``sys.getsizeof``: an array's or a data
# frame's counts its data) are pickled straight into a file by the engine that made them.
STREAM_FROM = 1 << 20
# Buffers of this many bytes or more go out of band. More than a result kept as a row of
# the database (results.INLINE_MAX): bytes with a trailer are always a file's.
OUT_OF_BAND_FROM = 64 << 10
TRAILER_MARK = b"\x00nbmk-oob"
_LENGTH = struct.Struct("<Q")


def _plain(value: Any) -> bool:
    kind = type(value)
    return kind in _PLAIN or (kind is tuple or kind is list) and len(value) <= 32 \
        and all(type(v) in _PLAIN for v in value)


class _Collected(list):
    """The buffer callback of a pickler: keeps the large buffers (out of band), lets the
    small ones go in band."""

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < OUT_OF_BAND_FROM:
            return True
        self.append(buffer)
        return False




def _trailer(pickle_length: int, buffers: list[pickle.PickleBuffer]) -> bytes:
    lengths = [pickle_length, *(b.raw().nbytes for b in buffers), len(buffers)]
    return struct.pack(f"<{len(lengths)}Q", *lengths) + TRAILER_MARK


class _Counting:
    """A file that counts what goes through it to another."""

    def __init__(self, file: BinaryIO):
        self.file, self.written = file, 0

    def write(self, data: Any) -> int:
        n = self.file.write(data)
        self.written += n
        return n


def dumps_value(value: Any) -> bytes:
    collected = _Collected()
    dumps = pickle.dumps if _plain(value) else cloudpickle.dumps
    data = dumps(value, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=collected)
    if not collected:
        return data
    return b"".join([data, *(b.raw() for b in collected), _trailer(len(data), collected)])


def dump_value(value: Any, file: BinaryIO) -> None:
    """``dumps_value`` into ``file``: the same bytes, written as they are made."""
    collected, counting = _Collected(), _Counting(file)
    pickler = pickle.Pickler if _plain(value) else cloudpickle.CloudPickler
    pickler(counting, protocol=pickle.HIGHEST_PROTOCOL, buffer_callback=collected).dump(value)
    if collected:
        for buffer in collected:
            file.write(buffer)
        file.write(_trailer(counting.written, collected))


def loads_value(data: bytes | bytearray | memoryview) -> Any:
    """The value of ``dumps_value``'s bytes (or of an earlier version's plain pickle).
    Arrays loaded from a writable buffer (a bytearray) are views of it; from read-only
    bytes, each gets a writable copy, as a plain pickle gives."""
    if data[-len(TRAILER_MARK):] != TRAILER_MARK:  # (most: a plain pickle)
        return pickle.loads(data)
    view = memoryview(data)
    end = len(view) - len(TRAILER_MARK) - _LENGTH.size
    (count,) = _LENGTH.unpack_from(view, end) if end >= 0 else (-1,)
    start = end - (count + 1) * _LENGTH.size
    if count < 0 or start < 0:
        raise pickle.UnpicklingError("malformed result: its trailer is cut short")
    lengths = struct.unpack_from(f"<{count + 1}Q", view, start)
    if sum(lengths) != start:
        raise pickle.UnpicklingError("malformed result: its parts do not add up")
    at, parts = 0, []
    for length in lengths:
        parts.append(view[at:at + length])
        at += length
    buffers = parts[1:] if not view.readonly else [bytearray(part) for part in parts[1:]]
    return pickle.loads(parts[0], buffers=buffers)


def is_large(value: Any) -> bool:
    """Whether a result is worth pickling into its file as it is written."""
    try:
        return sys.getsizeof(value) >= STREAM_FROM
    except Exception:  # noqa: BLE001 - an object whose __sizeof__ fails is just not large
        return False
