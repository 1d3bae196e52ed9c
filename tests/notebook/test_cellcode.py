"""What a ``%%comp`` cell binds (its outputs) and reads (its inputs): pure analysis."""

from __future__ import annotations

import textwrap

import pytest

from nbmake_ext.ipython.cellcode import analyse, default_job_id

CASES = {
    "assignment": ("y = x + 1", ["y"], ["x"]),
    "chained and attribute": ("a = b = f(x)\na.attr = 3\nc[0] = a", ["a", "b"], ["f", "x", "c"]),
    "bound before read is not an input": ("t = 1\nu = t * 2", ["t", "u"], []),
    "read before bound is both": ("x = x + 1", ["x"], ["x"]),
    "augmented reads the target": ("total += step", ["total"], ["step", "total"]),
    "augmented after binding": ("total = 0\ntotal += 1", ["total"], []),
    "annotated": ("n: int = m\nk: int", ["n"], ["m"]),
    "tuple unpacking": ("(a, b), *rest = pairs", ["a", "b", "rest"], ["pairs"]),
    "for loop": ("for i, v in enumerate(vals):\n    acc = v\nelse:\n    done = i",
                 ["i", "v", "acc", "done"], ["enumerate", "vals"]),
    "while and if": ("while cond:\n    w = 1\nif flag:\n    z = w", ["w", "z"], ["cond", "flag"]),
    "with as": ("with open(path) as fh, lock:\n    text = fh.read()",
                ["fh", "text"], ["open", "path", "lock"]),
    "import": ("import os.path\nimport numpy as np\nfrom math import sqrt as root, pi",
               ["os", "np", "root", "pi"], []),
    "star import binds nothing known": ("from math import *", [], []),
    "except as: the name lives in the handler only": (
        "try:\n    r = risky()\nexcept ValueError as err:\n    r = str(err)",
        ["r"], ["risky", "ValueError", "str"]),
    "def: free names are inputs, params are not": (
        "def scale(v, k=factor):\n    w = v * k * gain\n    return helper(w)",
        ["scale"], ["factor", "gain", "helper"]),
    "def: names the cell binds after the def are not inputs": (
        "def f():\n    return helper() * k\ndef helper():\n    return 2\nk = 3\ny = f()",
        ["f", "helper", "k", "y"], []),
    "def: decorators are read": ("@cache\ndef g():\n    return 1", ["g"], ["cache"]),
    "def: annotations are read": ("def g(v: np.ndarray, *a: T) -> Out:\n    return v",
                                  ["g"], ["np", "T", "Out"]),
    "def: nested def and import are local": (
        "def outer():\n    import json\n    def inner():\n        return json.dumps(q)\n"
        "    return inner", ["outer"], ["q"]),
    "def: global declared name is read from the cell": (
        "def bump():\n    global count\n    count = count + 1", ["bump"], ["count"]),
    "def: a name the cell binds earlier is not an input": (
        "k = 2\ndef f(v):\n    return v * k", ["k", "f"], []),
    "class": ("class Model(Base):\n    rate = default_rate\n    def fit(self):\n"
              "        return self.rate * scale", ["Model"], ["Base", "default_rate", "scale"]),
    "lambda": ("f = lambda v, w=offset: v * coeff + w", ["f"], ["offset", "coeff"]),
    "list comprehension": ("sq = [v * k for v in vals if v > lo]", ["sq"], ["vals", "k", "lo"]),
    "nested comprehension": ("pairs = {(a, b) for a in xs for b in range(a)}",
                             ["pairs"], ["xs", "range"]),
    "dict and generator": ("d = {k: v for k, v in items}\ns = sum(x for x in d)",
                           ["d", "s"], ["items", "sum"]),
    "del removes an output": ("tmp = load()\nkeep = tmp.x\ndel tmp", ["keep"], ["load"]),
    "walrus": ("if (n := len(data)) > 3:\n    big = n", ["n", "big"], ["len", "data"]),
    "walrus in a comprehension binds in the cell": (
        "ys = [(last := y) for y in vals]", ["last", "ys"], ["vals"]),
    "match patterns": (
        "match cmd:\n    case ['go', where]:\n        dest = where\n"
        "    case {'k': v, **others}:\n        dest = v\n"
        "    case P(x=px) as pt:\n        dest = px",
        ["where", "dest", "v", "others", "px", "pt"], ["cmd", "P"]),
    "print only": ("print(x)", [], ["print", "x"]),
}


@pytest.mark.parametrize("source, outputs, inputs", CASES.values(), ids=CASES.keys())
def test_analyse(source, outputs, inputs):
    names = analyse(textwrap.dedent(source))
    assert list(names.outputs) == outputs
    assert sorted(names.inputs) == sorted(inputs)


def test_outputs_are_in_order_of_first_binding():
    assert analyse("b = 1\na = 2\nb = 3\nc, a = 4, 5").outputs == ("b", "a", "c")


def test_syntax_error_propagates():
    with pytest.raises(SyntaxError):
        analyse("x = = 1")


def test_default_job_id():
    assert default_job_id(("model", "score"), "0123456789abcdef") == "cell-model+score"
    assert default_job_id((), "0123456789abcdef") == "cell-01234567"
