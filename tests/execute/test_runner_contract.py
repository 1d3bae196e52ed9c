"""One contract for every runner (runner.py): the three runners implement all of
``Runner`` and declare what they can do; the run loop asks nothing else of a runner. A
scripted runner that replays events, with only the protocol's members, drives real makes
(the real Driver, a real store in a tmp dir, no process started) through a retry, a
failure and a death of the place a job ran on."""

from __future__ import annotations

import inspect
from collections import deque

import pytest

from nbmake_ext import Context, JobsFailed
from nbmake_ext.kernel import driver as driver_module
from nbmake_ext.kernel.dask import DaskRunner
from nbmake_ext.kernel.inkernel import InKernelRunner
from nbmake_ext.shared.outcomes import (Call, JobRaised, JobReturned, Requeue, Started,
                                         Timing)
from nbmake_ext.kernel.pool import EnginePool
from nbmake_ext.kernel.runner import Capabilities, Runner

RUNNERS = [InKernelRunner, EnginePool, DaskRunner]
MEMBERS = sorted(
    name for name in vars(Runner)
    if not name.startswith("_") and name not in ("capabilities",)) + ["capabilities"]


# -- the three runners ------------------------------------------------------------------------

@pytest.mark.parametrize("cls", RUNNERS, ids=lambda c: c.__name__)
def test_each_runner_has_every_member_of_the_protocol_with_its_signature(cls):
    for name in MEMBERS:
        mine = inspect.getattr_static(cls, name, None)
        assert mine is not None, f"{cls.__name__} lacks {name}"
        want = inspect.getattr_static(Runner, name, None)
        if name == "capabilities":
            assert isinstance(mine, Capabilities), f"{cls.__name__}.capabilities: {mine!r}"
        elif isinstance(want, property):
            assert isinstance(mine, property), f"{cls.__name__}.{name} is not a property"
        else:
            got = list(inspect.signature(mine).parameters)
            expected = list(inspect.signature(want).parameters)
            assert got == expected, f"{cls.__name__}.{name}{got} != Runner.{name}{expected}"


def test_capabilities_are_declared_not_probed():
    assert InKernelRunner.capabilities.remote is False
    assert InKernelRunner.capabilities.runs_ahead is False
    assert EnginePool.capabilities.remote and EnginePool.capabilities.runs_ahead
    assert EnginePool.capabilities.stops_running_jobs
    assert DaskRunner.capabilities.remote and DaskRunner.capabilities.runs_ahead
    assert not DaskRunner.capabilities.stops_running_jobs  # a started task runs to its end
    assert all(c.capabilities.reports_started for c in RUNNERS)


def test_instances_are_runners(tmp_path):
    assert isinstance(InKernelRunner(), Runner)
    pool = EnginePool(tmp_path / "store", 1)
    try:
        assert isinstance(pool, Runner)
    finally:
        pool.close()


def test_the_driver_never_probes_a_runner_with_getattr():
    source = inspect.getsource(driver_module)
    assert "getattr(" not in source, "the driver probes something with getattr"
    assert "hasattr(" not in source


# -- a scripted runner ------------------------------------------------------------------------

class ScriptedRunner:
    """Replays a script of events per job: one event per ``poll``, for the job at the head
    of its queue only (the others wait there, as on an engine). Events: "started",
    "returned" (calls the job's function: its value is real), "raised", "died" (the
    place it ran on died), "requeue" (handed back unrun). It has the protocol's members
    and nothing else (``__slots__``)."""

    __slots__ = ("script", "queue", "log", "submitted")
    capabilities = Capabilities(remote=False, runs_ahead=False, holds_values=False,
                                stops_running_jobs=True)

    def __init__(self, script: dict[str, list[list[str]]], log: list):
        self.script = {j: deque(runs) for j, runs in script.items()}
        self.queue: deque[tuple[Call, deque]] = deque()
        self.log = log
        self.submitted: list[str] = []

    def attach(self) -> None:
        self.log.append(("attach",))

    def detach(self) -> None:
        self.log.append(("detach",))

    def has_capacity(self) -> bool:
        return len(self.queue) < 2  # one runs, one waits behind it

    def free_slots(self) -> int:
        return 2 - len(self.queue)

    @property
    def busy(self) -> bool:
        return bool(self.queue)

    def send_ahead(self, job, place, behind) -> None:
        raise AssertionError("runs_ahead is False")

    def drop(self, job_ids: list[str]) -> None:
        pass

    def listen_progress(self, tell) -> None:
        pass

    def place_of(self, job_id: str) -> None:
        return None

    def submit(self, job: Call) -> None:
        runs = self.script.get(job.job_id)
        events = runs.popleft() if runs else ["started", "returned"]
        self.submitted.append(job.job_id)
        self.queue.append((job, deque(events)))

    def poll(self, timeout: float) -> list:
        if not self.queue:
            return []
        call, events = self.queue[0]
        event = events.popleft()
        if not events:
            self.queue.popleft()
        self.log.append(("emit", event, call.job_id))
        jid = call.job_id
        if event == "started":
            return [Started(jid, "scripted", 0.0)]
        if event == "returned":
            return [JobReturned(jid, call.func(*call.args, **call.kwargs))]
        if event == "raised":
            return [JobRaised(jid, "ValueError: scripted", "Traceback: scripted\n")]
        if event == "died":
            return [JobRaised(jid, "engine 4242 died while running it: killed by SIGKILL",
                              "", "", "the end of its stderr", Timing(engine="engine 4242"))]
        if event == "requeue":
            return [Requeue([jid])]
        raise AssertionError(event)

    def interrupt(self) -> list[str]:
        ids = [c.job_id for c, _ in self.queue]
        self.queue.clear()
        return ids

    def ended_before_interrupt(self) -> list:
        return []

    def close(self) -> None:
        pass


class Strict:
    """A runner seen through this: every attribute the driver reads is recorded."""

    def __init__(self, runner):
        object.__setattr__(self, "_runner", runner)
        object.__setattr__(self, "_read", set())

    def __getattr__(self, name):
        object.__getattribute__(self, "_read").add(name)
        return getattr(object.__getattribute__(self, "_runner"), name)


class Observer:
    def __init__(self, log: list):
        self.log = log

    def job_changed(self, job_id, state, info):
        self.log.append(("tell", state, job_id))

    def tick(self):
        pass


def one(x):
    return x


def add(x, y):
    return x + y


def test_a_scripted_runner_drives_a_make_through_a_retry_a_failure_and_a_death(tmp_path):
    ctx = Context(store=tmp_path / "store")
    ctx.report = lambda line: None
    try:
        a = ctx.comp(one, 1, job_id="a")
        b = ctx.comp(add, a, 1, job_id="b")            # handed back unrun once, then runs
        c = ctx.comp(add, b, 1, job_id="c")            # raises
        ctx.comp(add, c, 1, job_id="d")                # blocked by c
        ctx.comp(add, a, 2, job_id="e")                # its place dies while it runs
        ctx.comp(add, b, 3, job_id="f")
        log: list = []
        script = {"b": [["requeue"]], "c": [["started", "raised"]],
                  "e": [["started", "died"]]}
        runner = Strict(ScriptedRunner(script, log))
        ctx.sync()
        with pytest.raises(JobsFailed):
            ctx._run(ctx._select(()), runner, "make", observer=Observer(log))
        assert object.__getattribute__(runner, "_read") <= set(MEMBERS)
        scripted = object.__getattribute__(runner, "_runner")
        assert scripted.submitted.count("b") == 2
        assert "d" not in scripted.submitted
        states = {r.job_id: r.state for r in ctx.ls()}
        assert states == {"a": "done", "b": "done", "c": "failed", "d": "blocked",
                          "e": "failed", "f": "done"}
        assert ctx.result_of("f") == 5
        assert "died while running it" in ctx.details("e").error
        assert log[0] == ("attach",) and log[-1] == ("detach",)
        # "running" is told after the runner reported the job started, never before, and
        # never for a job that was handed back before it started
        for jid in "abcef":
            told = log.index(("tell", "running", jid))
            assert told > log.index(("emit", "started", jid)), (jid, log)
        assert log.count(("tell", "running", "b")) == 1
        # one job at a time starts: the one waiting behind it is not running
        running: set = set()
        for entry in log:
            if entry[0] == "tell":
                _, state, jid = entry
                (running.add if state == "running" else running.discard)(jid)
                assert len(running) <= 1, log
        # the next make runs what failed again, on the same runner contract
        log.clear()
        ctx.sync()
        report = ctx._run(ctx._select(("c", "d", "e")), ScriptedRunner({}, log), "make")
        assert report.ran == 3 and not report.failed
        assert ctx.result_of("d") == 4 and ctx.result_of("e") == 3
    finally:
        ctx.close()


def test_an_interrupt_puts_back_what_the_scripted_runner_holds(tmp_path):
    ctx = Context(store=tmp_path / "store")
    ctx.report = lambda line: None
    try:
        ctx.comp(one, 1, job_id="a")
        ctx.comp(one, 2, job_id="b")
        log: list = []

        class Interrupting(ScriptedRunner):
            __slots__ = ()

            def poll(self, timeout):
                out = ScriptedRunner.poll(self, timeout)
                if any(type(o) is Started for o in out) and len(self.log) > 3:
                    raise KeyboardInterrupt
                return out

        ctx.sync()
        with pytest.raises(KeyboardInterrupt):
            ctx._run(ctx._select(()), Interrupting({}, log), "make", observer=Observer(log))
        states = {r.job_id: r.state for r in ctx.ls()}
        assert sorted(states.values()) in (["done", "todo"], ["todo", "todo"]), states
        other = Context(store=tmp_path / "store")
        try:
            mine, elsewhere = other.store.claim(["a", "b"])  # nothing left claimed
            assert sorted(mine) == ["a", "b"] and not elsewhere
            other.store.release(mine)
        finally:
            other.close()
    finally:
        ctx.close()
