"""How many jobs the kernel's pool hands each engine (kernel/pool.py, ``_open_depth``),
decided without processes: the state of ``EnginePool`` it reads, set by hand."""

from __future__ import annotations

from nbmake_ext.kernel.engine_proc import Engine
from nbmake_ext.kernel.pool import DEPTH, MAX_DEPTH, QUEUE_SECONDS, EnginePool


class _Proc:
    pid = 4242


class Pool:
    depth = EnginePool.depth
    _open_depth = EnginePool._open_depth

    def __init__(self, job_seconds: float | None, *, starting: int):
        self.job_seconds = job_seconds
        self._depth = self.depth()
        self.engines = {b"up": Engine(b"up", _Proc(), ready=True)}
        for i in range(starting):
            self.engines[b"new%d" % i] = Engine(b"new%d" % i, _Proc())


def test_short_jobs_fill_the_engines_that_are_up_while_another_starts():
    """Handed one at a time, each short job costs a round trip, many times its own run:
    the engine up takes as many as when every engine is up."""
    short = QUEUE_SECONDS / 50
    assert Pool(short, starting=1)._open_depth() == Pool(short, starting=0)._open_depth() == 50
    tiny = QUEUE_SECONDS / 10_000
    assert Pool(tiny, starting=3)._open_depth() == MAX_DEPTH


def test_long_or_unknown_jobs_go_one_at_a_time_while_an_engine_starts():
    """A job that takes long must not wait behind another on the first engine up, while
    the next engine, up a moment later, has nothing to do."""
    for seconds in (None, QUEUE_SECONDS, 10.0):
        assert Pool(seconds, starting=1)._open_depth() == 1
        assert Pool(seconds, starting=0)._open_depth() == DEPTH
