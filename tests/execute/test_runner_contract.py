"""One contract for every runner (runner.py): the three runners implement all of
``Runner`` and declare what they can do; the run loop asks nothing else of a runner."""

from __future__ import annotations

import inspect

import pytest

from nbmake_ext.execute import driver as driver_module
from nbmake_ext.execute.dask import DaskRunner
from nbmake_ext.execute.inkernel import InKernelRunner
from nbmake_ext.execute.pool import EnginePool
from nbmake_ext.execute.runner import Capabilities, Runner

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
