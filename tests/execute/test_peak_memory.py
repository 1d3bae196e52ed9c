"""Each job's peak memory, as the process that runs it measures it (shared/limits.py,
PeakMemory; shared/call.py): in this process, real allocations, the real high-water mark
of /proc/self. A job's peak counts what it allocated; the next job does not inherit it;
and a stream of trivial jobs does not bring the mark down before each one."""

from __future__ import annotations

import os
import sys

import pytest

from nbmake_ext.shared import limits
from nbmake_ext.shared.call import run_call
from nbmake_ext.shared.outcomes import Call, JobReturned

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux")
                                or not os.path.exists("/proc/self/clear_refs"),
                                reason="the high-water mark is reset through /proc/self/clear_refs")

MB = 1 << 20


def allocate(megabytes: int) -> int:
    block = bytearray(megabytes * MB)
    for i in range(0, len(block), 4096):  # touch every page: resident, not just reserved
        block[i] = 1
    return len(block)  # (freed as it returns)


def trivial(i: int) -> int:
    return 2 * i


def peak_of(func, *args) -> int:
    [out] = run_call(Call(func.__name__, func, args, {}, False), sink=None)
    assert isinstance(out, JobReturned)
    return out.timing.peak_rss


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_job_counts_what_it_allocated_and_the_next_one_does_not_inherit_it():
    before = resident()
    big = peak_of(allocate, 150)
    assert big >= before + 140 * MB  # (some of what was resident before may be reused)
    # The mark rose during that job: it is brought down before the next one.
    small = peak_of(trivial, 1)
    assert small < big - 100 * MB
    assert small <= resident() + 20 * MB


@pytest.fixture
def resets(monkeypatch) -> list:
    """One entry per time the high-water mark is brought down."""
    done: list = []
    reset = limits.PeakMemory.reset
    monkeypatch.setattr(limits.PeakMemory, "reset", lambda self: (done.append(1), reset(self))[1])
    return done


def test_trivial_jobs_in_a_row_leave_the_mark_alone_most_of_the_time(resets):
    peak_of(allocate, 20)  # whatever came before, the next job resets
    resets.clear()
    for i in range(2000):
        peak_of(trivial, i)
    # Before, every job reset it (2000). Now: when the mark rose (rarely, for these) and
    # at least every RESET_EVERY.
    assert len(resets) < 400, len(resets)


def test_a_job_that_starts_long_after_the_last_reset_brings_the_mark_down(monkeypatch, resets):
    peak_of(trivial, 0)
    # As if the last reset were long ago, with no rise since.
    monkeypatch.setattr(limits.peak_memory, "_reset_at",
                        limits.peak_memory._reset_at - 2 * limits.PeakMemory.RESET_EVERY)
    resets.clear()
    peak_of(trivial, 1)
    assert resets == [1]


def test_the_reset_of_the_mark_is_not_counted_in_the_jobs_duration(monkeypatch):
    """The first job of an engine always resets it: its duration tells the kernel how
    many jobs an engine holds (kernel/pool.py), so it must be the job's own."""
    import time

    reset = limits.PeakMemory.reset
    monkeypatch.setattr(limits.PeakMemory, "reset",
                        lambda self: (time.sleep(0.05), reset(self))[1])
    peak_of(allocate, 20)  # the mark rose: the next job resets it
    [out] = run_call(Call("t", trivial, (1,), {}, False), sink=None)
    assert isinstance(out, JobReturned)
    assert out.timing.duration < 0.02
    assert out.timing.ended - out.timing.started == pytest.approx(out.timing.duration, abs=1e-5)
