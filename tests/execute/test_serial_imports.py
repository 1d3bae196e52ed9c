"""A serial make (``Context.make``) needs no engines: it imports no ZeroMQ. An engine runs
jobs: it imports none of the kernel's side (the context, the run loop, the scheduler, the
store's writer)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])


def test_a_serial_make_imports_no_zmq(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from nbmake_ext import Context

        def double(x):
            return 2 * x

        ctx = Context(store={str(tmp_path / "store")!r})
        a = ctx.comp(double, 1, job_id="a")
        ctx.comp(double, a, job_id="b")
        ctx.make()
        assert ctx.result_of("b") == 4
        ctx.close()
        print(sorted(m for m in sys.modules if m == "zmq" or m.startswith("zmq.")))
    """)
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("NBMAKE_STORE", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


KERNEL_SIDE = ("nbmake_ext.context", "nbmake_ext.kernel", "nbmake_ext.queries",
               "nbmake_ext.commands", "nbmake_ext.ui", "nbmake_ext.ipython",
               "nbmake_ext.core.scheduler", "nbmake_ext.core.graph", "nbmake_ext.store.store",
               "nbmake_ext.store.snapshots", "nbmake_ext.store.writer", "nbmake_ext.store.claims")


def _imported_modules(module: str) -> list[str]:
    code = f"import sys, {module}; print(sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])


def test_an_engine_process_imports_nothing_of_the_kernel():
    """A real ``python -m nbmake_ext.engine``, told nothing on its standard input: it
    imports what it runs, then stops. ``-X importtime`` lists every module it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "nbmake_ext.engine"],
                          input="", capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")]
    assert "nbmake_ext.engine.main" in imported and "zmq" in imported, done.stderr[-2000:]
    assert [m for m in imported if m.startswith(KERNEL_SIDE)] == []


def test_elsewhere_the_package_imports_its_names_with_it():
    """(So that ``import nbmake_ext`` costs what it costs at once, not at the first comp.)"""
    assert "nbmake_ext.context" in _imported_modules("nbmake_ext")


def test_the_package_still_gives_every_name_it_exports():
    import nbmake_ext

    assert sorted(nbmake_ext.__all__) == sorted(nbmake_ext._EXPORTS)
    for name in nbmake_ext.__all__:
        assert getattr(nbmake_ext, name) is not None, name
    assert set(nbmake_ext.__all__) <= set(dir(nbmake_ext))
