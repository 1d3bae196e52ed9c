from __future__ import annotations

import functools
import gc
import importlib
import json
import os
import subprocess
import sys
import weakref

from nbmake_ext.fingerprint import (
    CodeFingerprint,
    cell_fingerprint,
    code_fingerprint,
    function_label,
    is_tracked,
    set_tracked_root,
)

PROCESS = """
def process(x, k=3):
    return helper(x) * k

def helper(x):
    return x + 1
"""

PROCESS_REFORMATTED = '''
# a comment


def process(x,
            k=3):  # trailing comment
    """A docstring now."""
    return helper( x )*k     # same code


def helper(x):
    # comment only
    return (x + 1)
'''


def changed(a: CodeFingerprint, b: CodeFingerprint) -> set[str]:
    """Labels whose digest differs, or that exist on one side only."""
    return {label for label in a.parts.keys() | b.parts.keys() if a.parts.get(label) != b.parts.get(label)}


def test_comments_whitespace_and_docstrings_do_not_count(run_cell):
    a = code_fingerprint(run_cell(PROCESS)["process"])
    b = code_fingerprint(run_cell(PROCESS_REFORMATTED)["process"])
    assert a == b
    assert set(a.parts) == {"__main__.process", "__main__.helper"}


def test_body_edit_counts(run_cell):
    a = code_fingerprint(run_cell(PROCESS)["process"])
    b = code_fingerprint(run_cell(PROCESS.replace("* k", "* k * 2"))["process"])
    assert a.digest != b.digest
    assert changed(a, b) == {"__main__.process"}
    c = code_fingerprint(run_cell(PROCESS.replace("k=3", "k=4"))["process"])
    assert changed(a, c) == {"__main__.process"}


def test_helper_edit_makes_caller_differ(run_cell):
    a = code_fingerprint(run_cell(PROCESS)["process"])
    b = code_fingerprint(run_cell(PROCESS.replace("x + 1", "x + 2"))["process"])
    assert a.digest != b.digest
    assert changed(a, b) == {"__main__.helper"}


def test_helper_redefined_in_a_later_cell_is_seen(run_cell):
    ns = run_cell(PROCESS)
    process = ns["process"]
    before = code_fingerprint(process)
    assert code_fingerprint(process) is before  # cached
    run_cell("def helper(x):\n    return x + 2\n", ns)
    after = code_fingerprint(process)
    assert changed(before, after) == {"__main__.helper"}
    run_cell("def helper(x):\n    return x + 1\n", ns)  # back to the original code
    assert code_fingerprint(process) == before
    run_cell("del helper", ns)
    assert changed(before, code_fingerprint(process)) == {"__main__.helper"}  # removed


def test_helper_defined_after_its_caller(run_cell):
    ns = run_cell("def process(x):\n    return helper(x)\n")
    alone = code_fingerprint(ns["process"])
    assert set(alone.parts) == {"__main__.process"}
    run_cell("def helper(x):\n    return x\n", ns)
    assert set(code_fingerprint(ns["process"]).parts) == {"__main__.process", "__main__.helper"}


def test_global_constants(run_cell):
    ns = run_cell("""
    THRESHOLD = 3
    NAMES = ("a", "b")
    DATA = list(range(10))
    def check(x):
        return x > THRESHOLD and x in NAMES and x in DATA
    """)
    a = code_fingerprint(ns["check"])
    assert {"global __main__.THRESHOLD", "global __main__.NAMES"} <= set(a.parts)
    assert not any("DATA" in label for label in a.parts)  # data is not code
    run_cell("THRESHOLD = 4", ns)
    b = code_fingerprint(ns["check"])
    assert changed(a, b) == {"global __main__.THRESHOLD"}
    run_cell("DATA = list(range(20))", ns)
    assert code_fingerprint(ns["check"]) == b
    run_cell("THRESHOLD = 4.0", ns)  # equal value, another type
    assert changed(b, code_fingerprint(ns["check"])) == {"global __main__.THRESHOLD"}


def test_module_attribute_helper_and_reload(run_cell, project):
    mod = project.module("helpers", "def h(x):\n    return x + 1\n\nSCALE = 2\n")
    ns = run_cell(f"""
    import {mod.__name__} as mymod
    def process(x):
        return mymod.h(x) * mymod.SCALE
    """)
    a = code_fingerprint(ns["process"])
    assert {f"{mod.__name__}.h", f"global {mod.__name__}.SCALE", "__main__.process"} <= set(a.parts)
    project.write(mod.__name__, "def h(x):\n    return x + 100\n\nSCALE = 2\n")
    importlib.reload(mod)
    b = code_fingerprint(ns["process"])
    assert changed(a, b) == {f"{mod.__name__}.h"}


def test_functions_of_project_modules_follow_their_callees(project):
    mod = project.module("pipeline", """
    from math import sqrt

    LIMIT = 10

    def clean(x):
        return min(sqrt(x), LIMIT)

    def run(xs):
        return [clean(x) for x in xs]
    """)
    fp = code_fingerprint(mod.run)
    name = mod.__name__
    assert set(fp.parts) == {f"{name}.run", f"{name}.clean", f"global {name}.LIMIT"}
    assert is_tracked(mod.run)
    assert function_label(mod.run) == f"{name}.run"


def test_class_method_edit(run_cell):
    src = """
    class Model:
        rate = 0.5
        def predict(self, x):
            return self.scale(x) * self.rate
        def scale(self, x):
            return x * 2
    def run(x):
        return Model().predict(x)
    """
    a = code_fingerprint(run_cell(src)["run"])
    assert "__main__.Model" in a.parts
    b = code_fingerprint(run_cell(src.replace("x * 2", "x * 3"))["run"])
    assert changed(a, b) == {"__main__.Model"}
    c = code_fingerprint(run_cell(src.replace("rate = 0.5", "rate = 0.6"))["run"])
    assert changed(a, c) == {"__main__.Model"}


def test_bound_methods_and_callable_objects(run_cell):
    src = """
    def helper(x):
        return x
    class Model:
        def predict(self, x):
            return helper(x)
        def __call__(self, x):
            return x
    model = Model()
    """
    ns = run_cell(src)
    fp = code_fingerprint(ns["model"].predict)
    assert {"__main__.Model.predict", "__main__.Model", "__main__.helper"} <= set(fp.parts)
    assert function_label(ns["model"].predict) == "__main__.Model.predict"
    assert code_fingerprint(ns["model"].predict) == fp  # a new bound method object each time
    call = code_fingerprint(ns["model"])
    assert "__main__.Model" in call.parts
    assert function_label(ns["model"]) == "__main__.Model"
    edited = run_cell(src.replace("return helper(x)", "return helper(x) + 1"))
    assert code_fingerprint(edited["model"].predict).digest != fp.digest


def test_closures(run_cell):
    src = """
    def make(k):
        def helper(x):
            return x * k
        def inner(x):
            return helper(x) + 1
        return inner
    """
    ns = run_cell(src)
    three = code_fingerprint(ns["make"](3))
    assert {"__main__.make.<locals>.inner", "__main__.make.<locals>.helper"} <= set(three.parts)
    assert changed(three, code_fingerprint(ns["make"](4))) == {"closure __main__.make.<locals>.helper.k"}
    edited = run_cell(src.replace("x * k", "x * k * k"))
    assert changed(three, code_fingerprint(edited["make"](3))) == {"__main__.make.<locals>.helper"}


def test_recursion_terminates(run_cell):
    ns = run_cell("""
    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)
    def is_even(n):
        return True if n == 0 else is_odd(n - 1)
    def is_odd(n):
        return False if n == 0 else is_even(n - 1)
    """)
    assert set(code_fingerprint(ns["fact"]).parts) == {"__main__.fact"}
    assert set(code_fingerprint(ns["is_even"]).parts) == {"__main__.is_even", "__main__.is_odd"}


def test_installed_functions_are_untracked_by_name():
    fp = code_fingerprint(json.dumps)
    assert list(fp.parts) == ["json.dumps"] and fp.parts["json.dumps"] == fp.digest
    assert not is_tracked(json.dumps)
    assert code_fingerprint(json.dumps) != code_fingerprint(json.loads)
    assert list(code_fingerprint(len).parts) == ["builtins.len"]
    assert list(code_fingerprint(functools.partial(json.dumps, indent=2)).parts) == ["json.dumps"]


def test_project_module_outside_the_tracked_root_is_untracked(project, tmp_path):
    mod = project.module("elsewhere", "def f():\n    return 1\n")
    assert is_tracked(mod.f)
    other = tmp_path / "other"
    other.mkdir()
    set_tracked_root(other)
    assert not is_tracked(mod.f)
    assert list(code_fingerprint(mod.f).parts) == [f"{mod.__name__}.f"]


def test_same_function_in_two_cell_files_is_the_same(run_cell):
    # After a kernel restart the cell has another file name and may sit at other lines.
    first = run_cell(PROCESS)
    second = run_cell("\n\n\nimport os\n" + PROCESS)
    assert first["process"].__code__.co_filename != second["process"].__code__.co_filename
    assert code_fingerprint(first["process"]) == code_fingerprint(second["process"])
    assert function_label(first["process"]) == function_label(second["process"]) == "__main__.process"


def test_digests_are_the_same_in_another_process(project):
    mod = project.module("stable", """
    WORDS = frozenset({"alpha", "beta", "gamma"})
    def f(x):
        return x in WORDS
    """)
    script = (f"import sys; sys.path.insert(0, {str(project.root)!r})\n"
              "from nbmake_ext.fingerprint import code_fingerprint, set_tracked_root\n"
              f"set_tracked_root({str(project.root)!r})\n"
              f"import {mod.__name__} as m\n"
              "print(code_fingerprint(m.f).digest)\n")
    outs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env=dict(os.environ, PYTHONHASHSEED=seed)).stdout.strip() for seed in "12"}
    assert outs == {code_fingerprint(mod.f).digest}


def test_bytecode_fallback_without_source(run_cell):
    def fp(src: str) -> CodeFingerprint:
        return code_fingerprint(run_cell(src, in_linecache=False)["process"])

    base = fp(PROCESS)
    assert base == fp(PROCESS)
    assert base == fp('\n\ndef process(x, k=3):\n    "doc"\n    return helper(x) * k  # c\n'
                      "def helper(x):\n    return x + 1\n")
    assert changed(base, fp(PROCESS.replace("* k", "* k * 2"))) == {"__main__.process"}
    assert changed(base, fp(PROCESS.replace("x + 1", "x + 2"))) == {"__main__.helper"}
    with_source = code_fingerprint(run_cell(PROCESS)["process"])
    assert base.digest != with_source.digest  # the fallback was really used


def test_partials(run_cell):
    ns = run_cell(PROCESS)
    part = functools.partial(ns["process"], k=5)
    assert code_fingerprint(part) == code_fingerprint(ns["process"])
    assert function_label(part) == "__main__.process"
    assert is_tracked(part)
    ns2 = run_cell(PROCESS + "\nimport functools\nfixed = functools.partial(helper, 1)\n"
                   "def uses_partial():\n    return fixed()\n")
    assert "__main__.helper" in code_fingerprint(ns2["uses_partial"]).parts


def test_decorated_functions_keep_their_decorators(run_cell):
    src = """
    import functools
    def deco(f):
        @functools.wraps(f)
        def wrapper(*a):
            return f(*a)
        return wrapper
    @deco
    def g(x):
        return x
    """
    ns = run_cell(src)
    fp = code_fingerprint(ns["g"])
    assert function_label(ns["g"]) == "__main__.g"
    edited = run_cell(src.replace("return x\n", "return x + 1\n"))
    assert code_fingerprint(edited["g"]).digest != fp.digest
    cached = run_cell("import functools\n@functools.lru_cache\ndef g(x):\n    return x\n")
    assert is_tracked(cached["g"])
    assert "__main__.g" in code_fingerprint(cached["g"]).parts


def test_lambdas(run_cell):
    ns = run_cell("square = lambda x: x * x\npair = (lambda a: a + 1, lambda b: b - 1)\n")
    assert function_label(ns["square"]) == "__main__.<lambda>[lambda x: x * x]"
    first, second = ns["pair"]
    assert function_label(first) == "__main__.<lambda>[lambda a: a + 1]"
    assert function_label(second) == "__main__.<lambda>[lambda b: b - 1]"
    again = run_cell("\n\nsquare   =  lambda x : x*x  # restarted\n")
    assert code_fingerprint(again["square"]) == code_fingerprint(ns["square"])
    other = run_cell("square = lambda x: x * x * x\n")
    assert code_fingerprint(other["square"]).digest != code_fingerprint(ns["square"]).digest


def test_cell_fingerprint():
    a = cell_fingerprint("x = load(1)\ny = f(x, k=2)\n")
    assert a == cell_fingerprint("# comment\nx = load( 1 )\n\ny = f(x,\n      k=2)  # more\n")
    assert a != cell_fingerprint("x = load(1)\ny = f(x, k=3)\n")
    raw = cell_fingerprint("%time x = 1\n")  # not Python: the raw text counts
    assert len(raw) == 32
    assert raw != cell_fingerprint("%time x = 2\n")
    assert raw != cell_fingerprint("%time  x = 1\n")


def test_lambdas_with_the_same_parameters_on_one_line(run_cell):
    ns = run_cell("pair = (lambda x: x + 1, lambda x: x - 1)\n")
    first, second = ns["pair"]
    assert code_fingerprint(first).digest != code_fingerprint(second).digest
    if sys.version_info >= (3, 11):  # told apart by instruction positions
        assert function_label(first) == "__main__.<lambda>[lambda x: x + 1]"
        assert function_label(second) == "__main__.<lambda>[lambda x: x - 1]"


def test_dataclass_fields_count(run_cell):
    src = """
    from dataclasses import dataclass
    @dataclass
    class Params:
        alpha: float = 0.5
    def fit(p):
        return Params(p).alpha
    """
    a = code_fingerprint(run_cell(src)["fit"])
    assert "__main__.Params" in a.parts
    b = code_fingerprint(run_cell(src.replace("= 0.5", "= 0.7"))["fit"])
    assert changed(a, b) == {"__main__.Params"}
    with_field = src.replace("alpha: float = 0.5", "alpha: float = 0.5\n        beta: int = 2")
    c = code_fingerprint(run_cell(with_field)["fit"])
    assert changed(a, c) == {"__main__.Params"}


def test_installed_and_own_library_code_is_never_tracked(project):
    import numpy

    nbmake_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for root in (sys.prefix, "/", nbmake_root):
        set_tracked_root(root)
        assert not is_tracked(json.dumps)
        assert not is_tracked(numpy.linspace)
        assert not is_tracked(code_fingerprint)


def test_the_cache_does_not_keep_code_alive(run_cell):
    ns = run_cell("""
    def rec(n):
        return rec(n - 1) if n else 0
    class Base:
        def go(self):
            return 1
    class Model(Base):
        def go(self):
            return super().go() + helper()
    def helper():
        return 1
    model = Model()
    def outer():
        def inner(n):
            return inner(n - 1) if n else 0
        return inner
    """)
    inner = ns["outer"]()
    for obj in (ns["rec"], ns["Model"], ns["model"].go, ns["model"], inner, functools.partial(inner, 1)):
        code_fingerprint(obj)
    refs = [weakref.ref(obj) for obj in (ns["rec"], ns["Model"], ns["helper"], inner)]
    del ns, inner, obj
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)


def test_methods_behind_installed_decorators_count(run_cell):
    src = """
    import functools
    class Model:
        @functools.lru_cache
        def cached(self, x):
            return x + 1
        @property
        def size(self):
            return 3
    def run():
        m = Model()
        return m.cached(1) + m.size + BIG
    BIG = 10 ** 5000
    """
    a = code_fingerprint(run_cell(src)["run"])
    assert "__main__.Model" in a.parts and not any("BIG" in label for label in a.parts)
    for old, new in (("x + 1", "x + 2"), ("return 3", "return 4")):
        assert changed(a, code_fingerprint(run_cell(src.replace(old, new))["run"])) == {"__main__.Model"}


SHAPES = '''
import functools

def plain(x):
    return x + 1

def one_liner(x): return x * 2
after_one_liner = 1

@functools.lru_cache(
    maxsize=None,
)
def decorated(x):
    return x

class Holder:
    def method(self, y):
        text = """
a string whose lines
sit left of the method
"""
        return text, y

    async def coroutine(self):
        return 1

def continued(a,
b):
    total = (a +
b)
    value = 1 + \\
2
# a comment at the left edge, inside the body
    return total + value

def nested():
    def inner(z):
        return z
    return inner

def last(x):
    return [x
]
'''


def _tokenized_node(code):
    """The def node found the way inspect does it (tokenizing), for comparison."""
    import ast
    import inspect
    import linecache

    from nbmake_ext.fingerprint import code as code_module

    lines = linecache.getlines(code.co_filename)
    lnum = code.co_firstlineno - 1
    while lnum > 0 and not code_module._DEF_START.match(lines[lnum]):
        lnum -= 1
    tree, _ = code_module._parse_block("".join(inspect.getblock(lines[lnum:])))
    return ast.dump(code_module._def_of(tree, code))


def test_a_def_is_found_without_tokenizing_as_tokenizing_finds_it(tmp_path, monkeypatch):
    import ast
    import inspect

    from nbmake_ext.fingerprint import code as code_module

    (tmp_path / "shapes.py").write_text(SHAPES)
    monkeypatch.syspath_prepend(str(tmp_path))
    shapes = importlib.import_module("shapes")
    functions = [shapes.plain, shapes.one_liner, shapes.decorated.__wrapped__,
                 shapes.Holder.method, shapes.Holder.coroutine, shapes.continued,
                 shapes.nested, shapes.nested(), shapes.last]
    expected = [_tokenized_node(f.__code__) for f in functions]
    tokenized = []
    getblock = inspect.getblock
    monkeypatch.setattr(inspect, "getblock", lambda lines: tokenized.append(1) or getblock(lines))
    for f, want in zip(functions, expected):
        node = code_module._source_node(f.__code__)
        assert node is not None and ast.dump(node) == want, f
    # Only the shapes whose block ends early (inside brackets or strings, or after a
    # backslash) needed the tokenizer.
    assert 0 < len(tokenized) <= 3


def test_library_directories_are_those_sysconfig_names():
    import sysconfig

    from nbmake_ext.fingerprint import code as code_module

    paths = sysconfig.get_paths()
    wanted = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    assert wanted <= code_module._library_dirs()
