"""Results as engines say them (``done``, alone or several in one ``many`` message) read
back by the kernel's pool (kernel/engine_messages.py): every field arrives, in order, and
the job leaves its engine's queue."""

from __future__ import annotations

from collections import deque

from nbmake_ext.engine.outbox import Outbox
from nbmake_ext.kernel.engine_messages import EngineMessages
from nbmake_ext.kernel.engine_proc import Engine
from nbmake_ext.kernel.pool import DEPTH, EnginePool
from nbmake_ext.shared.outcomes import (DONE_DURABLE, DONE_FILE, DONE_STAMP, Durable,
                                        JobStored, Started, Timing, done_meta)
from nbmake_ext.shared.wire import Signer, Verifier

KEY = b"w" * 32
ID = b"e1"


class _Proc:
    pid = 4242


class Pool(EngineMessages):
    """The state of ``EnginePool`` that reading messages uses, without processes."""

    depth = EnginePool.depth
    _outcome = EnginePool._outcome

    def __init__(self, queued: list[str]):
        self.verifier = Verifier(KEY)
        engine = Engine(ID, _Proc(), ready=True)
        engine.queue = deque(queued)
        self.engines = {ID: engine}
        self.produced_by, self.made_here, self.after = {}, {}, {}
        self.job_seconds, self._depth = None, DEPTH


def _said(pool: Pool, sends) -> list:
    frames: list = []
    box = Outbox(Signer(KEY), frames.append)
    for meta, payloads in sends:
        box.send("done", meta, *payloads, outcome=True)
    box.flush()
    out: list = []
    for message in frames:
        pool._receive([ID, *message], out)
    return out


def test_results_sent_together_arrive_whole_and_in_order():
    pool = Pool(["a", "b", "c"])
    ta = Timing(1.0, 1.0005, 0.0005, 0.0005, "engine 4242", 1000)
    tb = Timing(2.0, 2.001, 0.001, 0.001, "engine 4242", 2000)
    big = done_meta("b", "fp-b", "sum-b", tb, ["a"], files={"out.txt": [3, 4]},
                    consumed={"a": "sum-a"})
    big[DONE_FILE], big[DONE_STAMP] = "b-sum.pkl", [123, 456]
    out = _said(pool, [(done_meta("a", "fp-a", "sum-a", ta, []), (b"hi", b"", b"DATA")),
                       (big, (b"", b"err"))])
    stored = [o for o in out if type(o) is JobStored]
    assert stored == [
        JobStored("a", "fp-a", "", "sum-a", (0, 0), ta, "hi", "", data=b"DATA"),
        JobStored("b", "fp-b", "b-sum.pkl", "sum-b", (123, 456), tb, "", "err",
                  files={"out.txt": [3, 4]})]
    # After b's result, the notice that a's file is durable; c now runs.
    assert [type(o) for o in out] == [JobStored, JobStored, Durable, Started]
    assert out[2].job_ids == ["a"] and out[3].job_id == "c"
    assert list(pool.engines[ID].queue) == ["c"]
    assert pool.engines[ID].undurable == {"b": "b-sum.pkl"}
    assert pool.made_here == {"a": (ID, "sum-a"), "b": (ID, "sum-b")}
    assert pool.job_seconds == 0.8 * 0.0005 + 0.2 * 0.001
    assert pool._depth == pool.depth() > DEPTH  # short jobs: engines hold more


def test_a_result_alone_and_one_sent_ahead_takes_its_inputs_checksums():
    pool = Pool(["x"])
    pool.after["x"] = ("w",)
    meta = done_meta("x", "fp-x", "sum-x", Timing(duration=0.2), [], consumed={"w": "s"})
    meta[DONE_DURABLE].append("x")
    out = _said(pool, [(meta, (b"", b"", b"D"))])
    assert [type(o) for o in out] == [JobStored, Durable]
    assert out[0].consumed == {"w": "s"} and out[0].timing.duration == 0.2
    assert out[1].job_ids == ["x"] and "x" not in pool.after
    assert pool._depth == DEPTH  # a long job: the depth stays
