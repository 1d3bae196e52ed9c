"""A job's function travels (to engines, Dask workers, the store) with the file and lines
of its code, whatever the installed cloudpickle does to code objects."""

from __future__ import annotations

import linecache
import pickle
import subprocess
import sys
import textwrap
import traceback

from nbmake_ext.registration import dumps_code

CELL = textwrap.dedent("""\
    SCALE = 3

    def helper(x):
        return [SCALE / (x - i) for i in range(3)]

    def work(x):
        y = x + 1
        return helper(y)

    class Model:
        def fit(self, x):
            return work(x)
""")


def _cell(filename: str) -> dict:
    namespace: dict = {"__name__": "__main__"}
    exec(compile(CELL, filename, "exec"), namespace)  # noqa: S102 - a notebook cell's code
    return namespace


def _files_of(func) -> set[str]:
    seen, stack, files = set(), [func.__code__], set()
    while stack:
        code = stack.pop()
        if id(code) not in seen:
            seen.add(id(code))
            files.add(code.co_filename)
            stack.extend(c for c in code.co_consts if hasattr(c, "co_filename"))
    return files


def test_code_objects_keep_their_file_through_the_pickle():
    cell = _cell("/tmp/ipykernel_0/cell-17.py")
    loaded = pickle.loads(dumps_code(cell["work"]))
    assert _files_of(loaded) == {"/tmp/ipykernel_0/cell-17.py"}
    callee = loaded.__globals__["helper"]  # travelled by value with its caller
    assert _files_of(callee) == {"/tmp/ipykernel_0/cell-17.py"}  # the comprehension too
    method = pickle.loads(dumps_code(cell["Model"])).fit
    assert method.__code__.co_filename == "/tmp/ipykernel_0/cell-17.py"


def test_a_traceback_in_another_process_shows_the_lines_of_the_cell():
    """The cell's text is there (as engines install it in linecache); the frames must name
    the cell's file for its lines to show, including a callee's and a comprehension's."""
    filename = "/tmp/ipykernel_0/cell-18.py"
    blob = dumps_code((_cell(filename)["work"], 1))
    script = textwrap.dedent(f"""\
        import linecache, pickle, sys, traceback
        text = {CELL!r}
        linecache.cache[{filename!r}] = (len(text), None, text.splitlines(True), {filename!r})
        func, arg = pickle.loads(sys.stdin.buffer.read())
        try:
            func(arg)
        except ZeroDivisionError:
            traceback.print_exc()
    """)
    run = subprocess.run([sys.executable, "-c", script], input=blob, capture_output=True,
                         timeout=60)
    err = run.stderr.decode()
    assert f'File "{filename}", line 8, in work' in err, err
    assert "return helper(y)" in err
    assert "return [SCALE / (x - i) for i in range(3)]" in err
    assert "<dynamic-code>" not in err


def test_lambdas_in_arguments_keep_their_file_too():
    namespace: dict = {}
    exec(compile("f = lambda x: 1 / x\n", "/tmp/ipykernel_0/cell-19.py", "exec"), namespace)
    func = pickle.loads(dumps_code(([namespace["f"]], {})))[0][0]
    try:
        func(0)
    except ZeroDivisionError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
    assert frames[-1].filename == "/tmp/ipykernel_0/cell-19.py"
    linecache.clearcache()
