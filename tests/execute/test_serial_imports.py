"""A serial make (``Context.make``) needs no engines: it imports no ZeroMQ."""

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
