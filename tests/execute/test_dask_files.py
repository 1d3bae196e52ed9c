"""Files and shell steps (SPEC 10) with ``parmake --dask``, on a LocalCluster whose
workers share the kernel's file system: the workers check the inputs, remove and
fingerprint the outputs; a shell step runs on a worker; a timed-out one ends with its
whole process group there too (the kernel cannot stop a running task: the step's own
time limit does).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")
import cloudpickle  # noqa: E402
import dask  # noqa: E402

from nbmake_ext import Context, JobsFailed  # noqa: E402
from nbmake_ext.files.shell import group_members  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(180)

LOOPBACK = dict(host="127.0.0.1", dashboard_address=None,
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})


def upper(src: str, out: str) -> int:
    with open(src) as f:
        text = f.read()
    with open(out, "w") as f:
        f.write(f"{os.getpid()}\n{text.upper()}")
    return len(text)


def forgets(out: str) -> None:
    pass


@pytest.fixture(scope="module")
def cluster():
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      **LOOPBACK)
        client = distributed.Client(lc, set_as_default=False)
        try:
            client.wait_for_workers(2, timeout=30)
            yield client
        finally:
            client.close()
            lc.close()


@pytest.fixture
def here(tmp_path, monkeypatch):
    work = tmp_path / "work dir"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("NBMAKE_STORE", raising=False)
    return work


def dask_make(ctx, client):
    try:
        return ctx.parmake(dask=client)
    except JobsFailed as exc:
        return exc


def define(here: Path, command: str = "sort {input} > {output}"):
    ctx = Context(here.parent / "store")
    ctx.report = lambda line: None
    step = ctx.sh(command, inputs=["in put.txt"], outputs=["sorted/list.txt"], job_id="sort")
    # (a worker's working directory is its own: a function gets absolute paths)
    ctx.comp(upper, step.outputs[0], str(here / "up.txt"), job_id="upper",
             job_outputs=["up.txt"])
    return ctx


def test_files_and_shell_steps_on_dask_workers(cluster, here):
    client = cluster
    workers = set(client.run(os.getpid).values())
    Path("in put.txt").write_text("b\na\n")
    with define(here) as ctx:
        report = dask_make(ctx, client)
        assert not isinstance(report, JobsFailed), \
            (report, [ctx.details(j).error for j in ("sort", "upper")])
        assert report.ran == 2
        assert Path("sorted/list.txt").read_text() == "a\nb\n"
        pid, text = Path("up.txt").read_text().split("\n", 1)
        assert int(pid) in workers and text == "A\nB\n"
        assert ctx.details("sort").engine.startswith("tcp://127.0.0.1")
    with define(here) as ctx:
        assert dask_make(ctx, client).ran == 0

    os.remove("up.txt")  # deleted output: that job alone
    with define(here) as ctx:
        assert ctx.why("upper") == ["output up.txt was deleted"]
        report = dask_make(ctx, client)
        assert (report.ran, report.skipped) == (1, 1)

    with define(here, "sort -u {input} > {output}") as ctx:  # the same bytes: cut off
        assert ctx.why("sort") == ["shell command changed"]
        report = dask_make(ctx, client)
        assert (report.ran, report.skipped) == (1, 1)

    Path("in put.txt").write_text("c\n")  # an edited input: both
    with define(here, "sort -u {input} > {output}") as ctx:
        assert dask_make(ctx, client).ran == 2
        assert Path("up.txt").read_text().split("\n", 1)[1] == "C\n"

    with Context(here.parent / "store") as ctx:  # a failing command, a forgotten output
        ctx.report = lambda line: None
        Path("old.txt").write_text("stale")
        ctx.sh("echo bad >&2; exit 4", outputs=["old.txt"], job_id="bad")
        ctx.comp(forgets, str(here / "f.txt"), job_id="forgets", job_outputs=["f.txt"])
        failed = dask_make(ctx, client)
        assert isinstance(failed, JobsFailed)
        assert ctx.details("bad").error == "CommandFailed: command exited with code 4: bad"
        # (named as the worker sees it: from its own working directory, absolute here)
        assert ctx.details("forgets").error == f"it did not write its output {here / 'f.txt'}"
        assert not Path("old.txt").exists()  # removed before the step ran


def test_a_timed_out_shell_step_on_a_worker_ends_with_its_process_group(cluster, here):
    client = cluster
    with Context(here.parent / "store") as ctx:
        ctx.report = lambda line: None
        ctx.sh("echo $$ > pgid.txt; (trap '' TERM; sleep 60) & sleep 60 & wait",
               job_id="sleeper", job_timeout=1)
        t0 = time.monotonic()
        failed = dask_make(ctx, client)
        assert isinstance(failed, JobsFailed) and time.monotonic() - t0 < 30
        assert ctx.details("sleeper").error.startswith("timed out after 1 s")
    pgid = int(Path("pgid.txt").read_text())
    end = time.monotonic() + 15
    while group_members(pgid) and time.monotonic() < end:
        time.sleep(0.05)
    assert group_members(pgid) == []
