"""Jobs that engines run in tests/execute/test_engines.py and test_engine_security.py.

Every job gets ``lab``, a directory of the test. What happened is proven by side effects in
it, never by timing: ``events.log`` gets one line ``<event> <pid> <time>`` per event,
written with a single ``write`` on an O_APPEND descriptor (lines of concurrent processes
never interleave), and jobs wait for files that other jobs or the test create. Every wait
is bounded, so a broken build fails instead of hanging.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from pathlib import Path

WAIT = 30.0


# -- side effects ---------------------------------------------------------------------------

def log(lab: str, event: str) -> None:
    fd = os.open(os.path.join(lab, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{event} {os.getpid()} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


def events(lab) -> list[tuple[str, int, float]]:
    """[(event, pid, time)] in the order written."""
    path = Path(lab) / "events.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        event, pid, t = line.split(" ")
        out.append((event, int(pid), float(t)))
    return out


def names(lab) -> list[str]:
    return [e for e, _, _ in events(lab)]


def touch(lab: str, name: str) -> None:
    Path(lab, name).touch()


def wait_for(path: Path, timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


# -- plain jobs -----------------------------------------------------------------------------

def work(lab: str, name: str, *inputs):
    """Logs <name>-start/-end; returns its name, pid and inputs."""
    log(lab, f"{name}-start")
    log(lab, f"{name}-end")
    return {"name": name, "pid": os.getpid(), "inputs": list(inputs)}


def nap(lab: str, name: str, seconds: float):
    """Logs <name>-start/-end around a sleep of ``seconds``; returns its name."""
    log(lab, f"{name}-start")
    time.sleep(seconds)
    log(lab, f"{name}-end")
    return name


def rendezvous(lab: str, me: str, *others: str, timeout: float = WAIT, after=None):
    """Starts, then waits until every other job of the rendezvous has started: it can only
    return if they run at the same time (each on its own engine). ``after`` is only there
    to make it depend on another job."""
    t0 = time.time()
    log(lab, f"{me}-start")
    touch(lab, f"started-{me}")
    for other in others:
        if not wait_for(Path(lab, f"started-{other}"), timeout):
            raise TimeoutError(f"{me}: {other} never started while {me} ran")
    t1 = time.time()
    log(lab, f"{me}-end")
    return {"name": me, "pid": os.getpid(), "start": t0, "end": t1}


# -- jobs that crash their engine -----------------------------------------------------------

def announce(lab: str, name: str) -> None:
    """Writes this process's pid to <name>.pid, atomically."""
    tmp = Path(lab, f".{name}.pid.tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, Path(lab, f"{name}.pid"))


def exit_code_3(lab: str):
    log(lab, "exit3-start")
    announce(lab, "bad")
    os._exit(3)


def c_library_gives_up(lab: str):
    """Says why on the process's stderr (file descriptor 2, as C code does), then exits."""
    log(lab, "clib-start")
    announce(lab, "bad")
    os.write(2, b"libfrob: fatal: out of frobs (errno 28)\n")
    os._exit(134)


def segfault(lab: str):
    log(lab, "segv-start")
    announce(lab, "bad")
    ctypes.string_at(0)  # reads address 0: SIGSEGV
    return "survived a segfault?"


def holds_back_fsync(lab: str, name: str, size: int = 0):
    """An ordinary job that also makes this engine's fsyncs wait until the file
    "release-fsync" exists (a disk that is slow just then): its own result's "durable"
    notice cannot be sent before the next job has started."""
    real = getattr(os.fsync, "real", os.fsync)

    def fsync(fd):
        wait_for(Path(lab, "release-fsync"), 30)
        return real(fd)

    fsync.real = real
    os.fsync = fsync
    return {**work(lab, name), "pad": os.urandom(size)}


def sized(lab: str, name: str, size: int) -> bytes:
    """``size`` random bytes (a large result is a file the engine writes, a small one
    travels to the kernel in its message)."""
    log(lab, f"{name}-start")
    return os.urandom(size)


def large(lab: str, kind: str):
    """A result of about 2 MB of a kind an engine pickles straight into its file."""
    import numpy as np

    log(lab, f"large-{kind}-start")
    if kind == "bytes":
        return os.urandom(2 << 20)
    if kind == "array":
        return np.arange(1 << 18, dtype=np.float64)
    if kind == "fortran":  # contiguous, but not in C order
        return np.asfortranarray(np.arange(1 << 18, dtype=np.float64).reshape(512, 512))
    if kind == "unpicklable":  # fails half way through its pickle
        return [*range(200_000), (i for i in range(3))]
    raise ValueError(kind)


def floats(lab: str, name: str, n: int, version: int = 0):
    """0.0, 1.0, ... n - 1 as a numpy array; ``version`` changes the job, not its result."""
    import numpy as np

    log(lab, f"{name}-start")
    return np.arange(n, dtype=np.float64)


def bump_and_sum(a) -> float:
    """Changes its input in place, then sums it."""
    a += 1.0
    return float(a.sum())


def describe(value) -> list:
    """What a dependent sees of a large input."""
    import hashlib

    import numpy as np

    if isinstance(value, np.ndarray):
        return ["array", value.shape, bool(value.flags.f_contiguous), float(value.sum())]
    return ["bytes", hashlib.sha256(value).hexdigest()]


def describe_all(values: list) -> list:
    import hashlib

    return [hashlib.sha256(v).hexdigest() for v in values]


def digests(a: bytes, b: bytes, tag: int = 0) -> list:
    import hashlib

    return [hashlib.sha256(a).hexdigest(), hashlib.sha256(b).hexdigest(), tag]


def releases_fsync_and_exits(lab: str):
    log(lab, "exit3-start")
    touch(lab, "release-fsync")
    os._exit(3)


def wait_to_be_killed(lab: str, name: str, *inputs):
    """Writes its pid to <name>.pid and waits for the test to kill it. (``inputs``: only
    there to make it depend on other jobs.)"""
    log(lab, f"{name}-start")
    announce(lab, name)
    wait_for(Path(lab, "never"), 60)
    log(lab, f"{name}-end")
    raise TimeoutError(f"{name} was never killed")


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat), None if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError):
        return None


def wait_reaped(lab: str, name: str):
    """A gate: returns once the process that wrote <name>.pid has died AND been reaped by
    its parent. The kernel reaps a dead engine in the same step in which it takes it out
    of the pool and starts another, so when this job's result arrives the pool has
    already noticed the death."""
    log(lab, "gate-start")
    pid_file = Path(lab, f"{name}.pid")
    if not wait_for(pid_file, 60):
        raise TimeoutError(f"{name} never started")
    pid = int(pid_file.read_text())
    first = _start_time(pid)
    end = time.monotonic() + 60
    while first is not None and _start_time(pid) == first:  # alive, or a zombie
        if time.monotonic() > end:
            raise TimeoutError(f"{name} ({pid}) never died or was never reaped")
        time.sleep(0.01)
    log(lab, "gate-end")
    return pid


# -- values and errors that do not pickle ---------------------------------------------------

def make_generator(lab: str):
    log(lab, "gen-start")
    return (i for i in range(3))


def make_lock(lab: str):
    log(lab, "lock-start")
    return threading.Lock()


class LambdaError(Exception):
    """Cannot be pickled: it holds a lambda."""

    def __init__(self, message: str):
        super().__init__(message)
        self.callback = lambda: message


def raise_lambda_error(lab: str):
    raise LambdaError("an error carrying a lambda")


def raise_local_error(lab: str):
    class LocalError(Exception):
        pass

    raise LocalError("an error of a class local to the job")


class BadStrError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this error cannot be turned into text")


def raise_bad_str(lab: str):
    raise BadStrError()


# -- dynamic jobs ---------------------------------------------------------------------------

def dyn_parent(context, lab: str, n: int):
    """Defines children kid-0 .. kid-<n-1>, returns their promises."""
    log(lab, f"parent{n}-start")
    kids = [context.comp(work, lab, f"kid-{i}", job_id=f"kid-{i}") for i in range(n)]
    log(lab, f"parent{n}-return")
    return kids


def dyn_waits_for_child(context, lab: str):
    """Defines a child, then waits (bounded) until the child has started: that can only
    happen if the child runs on another engine while this job still runs."""
    log(lab, "eager-parent-start")
    kid = context.comp(rendezvous, lab, "eager-kid", job_id="eager-kid")
    seen = wait_for(Path(lab, "started-eager-kid"))
    log(lab, "eager-parent-return" if seen else "eager-parent-gave-up")
    return {"kid": kid}


def dyn_top(context, lab: str):
    log(lab, "top-start")
    mid = context.comp_dynamic(dyn_mid, lab, job_id="mid")
    return {"top": os.getpid(), "mid": mid}


def dyn_mid(context, lab: str):
    log(lab, "mid-start")
    bottom = context.comp_dynamic(dyn_bottom, lab, job_id="bottom")
    return {"mid": os.getpid(), "bottom": bottom}


def dyn_bottom(context, lab: str):
    log(lab, "bottom-start")
    leaves = [context.comp(work, lab, f"leaf-{i}", job_id=f"leaf-{i}") for i in range(2)]
    return {"bottom": os.getpid(), "leaves": leaves}


def consume(lab: str, value):
    log(lab, "consume-start")
    return value


def write_line(path: str, text: str):
    """For the standalone-engine test: appends one line to ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)
    return text


# -- jobs for sending ahead -----------------------------------------------------------------

def hold(lab: str, name: str, *inputs):
    """Logs <name>-start, says it started (file started-<name>), waits (bounded) for the
    file release-<name>, logs <name>-end; returns like ``work``."""
    log(lab, f"{name}-start")
    touch(lab, f"started-{name}")
    if not wait_for(Path(lab, f"release-{name}")):
        raise TimeoutError(f"{name} was never released")
    log(lab, f"{name}-end")
    return {"name": name, "pid": os.getpid(), "inputs": list(inputs)}


def hold_then_fail(lab: str, name: str):
    hold(lab, name)
    raise ValueError(f"{name} is broken")


def add(lab: str, name: str, prev, i: int) -> int:
    """A chain link: logs <name>-start, returns prev + i."""
    log(lab, f"{name}-start")
    return prev + i


def leaf(lab: str, name: str, x):
    log(lab, f"{name}-start")
    return x if isinstance(x, int) else 1


def leaf_again(lab: str, name: str, x):  # leaf's body under another name: other code
    log(lab, f"{name}-start")
    return x if isinstance(x, int) else 1


def combine(lab: str, name: str, base: int, *inputs, fail: bool = False) -> int:
    """Logs <name>-start; base + the sum of its inputs, or raises if ``fail``."""
    log(lab, f"{name}-start")
    if fail:
        raise ValueError(f"{name} fails")
    return base + sum(inputs)


def combine_again(lab: str, name: str, base: int, *inputs, fail: bool = False) -> int:
    """combine's body under another name: other code, the same result."""
    log(lab, f"{name}-start")
    if fail:
        raise ValueError(f"{name} fails")
    return base + sum(inputs)


# -- arguments that cannot be loaded, jobs that raise BaseExceptions ----------------------

def refuse_to_load(message: str):
    raise ValueError(message)


def refuse_to_load_with(kind: str, message: str):
    raise {"OSError": OSError, "ValueError": ValueError}[kind](message)


class LoadsWithError:
    """Pickles fine; loading it raises ``kind`` (as a class whose ``__setstate__`` opens a
    file that is not there would)."""

    def __init__(self, kind: str):
        self.kind = kind

    def __reduce__(self):
        return (refuse_to_load_with, (self.kind, f"no loading this ({self.kind})"))


def unloadable(lab: str, kind: str) -> LoadsWithError:
    log(lab, "unloadable-start")
    return LoadsWithError(kind)


class LoadsNowhere:
    """Pickles fine; loading it calls ``refuse_to_load``, which raises."""

    def __init__(self, message: str = "this object refuses to be loaded"):
        self.message = message

    def __reduce__(self):
        return (refuse_to_load, (self.message,))


class DeepTrouble(BaseException):
    """A BaseException that is neither Exception, SystemExit nor KeyboardInterrupt."""


def raise_base(lab: str, name: str, kind: str):
    log(lab, f"{name}-start")
    print(f"{name} about to raise {kind}")
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if kind == "GeneratorExit":
        raise GeneratorExit("closed")
    raise DeepTrouble("from the deep")


# -- short jobs for the chaos tests (engines killed at random) ------------------------------

def chaos_job(i: int, *inputs: int, pause: float = 0.005) -> int:
    """A short job: ``i`` plus the sum of its inputs, after a short pause."""
    time.sleep(pause)
    return i + sum(inputs)


# -- a child that fails, redefined by its still running parent -----------------------------

def picky(lab: str, x: int):
    log(lab, f"picky{x}-start")
    if x == 1:
        raise ValueError("picky says no to 1")
    return x


def plus_ten(lab: str, value: int):
    log(lab, "plus-start")
    return value + 10


def wait_for_state(store: str, job_id: str, state: str, timeout: float = WAIT) -> bool:
    """Until the store records ``state`` for ``job_id`` (read-only; the kernel records an
    outcome before it goes on with its run, so the kernel knows it by then)."""
    import sqlite3

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            conn = sqlite3.connect(f"file:{store}/nbmake.db?mode=ro", uri=True, timeout=1)
            try:
                row = conn.execute("SELECT state FROM outcomes WHERE job_id=?",
                                   (job_id,)).fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            row = None
        if row is not None and row[0] == state:
            return True
        time.sleep(0.01)
    return False


def dyn_redefines_failed_child(context, lab: str, store: str, tag: str):
    """Defines ``picky`` to fail and ``plus`` on it; once picky failed (on another engine),
    defines picky again, to succeed."""
    log(lab, f"redefiner-{tag}-start")
    first = context.comp(picky, lab, 1, job_id="picky")
    plus = context.comp(plus_ten, lab, first, job_id="plus")
    seen = wait_for_state(store, "picky", "failed")
    log(lab, f"redefiner-{tag}-saw-failure" if seen else f"redefiner-{tag}-gave-up")
    again = context.comp(picky, lab, 2, job_id="picky")
    return [again, plus]


# -- progress (test_progress.py) ------------------------------------------------------------

def counting(n: int, pause: float) -> int:
    """Reports its progress at every step of ``n``, ``pause`` seconds each."""
    from nbmake_ext import progress

    for i in range(n):
        time.sleep(pause)
        progress(i + 1, n, f"step {i + 1}")
    return n


def tight(n: int) -> float:
    """Calls progress ``n`` times in a tight loop; returns the seconds per call."""
    from nbmake_ext import progress

    t0 = time.perf_counter()
    for i in range(n):
        progress(i, n)
    return (time.perf_counter() - t0) / n


# -- the garbage collector while inputs load ------------------------------------------------

class Loaded:
    """A result that notes, when it is unpickled, whether the collector was on."""

    def __init__(self, n: int):
        self.n, self.collector_was_on = n, None

    def __reduce__(self):
        return (_loaded, (self.n,))


def _loaded(n: int) -> Loaded:
    import gc

    value = Loaded(n)
    value.collector_was_on = gc.isenabled()
    return value


def loaded(n: int) -> Loaded:
    return Loaded(n)


def collector_seen(*inputs: Loaded) -> tuple[list, bool]:
    """(whether the collector was on as each input was loaded, whether it is on now)."""
    import gc

    return [i.collector_was_on for i in inputs], gc.isenabled()
