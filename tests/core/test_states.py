"""Public job states, derived from what the store holds: a pure function, no store."""

from __future__ import annotations

import pytest

from nbmake_ext.core.jobspec import RunRecord
from nbmake_ext.core.states import STATES, public_state, restorable

from sim import spec

B = spec("b", ["a"])


def made(deps=None, present=True, code="c", args="a"):
    return RunRecord(code, {"m.b": code}, args, {"a": "ra"} if deps is None else deps, "rb",
                     present=present)


def state(outcome, record, *, forced=False, results=None, running=False, job=B):
    out = public_state(job, outcome, record, forced=forced,
                       dep_results={"a": "ra"} if results is None else results,
                       running=running)
    assert out in STATES
    return out


@pytest.mark.parametrize("outcome, record, kw, expected", [
    (None, None, {}, "todo"),                              # the store does not know it
    ("todo", None, {}, "todo"),
    ("done", made(), {}, "done"),
    ("done", made(present=False), {}, "todo"),             # result file missing or corrupt
    ("done", made(), {"forced": True}, "stale"),           # remake marked it
    ("done", made(code="c0"), {}, "stale"),                # its code changed
    ("done", made(args="a0"), {}, "stale"),                # its arguments changed
    ("done", made(), {"results": {"a": "ra2"}}, "stale"),  # a dependency's result changed
    ("done", made(deps={}), {}, "stale"),                  # a new dependency
    ("done", made(deps={"z": "rz"}), {}, "stale"),         # another dependency
    ("done", made(), {"results": {}}, "done"),             # a dependency cleaned: unchanged
    ("failed", made(), {}, "failed"),                      # stays until a make reaches it
    ("blocked", None, {}, "blocked"),
    ("failed", made(), {"running": True}, "running"),      # being executed now
    (None, None, {"running": True}, "running"),
])
def test_public_state(outcome, record, kw, expected):
    assert state(outcome, record, **kw) == expected


def test_restorable_is_a_failed_or_blocked_job_whose_stored_result_is_current():
    ok = {"a": "ra"}
    assert restorable(B, "failed", made(), forced=False, dep_results=ok)
    assert restorable(B, "blocked", made(), forced=False, dep_results=ok)
    assert restorable(B, "blocked", made(), forced=False, dep_results={})  # a cleaned
    assert not restorable(B, "done", made(), forced=False, dep_results=ok)
    assert not restorable(B, "failed", None, forced=False, dep_results=ok)
    assert not restorable(B, "failed", made(code="c0"), forced=False, dep_results=ok)
    assert not restorable(B, "failed", made(), forced=True, dep_results=ok)
    assert not restorable(B, "blocked", made(), forced=False, dep_results={"a": "ra2"})
    assert not restorable(B, "failed", made(present=False), forced=False, dep_results=ok)
