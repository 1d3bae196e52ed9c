"""The timeline view's data (SPEC 6): one bar per job run, on the row of the place that ran
it (the kernel, an engine, a Dask worker), from the timings the store keeps. So the view
works after a restart, in a kernel that ran nothing (``%nbmake show``).

The store keeps each job's last run, and the failed attempts before it (``job_retries``):
each is a bar. Jobs that run while the board is live get their bars in the browser from the
changes it is sent (their ``t0``, ``t1`` and ``eng`` extras, see ``board.py``).

In a snapshot (``Board.to_json``, key ``tl``), parallel arrays sorted by start::

    {"b": epoch of the first start (s), "pl": [place names],
     "j": [job index], "p": [place index], "s": [start, ms after the start of the bar
     before (b for the first)], "d": [duration, ms],
     "o": "dfa..." (outcome: d succeeded, f failed, a a failed attempt that was retried)}
"""

from __future__ import annotations

import json
from typing import Any, Container, Mapping

Bar = tuple  # (job id, place, started, ended, outcome letter)

DONE, FAILED, ATTEMPT = "d", "f", "a"


def read_bars(store: Any, jobs: Container[str]) -> list[Bar]:
    """The bars of the runs the store remembers, of the jobs in ``jobs``."""
    try:
        rows = store.timings()
    except Exception:  # noqa: BLE001 - a view: an unreadable store shows no timeline
        return []
    bars: list[Bar] = []
    for job_id, started, ended, duration, engine, state, error, attempts in rows:
        if job_id not in jobs:
            continue
        outcome = FAILED if state == "failed" or (error and state != "done") else DONE
        bars.append((job_id, engine or "kernel", started, _end(started, ended, duration),
                     outcome))
        if attempts:
            try:
                earlier = json.loads(attempts)
            except ValueError:
                continue
            for a in earlier:
                t0 = a.get("started") or 0
                if t0 > 0:
                    bars.append((job_id, a.get("engine") or "kernel", t0,
                                 _end(t0, a.get("ended"), a.get("duration")), ATTEMPT))
    return bars


def _end(started: float, ended: float | None, duration: float | None) -> float:
    if ended and ended >= started:
        return ended
    return started + max(0.0, duration or 0.0)


def to_json(bars: list[Bar], index: Mapping[str, int]) -> dict[str, Any] | None:
    """The compact form of the bars of the jobs in ``index`` (job id -> its index in the
    snapshot), or None when there are none."""
    bars = sorted((b for b in bars if b[0] in index), key=lambda b: b[2])
    if not bars:
        return None
    base = bars[0][2]
    places: dict[str, int] = {}
    j, p, s, d, o = [], [], [], [], []
    at = 0  # ms after base of the bar before: starts are sent as differences (short numbers)
    for job_id, place, started, ended, outcome in bars:
        j.append(index[job_id])
        p.append(places.setdefault(place, len(places)))
        ms = round((started - base) * 1000)
        s.append(ms - at)
        at = ms
        d.append(max(0, round((ended - started) * 1000)))
        o.append(outcome)
    return {"b": base, "pl": list(places), "j": j, "p": p, "s": s, "d": d, "o": "".join(o)}
