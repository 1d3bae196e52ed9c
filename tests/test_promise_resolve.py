"""promise.py ``resolve``: every promise inside lists, tuples, dicts and sets is replaced
by its value, containers keep their types, and a value without promises is not copied."""

from __future__ import annotations

import collections

from nbmake_ext.promise import Promise, resolve

Point = collections.namedtuple("Point", "x y")


class Pair(tuple):
    pass


def values(job_id: str) -> str:
    return f"<{job_id}>"


def test_promises_in_nested_containers_are_replaced_and_types_kept():
    value = (
        [Promise("a"), (Promise("b"), 1), {"k": Promise("c"), Promise("d"): 2}],
        Point(Promise("e"), [Promise("f")]),
        Pair((Promise("g"), 3)),
        {Promise("h")},
        frozenset([Promise("i")]),
        "text",
    )
    out = resolve(value, values)
    assert out == (
        ["<a>", ("<b>", 1), {"k": "<c>", "<d>": 2}],
        Point("<e>", ["<f>"]),
        Pair(("<g>", 3)),
        {"<h>"},
        frozenset(["<i>"]),
        "text",
    )
    assert type(out[1]) is Point and type(out[2]) is Pair and type(out[0][1]) is tuple


def test_a_fan_in_of_many_promises():
    args = tuple(Promise(f"d{i}") for i in range(1000))
    assert resolve(args, values) == tuple(f"<d{i}>" for i in range(1000))


def test_an_output_of_a_cell_is_its_item():
    assert resolve([Promise("cell", output="x")], lambda j: {"x": 7}) == [7]


def test_a_value_without_promises_is_not_copied():
    value = ([1, 2], {"a": (3,)})
    assert resolve(value, values) is value
