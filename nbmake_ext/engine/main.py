"""An engine process: runs the jobs the kernel sends, writes their results to the store.

Started by the kernel's EnginePool as ``python -m nbmake_ext.engine``; it reads
its configuration (endpoint, session key, identity, store) from stdin, never from argv,
so the key does not show in ``ps``. It exits when its parent goes away.

Protocol (all messages signed, see shared/wire.py), kernel -> engine:
  ``func KEY BLOB SOURCES``  a pickled function, sent once per engine; SOURCES json
                         {file: text} of its code files that exist only in the kernel's
                         linecache (notebook cells), so tracebacks show their lines
  ``jobs META *FRAMES``  one or more jobs: META a pickled list of, per job, a list
                         (shared/outcomes.py, JOB_*): job_id, func_key, dynamic,
                         deps {id: [file, checksum]}, inline [dep ids], after [dep ids]
                         (or null), timeout (or null), env (or null), files [inputs,
                         outputs] (or null; files/run.py: checked, removed,
                         fingerprinted around the job);
                         FRAMES, per job, its payload, then the pickled results of its
                         ``inline`` deps (small results the kernel holds: their files may
                         not exist yet). ``after``: a job sent ahead, before the kernel
                         decided it; these inputs are jobs sent to this engine before it,
                         whose results it takes from what this engine made (not named in
                         ``deps``: the kernel does not know them yet). If one of them did
                         not succeed here, the job does not run (answered ``skipped``)
  ``cancel``             drop the jobs not started yet (an interrupt; answered ``dropped``)
  ``drop META``          drop these jobs if not started yet (jobs sent ahead that the
                         kernel decided otherwise; answered ``dropped``)
  ``give_back META``     return a queued job not started yet (answered ``given_back``)
  ``stop``
engine -> kernel:
  ``hello META``         pid (an engine runs its jobs in the order received: the
                         kernel knows which one is running)
  ``child META SPEC BLOB PAYLOAD``   a dynamic job defined a child (streamed at once)
  ``done META OUT ERR [DATA]``  a result: META a list (shared/outcomes.py, DONE_*):
                         job_id, result_fp, checksum, timing [started, ended, duration,
                         cpu, engine, peak_rss], durable [job ids whose files are now on
                         disk], file, stamp, files {output: stamp} of the outputs it
                         wrote (or null), consumed (or null); a small result
                         travels as DATA (the kernel stores it), a large one is in its
                         file (file, stamp: readable now, durable once listed)
  ``returned META TEMPLATE OUT ERR``  a dynamic job's value, which may hold child promises
  ``failed META OUT ERR``             META: job_id, error, traceback, timing
                         (``done`` and ``failed`` of a job with ``after`` inputs also carry
                         consumed {dep: checksum}: the results it took)
  ``skipped META``       job_id, dep: a job with ``after`` inputs did not run, as ``dep``
                         did not succeed here (or its value is no longer at hand)
  ``lost META``          a dependency's result file is missing or corrupt
  ``progress META``      job_id, done, total, msg: how far the running job is (what it
                         reports with nbmake_ext.progress, at most ~5 a second: see
                         shared/progress.py)
  ``dropped META``       job ids of the jobs a ``cancel`` dropped
  ``durable META``       job ids whose result files are now on disk (sent alone only
                         when no ``done`` is about to carry them)
  ``many INDEX *PAYLOADS``  outcomes of short jobs sent together, in order: INDEX a
                         pickled [[kind, META, number of payloads], ...], then their payloads
"""

from __future__ import annotations

import faulthandler
import gc
import json
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import zmq

from ..promise import resolve
from ..registration import install_sources
from ..shared.call import error_line, format_job_traceback, run_call
from ..shared.limits import own_alarm
from ..shared.loading import ArgumentsUnloadable, load_arguments
from ..shared.outcomes import (JOB_AFTER, JOB_CONSUMED, JOB_DEPS, JOB_DYNAMIC, JOB_ENV,
                               JOB_FILES, JOB_FUNC, JOB_ID, JOB_INLINE, JOB_TIMEOUT, Call,
                               ChildSpec, JobRaised, JobReturned)
from ..shared.values_cache import ByteLRU
from ..shared.wire import Signer, Verifier
from .outbox import Outbox
from ..store import blobs
from ..store.pickles import loads_value
from ..store.results import INLINE, ResultReader
from .read_ahead import ReadAhead
from .running_mark import RunningMark
from .storing import StoringResults, _timing


VALUES_BYTES = 128 << 20  # values this engine made or read lately (a chain skips the disk)
LOOK_EVERY = 0.0005  # seconds between looks for messages while jobs are queued
PREFETCH_FROM = 8  # inputs from which a job's small results are read in one query


class Engine(StoringResults):
    def __init__(self, config: dict):
        key = bytes.fromhex(config["key"])
        self.identity = config["identity"].encode()
        self.results_dir = Path(config["store"]) / "results"
        self.reader = ResultReader(config["store"])
        self.durable = config.get("durable", True)
        self.signer, self.verifier = Signer(key), Verifier(key)
        self.outbox = Outbox(self.signer, self._send_frames)
        self.zmq = zmq.Context()
        self.socket = self.zmq.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, self.identity)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(config["endpoint"])
        self.functions: dict[str, Any] = {}
        self.queue: deque[tuple[dict, bytes, dict[str, bytes]]] = deque()
        self.values = ByteLRU(VALUES_BYTES)  # keyed by (job id, result checksum)
        self._read_ahead = ReadAhead(self.reader.read)
        self.to_sync: queue.SimpleQueue = queue.SimpleQueue()
        self.synced: deque[str] = deque()  # job ids whose files are durable, to report
        self.unsynced = 0                   # files handed to the syncer, not yet reported
        self.syncer = threading.Thread(target=self._sync_loop, name="nbmake-sync", daemon=True)
        self.syncer.start()
        self.running_job: str | None = None
        self.interrupted = False  # the kernel's SIGINT stopped the running job
        self._deps: dict[str, list[str]] = {}
        self._inline: dict[str, bytes] = {}
        # The running job's inputs found in ``values`` or loaded already, when it has
        # several (each is looked up once: see _hold_inputs).
        self._held: dict[str, Any] = {}
        self._looked_up = False
        # The last results this engine made: job id -> (checksum, file or "", small data),
        # for jobs the kernel sends "after" them. A job that did not succeed is absent.
        self.made: OrderedDict[str, tuple[str, str, bytes | None]] = OrderedDict()
        # Which job runs now, written where the kernel reads it if this process dies: a
        # message sent just before a crash may never leave, a write to a file always does.
        running = RunningMark(config["running_file"]) if config.get("running_file") else None
        self._mark_running = running.set if running is not None else _unmarked
        self.where = f"engine {os.getpid()}"

    def send(self, kind: str, meta: dict | None = None, *payloads: bytes) -> None:
        self.outbox.send(kind, meta, *payloads)

    def send_outcome(self, kind: str, meta: dict, *payloads: bytes) -> None:
        """A job's outcome: it may travel with the next ones (outbox.py)."""
        self.outbox.send(kind, meta, *payloads, outcome=True)

    def _send_frames(self, frames: list) -> None:
        self.socket.send_multipart(frames, copy=False)

    # -- the loop -------------------------------------------------------------------------

    def serve(self) -> None:
        self.send("hello", {"pid": os.getpid()})
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        polled = 0.0
        while True:
            # Idle with files still being flushed: look again soon to report them.
            timeout = 0 if self.queue else 2 if self.unsynced else 50
            if timeout:
                self.outbox.flush()  # nothing more to run: what waits goes now
            now = time.perf_counter()
            # Between short queued jobs, the kernel's messages are looked for now and then.
            if timeout or now - polled >= LOOK_EVERY:
                polled = now
                if poller.poll(timeout):
                    while self.socket.poll(0):
                        if not self.receive(self.socket.recv_multipart()):
                            self.outbox.flush()
                            return
            if self.queue:
                job = self.queue.popleft()
                self.outbox.before_job(job[0][JOB_FUNC], len(self.queue))
                started = time.perf_counter()
                self.run(*job)
                self.outbox.ran(job[0][JOB_FUNC], time.perf_counter() - started)
            elif self.synced:
                self.send("durable", {"jobs": self.take_synced()})

    def receive(self, frames: list[bytes]) -> bool:
        opened = self.verifier.open(frames)
        if opened is None:
            return True  # unsigned, forged or replayed: dropped, never unpickled
        kind, payloads = opened
        if kind == "func":
            self.functions[payloads[0].decode()] = payloads[1]
            install_sources(json.loads(payloads[2]) if len(payloads) > 2 else {})
        elif kind == "jobs":
            frames = iter(payloads[1:])
            for meta in pickle.loads(payloads[0]):
                payload = next(frames)
                inline = {d: next(frames) for d in meta[JOB_INLINE]} if meta[JOB_INLINE] \
                    else {}
                self.queue.append((meta, payload, inline))
                # A new run of it: a job sent after this one must not take an older result.
                self.made.pop(meta[JOB_ID], None)
            self.outbox.jobs_came()
        elif kind == "cancel":  # an interrupt: jobs not started go back
            self.send("dropped", {"jobs": [job[0][JOB_ID] for job in self.queue]})
            self.queue.clear()
        elif kind == "drop":  # jobs sent ahead that will not run after all
            drop = set(json.loads(payloads[0])["jobs"])
            gone = [job[0][JOB_ID] for job in self.queue if job[0][JOB_ID] in drop]
            if gone:
                self.queue = deque(job for job in self.queue if job[0][JOB_ID] not in drop)
                self.send("dropped", {"jobs": gone})
        elif kind == "give_back":
            # Another engine is idle: return this job if it has not started here.
            job_id = json.loads(payloads[0])["job_id"]
            kept = [job for job in self.queue if job[0][JOB_ID] != job_id]
            if len(kept) < len(self.queue):
                self.queue = deque(kept)
                self.send("given_back", {"job_id": job_id})
        elif kind == "stop":
            return False
        return True

    # -- one job --------------------------------------------------------------------------

    def run(self, meta: list, payload: bytes, inline: dict[str, bytes]) -> None:
        job_id = meta[JOB_ID]
        self.made.pop(job_id, None)  # until it succeeds
        if meta[JOB_AFTER]:
            meta = self._after(meta, inline)
            if meta is None:
                return
        self._mark_running(job_id)
        try:
            self._run(meta, payload, inline)
        except Exception as exc:  # noqa: BLE001 - a fault of this engine fails the job only
            import traceback

            self.send("failed", {"job_id": job_id, "traceback": traceback.format_exc(),
                                 "timing": {}, "error": f"engine {os.getpid()} could not run "
                                 f"it: {error_line(exc)}"}, b"", b"")
        # Not cleared if this process dies of something raised above: the job is to blame.
        self._mark_running("")

    def _after(self, meta: list, inline: dict[str, bytes]) -> list | None:
        """A job sent ahead: its ``after`` inputs are the results this engine just made.
        None (and ``skipped`` sent) if one of them did not succeed here."""
        deps, consumed = dict(meta[JOB_DEPS]), {}
        for dep in meta[JOB_AFTER]:
            made = self.made.get(dep)
            if made is None:
                self.send_outcome("skipped", {"job_id": meta[JOB_ID], "dep": dep})
                return None
            checksum, file, data = made
            deps[dep] = [file, checksum]
            if data is not None:
                inline[dep] = data
            consumed[dep] = checksum
        # With its inputs' places, and what it takes of them (JOB_CONSUMED) last.
        return [*meta[:JOB_DEPS], deps, *meta[JOB_DEPS + 1:JOB_CONSUMED], consumed]

    def _interrupted(self) -> bool:
        """Whether the kernel's SIGINT stopped the running job (see main)."""
        return self.interrupted

    def _run(self, meta: list, payload: bytes, inline: dict[str, bytes]) -> None:
        job_id = meta[JOB_ID]
        self._deps, self._inline = meta[JOB_DEPS], inline
        where = self.where
        deps = meta[JOB_DEPS]
        reading = self._looked_up = len(deps) > 1
        if reading:
            files = self._hold_inputs(deps, inline)
            if len(deps) > PREFETCH_FROM:
                self._prefetch(deps, inline)
            self._read_ahead.start(files)
        # Its inputs' values are many objects, all alive: a collection their allocations
        # set off (a fan-in's thousand inputs: 1 ms) would find nothing to free.
        paused = reading and gc.isenabled()
        if paused:
            gc.disable()
        try:
            args, kwargs = load_arguments(payload, where)
            if deps:  # a promise among the arguments is always one of its inputs
                args = resolve(args, self._load)
                kwargs = resolve(kwargs, self._load)
        except _Unreadable as lost:
            self.send("lost", {"job_id": job_id, "dep": lost.job_id, "why": lost.why})
            return
        except ArgumentsUnloadable as bad:
            self.send("failed", {"job_id": job_id, "error": bad.message,
                                 "traceback": bad.traceback, "timing": {}}, b"", b"")
            return
        finally:
            if paused:
                gc.enable()
            if reading:
                self._read_ahead.clear()
                self._held, self._looked_up = {}, False
        try:
            func = self._function(meta[JOB_FUNC])
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure
            self.send("failed", {"job_id": job_id, "error": f"cannot load the job on "
                                 f"engine {os.getpid()}: {type(exc).__name__}: {exc}",
                                 "traceback": "", "timing": {}}, b"", b"")
            return
        files = meta[JOB_FILES]
        call = Call(job_id, func, args, kwargs, meta[JOB_DYNAMIC], meta[JOB_TIMEOUT],
                    meta[JOB_ENV], (tuple(files[0]), tuple(files[1])) if files else None)
        self.running_job, self.interrupted = job_id, False
        try:
            # A KeyboardInterrupt the job raised itself is its failure; only the kernel's
            # SIGINT (see main) stops it.
            outcomes = run_call(call, self._child, engine=where,
                                interrupted=self._interrupted, progress=self._progress)
        except KeyboardInterrupt:
            self.send("failed", {"job_id": job_id, "error": "interrupted", "interrupted": True,
                                 "traceback": "", "timing": {}}, b"", b"")
            return
        finally:
            self.running_job = None
        consumed = meta[JOB_CONSUMED] if len(meta) > JOB_CONSUMED else None
        for outcome in outcomes:
            if isinstance(outcome, JobRaised):
                self.send_outcome("failed", {"job_id": job_id, "error": outcome.error,
                                             "traceback": outcome.traceback,
                                             "timing": _timing(outcome), "consumed": consumed},
                                  outcome.stdout.encode(), outcome.stderr.encode())
            elif isinstance(outcome, JobReturned):
                self._returned(job_id, outcome, meta[JOB_DYNAMIC], consumed)

    def _child(self, child: ChildSpec) -> None:
        from ..registration import function_blob, function_sources, payload

        spec = child.spec
        key, blob = function_blob(spec)
        body = pickle.dumps(_bare(spec), protocol=pickle.HIGHEST_PROTOCOL)
        # The notebook lines its parent brought: the engine that runs the child needs them too.
        self.send("child", {"func_key": key}, body, blob, payload(spec), function_sources(spec))

    def _progress(self, job_id: str, done: float, total: float, message: str) -> None:
        """The running job reported how far it is (already throttled): the kernel is told
        at once (after any outcome that waits: messages keep their order)."""
        self.send("progress", {"job_id": job_id, "done": done, "total": total, "msg": message})

    def _hold_inputs(self, deps: dict, inline: dict[str, bytes]) -> list[tuple[str, str, str]]:
        """The inputs this engine keeps in memory are taken out of ``values`` before any
        other is loaded: each value loaded goes into ``values`` too, and would push out
        those not used yet (a fan-in of large results would read again from disk what it
        made here). Returns the files to read, in the order the job loads them."""
        held, files = self._held, []
        for dep, (file, checksum) in deps.items():
            found, value = self.values.get((dep, checksum))
            if found:
                held[dep] = value
            elif file and file != INLINE and dep not in inline:
                files.append((dep, file, checksum))
        return files

    def _prefetch(self, deps: dict, inline: dict[str, bytes]) -> None:
        """A job of many inputs: the small results it needs from the store's database,
        read together (they then travel as if the kernel had sent them). After
        ``_hold_inputs``: those it found in memory are not read."""
        held = self._held
        wanted = {job_id: checksum for job_id, (file, checksum) in deps.items()
                  if file == INLINE and job_id not in inline and job_id not in held}
        if wanted:
            try:
                inline.update(self.reader.read_rows(wanted))
            except Exception:  # noqa: BLE001 - each is then read alone, and fails alone
                pass

    def _function(self, key: str) -> Any:
        func = self.functions.get(key)
        if isinstance(func, bytes):
            func = self.functions[key] = pickle.loads(func)
        if func is None:
            raise LookupError(f"function {key} was never sent")
        return func

    def _load(self, job_id: str) -> Any:
        where = self._deps.get(job_id)
        if where is None:
            raise _Unreadable(job_id, f"no result of {job_id!r} was named for this job")
        held = self._held
        if job_id in held:
            return held[job_id]
        file, checksum = where
        if not self._looked_up:  # (else: not in ``values`` when the job started)
            found, value = self.values.get((job_id, checksum))
            if found:
                return value
        data = self._inline.get(job_id)
        try:
            if data is None:
                data = self._read_ahead.take(job_id)
            if data is None:
                data = self.reader.read(job_id, file, checksum)
        except (OSError, blobs.CorruptResult) as exc:
            raise _Unreadable(job_id, f"the result of {job_id!r} is unreadable: {exc}") from None
        try:
            value = loads_value(data)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - e.g. its class's __setstate__ raised
            # Its bytes are those its job stored (checked): making it again would not help.
            raise ArgumentsUnloadable(
                f"the result of its input {job_id!r} cannot be loaded on engine "
                f"{os.getpid()}: {error_line(exc)}", format_job_traceback(exc)) from None
        self.values.put((job_id, checksum), value, len(data))
        if self._looked_up:  # (an input given twice is loaded once)
            held[job_id] = value
        return value


def _unmarked(job_id: str) -> None:
    """No file to mark the running job in (an engine started without one)."""


class _Unreadable(Exception):
    def __init__(self, job_id: str, why: str):
        self.job_id, self.why = job_id, why


def _bare(spec):
    """The spec without its live payload: that travels as its own pickles."""
    from dataclasses import replace

    return replace(spec, func=None, args=(), kwargs={})


def _watch_parent(parent: int, deathsig: bool) -> None:
    """Exit when the kernel is gone (killed included): engines never outlive it."""
    if deathsig:  # Linux: be told at once. (It follows the *thread* that started us, so
        try:      # the kernel asks for it only when that is its main thread.)
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001 - other systems: the polling below does it
            pass
    if os.getppid() != parent:
        os._exit(0)

    def poll() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(0)
            threading.Event().wait(0.5)

    threading.Thread(target=poll, name="nbmake-parent-watch", daemon=True).start()


def main() -> None:
    # A crash in C code (a segfault...) dumps the Python stacks to stderr: the kernel
    # keeps the end of it with the job that was running.
    faulthandler.enable(all_threads=False)
    own_alarm()  # jobs' time limits (shared/limits.py)
    config = json.loads(sys.stdin.readline())
    _watch_parent(config["parent"], config.get("deathsig", False))
    engine = Engine(config)

    # SIGINT stops the running job only; an idle engine ignores it.
    def on_sigint(signum, frame):
        if engine.running_job is not None:
            engine.interrupted = True
            raise KeyboardInterrupt
    signal.signal(signal.SIGINT, on_sigint)
    try:
        engine.serve()
    finally:
        engine.to_sync.put(None)
        engine.syncer.join()
        engine.socket.close(0)
        engine.zmq.term()

