"""How many jobs the kernel's pool hands each engine while another engine is still
starting (kernel/pool.py, ``_limit``), decided without processes: the state of
``EnginePool`` it reads, set by hand, and results read back as engines send them."""

from __future__ import annotations

from nbmake_ext.kernel.engine_proc import Engine
from nbmake_ext.kernel.pool import DEPTH, MAX_DEPTH, QUEUE_SECONDS, SHORT_JOB, EnginePool
from nbmake_ext.shared.outcomes import RemoteJob, Timing, done_meta


class _Proc:
    pid = 4242


class Pool:
    depth = EnginePool.depth
    free_slots = EnginePool.free_slots
    has_capacity = EnginePool.has_capacity
    submit = EnginePool.submit
    _starting = EnginePool._starting
    _limit = staticmethod(EnginePool._limit)
    _place = EnginePool._place
    _learned = EnginePool._learned
    _done = EnginePool._done
    _finished = EnginePool._finished
    _head_started = EnginePool._head_started
    _outcome = EnginePool._outcome

    def __init__(self, job_seconds: float | None, *, starting: int):
        self.job_seconds = job_seconds
        self._depth = self.depth()
        self._checked = float("inf")  # (no look for dead engines: there are none)
        self.short_funcs: set[str] = set()
        self.produced_by, self.made_here, self.after, self._out = {}, {}, {}, []
        self.engines = {b"up": Engine(b"up", _Proc(), ready=True)}
        for i in range(starting):
            self.engines[b"new%d" % i] = Engine(b"new%d" % i, _Proc())

    def _send_outbox(self, engine: Engine) -> None:  # (sent: in its queue, as engines say)
        engine.queue.extend(j.job_id for j in engine.outbox)
        engine.outbox = []

    @property
    def up(self) -> Engine:
        return self.engines[b"up"]

    def hand_out(self, func: str, count: int) -> list[str]:
        """Jobs of ``func`` handed over while the pool has room, as the run loop does."""
        handed = []
        while len(handed) < count and self.has_capacity():
            job = RemoteJob(f"{func}-{len(handed)}", func, b"", b"", {}, False, {}, b"{}")
            self.submit(job)
            handed.append(job.job_id)
        return handed

    def ended(self, job_id: str, seconds: float) -> None:
        """The engine up ran ``job_id`` (the head of what it holds) in ``seconds``."""
        self._send_outbox(self.up)
        meta = done_meta(job_id, "fp", "sum", Timing(duration=seconds), [])
        self._done(self.up, meta, [b"", b"", b"D"], [])


def test_while_an_engine_starts_a_function_not_known_yet_goes_one_job_at_a_time():
    """The first job of a function may be long: nothing waits behind it on the engine up
    while the next engine, up a moment later, would be free."""
    pool = Pool(QUEUE_SECONDS / 100, starting=1)  # (jobs of other functions were short)
    assert pool.hand_out("f", 10) == ["f-0"]
    assert pool.free_slots() == 0


def test_once_a_function_is_known_short_its_jobs_fill_the_engine_up():
    """Handed one at a time, each short job would cost a round trip, many times its run."""
    pool = Pool(None, starting=1)
    assert pool.hand_out("f", 10) == ["f-0"]
    pool.ended("f-0", SHORT_JOB / 10)
    pool.job_seconds, pool._depth = QUEUE_SECONDS / 100, 100
    assert len(pool.hand_out("f", 1000)) == 100 == pool._depth
    assert "f" in pool.short_funcs and pool.up.unsure == {}


def test_nothing_queues_behind_a_long_job_while_an_engine_starts():
    pool = Pool(QUEUE_SECONDS / 100, starting=1)
    pool.hand_out("slow", 1)
    pool.ended("slow-0", 10 * SHORT_JOB)
    assert "slow" not in pool.short_funcs
    assert pool.hand_out("slow", 5) == ["slow-0"]
    assert pool.hand_out("fast", 5) == []  # behind the slow job: it waits


def test_once_every_engine_is_up_the_depth_is_the_mean_s():
    for seconds in (None, QUEUE_SECONDS, 10.0):
        assert Pool(seconds, starting=0).free_slots() == DEPTH
    assert Pool(QUEUE_SECONDS / 10_000, starting=0).free_slots() == MAX_DEPTH
