"""The kernel's side of the engines: start, feed, watch and replace them.

One ROUTER socket on an owner-only ipc path; each engine is a DEALER with its own
identity. The pool is a runner for the driver: ``submit`` sends a job to the engine with
the best claim on it (one that already holds a dependency's value, else the least busy),
``poll`` turns messages and dead engines into outcomes. Each engine holds a few jobs, so
the next job is already there when one finishes: ``DEPTH``, or, when jobs are short,
about ``QUEUE_SECONDS`` of them (up to ``MAX_DEPTH``). While an engine is still starting,
the others hold one job each, unless what they hold is of functions known to be short
(``_limit``). Jobs submitted between two polls travel to an engine in one message, or in
several of ``SEND_AT`` jobs when many are handed out at once.

Sending ahead (the run loop decides what and where: core/ahead.py, driver.py): a place is
an engine (``place_of``: the engine making a job's result, or holding the one it made);
``send_ahead`` puts a job on that engine right behind its inputs (``after`` them: the
engine takes their values from its own memory, skips the job if one of them failed there,
and says which results it took). Such a job is never moved to another engine by
rebalancing; it counts in its engine's load (other jobs go to other engines first).

What engines say: engine_messages.py. When an engine dies: engine_deaths.py. An engine's
state and remains: engine_proc.py.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from itertools import islice
from pathlib import Path

import zmq

from ..shared.outcomes import DependencyLost, Durable, JobRaised, JobStored, RemoteJob, Requeue
from ..shared.wire import Signer, Verifier, new_key
from .engine_deaths import EngineDeaths
from .engine_messages import EngineMessages
from .engine_proc import Engine
from .runner import Capabilities

logger = logging.getLogger(__name__)
DEPTH = 2
# Short jobs: an engine holds up to this many, so a message carries many jobs each way
# (each message costs both sides a send, a wake-up, a receive and a signature).
MAX_DEPTH = 512
QUEUE_SECONDS = 0.005  # work queued per engine when jobs are short (fewer round trips)
SHORT_JOB = QUEUE_SECONDS / DEPTH  # seconds: a function whose job took less is short
# Jobs handed out in one go leave in messages of this many: the first engine starts on
# them while the kernel prepares the rest (a fan-out of a thousand, each engine's share).
SEND_AT = 64
CHECK_EVERY = 0.02     # seconds between looks for dead engines outside ``poll``
STEAL_AFTER = 0.1  # seconds a job must have run before the one behind it moves elsewhere
NOBLOCK = int(zmq.NOBLOCK)
AHEAD_MAX = 2      # jobs sent ahead (not decided yet) per engine at once
KILL_AFTER = 0.25  # seconds past a job's timeout before its engine is killed
_NONE: list = []   # the inline inputs of a job that has none (only ever read)


class EnginePool(EngineDeaths, EngineMessages):
    """Runs jobs on engine processes. A job is ``Started`` when it reaches the head of its
    engine's queue: an engine runs its jobs in the order received, one at a time."""

    capabilities = Capabilities(remote=True, runs_ahead=True, holds_values=True,
                                stops_running_jobs=True, ahead_per_place=AHEAD_MAX)

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
        self.engines: dict[bytes, Engine] = {}
        self.produced_by: dict[str, bytes] = {}
        self._out: list = []  # outcomes found outside poll (a dead engine met on a send)
        self.n = 0
        self._count = 0
        self._checked = 0.0
        self.job_seconds: float | None = None  # a running mean of the jobs' durations
        self._depth = DEPTH  # depth() for that mean: set as the mean changes
        self.short_funcs: set[str] = set()  # functions whose jobs here took under SHORT_JOB
        self.made_here: dict[str, tuple[bytes, str]] = {}  # this run: job -> engine, checksum
        self.after: dict[str, tuple[str, ...]] = {}  # sent ahead, on its engine: its inputs
        self.sent_ahead = 0                     # how many jobs were sent ahead (ever)
        self._ended_on_interrupt: list = []
        self._interrupting = False  # (an engine's job stopped by SIGINT outside: failed)
        self._failed_starts = 0     # engines that exited before they connected, in a row
        self.resize(n)

    # -- engines --------------------------------------------------------------------------

    def resize(self, n: int) -> None:
        self.n = max(1, n)
        while len(self.engines) < self.n:
            self._spawn()
        idle = [e for e in self.engines.values() if not e.load]
        while len(self.engines) > self.n and idle:
            self._stop(idle.pop())

    def _spawn(self) -> Engine:
        self._count += 1
        identity = f"e{os.getpid()}-{self._count}".encode()
        log_path = os.path.join(self._dir, f"{identity.decode()}.log")
        log = open(log_path, "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbmake_ext.engine"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, cwd=os.getcwd())
        log.close()
        config = {"endpoint": self.endpoint, "key": self._key_hex, "identity": identity.decode(),
                  "store": str(self.store_path), "parent": os.getpid(), "durable": self.durable,
                  "running_file": self._running_file(identity),
                  # the parent-death signal follows the thread that started the engine
                  "deathsig": threading.current_thread() is threading.main_thread()}
        try:
            proc.stdin.write((json.dumps(config) + "\n").encode())
            proc.stdin.close()
        except OSError:
            pass  # it died at once (killed, out of memory...): buried like any dead engine
        engine = self.engines[identity] = Engine(identity, proc, log_path)
        logger.debug("started engine %d (%s)", proc.pid, identity.decode())
        return engine

    def _running_file(self, identity: bytes) -> str:
        return os.path.join(self._dir, f"{identity.decode()}.run")

    def _stop(self, engine: Engine) -> None:
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

    def attach(self) -> None:
        self.made_here.clear()

    def listen_progress(self, tell) -> None:
        pass  # reported from poll, as Progress outcomes

    def detach(self) -> None:
        self.made_here.clear()
        self.after.clear()

    def ended_before_interrupt(self) -> list:
        ended, self._ended_on_interrupt = self._ended_on_interrupt, []
        return ended

    def free_slots(self) -> int:
        if time.monotonic() - self._checked > CHECK_EVERY:
            self._check_engines(self._out)
        depth, starting = self._depth, self._starting()
        return sum(max(0, self._limit(e, depth, starting) - e.load)
                   for e in self.engines.values() if e.ready)

    def depth(self) -> int:
        """Jobs each engine holds: more when they are short, so an engine is rarely idle
        waiting for the kernel and one message carries many jobs."""
        if self.job_seconds is None:
            return DEPTH
        return max(DEPTH, min(MAX_DEPTH, int(QUEUE_SECONDS / max(self.job_seconds, 1e-6))))

    def _starting(self) -> bool:
        for engine in self.engines.values():
            if not engine.ready:
                return True
        return False

    @staticmethod
    def _limit(engine: Engine, depth: int, starting: bool) -> int:
        """The jobs ``engine`` may hold. While another engine is still starting, one,
        unless it holds jobs already and all of functions known to be short: a job must
        not wait behind a long one (or one not known yet) while the next engine is about
        to be free, but short jobs handed out one at a time cost a round trip each (a
        fifth of a millisecond, ten times their run)."""
        if starting and (engine.unsure or not engine.load):
            return 1
        return depth

    def _learned(self, func_key: str, seconds: float) -> None:
        """A job of a function not known to be short took ``seconds`` here."""
        if seconds < SHORT_JOB:
            self.short_funcs.add(func_key)

    def has_capacity(self) -> bool:
        # Asked before every job handed over: plain loops, no sum, no generator.
        if time.monotonic() - self._checked > CHECK_EVERY:
            self._check_engines(self._out)
        depth, starting = self._depth, self._starting()
        for engine in self.engines.values():
            if engine.ready and engine.load < self._limit(engine, depth, starting):
                return True
        return False

    @property
    def busy(self) -> bool:
        return bool(self._out) or any(e.load for e in self.engines.values())

    def submit(self, job: RemoteJob) -> None:
        # An idle engine first; among equals, one that holds an input already. (One pass:
        # this runs for every job.)
        depth, best, best_key = self._depth, None, None
        produced_by = self.produced_by
        starting = self._starting()
        for engine in self.engines.values():
            if not engine.ready:
                continue
            load = engine.load
            if load >= self._limit(engine, depth, starting):
                continue
            key = (load, not any(produced_by.get(d) == engine.identity for d in job.deps)) \
                if job.deps else (load, False)
            if best is None or key < best_key:
                best, best_key = engine, key
        if best is None:  # the engine we counted on died meanwhile
            self._out.append(Requeue([job.job_id]))
            return
        best.outbox.append(job)
        self._place(best, job)
        if len(best.outbox) >= SEND_AT:  # (the rest of a long hand-out comes after)
            self._send_outbox(best)

    def _place(self, engine: Engine, job: RemoteJob) -> None:
        if self.made_here:
            self.made_here.pop(job.job_id, None)  # made again: not that result
        if job.func_key not in self.short_funcs:
            engine.unsure[job.job_id] = job.func_key

    def _send_jobs(self) -> None:
        """The jobs submitted since the last poll, in one message per engine."""
        for engine in list(self.engines.values()):
            if engine.outbox:
                self._send_outbox(engine)

    def _send_outbox(self, engine: Engine) -> None:
        jobs, engine.outbox = engine.outbox, []
        if not self._send_functions(engine, jobs):
            self._unsent(jobs, self._out)
            return
        metas, frames = [], []
        add_meta, add_frame = metas.append, frames.append
        for job in jobs:  # each a list (shared/outcomes.py, JOB_*)
            inline = job.inline
            add_meta([job.job_id, job.func_key, job.dynamic, job.deps,
                      list(inline) if inline else _NONE, job.after or None,
                      job.timeout or None, job.env or None, job.files or None])
            if job.timeout:
                engine.timeouts[job.job_id] = job.timeout
            add_frame(job.payload)
            if inline:
                frames += inline.values()
        # A pickle, not json: several times cheaper on both sides (the engine reads it
        # only once the message's signature holds, as every pickle the kernel sends).
        meta = pickle.dumps(metas, protocol=pickle.HIGHEST_PROTOCOL)
        if not self._send(engine, "jobs", meta, *frames):
            self._unsent(jobs, self._out)
            return
        idle = not engine.queue
        engine.queue.extend(j.job_id for j in jobs)
        if idle:
            engine.head_since = time.monotonic()
            self._head_started(engine, self._out)

    def _unsent(self, jobs: list[RemoteJob], out: list) -> None:
        """Jobs that never reached their engine (it died): handed back."""
        for job in jobs:
            self.after.pop(job.job_id, None)
        out.append(Requeue([job.job_id for job in jobs]))

    def _send_functions(self, engine: Engine, jobs: list[RemoteJob]) -> bool:
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
        # Before a wait, and every CHECK_EVERY while busy (a look is two system calls).
        if timeout > CHECK_EVERY or time.monotonic() - self._checked > CHECK_EVERY:
            self._stop_overdue()
            self._check_engines(out)
        if self.socket.poll(int(timeout * 1000) if not out else 0):
            self._drain(out)
        self._balance()
        return out

    def _drain(self, out: list) -> None:
        recv = self.socket.recv_multipart
        while True:
            try:
                frames = recv(NOBLOCK)
            except zmq.Again:
                return
            self._receive(frames, out)

    def _balance(self) -> None:
        """An idle engine while another has a job waiting behind a long one: ask for that
        job back (the engine returns it only if it has not started it). Never a job sent
        ahead: it stays with its inputs. (The jobs sent ahead after one given back are
        dropped.)"""
        if not any(e.ready and not e.queue for e in self.engines.values()):
            return
        now = time.monotonic()
        # A copy: a send that meets a dead engine replaces it in ``engines`` at once.
        for engine in list(self.engines.values()):
            if engine.identity not in self.engines:
                continue  # it died, met by a send to another engine
            if len(engine.queue) >= 2 and engine.asked_back is None \
                    and now - engine.head_since > STEAL_AFTER:
                jid = next((j for j in islice(engine.queue, 1, None)
                            if self._movable(engine, j)), None)
                if jid is not None:
                    engine.asked_back = jid
                    self._send(engine, "give_back", json.dumps({"job_id": jid}).encode())

    def _stop_overdue(self) -> None:
        """A job past its timeout that its engine's alarm did not stop (it does not return
        to Python, or blocks the signal): its engine is killed; the death is reported as
        the timeout (engine_deaths.py) and a new engine takes its place."""
        now = time.monotonic()
        for engine in self.engines.values():
            if not engine.timeouts or not engine.queue or engine.timed_out is not None:
                continue
            head = engine.queue[0]
            limit = engine.timeouts.get(head)
            if limit is not None and head not in engine.void \
                    and now - engine.head_since > limit + KILL_AFTER:
                engine.timed_out = head
                engine.proc.kill()

    def _movable(self, engine: Engine, jid: str) -> bool:
        return jid not in self.after and jid not in engine.void

    def interrupt(self) -> list[str]:
        """Stop every engine's jobs: queued ones are dropped, running ones get SIGINT.
        Engines that do not stop within 2 s are killed and replaced. Outcomes of jobs the
        driver submitted that ended before (here already, or waiting in the socket: with
        jobs sent ahead, an engine is often a result or two ahead of the kernel) are kept
        for the driver to record (``ended_before_interrupt``)."""
        self._interrupting = True
        try:
            return self._interrupt()
        finally:
            self._interrupting = False

    def _interrupt(self) -> list[str]:
        out, self._out = self._out, []
        self._drain(out)
        self._ended_on_interrupt = [o for o in out if type(o) in (JobStored, JobRaised, Durable)]
        stopped = [j.job_id for e in self.engines.values() for j in e.outbox]
        self.after.clear()
        self.made_here.clear()
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
                logger.info("engine %d did not stop its job within 2 s: killed, a new "
                            "engine takes its place", engine.pid)
                engine.proc.kill()
                engine.proc.wait()
                self.engines.pop(engine.identity, None)
        for engine in self.engines.values():
            engine.void.clear()
            engine.stale_durable.clear()
            engine.unsure.clear()
        self._out.clear()
        self.resize(self.n)
        return list(dict.fromkeys(stopped))

    def close(self) -> None:
        for engine in list(self.engines.values()):
            self._stop(engine)
        self.socket.close(0)
        self.zmq.term()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- sending ahead (the run loop decides; see the module's docstring) ----------------

    def place_of(self, job_id: str) -> bytes | None:
        """The engine making ``job_id``'s result now, or holding the result it made in this
        run (maybe not reported yet); None if none."""
        for engine in self.engines.values():
            if (job_id in engine.queue and job_id not in engine.void) \
                    or any(job.job_id == job_id for job in engine.outbox):
                return None if engine.asked_back == job_id else engine.identity
        made = self.made_here.get(job_id)
        return made[0] if made is not None and made[0] in self.engines else None

    def send_ahead(self, job: RemoteJob, place: bytes, behind: tuple[str, ...]) -> None:
        engine = self.engines.get(place)
        if engine is None or not engine.ready:  # it died meanwhile
            self._out.append(Requeue([job.job_id]))
            return
        job.after = behind
        self.after[job.job_id] = behind
        engine.outbox.append(job)
        self._place(engine, job)
        self.sent_ahead += 1

    def drop(self, job_ids: list[str]) -> None:
        """Each instance is taken out if not sent, told to its engine if not ended there
        (its outcome is then ignored); a result it made is not reported durable."""
        for jid in job_ids:
            self.after.pop(jid, None)
            for engine in list(self.engines.values()):
                self._void(jid, engine)
                if engine.undurable.pop(jid, None) is not None:
                    engine.stale_durable.add(jid)

    def _void(self, jid: str, engine: Engine) -> None:
        for i, job in enumerate(engine.outbox):
            if job.job_id == jid:
                del engine.outbox[i]
                engine.unsure.pop(jid, None)
                return
        if jid in engine.queue and jid not in engine.void:
            engine.void.add(jid)
            self._send(engine, "drop", json.dumps({"jobs": [jid]}).encode())

    def _outcome(self, jid: str, outcome, consumed: dict | None, out: list) -> None:
        if self.after.pop(jid, None) is not None:
            outcome.consumed = consumed or {}
        out.append(outcome)

    def _not_run(self, jid: str, out: list, lost: DependencyLost | None = None) -> None:
        """The engine did not run the job (an input of it failed or was unreadable)."""
        if lost is not None:
            self.after.pop(jid, None)
            out.append(lost)
        elif self.after.pop(jid, None) is not None:
            out.append(Requeue([jid]))

    # -- messages -------------------------------------------------------------------------

    def _send(self, engine: Engine, kind: str, *payloads: bytes) -> bool:
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
