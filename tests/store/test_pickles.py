"""store/pickles.py: a value's bytes, with its large buffers out of band, and back."""

from __future__ import annotations

import io
import pickle
import struct

import cloudpickle
import numpy as np
import pytest

from nbmake_ext.store import blobs
from nbmake_ext.store.pickles import (OUT_OF_BAND_FROM, TRAILER_MARK, dump_value, dumps_value,
                                      loads_value)

BIG = OUT_OF_BAND_FROM // 8  # float64s: one buffer at the threshold


def values_with_large_buffers() -> list:
    a = np.arange(4 * BIG, dtype=np.float64)
    return [
        a,
        np.asfortranarray(a.reshape(4, -1)),
        {"x": a, "y": np.arange(BIG, dtype=np.int32), "small": np.arange(3), "s": "text"},
        (a, a),                                        # one array twice
        [np.zeros(BIG - 1), np.ones(BIG)],             # one below the threshold, one at it
    ]


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape \
            and bool(np.array_equal(a, b)) and np.isfortran(a) == np.isfortran(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def streamed(value) -> bytes:
    out = io.BytesIO()
    dump_value(value, out)
    return out.getvalue()


@pytest.mark.parametrize("value", values_with_large_buffers(), ids=range(5))
def test_large_buffers_go_after_the_pickle_and_come_back_equal(value):
    data = dumps_value(value)
    assert data.endswith(TRAILER_MARK)
    assert streamed(value) == data  # into a file as it is made: the same bytes
    assert same(loads_value(bytearray(data)), value)
    assert same(loads_value(data), value)


def test_a_value_without_large_buffers_is_the_plain_pickle_of_before():
    for value in [1, "s" * 100_000, b"b" * 100_000, list(range(10_000)), np.zeros(BIG - 1),
                  {"a": np.arange(10)},
                  np.arange(4.0 * BIG)[::2]]:  # not contiguous: numpy pickles a copy in band
        data = dumps_value(value)
        plain = pickle.dumps(value, protocol=5) if type(value) in (int, str, bytes) \
            else cloudpickle.dumps(value, protocol=5)
        assert data == plain and data.endswith(b".")  # (the STOP opcode ends a pickle)
        assert streamed(value) == data
        assert same(loads_value(bytearray(data)), value)


def test_arrays_loaded_from_a_bytearray_are_writable_views_of_it():
    data = bytearray(dumps_value(np.zeros(BIG)))
    loaded = loads_value(data)
    assert loaded.flags.writeable
    data[loaded.ctypes.data - np.frombuffer(data, np.uint8).ctypes.data] = 0xFF  # no copy
    assert loaded[0] != 0
    loaded[-1] = 7.0
    assert loaded[-1] == 7.0


def test_arrays_loaded_from_bytes_are_writable_copies():
    data = dumps_value(np.zeros(BIG))
    loaded = loads_value(data)
    loaded[0] = 1.0
    assert loaded[0] == 1.0 and loads_value(data)[0] == 0.0


def test_an_earlier_versions_pickle_of_a_large_array_loads():
    a = np.arange(4 * BIG, dtype=np.float64)
    assert same(loads_value(bytearray(cloudpickle.dumps(a, protocol=5))), a)


@pytest.mark.parametrize("cut", ["lengths", "count", "mark only", "sum"])
def test_a_malformed_trailer_is_an_unpickling_error_not_a_wrong_value(cut):
    data = bytearray(dumps_value(np.arange(2 * BIG, dtype=np.float64)))
    body = len(data) - len(TRAILER_MARK)
    if cut == "lengths":    # count says one buffer, but the lengths are gone
        bad = data[:8] + data[body - 8:]
    elif cut == "count":   # a count larger than the bytes could hold
        bad = data[:body - 8] + struct.pack("<Q", 1 << 40) + TRAILER_MARK
    elif cut == "mark only":
        bad = TRAILER_MARK
    else:                  # a buffer's length one more than what is there
        (n,) = struct.unpack_from("<Q", data, body - 16)
        bad = data[:body - 16] + struct.pack("<Q", n + 1) + data[body - 8:]
    with pytest.raises(pickle.UnpicklingError, match="malformed result"):
        loads_value(bytearray(bad))


def test_a_file_read_back_checked_is_a_bytearray_its_arrays_are_views_of(tmp_path):
    value = {"a": np.arange(3 * BIG, dtype=np.float64)}
    name, sum_, _ = blobs.write_pickled(tmp_path, "job", lambda f: dump_value(value, f))
    data = blobs.read_checked(tmp_path, name, sum_)
    assert type(data) is bytearray and sum_ == blobs.checksum(dumps_value(value))
    loaded = loads_value(data)
    assert same(loaded, value) and loaded["a"].base is not None
    (tmp_path / name).write_bytes(bytes(data[:-1]))  # cut short: its checksum fails
    with pytest.raises(blobs.CorruptResult):
        blobs.read_checked(tmp_path, name, sum_)
