"""The store's durability bound (SPEC 4): a kill of the making process, at any moment,
loses at most the jobs that finished in its last 0.1 s; they run again, nothing else.

Each job writes its end time to a log just before it returns (the log survives the kill:
the kernel keeps a killed process's writes). The process is SIGKILLed at a random moment,
often inside one of the long jobs that come now and then (the writes of the jobs before it
wait for no later write); then every job that ended more than ``BOUND`` before the kill
must be ``done`` in the store.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import proctools as pt  # noqa: E402

BOUND = 0.1  # seconds: SPEC 4

SCRIPT = '''
import os, sys, time
from nbmake_ext import Context

def work(i):
    time.sleep(0.5 if i % 40 == 39 else 0.01)  # a long job now and then: the make waits
    fd = os.open(os.environ["NBMAKE_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"w{i} {time.time():.6f}\\n".encode())
    os.close(fd)
    return i * i

ctx = Context(store=os.environ["NBMAKE_TEST_STORE"])
for i in range(int(os.environ["JOBS"])):
    ctx.comp(work, i, job_id=f"w{i}")
n = int(os.environ["ENGINES"])
ctx.parmake(n=n) if n else ctx.make()
'''


def _ended(log) -> dict[str, float]:
    out = {}
    if log.exists():
        for line in log.read_text().splitlines():
            job, _, stamp = line.partition(" ")
            if stamp:
                out[job] = float(stamp)
    return out


def _done(store) -> set[str]:
    conn = sqlite3.connect(f"file:{store / 'nbmake.db'}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute(
            "SELECT job_id FROM outcomes WHERE state = 'done'")}
    finally:
        conn.close()


def _kill_at_random(lab, procs, engines: int, rng: random.Random) -> tuple[int, float]:
    """One make killed at a random moment: (jobs that ended before the kill, how long
    before the kill the earliest-ended lost job ended; negative: none lost)."""
    tmp, log, store, env = lab
    path = tmp / "durable.py"
    path.write_text(SCRIPT)
    p = procs.start([pt.PYTHON, str(path)], cwd=tmp,
                    env=dict(env, JOBS="300", ENGINES=str(engines)))
    pt.wait_until(lambda: len(_ended(log)) >= 5, what="jobs end", procs=(p,))
    time.sleep(rng.uniform(0.0, 1.5))
    killed_at = time.time()
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=20)
    ended = {j: t for j, t in _ended(log).items() if t < killed_at}
    lost = {j: killed_at - t for j, t in ended.items() if j not in _done(store)}
    return len(ended), max(lost.values(), default=-1.0)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("engines", [0, 2], ids=["make", "parmake-2"])
def test_a_kill_loses_at_most_the_jobs_of_the_last_tenth_of_a_second(tmp_path, procs, engines):
    rng = random.Random(os.getpid())
    for round_ in range(6):
        lab_dir = tmp_path / f"round{round_}"
        lab_dir.mkdir()
        log, store = lab_dir / "jobs.log", lab_dir / "store"
        lab = (lab_dir, log, store, pt.env_for(log, NBMAKE_TEST_STORE=str(store)))
        ended, lost_for = _kill_at_random(lab, procs, engines, rng)
        assert 5 <= ended < 300, ended  # the kill came while jobs were ending
        assert lost_for <= BOUND, (
            f"round {round_}: a job that ended {lost_for:.3f} s before the kill was lost "
            f"(of {ended} that had ended)")
