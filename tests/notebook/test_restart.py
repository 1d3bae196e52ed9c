"""Kernel restarts and where the store is: each test starts kernel processes of its own.

A restart is a fresh kernel process in the same working directory, running the same cells
again, top to bottom, as "Restart and run all" does.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(120)

NOTEBOOK = [
    "%load_ext nbmake_ext\nfrom nbmake_ext import comp, comp_dynamic",
    """
def logged(name):
    with open('runs.log', 'a') as fh:
        fh.write(name + '\\n')

def load(i):
    logged(f'load-{i}')
    return list(range(i))

def parts(ctx, n):
    logged('parts')
    return [ctx.comp(load, 10 + i) for i in range(n)]
""",
    "raw = [comp(load, i) for i in range(3)]\nextra = comp_dynamic(parts, 2, job_id='parts')",
    "%%comp\nlogged('total')\ntotal = sum(len(r) for r in raw) + len(extra)",
    "%%comp\nlogged('double')\ndouble = total * 2",
]
ALL_RUNS = ["double", "load-0", "load-1", "load-10", "load-11", "load-2", "parts", "total"]


def run_all(k) -> None:
    for cell in NOTEBOOK:
        k.ok(cell)


def test_restart_and_run_all_recomputes_nothing_and_binds_outputs_at_once(fresh_kernel, tmp_path):
    log = tmp_path / "runs.log"
    first = fresh_kernel()
    run_all(first)
    assert first.ok("print(type(total).__name__, type(double).__name__)").text.split() == \
        ["Promise", "Promise"]
    first.ok("%make")
    assert first.ok("print(total, double)").text.split() == ["5", "10"]
    assert sorted(log.read_text().splitlines()) == ALL_RUNS
    first.close()

    again = fresh_kernel()
    run_all(again)
    # Bound to values by the %%comp cells themselves, before any make:
    assert again.ok("print(total, double)").text.split() == ["5", "10"]
    reply = again.ok("%make")
    assert "\nmake: 0 done, 8 up to date" in reply.text  # under the job board's line
    assert sorted(log.read_text().splitlines()) == ALL_RUNS  # nothing ran again

    # An edit after the restart runs exactly what it touches.
    again.ok("%%comp\nlogged('double')\ndouble = total * 3")
    assert again.ok("%make\ndouble").value == "15"
    assert sorted(log.read_text().splitlines()) == sorted([*ALL_RUNS, "double"])


def test_definitions_reach_the_store_when_the_cell_ends(fresh_kernel, tmp_path):
    writer, reader = fresh_kernel(), fresh_kernel()
    writer.ok("%load_ext nbmake_ext\nfrom nbmake_ext import comp\np = comp(abs, -4, job_id='four')")
    reader.ok("%load_ext nbmake_ext")
    assert "four" in reader.ok("%nbmake ls").text
    reader.ok("%make four")
    assert writer.ok("p.result()").value == "4"


def test_store_from_environment_and_from_the_magic(fresh_kernel, tmp_path):
    k = fresh_kernel(NBMAKE_STORE="stores/env")
    k.ok("%load_ext nbmake_ext\nfrom nbmake_ext import comp\ncomp(abs, -1, job_id='one')")
    assert f"store: {tmp_path / 'stores' / 'env'}" in k.ok("%nbmake store").text
    assert (tmp_path / "stores" / "env").is_dir() and not (tmp_path / ".nbmake").exists()

    k.ok("%nbmake store other")
    assert "no jobs" in k.ok("%nbmake ls").text
    k.ok("comp(abs, -2, job_id='two')\n%make")
    k.ok("%nbmake store stores/env")
    assert "one" in k.ok("%nbmake ls").text and "two" not in k.ok("%nbmake ls").text
    assert (tmp_path / "other").stat().st_mode & 0o777 == 0o700
