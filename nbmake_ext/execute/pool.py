"""The kernel's side of the engines: start, feed, watch and replace them.

One ROUTER socket on an owner-only ipc path; each engine is a DEALER with its own
identity. The pool is a runner for the driver: ``submit`` sends a job to the engine with
the best claim on it (one that already holds a dependency's value, else the least busy),
``poll`` turns messages and dead engines into outcomes. Each engine holds a few jobs, so
the next job is already there when one finishes: ``DEPTH``, or, when jobs are short,
about ``QUEUE_SECONDS`` of them. Jobs submitted between two polls travel to an engine in
one message.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from ..store import blobs
from .engine import decode_running
from .outcomes import ChildSpec, JobRaised, JobReturned, Timing
from .wire import Signer, Verifier, new_key

DEPTH = 2
MAX_DEPTH = 32
QUEUE_SECONDS = 0.005  # work queued per engine when jobs are short (fewer round trips)
DEATH_GRACE_MS = 20   # wait for a dead engine's last messages
CHECK_EVERY = 0.02     # seconds between looks for dead engines outside ``poll``
STEAL_AFTER = 0.1  # seconds a job must have run before the one behind it moves elsewhere


@dataclass(slots=True)
class RemoteJob:
    """A job as it travels: bytes and where its dependencies' results are."""

    job_id: str
    func_key: str
    func_blob: bytes
    payload: bytes
    deps: dict[str, tuple[str, str]]   # dependency -> (result file, checksum)
    dynamic: bool
    inline: dict[str, bytes] = field(default_factory=dict)  # results not in a file yet
    sources: bytes = b"{}"   # json {file: text}: the function's code only the kernel has


@dataclass(slots=True)
class JobStored:
    """An engine made a result: a small one is ``data`` (the kernel stores it), a large
    one is in ``file`` (readable now; durable once ``Durable`` names it)."""

    job_id: str
    result_fp: str
    file: str                # "" when the result is ``data``
    checksum: str
    stamp: tuple[int, int]   # size, mtime in ns
    timing: Timing
    stdout: str = ""
    stderr: str = ""
    data: bytes | None = None


@dataclass(slots=True)
class Durable:
    job_ids: list[str]


@dataclass(slots=True)
class Requeue:
    """Jobs sent to an engine that died before starting them: they did not run."""

    job_ids: list[str]


@dataclass(slots=True)
class DependencyLost:
    job_id: str
    dependency: str
    why: str


@dataclass
class _Engine:
    identity: bytes
    proc: subprocess.Popen
    ready: bool = False
    queue: deque = field(default_factory=deque)   # job ids, in the order sent
    outbox: list = field(default_factory=list)    # RemoteJobs to send at the next poll
    functions: set = field(default_factory=set)
    undurable: dict = field(default_factory=dict)  # job id -> result file not yet on disk
    head_since: float = 0.0                        # when the job at the head started
    asked_back: str | None = None                  # a job we asked it to give back

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def load(self) -> int:
        return len(self.queue) + len(self.outbox)


class EnginePool:
    remote = True

    def __init__(self, store_path: Path, n: int, *, durable: bool = True):
        self.store_path = Path(store_path)
        self.durable = durable
        self._dir = tempfile.mkdtemp(prefix="nbm-")  # short: ipc paths stop at 107 bytes
        self.endpoint = f"ipc://{self._dir}/k"
        key = new_key()
        self._key_hex = key.hex()
        self.signer, self.verifier = Signer(key), Verifier(key)
        self.zmq = zmq.Context()
        self.socket = self.zmq.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.socket.bind(self.endpoint)
        os.chmod(f"{self._dir}/k", 0o600)
        self.engines: dict[bytes, _Engine] = {}
        self.produced_by: dict[str, bytes] = {}
        self._out: list = []  # outcomes found outside poll (a dead engine met on a send)
        self.n = 0
        self._count = 0
        self._checked = 0.0
        self.job_seconds: float | None = None  # a running mean of the jobs' durations
        self.resize(n)

    # -- engines --------------------------------------------------------------------------

    def resize(self, n: int) -> None:
        self.n = max(1, n)
        while len(self.engines) < self.n:
            self._spawn()
        idle = [e for e in self.engines.values() if not e.load]
        while len(self.engines) > self.n and idle:
            self._stop(idle.pop())

    def _spawn(self) -> _Engine:
        self._count += 1
        identity = f"e{os.getpid()}-{self._count}".encode()
        log = open(os.path.join(self._dir, f"{identity.decode()}.log"), "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbmake_ext.execute.engine"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, cwd=os.getcwd())
        log.close()
        config = {"endpoint": self.endpoint, "key": self._key_hex, "identity": identity.decode(),
                  "store": str(self.store_path), "parent": os.getpid(), "durable": self.durable,
                  "running_file": self._running_file(identity),
                  # the parent-death signal follows the thread that started the engine
                  "deathsig": threading.current_thread() is threading.main_thread()}
        proc.stdin.write((json.dumps(config) + "\n").encode())
        proc.stdin.close()
        engine = self.engines[identity] = _Engine(identity, proc)
        return engine

    def _running_file(self, identity: bytes) -> str:
        return os.path.join(self._dir, f"{identity.decode()}.run")

    def _running_job(self, engine: _Engine) -> str:
        """The job a dead engine was running ("" if it was between jobs)."""
        try:
            with open(self._running_file(engine.identity), "rb") as f:
                return decode_running(f.read())
        except FileNotFoundError:
            return ""

    def _stop(self, engine: _Engine) -> None:
        self.engines.pop(engine.identity, None)
        if not (engine.ready and self._send(engine, "stop")):
            engine.proc.kill()  # not connected yet: a message could not reach it
        try:
            engine.proc.wait(2)
        except subprocess.TimeoutExpired:
            engine.proc.kill()
            engine.proc.wait()

    def pids(self) -> list[int]:
        return [e.pid for e in self.engines.values()]

    # -- the runner interface -------------------------------------------------------------

    def free_slots(self) -> int:
        if time.monotonic() - self._checked > CHECK_EVERY:
            self._check_engines(self._out)
        engines = self.engines.values()
        # Prefetch only once every engine is up: else the first one takes two jobs while
        # the next is still starting.
        depth = self.depth() if all(e.ready for e in engines) else 1
        return sum(max(0, depth - e.load) for e in engines if e.ready)

    def depth(self) -> int:
        """Jobs each engine holds: more when they are short, so an engine is rarely idle
        waiting for the kernel and one message carries many jobs."""
        if self.job_seconds is None:
            return DEPTH
        return max(DEPTH, min(MAX_DEPTH, int(QUEUE_SECONDS / max(self.job_seconds, 1e-6))))

    def has_capacity(self) -> bool:
        return self.free_slots() > 0

    @property
    def busy(self) -> bool:
        return bool(self._out) or any(e.load for e in self.engines.values())

    def submit(self, job: RemoteJob) -> None:
        depth = self.depth()
        ready = [e for e in self.engines.values() if e.ready and e.load < depth]
        if not ready:  # the engine we counted on died meanwhile
            self._out.append(Requeue([job.job_id]))
            return
        holders = {self.produced_by.get(d) for d in job.deps}
        # An idle engine first; among equals, one that holds an input already.
        engine = min(ready, key=lambda e: (e.load, e.identity not in holders))
        engine.outbox.append(job)

    def _send_jobs(self) -> None:
        """The jobs submitted since the last poll, in one message per engine."""
        for engine in list(self.engines.values()):
            if not engine.outbox:
                continue
            jobs, engine.outbox = engine.outbox, []
            if not self._send_functions(engine, jobs):
                self._out.append(Requeue([j.job_id for j in jobs]))
                continue
            metas, frames = [], []
            for job in jobs:
                metas.append({"job_id": job.job_id, "func_key": job.func_key,
                              "dynamic": job.dynamic, "deps": job.deps,
                              "inline": list(job.inline)})
                frames += [job.payload, *job.inline.values()]
            if not self._send(engine, "jobs", json.dumps(metas).encode(), *frames):
                self._out.append(Requeue([j.job_id for j in jobs]))
                continue
            if not engine.queue:
                engine.head_since = time.monotonic()
            engine.queue.extend(j.job_id for j in jobs)

    def _send_functions(self, engine: _Engine, jobs: list[RemoteJob]) -> bool:
        for job in jobs:
            if job.func_key not in engine.functions:
                if not self._send(engine, "func", job.func_key.encode(), job.func_blob,
                                  job.sources):
                    return False
                engine.functions.add(job.func_key)
        return True

    def poll(self, timeout: float) -> list:
        self._send_jobs()
        out, self._out = self._out, []
        self._check_engines(out)
        if self.socket.poll(int(timeout * 1000) if not out else 0):
            self._drain(out)
        self._balance()
        return out

    def _drain(self, out: list) -> None:
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._receive(frames, out)

    def _balance(self) -> None:
        """An idle engine while another has a job waiting behind a long one: ask for that
        job back (the engine returns it only if it has not started it)."""
        if not any(e.ready and not e.queue for e in self.engines.values()):
            return
        now = time.monotonic()
        for engine in self.engines.values():
            if len(engine.queue) >= 2 and engine.asked_back is None \
                    and now - engine.head_since > STEAL_AFTER:
                engine.asked_back = engine.queue[1]
                self._send(engine, "give_back", json.dumps({"job_id": engine.queue[1]}).encode())

    def interrupt(self) -> list[str]:
        """Stop every engine's jobs: queued ones are dropped, running ones get SIGINT.
        Engines that do not stop within 2 s are killed and replaced."""
        stopped = [j.job_id for e in self.engines.values() for j in e.outbox]
        for engine in self.engines.values():
            engine.outbox = []  # never sent
        stopped += [j for e in self.engines.values() for j in e.queue]
        busy = [e for e in self.engines.values() if e.queue]
        for engine in busy:
            self._send(engine, "cancel")
            try:
                os.kill(engine.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 2.0
        while any(e.queue for e in busy) and time.monotonic() < deadline:
            self.poll(0.05)  # outcomes of stopped jobs are dropped: they go back
        for engine in busy:
            if engine.queue:
                engine.proc.kill()
                engine.proc.wait()
                self.engines.pop(engine.identity, None)
        self.resize(self.n)
        return stopped

    def close(self) -> None:
        for engine in list(self.engines.values()):
            self._stop(engine)
        self.socket.close(0)
        self.zmq.term()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- messages -------------------------------------------------------------------------

    def _send(self, engine: _Engine, kind: str, *payloads: bytes) -> bool:
        """False when the engine cannot be reached (it died): it is buried at once."""
        try:
            self.socket.send_multipart([engine.identity, *self.signer.frames(kind, *payloads)])
        except zmq.ZMQError:
            if engine.identity in self.engines:
                engine.proc.kill()
                engine.proc.wait()
                self._check_engines(self._out)
            return False
        return True

    def _receive(self, frames: list[bytes], out: list) -> None:
        identity, rest = frames[0], frames[1:]
        engine = self.engines.get(identity)
        opened = self.verifier.open(rest, identity)
        if engine is None or opened is None:
            return  # unknown peer, unsigned, forged or replayed: dropped, never unpickled
        kind, payloads = opened
        meta = json.loads(payloads[0])
        if kind == "hello":
            engine.ready = True
        elif kind == "done":
            job_id = meta["job_id"]
            self._finished(engine, job_id)
            self.produced_by[job_id] = identity
            timing = Timing(**meta["timing"])
            self._mean_duration(timing.duration)
            stored = JobStored(job_id, meta["result_fp"], meta.get("file", ""), meta["checksum"],
                               tuple(meta.get("stamp", (0, 0))), timing,
                               payloads[1].decode(), payloads[2].decode())
            if len(payloads) > 3:
                stored.data = payloads[3]
            else:
                engine.undurable[job_id] = stored.file
            out.append(stored)
            if meta["durable"]:  # notices ride on results: after this one's own
                self._durable(engine, meta["durable"], out)
        elif kind == "returned":
            self._finished(engine, meta["job_id"])
            out.append(JobReturned(meta["job_id"], pickle.loads(payloads[1]),
                                   payloads[2].decode(), payloads[3].decode(),
                                   Timing(**meta["timing"])))
        elif kind == "failed":
            self._finished(engine, meta["job_id"])
            if not meta.get("interrupted"):
                out.append(JobRaised(meta["job_id"], meta["error"], meta["traceback"],
                                     payloads[1].decode(), payloads[2].decode(),
                                     Timing(**meta["timing"]) if meta["timing"] else Timing()))
        elif kind == "lost":
            self._finished(engine, meta["job_id"])
            out.append(DependencyLost(meta["job_id"], meta["dep"], meta["why"]))
        elif kind == "child":
            spec = pickle.loads(payloads[1])
            out.append(ChildSpec(spec, payloads[2], payloads[3]))
        elif kind == "durable":
            self._durable(engine, meta["jobs"], out)
        elif kind == "dropped":  # an interrupt's: the jobs go back to where they were
            for job_id in meta["jobs"]:
                self._finished(engine, job_id)
        elif kind == "given_back":
            if meta["job_id"] in engine.queue:
                engine.queue.remove(meta["job_id"])
            engine.asked_back = None
            out.append(Requeue([meta["job_id"]]))

    def _durable(self, engine: _Engine, job_ids: list[str], out: list) -> None:
        for job_id in job_ids:
            engine.undurable.pop(job_id, None)
        out.append(Durable(job_ids))

    def _mean_duration(self, seconds: float) -> None:
        mean = self.job_seconds
        self.job_seconds = seconds if mean is None else 0.8 * mean + 0.2 * seconds

    def _finished(self, engine: _Engine, job_id: str) -> None:
        if engine.queue and engine.queue[0] == job_id:
            engine.queue.popleft()
            engine.head_since = time.monotonic()
        elif job_id in engine.queue:
            engine.queue.remove(job_id)
        if engine.asked_back == job_id:
            engine.asked_back = None

    def _check_engines(self, out: list) -> None:
        self._checked = time.monotonic()
        dead = [(e, code) for e in self.engines.values() if (code := e.proc.poll()) is not None]
        if dead:
            # What a dead engine said before it died counts: a result it sent just before
            # a job of it crashed must not be blamed for the crash. Its last bytes may
            # still be on their way through ZeroMQ's I/O thread.
            self.socket.poll(DEATH_GRACE_MS)
            self._drain(out)
        for engine, code in dead:
            self.engines.pop(engine.identity)
            if engine.undurable:
                # Its results are whole files; it died before saying they were on disk:
                # flush them from here, so their records are committed.
                blobs.make_durable(self.store_path / "results", list(engine.undurable.values()))
                out.append(Durable(list(engine.undurable)))
            if engine.outbox:
                out.append(Requeue([j.job_id for j in engine.outbox]))
            running = self._running_job(engine)
            if running in engine.queue:
                out.append(JobRaised(running, f"engine {engine.pid} died while running it: "
                                     f"{_death(code)}", "", "", "",
                                     Timing(engine=f"engine {engine.pid}")))
            # The others did not run, or their outcome never left the engine: again.
            rest = [j for j in engine.queue if j != running]
            if rest:
                out.append(Requeue(rest))
            self._spawn()


def _death(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
