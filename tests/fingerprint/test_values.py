from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
from hashlib import blake2b

import numpy as np
import pytest

from nbmake_ext.fingerprint import Unpicklable, digest, scan_args, scan_call, set_tracked_root
from nbmake_ext.fingerprint.values import _feed_seq
from nbmake_ext.promise import Promise

# Built the same way in this process and in the subprocesses below.
RICH_VALUE_SRC = """
import numpy as np
from nbmake_ext.promise import Promise
rich = {
    "b": [1, 2.5, None, -7, 2**100, 1 + 2j],
    "a": {"x", "y", "z", "w", "some longer string"},
    ("t", 1): (True, b"q", frozenset({"m", "n", "o"})),
    "arr": np.arange(24.0).reshape(4, 6)[:, ::2],
    "long": [str(i) for i in range(200)],
    "longset": {f"k{i}" for i in range(200)},
    7: {"nested": {"deep": ["x", ("y", {"z"})]}},
}
call = ((Promise("load-1"), {"s": {"p", "q"}}), {"k": 3, "j": [Promise("load-2")]})
"""


def _rich() -> tuple[dict, tuple]:
    ns: dict = {}
    exec(RICH_VALUE_SRC, ns)
    return ns["rich"], ns["call"]


def test_digests_are_the_same_in_processes_with_different_hash_seeds():
    script = RICH_VALUE_SRC + """
import json
from nbmake_ext.fingerprint import digest, scan_args
print(json.dumps([digest(rich), scan_args(*call)[0]]))
"""
    outputs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, check=True)
        outputs.append(json.loads(done.stdout))
    rich, call = _rich()
    assert outputs[0] == outputs[1] == [digest(rich), scan_args(*call)[0]]


def test_digest_format():
    d = digest({"a": [1, 2]})
    assert len(d) == 32 and int(d, 16) >= 0
    assert len(digest(1)) == 32


def test_dict_and_set_order_do_not_count():
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest({1: "x", (2, 3): "y", "z": [1]}) == digest({"z": [1], (2, 3): "y", 1: "x"})
    words = [f"w{i}" for i in range(100)]
    assert digest(set(words)) == digest(set(reversed(words)))
    assert digest({3, "a", (1, 2)}) == digest({(1, 2), "a", 3})
    assert digest(frozenset(words[:5])) == digest(frozenset(reversed(words[:5])))
    assert scan_args((1,), {"x": 1, "y": 2}) == scan_args((1,), {"y": 2, "x": 1})


def test_values_are_type_tagged():
    values = [1, 1.0, True, "1", b"1", 1 + 0j, None, 0, False, "", b"",
              [1], (1,), {1}, frozenset({1}), {1: None}, [[1]], [(1,)], ["1"],
              np.int64(1), np.float64(1.0), np.array([1]), np.array([1.0])]
    digests = [digest(v) for v in values]
    assert len(set(digests)) == len(values)


def test_different_values_differ():
    assert digest([1, 2]) != digest([2, 1])
    assert digest({"a": 1}) != digest({"a": 2})
    assert digest({"a": 1}) != digest({"b": 1})
    assert digest({"x", "y"}) != digest({"x", "z"})
    assert digest(("ab", "c")) != digest(("a", "bc"))
    assert digest(2**5000) != digest(2**5000 + 1)  # beyond the int -> str digit limit
    assert scan_args((1,), {}) != scan_args((), {"a": 1})
    assert scan_args((1, 2), {}) != scan_args(((1, 2),), {})


def test_long_homogeneous_lists():
    ints = list(range(1000))
    assert digest(ints) == digest(list(range(1000)))
    assert digest(ints) != digest(ints[:-1] + [-1])
    assert digest(ints) != digest(tuple(ints))
    assert digest([float(i) for i in ints]) != digest(ints)
    shared = ["same"] * 100  # one str object many times vs. equal but distinct objects
    distinct = ["".join(["sa", "me"]) for _ in range(100)]
    assert digest(shared) == digest(distinct)
    mixed = list(range(99)) + ["x"]
    assert digest(mixed) != digest(list(range(99)) + ["y"])
    assert digest(set(range(500))) == digest(set(reversed(range(500))))
    assert digest(set(range(500))) != digest(set(range(1, 501)))


def test_numpy_content_dtype_and_shape_count():
    a = np.arange(12.0).reshape(3, 4)
    b = a.copy()
    assert digest(a) == digest(b)
    b[2, 3] = -1.0
    assert digest(a) != digest(b)
    assert digest(a) != digest(a.astype(np.float32))
    assert digest(a) != digest(a.reshape(4, 3))
    assert digest(a) != digest(a.T)
    view = a[:, ::2]  # not contiguous: hashed as its C-contiguous copy
    assert digest(view) == digest(np.ascontiguousarray(view))
    assert digest(np.float64(2.5)) != digest(np.float64(3.5))
    assert digest(np.zeros(0)) != digest(np.zeros((0, 2)))
    assert digest(np.array(["a", "b"])) != digest(np.array(["a", "c"]))
    objects = np.array([{"x": 1}, None], dtype=object)  # pointers are not content: pickled
    assert digest(objects) == digest(np.array([{"x": 1}, None], dtype=object))


def test_promises_count_by_job_id():
    assert digest(Promise("a")) == digest(Promise("a"))
    assert digest(Promise("a")) != digest(Promise("b"))
    assert digest(Promise("a")) != digest("a")


def test_scan_args_finds_promises_in_nested_containers_in_order_deduplicated():
    p1, p2, p3, p4, p5 = (Promise(f"job-{i}") for i in range(1, 6))
    fp, deps = scan_args(
        ([p1, (p2, {"k": p1})], {p3}),
        {"z": {p4: "value"}, "a": [frozenset({p5}), p2]},
    )
    assert deps == ("job-1", "job-2", "job-3", "job-4", "job-5")
    assert scan_args((1, "x"), {"k": [2]})[1] == ()
    assert scan_args((p2, p1), {})[1] == ("job-2", "job-1")


def test_promises_inside_other_objects_are_not_looked_for():
    class Box:
        def __init__(self, p):
            self.p = p

    Point = collections.namedtuple("Point", "x y")
    assert scan_args((Point(Promise("in-namedtuple"), 1),), {})[1] == ("in-namedtuple",)
    assert scan_args((collections.OrderedDict(a=Promise("in-odict")),), {})[1] == ("in-odict",)
    assert scan_args((Box(1),), {})[1] == ()


def test_namedtuples_count_their_class():
    A = collections.namedtuple("A", "x y")
    B = collections.namedtuple("B", "x y")
    assert digest(A(1, 2)) == digest(A(1, 2))
    assert digest(A(1, 2)) != digest(B(1, 2))
    assert digest(A(1, 2)) != digest((1, 2))


def test_unpicklable_argument_names_its_path():
    lock = threading.Lock()
    with pytest.raises(Unpicklable) as info:
        scan_args((1, [2]), {"k": {"x": [0, lock]}, "ok": 1})
    err = info.value
    assert err.path == "kwargs['k']['x'][1]"
    assert err.obj_type == "_thread.lock"
    assert "cannot pickle" in err.reason
    assert str(err) == (f"argument kwargs['k']['x'][1] cannot be pickled: _thread.lock ({err.reason})")
    assert err.reason.startswith("TypeError: ")

    with pytest.raises(Unpicklable) as info:
        scan_args((1, (2, {"a": lock})), {})
    assert info.value.path == "args[1][1]['a']"

    with pytest.raises(Unpicklable) as info:
        digest([0, 1, 2, {"x": lock}])
    assert info.value.path == "value[3]['x']"
    assert str(info.value).startswith("value[3]['x'] cannot be pickled: _thread.lock")


def test_cycles_are_encoded_not_followed_forever():
    a: list = [1]
    a.append(a)
    b: list = [1]
    b.append(b)
    assert digest(a) == digest(b)
    assert digest(a) != digest([1, [1]])
    d: dict = {"k": 1}
    d["self"] = d
    assert len(digest(d)) == 32
    t = ([],)
    t[0].append(t)
    assert len(digest(t)) == 32
    assert len(scan_args((a,), {"d": d})[0]) == 32
    shared = [1, 2]
    assert digest([shared, shared]) == digest([[1, 2], [1, 2]])  # sharing is not a cycle


def test_too_deep_nesting_raises_unpicklable():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(Unpicklable, match="RecursionError"):
        digest(deep)


def test_functions_as_arguments(tmp_path):
    set_tracked_root(tmp_path)  # this test file is not the user's code: no code fingerprint
    try:
        square = lambda x: x * x  # noqa: E731
        fp, deps = scan_args((square,), {})  # pickle fails on a lambda: cloudpickle
        assert len(fp) == 32 and deps == ()
        assert scan_args((square,), {})[0] == fp
        assert scan_args((lambda x: x + 1,), {})[0] != fp
    finally:
        set_tracked_root(None)
    assert digest(json.dumps) == digest(json.dumps)  # installed: by reference
    assert digest(json.dumps) != digest(json.loads)


def test_notebook_functions_count_by_code_and_closure(run_cell):
    src = """
    def make(k):
        def scale(x):
            return x * k
        return scale
    double = make(2)
    """
    first, second = run_cell(src), run_cell(src)  # two cell files: a kernel restart
    assert digest(first["double"]) == digest(second["double"])
    assert digest(first["double"]) != digest(first["make"](3))  # closure value differs
    edited = run_cell(src.replace("x * k", "x * k + 1"))
    assert digest(first["double"]) != digest(edited["double"])
    locked = first["make"](threading.Lock())
    with pytest.raises(Unpicklable) as info:
        scan_args((locked,), {})
    assert info.value.path == "args[0].<closure k>"


def test_other_objects_are_pickled():
    class Plain:
        def __init__(self, v):
            self.v = v

    assert digest(Plain(1)) == digest(Plain(1))
    assert digest(Plain(1)) != digest(Plain(2))


# The fingerprints of these arguments as stores written by earlier versions hold them: a
# change here would make every stored job run again.
KEPT_ARGUMENT_FINGERPRINTS = [
    ((), "de75f5edfabdb0477e652512e4287161"),
    ((5,), "115f94c8f8de35c44561c1f2ab634e23"),
    ((1, "a", 2.5, None, True, b"x", 3 + 1j), "0a117a2ccf358f0d4a832186d0a5904c"),
    ((-7, 2**80), "17d9a65665e442ca31990fb9e12fa244"),
    (tuple(range(70)), "c2c13b077eab7a2a759052228dbc92ee"),  # past the bulk threshold
]


@pytest.mark.parametrize("args, expected", KEPT_ARGUMENT_FINGERPRINTS)
def test_argument_fingerprints_stay_what_stores_hold(args, expected):
    assert scan_call(args, {})[0] == expected


def test_promise_fingerprints_stay_what_stores_hold():
    nested = (Promise("a"), [1, Promise("b"), (2, "x")], Promise("c", output="y"))
    assert scan_call(nested, {}) == ("2bd28938f3a402e9014f7bd872cf5987", ("a", "b", "c"), ())
    many = tuple(Promise(f"d{i}") for i in range(100))
    fp, deps, _ = scan_call(many, {})
    assert fp == "17b6d90bfdcd953d6e504d40ac21d2c7" and deps == tuple(f"d{i}" for i in range(100))
    mixed = [Promise(f"d{i}") for i in range(80)] + [Promise("c", output="y")]
    fp, deps, _ = scan_call((mixed, {"k": [Promise(f"e{i}") for i in range(70)]}), {})
    assert fp == "b7a4f8289f8df91c2ce765faee838bab"
    assert deps == (*(f"d{i}" for i in range(80)), "c", *(f"e{i}" for i in range(70)))


@pytest.mark.parametrize("args", [(5,), (1, "a", 2.5, None, True, b"x", 3 + 1j), (2**80,)])
def test_plain_values_fingerprint_as_the_full_walk_does(args):
    """A call of plain values takes a shortcut; its digest is the walk's, and the same
    values inside a list (which always takes the walk) differ only by their brackets."""
    fp, deps, files = scan_call(args, {})
    walked = scan_call(args + (Promise("j"),), {})  # a promise: the walk
    assert (deps, files) == ((), ())
    assert walked[1] == ("j",) and walked[0] != fp
    h = blake2b(digest_size=16)
    _feed_seq(h.update, args, {}, {}, b"(", b")")
    assert fp == h.hexdigest()
