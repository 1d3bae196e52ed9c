"""Fixtures and helpers shared by test_engines.py and test_engine_security.py.

Import the fixtures into a test module with ``from enginejobs.support import *``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from nbmake_ext import Context
from nbmake_ext.kernel.pool import EnginePool

EXEC_DIR = str(Path(__file__).resolve().parent.parent)   # tests/execute: holds enginejobs
ENGINE_MODULE = "nbmake_ext.engine"
PYTHON = sys.executable

__all__ = ["engine_env", "engine_leaks", "lab", "make_ctx", "EXEC_DIR", "ENGINE_MODULE",
           "PYTHON", "alive", "wait_gone", "wait_until", "wait_ready", "guarded", "Hung",
           "is_engine", "fresh", "make_or_parmake", "cluster_leftovers"]


# -- processes ------------------------------------------------------------------------------

def _stat_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def is_engine(pid: int) -> bool:
    """The process exists, is not a zombie, and runs the engine module (a reused pid of
    another program does not count)."""
    state = _stat_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return ENGINE_MODULE.encode() in cmdline


def alive(pid: int) -> bool:
    return is_engine(pid)


def wait_until(pred, timeout: float = 30.0, what: str = "condition", interval: float = 0.02):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out ({timeout:.0f} s) waiting for {what}")
        time.sleep(interval)


def wait_gone(pids, timeout: float = 10.0) -> list[int]:
    """Polls until none of the pids is a live engine; returns those still alive."""
    end = time.monotonic() + timeout
    pids = list(pids)
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


def wait_ready(pool: EnginePool, timeout: float = 30.0) -> None:
    """Until every engine of the pool has said hello (the driver is not running: nothing
    else reads the socket, and a hello is the only message an idle engine sends)."""
    end = time.monotonic() + timeout
    while not all(e.ready for e in pool.engines.values()):
        if time.monotonic() > end:
            raise AssertionError("engines never said hello")
        assert pool.poll(0.05) == []


class Hung(KeyboardInterrupt):
    """Raised in the main thread by ``guarded`` when a command does not return in time.
    A KeyboardInterrupt, so the driver puts its jobs back and stops the engines' jobs."""


def guarded(call, *args, within: float = 60.0, **kwargs):
    """``call(*args, **kwargs)``, turned into an AssertionError if it has not returned after
    ``within`` seconds (instead of hanging until the test's hard timeout)."""
    state = {"done": False, "sent": False}

    def on_sigint(signum, frame):
        if not state["done"]:
            raise Hung()

    def fire():
        state["sent"] = True
        os.kill(os.getpid(), signal.SIGINT)

    old = signal.signal(signal.SIGINT, on_sigint)
    timer = threading.Timer(within, fire)
    timer.daemon = True
    timer.start()
    try:
        return call(*args, **kwargs)
    except Hung:
        raise AssertionError(f"{getattr(call, '__name__', call)} hung: no return after "
                             f"{within:.0f} s") from None
    finally:
        state["done"] = True
        timer.cancel()
        timer.join()
        if state["sent"]:
            time.sleep(0.05)  # a signal sent late is handled here (and ignored), not later
        signal.signal(signal.SIGINT, old)


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def engine_env(monkeypatch):
    """Engines inherit the environment: let them import the ``enginejobs`` package."""
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", EXEC_DIR + (os.pathsep + old if old else ""))
    monkeypatch.delenv("NBMAKE_STORE", raising=False)


@pytest.fixture(autouse=True)
def engine_leaks(monkeypatch):
    """After the test (and after the contexts of ``make_ctx`` are closed): every engine
    process any pool of this test started has exited, every pool's ZeroMQ context is
    terminated and its ipc directory removed."""
    pools: list[EnginePool] = []
    pids: list[int] = []
    orig_init, orig_spawn = EnginePool.__init__, EnginePool._spawn

    def init(self, *a, **k):
        pools.append(self)
        orig_init(self, *a, **k)

    def spawn(self):
        engine = orig_spawn(self)
        pids.append(engine.pid)
        return engine

    monkeypatch.setattr(EnginePool, "__init__", init)
    monkeypatch.setattr(EnginePool, "_spawn", spawn)
    yield pids
    problems = []
    for pool in pools:
        if not pool.zmq.closed:
            problems.append(f"pool {pool.endpoint}: zmq context not terminated")
            pool.close()
        if os.path.exists(pool._dir):
            problems.append(f"pool dir {pool._dir} left behind")
    left = wait_gone(pids, timeout=10)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    if left:
        problems.append(f"engine processes still alive after close: {left}")
    assert not problems, "; ".join(problems)


@pytest.fixture
def lab(tmp_path) -> str:
    """A directory for the side effects of the test's jobs."""
    d = tmp_path / "lab"
    d.mkdir()
    return str(d)


@pytest.fixture
def make_ctx(tmp_path, engine_leaks):
    """Contexts on stores under tmp_path, closed (engines stopped) at teardown, before the
    leak check runs. ``ctx.lines`` collects the summary lines."""
    made: list[Context] = []

    def make(name: str = "store", **kw) -> Context:
        ctx = Context(store=tmp_path / name, **kw)
        ctx.lines = []
        ctx.report = ctx.lines.append
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


@pytest.fixture
def fresh(make_ctx):
    """``fresh()``: the previous context closed, a new one on the same store."""
    last = []

    def new():
        if last:
            last.pop().close()
        ctx = make_ctx()
        last.append(ctx)
        return ctx
    return new


def make_or_parmake(ctx, how: str, *targets, **kw):
    """``make``, or ``parmake`` on 2 engines; JobsFailed is returned, not raised."""
    from nbmake_ext import JobsFailed

    try:
        if how == "make":
            return ctx.make(*targets)
        return guarded(ctx.parmake, *targets, n=2, **kw)
    except JobsFailed as exc:
        return exc


# -- a Dask cluster's processes -------------------------------------------------------------

def descendants() -> dict[int, str]:
    """This process's descendants: pid -> command line."""
    import psutil

    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            out[p.pid] = " ".join(p.cmdline())
        except psutil.Error:
            pass
    return out


def cluster_leftovers(before: set[int], within: float = 15.0) -> dict[int, str]:
    """The processes started since ``before`` (a set of ``descendants()``) still alive
    after ``within`` seconds: killed, and returned for the caller to fail on."""
    end = time.monotonic() + within
    while True:
        left = {pid: cmd for pid, cmd in descendants().items()
                if pid not in before and "resource_tracker" not in cmd}
        if not left or time.monotonic() > end:
            break
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left
