"""The engine pool, reading what its engines say: results (alone, or several sent
together), failures, children of dynamic jobs, files made durable, jobs dropped or given
back; and what an engine's queue tells from them (the job at its head has started). A
mixin of ``EnginePool`` (pool.py): it uses its state.
"""

from __future__ import annotations

import json
import pickle
import time

from ..shared.outcomes import (ChildSpec, DependencyLost, Durable, JobRaised, JobReturned,
                               JobStored, Progress, Requeue, Started, Timing)
from ..store.pickles import loads_value
from .engine_proc import Engine, log_size


class EngineMessages:
    def _receive(self, frames: list[bytes], out: list) -> None:
        identity, rest = frames[0], frames[1:]
        engine = self.engines.get(identity)
        opened = self.verifier.open(rest, identity)
        if engine is None or opened is None:
            return  # unknown peer, unsigned, forged or replayed: dropped, never unpickled
        kind, payloads = opened
        if kind == "many":  # outcomes of short jobs, sent together (engine/outbox.py)
            # Only the job at the head of the queue after them has started: the ones that
            # started and ended between two messages are not said to have started.
            at, engine.batching = 1, True
            try:
                for kind, meta, count in pickle.loads(payloads[0]):
                    if kind == "done":  # most of them: no dispatch on the kind
                        self._done(engine, meta, payloads[at:at + count], out)
                    else:
                        self._message(engine, kind, meta, payloads[at:at + count], out)
                    at += count
            finally:
                engine.batching = False
                self._depth = self.depth()  # for the mean job duration now: once
            self._head_started(engine, out)
            return
        if kind == "done":
            self._done(engine, json.loads(payloads[0]), payloads[1:], out)
            self._depth = self.depth()
            return
        self._message(engine, kind, json.loads(payloads[0]), payloads[1:], out)

    def _done(self, engine: Engine, meta: list, payloads: list[bytes], out: list) -> None:
        """A result (META: shared/outcomes.py, DONE_*). The caller sets ``_depth`` for the
        mean job duration this updates (once per message)."""
        job_id, result_fp, checksum, timing, durable, file, stamp, files, consumed = meta
        func_key = engine.unsure.get(job_id) if engine.unsure else None
        void = self._finished(engine, job_id, out)
        if not void:
            self.produced_by[job_id] = engine.identity
            self.made_here[job_id] = (engine.identity, checksum)
        timing = Timing(*timing)
        if func_key is not None:
            self._learned(func_key, timing.duration)
        mean = self.job_seconds
        self.job_seconds = timing.duration if mean is None \
            else 0.8 * mean + 0.2 * timing.duration
        stored = JobStored(job_id, result_fp, file, checksum,
                           (stamp[0], stamp[1]) if stamp else (0, 0), timing,
                           payloads[0].decode(), payloads[1].decode(), files=files)
        if len(payloads) > 2:
            stored.data = payloads[2]
        elif void:
            if job_id not in durable:
                engine.stale_durable.add(job_id)
        else:
            engine.undurable[job_id] = file
        if not void:
            self._outcome(job_id, stored, consumed, out)
        elif job_id in durable:
            durable = [j for j in durable if j != job_id]
        if durable:  # notices ride on results: after this one's own
            self._durable(engine, durable, out)

    def _message(self, engine: Engine, kind: str, meta: dict, payloads: list[bytes],
                 out: list) -> None:
        if kind == "hello":
            engine.ready = True
            self._failed_starts = 0
            engine.log_from = log_size(engine.log)
        elif kind == "returned":
            if not self._finished(engine, meta["job_id"], out):
                out.append(JobReturned(meta["job_id"], loads_value(payloads[0]),
                                       payloads[1].decode(), payloads[2].decode(),
                                       Timing(**meta["timing"]), meta.get("files")))
        elif kind == "failed":
            job_id = meta["job_id"]
            if self._finished(engine, job_id, out):
                return
            if meta.get("interrupted") and self._interrupting:
                self._not_run(job_id, out)
                return
            raised = JobRaised(job_id, meta["error"], meta["traceback"], payloads[0].decode(),
                               payloads[1].decode(),
                               Timing(**meta["timing"]) if meta["timing"] else Timing())
            self._outcome(job_id, raised, meta.get("consumed"), out)
        elif kind == "lost":
            if not self._finished(engine, meta["job_id"], out):
                self._not_run(meta["job_id"], out,
                              DependencyLost(meta["job_id"], meta["dep"], meta["why"]))
        elif kind == "skipped":  # sent ahead; an input of it did not succeed there
            if not self._finished(engine, meta["job_id"], out):
                self._not_run(meta["job_id"], out)
        elif kind == "progress":  # of the job the engine runs now (its queue's head)
            job_id = meta["job_id"]
            if engine.queue and engine.queue[0] == job_id and job_id not in engine.void:
                out.append(Progress(job_id, meta["done"], meta["total"], meta.get("msg", "")))
        elif kind == "child":
            spec = pickle.loads(payloads[0])
            out.append(ChildSpec(spec, payloads[1], payloads[2], payloads[3]))
        elif kind == "durable":
            self._durable(engine, meta["jobs"], out)
        elif kind == "dropped":  # an interrupt's, or jobs sent ahead that were dropped
            for job_id in meta["jobs"]:
                self._finished(engine, job_id, out)
        elif kind == "given_back":
            job_id = meta["job_id"]
            if job_id in engine.queue:
                self._finished(engine, job_id, out)
            engine.asked_back = None
            out.append(Requeue([job_id]))

    def _durable(self, engine: Engine, job_ids: list[str], out: list) -> None:
        forward = []
        for job_id in job_ids:
            engine.undurable.pop(job_id, None)
            if job_id in engine.stale_durable:  # a result that was not reported
                engine.stale_durable.discard(job_id)
                continue
            forward.append(job_id)
        if forward:
            out.append(Durable(forward))

    def _head_started(self, engine: Engine, out: list) -> None:
        """A job reached the head of its engine's queue: the engine runs it now."""
        if not engine.queue or engine.batching:
            return
        jid = engine.queue[0]
        if jid in engine.void:
            return  # a dropped instance: it does not count
        out.append(Started(jid, f"engine {engine.pid}", time.time()))

    def _finished(self, engine: Engine, job_id: str, out: list) -> bool:
        """The job left the engine's queue. True if that was a dropped instance of it
        (always the first of that id in the queue): its outcome is ignored."""
        void = job_id in engine.void
        if void:
            engine.void.discard(job_id)
        if engine.unsure:
            engine.unsure.pop(job_id, None)
        if engine.timeouts:
            engine.timeouts.pop(job_id, None)
        if engine.queue and engine.queue[0] == job_id:
            engine.queue.popleft()
            engine.head_since = time.monotonic()
            self._head_started(engine, out)
        elif job_id in engine.queue:
            engine.queue.remove(job_id)
        if engine.asked_back == job_id:
            engine.asked_back = None
        return void
