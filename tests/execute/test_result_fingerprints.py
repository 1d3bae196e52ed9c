"""A job's result counts by its fingerprint: equal results leave dependents up to date
(SPEC 3). A large array counts by the checksum of its stored pickle (``result_digest``),
the same wherever it was made: in the kernel or on an engine (on Dask: test_dask.py)."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from enginejobs import jobs as J  # noqa: E402
from enginejobs.support import *  # noqa: E402,F401,F403
from enginejobs.support import guarded  # noqa: E402

from nbmake_ext.fingerprint import counts_by_checksum, digest, result_digest  # noqa: E402
from nbmake_ext.fingerprint.values import RESULT_BY_CHECKSUM_FROM  # noqa: E402
from nbmake_ext.store import blobs  # noqa: E402
from nbmake_ext.store.pickles import dumps_value  # noqa: E402

N = 1 << 18  # float64s: 2 MB


class Tagged(np.ndarray):
    pass


def test_a_large_array_of_numbers_counts_by_its_checksum_and_anything_else_by_its_digest():
    big = np.arange(RESULT_BY_CHECKSUM_FROM // 8, dtype=np.float64)
    checksum = blobs.checksum(dumps_value(big))
    assert result_digest(big, checksum) == checksum[:32]
    assert result_digest(big.copy(), blobs.checksum(dumps_value(big.copy()))) == checksum[:32]
    others = [big[:-1],                                  # a byte short of the threshold
              np.array([None] * (RESULT_BY_CHECKSUM_FROM // 8), dtype=object),
              big.view(Tagged),                          # a subclass pickles its own way
              [big], bytes(RESULT_BY_CHECKSUM_FROM)]
    for value in others:
        assert not counts_by_checksum(value)
        assert result_digest(value, "f" * 40) == digest(value)
    assert counts_by_checksum(big) and counts_by_checksum(np.asfortranarray(big.reshape(2, -1)))


def run(ctx, where: str, *targets: str):
    if where == "make":
        return ctx.make(*targets)
    return guarded(ctx.parmake, *targets, n=1)


def starts(lab: str, name: str) -> int:
    return [e for e, _, _ in J.events(lab)].count(f"{name}-start")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("first, again", [("make", "parmake"), ("parmake", "make"),
                                          ("parmake", "parmake")])
def test_a_large_array_made_again_alike_anywhere_leaves_its_dependents_up_to_date(
        make_ctx, lab, first, again):
    ctx = make_ctx()
    made = ctx.comp(J.floats, lab, "a", N, 0, job_id="a")
    ctx.comp(J.describe, made, job_id="use")
    assert run(ctx, first).ran == 2
    stored = ctx.store.details("a")
    assert stored["r_result_fp"] == stored["r_checksum"][:32] != digest(made.result())

    made = ctx.comp(J.floats, lab, "a", N, 1, job_id="a")  # runs again, to the same array
    ctx.comp(J.describe, made, job_id="use")
    assert run(ctx, again).ran == 1 and starts(lab, "a") == 2
    assert ctx.store.details("a")["r_result_fp"] == stored["r_result_fp"]

    made = ctx.comp(J.floats, lab, "a", N + 1, 1, job_id="a")  # another array
    use = ctx.comp(J.describe, made, job_id="use")
    assert run(ctx, again).ran == 2
    assert use.result() == ["array", (N + 1,), True, float(N * (N + 1) / 2)]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("again", ["make", "parmake"])
def test_a_result_made_again_with_the_very_bytes_stored_keeps_the_fingerprint_stored(
        make_ctx, lab, again):
    """A store written when large arrays counted by their digest: the result made again
    has the bytes of the stored one, so it keeps that fingerprint, and what depends on it
    stays up to date."""
    ctx = make_ctx()
    made = ctx.comp(J.floats, lab, "a", N, 0, job_id="a")
    ctx.comp(J.describe, made, job_id="use")
    assert ctx.make().ran == 2
    earlier = digest(made.result())
    ctx.close()
    with sqlite3.connect(ctx.store.path / "nbmake.db") as conn:
        conn.execute("UPDATE outcomes SET r_result_fp=? WHERE job_id='a'", (earlier,))
        conn.execute("UPDATE outcomes SET r_dep_fps=? WHERE job_id='use'",
                     (json.dumps({"a": earlier}),))

    ctx = make_ctx()
    made = ctx.comp(J.floats, lab, "a", N, 1, job_id="a")
    ctx.comp(J.describe, made, job_id="use")
    assert ctx.why("use") == [] and run(ctx, again).ran == 1 and starts(lab, "a") == 2
    assert ctx.store.details("a")["r_result_fp"] == earlier
