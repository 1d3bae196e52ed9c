"""SPEC 9: every misuse gets a clear error naming the job and the culprit, and loses
nothing already computed.

The table ``CASES`` holds the misuses that fail at once (registration, commands, opening a
store); each runs against a store where a job ``keeper`` was already made, and afterwards
``keeper`` must still be done with its result and must not run again. Misuses that show up
while a make runs (results that cannot be pickled, SystemExit, Ctrl-C, damaged result
files) have their own tests below; those of engines and Dask workers (an argument that
cannot be loaded there, a job raising KeyboardInterrupt or another BaseException) are in
tests/execute/test_engines.py and tests/execute/test_dask.py.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from nbmake_ext import (
    Context, InvalidJob, JobFailed, JobsFailed, NbmakeError, NotDone, Promise, StoreError,
    UnknownTarget,
)
from nbmake_ext.errors import BadUsage
from contexts import new_context
import logcheck

CALLS: list[tuple] = []
FLAGS: dict[str, bool] = {}


# -- jobs ---------------------------------------------------------------------------------


def load(i):
    CALLS.append(("load", i))
    return i * 10


def identity(x):
    CALLS.append(("identity", x))
    return x


def configure(x, cfg=None):
    CALLS.append(("configure", x))
    return x


def process(x):
    CALLS.append(("process", x))
    return x + 1


def make_locked():
    lock = threading.Lock()

    def locked(x):
        with lock:
            return x

    return locked


def give_lock():
    CALLS.append(("give_lock",))
    return {"ok": 1, "lock": threading.Lock()}


def exits():
    CALLS.append(("exits",))
    sys.exit(3)


class DeepTrouble(BaseException):
    """A BaseException that is neither Exception, SystemExit nor KeyboardInterrupt."""


def raises_base():
    CALLS.append(("raises_base",))
    raise DeepTrouble("from the deep")


def interrupted_once(x):
    CALLS.append(("interrupted_once", x))
    if not FLAGS.get("interrupted"):
        FLAGS["interrupted"] = True
        raise KeyboardInterrupt
    return x * 2


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_calls():
    CALLS.clear()
    FLAGS.clear()
    yield
    CALLS.clear()
    FLAGS.clear()


@pytest.fixture
def keeper(ctx):
    """A job made before the misuse: it must survive every one of them."""
    p = ctx.comp(load, 7, job_id="keeper")
    ctx.make()
    assert CALLS == [("load", 7)]
    CALLS.clear()
    return p


def assert_nothing_lost(ctx: Context, keeper: Promise, store_path: Path) -> None:
    assert keeper.state == "done"
    assert keeper.result() == 70
    ctx.make("keeper")
    assert ("load", 7) not in CALLS
    # and a context that starts afresh on the store sees the same
    fresh = new_context(store_path)
    try:
        assert Promise("keeper", fresh).state == "done"
        assert Promise("keeper", fresh).result() == 70
    finally:
        fresh.close()


# -- the table ----------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    action: Callable[[Context, Path], Any]
    exc: type[BaseException]
    fragments: list[str]
    setup: Callable[[Context, Path], Any] | None = None
    marks: list = field(default_factory=list)


def _cycle_setup(ctx, tmp):
    a = ctx.comp(identity, 1, job_id="cyc-a")
    ctx.comp(identity, a, job_id="cyc-b")


def _longer_cycle_setup(ctx, tmp):
    a = ctx.comp(identity, 1, job_id="ring-1")
    b = ctx.comp(identity, a, job_id="ring-2")
    ctx.comp(identity, b, job_id="ring-3")


def _parmake_line(ctx, *words):
    """``parmake WORDS`` as the console and the magics read it."""
    from nbmake_ext.cli import build_parser
    from nbmake_ext.commands import COMMANDS

    ns = build_parser().parse_args(["parmake", *words])
    return COMMANDS["parmake"].run(ctx, ns)


def _file(tmp):
    (tmp / "plain-file").write_text("not a directory")


def _db_is_a_directory(tmp):
    (tmp / "s-db" / "nbmake.db").mkdir(parents=True, mode=0o700)
    os.chmod(tmp / "s-db", 0o700)


def _results_is_a_file(tmp):
    (tmp / "s-res").mkdir(mode=0o700)
    (tmp / "s-res" / "results").write_text("x")


CASES = [
    # -- comp / comp_dynamic ----------------------------------------------------------------
    Case("non-callable with an id", lambda c, t: c.comp(42, 1, job_id="answer"),
         InvalidJob, ["'answer'", "42", "not callable"]),
    Case("non-callable without an id", lambda c, t: c.comp("load", 1),
         InvalidJob, ["'load'", "not callable"]),
    Case("non-callable to comp_dynamic", lambda c, t: c.comp_dynamic(None, job_id="dyn"),
         InvalidJob, ["'dyn'", "None", "not callable"]),
    Case("lock nested in a keyword argument",
         lambda c, t: c.comp(configure, 1, cfg={"lock": threading.Lock()}),
         InvalidJob, ["configure", "kwargs['cfg']['lock']", "cannot be pickled", "lock"]),
    Case("lock nested in a positional argument",
         lambda c, t: c.comp(identity, [1, {"l": threading.Lock()}]),
         InvalidJob, ["identity", "args[0][1]['l']", "cannot be pickled"]),
    Case("lock in an argument of a job with an id",
         lambda c, t: c.comp(configure, 1, cfg={"lock": threading.Lock()}, job_id="cfgjob"),
         InvalidJob, ["'cfgjob'", "kwargs['cfg']['lock']"]),
    Case("lock in an argument of a dynamic job",
         lambda c, t: c.comp_dynamic(configure, cfg=[threading.Lock()]),
         InvalidJob, ["configure", "kwargs['cfg'][0]", "cannot be pickled"]),
    Case("function closing over a lock", lambda c, t: c.comp(make_locked(), 1),
         InvalidJob, ["locked", "function", "cannot be pickled", "lock"]),
    Case("empty job_id", lambda c, t: c.comp(load, 1, job_id=""),
         InvalidJob, ["job_id", "non-empty string"]),
    Case("blank job_id", lambda c, t: c.comp(load, 1, job_id="   "),
         InvalidJob, ["job_id", "non-empty string"]),
    Case("non-string job_id", lambda c, t: c.comp(load, 1, job_id=5),
         InvalidJob, ["5", "job_id", "string"]),
    Case("non-string job_id to comp_dynamic", lambda c, t: c.comp_dynamic(load, job_id=["x"]),
         InvalidJob, ["['x']", "job_id"]),
    Case("dependency cycle by redefinition",
         lambda c, t: c.comp(identity, Promise("cyc-b"), job_id="cyc-a"),
         InvalidJob, ["'cyc-a'", "cycle", "cyc-a -> cyc-b -> cyc-a"], setup=_cycle_setup),
    Case("longer dependency cycle",
         lambda c, t: c.comp(identity, [Promise("ring-3")], job_id="ring-1"),
         InvalidJob, ["'ring-1'", "cycle", "ring-1 -> ring-3 -> ring-2 -> ring-1"],
         setup=_longer_cycle_setup),
    Case("depending on itself",
         lambda c, t: c.comp(identity, Promise("keeper"), job_id="keeper"),
         InvalidJob, ["'keeper'", "itself"]),
    Case("depending on an unknown job", lambda c, t: c.comp(identity, Promise("nope")),
         InvalidJob, ["identity", "unknown job 'nope'"]),
    Case("unknown job nested in a dict key",
         lambda c, t: c.comp(identity, {Promise("nope"): 1}, job_id="needs-nope"),
         InvalidJob, ["'needs-nope'", "unknown job 'nope'"]),
    # -- job options (keywords starting with job_) -------------------------------------------
    Case("job_timeout=-1", lambda c, t: c.comp(load, 1, job_timeout=-1),
         InvalidJob, ["'load-", "job_timeout=-1", "seconds > 0"]),
    Case("job_timeout=0 with an id", lambda c, t: c.comp(load, 1, job_id="slow", job_timeout=0),
         InvalidJob, ["'slow'", "job_timeout=0", "seconds > 0"]),
    Case("job_timeout as text", lambda c, t: c.comp(load, 1, job_timeout="10m"),
         InvalidJob, ["'load-", "job_timeout='10m'"]),
    Case("job_retries=-1", lambda c, t: c.comp(load, 1, job_retries=-1),
         InvalidJob, ["'load-", "job_retries=-1", "whole number >= 0"]),
    Case("job_retries=True", lambda c, t: c.comp(load, 1, job_retries=True),
         InvalidJob, ["job_retries=True", "whole number >= 0"]),
    Case("job_retries=1.5", lambda c, t: c.comp_dynamic(load, job_id="dyn", job_retries=1.5),
         InvalidJob, ["'dyn'", "job_retries=1.5"]),
    Case("negative resource", lambda c, t: c.comp(load, 1, job_resources={"gpus": -1}),
         InvalidJob, ["'load-", "job_resources=", "'gpus'", "-1"]),
    Case("memory that is no size", lambda c, t: c.comp(load, 1, job_resources={"mem": "lots"}),
         InvalidJob, ["'load-", "'mem'", "'lots'", "8GB"]),
    Case("resources not a dict", lambda c, t: c.comp(load, 1, job_resources=["gpus"]),
         InvalidJob, ["'load-", "job_resources=['gpus']", "dict"]),
    Case("unknown job_ keyword", lambda c, t: c.comp(load, 1, job_xyz=1),
         InvalidJob, ["'load-", "unknown keyword job_xyz", "job_timeout, job_retries, "
                                                             "job_resources"]),
    Case("unknown job_ keyword to comp_dynamic",
         lambda c, t: c.comp_dynamic(load, job_id="dyn", job_priority=1),
         InvalidJob, ["'dyn'", "unknown keyword job_priority"]),
    Case("bad option redefining a made job",
         lambda c, t: c.comp(load, 7, job_id="keeper", job_timeout=-5),
         InvalidJob, ["'keeper'", "job_timeout=-5"]),
    # -- commands ---------------------------------------------------------------------------
    Case("make an unknown job", lambda c, t: c.make("nope"), UnknownTarget, ["'nope'"]),
    Case("make: suggestion for a typo", lambda c, t: c.make("keepr"), UnknownTarget,
         ["'keepr'", "did you mean keeper"]),
    Case("make an unmatched glob", lambda c, t: c.make("nope-*"), UnknownTarget, ["'nope-*'"]),
    Case("make: one good, one unknown target", lambda c, t: c.make("keeper", "nope"),
         UnknownTarget, ["'nope'"]),
    Case("ls an unknown job", lambda c, t: c.ls("nope"), UnknownTarget, ["'nope'"]),
    Case("details of an unknown job", lambda c, t: c.details("nope"), UnknownTarget, ["'nope'"]),
    Case("why of an unknown job", lambda c, t: c.why("nope"), UnknownTarget, ["'nope'"]),
    Case("clean an unknown job", lambda c, t: c.clean("nope"), UnknownTarget, ["'nope'"]),
    Case("remake an unknown job", lambda c, t: c.remake("nope"), UnknownTarget, ["'nope'"]),
    Case("remake an unmatched glob", lambda c, t: c.remake("zz*"), UnknownTarget, ["'zz*'"]),
    Case("remake with no targets", lambda c, t: c.remake(), UnknownTarget,
         ["remake", "targets"]),
    Case("result of an unknown job", lambda c, t: Promise("nope", c).result(), UnknownTarget,
         ["'nope'"]),
    Case("state of an unknown job", lambda c, t: Promise("nope", c).state, UnknownTarget,
         ["'nope'"]),
    # -- parmake N: a whole number >= 1 ----------------------------------------------------
    *[Case(f"parmake {' '.join(words)}", lambda c, t, w=words: _parmake_line(c, *w),
           BadUsage, ["whole number >= 1", bad])
      for words, bad in [(["0"], "'0'"), (["-3"], "'-3'"), (["n=0"], "'0'"),
                         (["n=-3"], "'-3'"), (["n=abc"], "'abc'"), (["1.5"], "'1.5'"),
                         (["1.5", "keeper"], "'1.5'"), (["n=2.0", "keeper"], "'2.0'"),
                         (["-n", "0"], "0")]],
    *[Case(f"ctx.parmake(n={n!r})", lambda c, t, n=n: c.parmake(n=n), BadUsage,
           ["whole number >= 1", repr(n)])
      for n in [0, -3, 1.5, "2", True]],
    # -- parmake --resources NAME=AMOUNT,...: amounts >= 0 -----------------------------------
    *[Case(f"parmake --resources {text}",
           lambda c, t, w=text: _parmake_line(c, "--resources", w, "1"),
           BadUsage, ["resources", bad])
      for text, bad in [("licence=x", "'x'"), ("gpus", "NAME=AMOUNT"), ("gpus=-1", "'-1'"),
                        ("mem=lots", "'lots'"), ("a b=1", "resource name")]],
    *[Case(f"ctx.parmake(resources={value!r})",
           lambda c, t, v=value: c.parmake(n=1, resources=v), BadUsage, ["resources", bad])
      for value, bad in [({"licence": "x"}, "'x'"), ({"gpus": -1}, "-1"),
                         ({"mem": "lots"}, "'lots'"), ("gpus=2", "'gpus=2'")]],
    # -- stores that cannot be written ------------------------------------------------------
    Case("store path under a file", lambda c, t: Context(t / "plain-file" / "s"),
         StoreError, ["cannot open the store", "plain-file"], setup=lambda c, t: _file(t)),
    Case("store path is a file", lambda c, t: Context(t / "plain-file"),
         StoreError, ["plain-file"], setup=lambda c, t: _file(t)),
    Case("store database is a directory", lambda c, t: Context(t / "s-db"),
         StoreError, ["s-db"], setup=lambda c, t: _db_is_a_directory(t)),
    Case("store results dir is a file", lambda c, t: Context(t / "s-res"),
         StoreError, ["s-res"], setup=lambda c, t: _results_is_a_file(t)),
    # A store in a directory the user may not write: test_read_only_store_as_another_user
    # (as 'nobody' when the tests run as root, who may write anywhere).
]


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_misuse_is_a_clear_error_and_loses_nothing(case, ctx, keeper, store_path, tmp_path):
    if case.setup is not None:
        case.setup(ctx, tmp_path)
    jobs_before = {r.job_id: r.state for r in ctx.ls()}
    CALLS.clear()
    with pytest.raises(case.exc) as info:
        case.action(ctx, tmp_path)
    message = str(info.value)
    for fragment in case.fragments:
        assert fragment in message, (fragment, message)
    assert isinstance(info.value, NbmakeError)
    assert CALLS == []  # nothing ran
    # nothing was registered, redefined or forgotten by the failed call
    assert {r.job_id: r.state for r in ctx.ls()} == jobs_before
    assert_nothing_lost(ctx, keeper, store_path)


def test_invalid_job_carries_the_job_and_the_culprit(ctx):
    with pytest.raises(InvalidJob) as info:
        ctx.comp(configure, 1, cfg={"lock": threading.Lock()}, job_id="cfgjob")
    assert info.value.job == "cfgjob"
    assert "kwargs['cfg']['lock']" in info.value.culprit


def test_failed_cycle_redefinition_keeps_the_old_definition(ctx):
    a = ctx.comp(identity, 1, job_id="cyc-a")
    b = ctx.comp(identity, a, job_id="cyc-b")
    ctx.make()
    with pytest.raises(InvalidJob, match="cycle"):
        ctx.comp(identity, b, job_id="cyc-a")
    assert a.state == "done" and b.state == "done"
    assert ctx.details("cyc-a").dependencies == []
    CALLS.clear()
    ctx.make()
    assert CALLS == [] and b.result() == 1


def test_read_only_store_as_another_user(tmp_path, keeper, ctx, store_path):
    """A store directory the user may not write: StoreError at Context creation."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(StoreError, match="cannot open the store"):
            Context(ro / "s")
        ctx.close()
        os.chmod(store_path, 0o500)
        try:
            with pytest.raises(StoreError, match="not writable"):
                Context(store_path)
        finally:
            os.chmod(store_path, 0o700)
        return
    # As root every directory is writable: check it as 'nobody' in a child process.
    base = Path(tempfile.mkdtemp(prefix="nbmake-ro-"))
    try:
        os.chmod(base, 0o755)
        existing = base / "existing"
        c = Context(existing, durable=False)
        c.report = lambda line: None
        c.comp(load, 1, job_id="made")
        c.make()
        c.close()
        os.chmod(existing, 0o755)
        os.chmod(existing / "nbmake.db", 0o644)
        lines = [_open_as_nobody(base / "new"), _open_as_nobody(existing)]
        assert lines[0].startswith("StoreError: cannot open the store") and "new" in lines[0]
        assert lines[1].startswith("StoreError: cannot open the store") and "existing" in lines[1]
        # nothing of the existing store was lost
        with logcheck.warns("readable by other users"):
            again = new_context(existing)
        try:
            assert Promise("made", again).result() == 10
        finally:
            again.close()
    finally:
        shutil.rmtree(base)


def _open_as_nobody(path: Path) -> str:
    """Try ``Context(path)`` in a forked child running as user nobody; say what happened.
    (A fresh interpreter cannot be used: this Python lives where nobody may not read.)"""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(r)
        try:
            import logging

            logging.disable(logging.CRITICAL)  # the store is readable by others: it warns
            os.setgid(65534)
            os.setuid(65534)
            try:
                Context(path)
                out = f"opened {path}"
            except StoreError as exc:
                out = f"StoreError: {exc}"
            except BaseException as exc:  # noqa: BLE001
                out = f"{type(exc).__name__}: {exc}"
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


# -- misuses that show while a make runs ----------------------------------------------------


def test_result_that_cannot_be_pickled_fails_the_job_and_others_complete(ctx, keeper, store_path):
    bad = ctx.comp(give_lock)
    down = ctx.comp(identity, bad)
    others = [ctx.comp(load, i) for i in range(3)]
    with pytest.raises(JobsFailed) as info:
        ctx.make()
    error = info.value.failed[bad.job_id]
    assert "result cannot be pickled" in error and "lock" in error
    assert info.value.blocked == {down.job_id: bad.job_id}
    assert bad.state == "failed" and down.state == "blocked"
    with pytest.raises(JobFailed, match="cannot be pickled"):
        bad.result()
    assert [p.result() for p in others] == [0, 10, 20]
    assert ctx.details(bad.job_id).error == error
    assert_nothing_lost(ctx, keeper, store_path)


@pytest.mark.parametrize("func, error", [
    (exits, "SystemExit: 3"),
    (raises_base, "DeepTrouble: from the deep"),
])
def test_system_exit_and_base_exceptions_fail_the_job_and_make_goes_on(
        func, error, ctx, keeper, store_path):
    bad = ctx.comp(func)
    down = ctx.comp(identity, bad)
    later = [ctx.comp(load, i) for i in range(3)]
    with pytest.raises(JobsFailed) as info:
        ctx.make()
    assert info.value.failed == {bad.job_id: error}
    assert info.value.blocked == {down.job_id: bad.job_id}
    assert bad.state == "failed" and ctx.details(bad.job_id).error == error
    assert func.__name__ in ctx.details(bad.job_id).traceback
    assert [p.result() for p in later] == [0, 10, 20]
    assert_nothing_lost(ctx, keeper, store_path)


def test_keyboard_interrupt_in_a_job_stops_make_and_keeps_what_finished(ctx, keeper, store_path):
    first = ctx.comp(load, 1)
    k = ctx.comp(interrupted_once, first)
    after = ctx.comp(process, k)
    with pytest.raises(KeyboardInterrupt):
        ctx.make()
    assert CALLS == [("load", 1), ("interrupted_once", 10)]
    assert ctx.lines[-1].endswith("(interrupted)")
    assert first.state == "done" and first.result() == 10
    assert k.state == "todo" and after.state == "todo"
    assert not ctx.store.running_among(ctx.graph.specs)
    CALLS.clear()
    ctx.make()
    assert CALLS == [("interrupted_once", 10), ("process", 20)]
    assert after.result() == 21
    assert_nothing_lost(ctx, keeper, store_path)


def test_keyboard_interrupt_puts_a_stale_job_back_to_stale(ctx, keeper, store_path):
    FLAGS["interrupted"] = True  # the first run goes through
    first = ctx.comp(load, 1)
    k = ctx.comp(interrupted_once, first, job_id="k")
    ctx.make()
    assert k.result() == 20
    ctx.comp(interrupted_once, [first], job_id="k")  # redefined: stale
    assert k.state == "stale"
    FLAGS["interrupted"] = False
    with pytest.raises(KeyboardInterrupt):
        ctx.make()
    assert k.state == "stale"
    assert ctx.why("k") == ["argument #1 changed"]
    ctx.make()
    assert k.result() == [10, 10]
    assert_nothing_lost(ctx, keeper, store_path)


# Small results are rows of the store's database, large ones files: the tests of damaged
# files store every result as a file; those of damaged results in general run both ways.
@pytest.fixture
def files(ctx):
    ctx.store.inline_max = 0


def _result_file(ctx: Context, job_id: str) -> Path:
    name = ctx.store.details(job_id)["r_file"]
    assert name
    return ctx.store.path / "results" / name


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in (len(data) // 2, len(data) - 2):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _corrupt_result(ctx: Context, job_id: str) -> None:
    """Damage the stored bytes of a result, wherever they are."""
    if ctx.store.inline_max:
        conn = ctx.store._conn
        (data,) = conn.execute("SELECT data FROM results WHERE job_id=?", (job_id,)).fetchone()
        conn.execute("UPDATE results SET data=? WHERE job_id=?", (data[:-2] + b"!.", job_id))
    else:
        _corrupt(_result_file(ctx, job_id))


def test_missing_result_file_runs_the_job_again(ctx, files, keeper, store_path):
    a = ctx.comp(load, 1)
    b = ctx.comp(process, a)
    ctx.make()
    _result_file(ctx, a.job_id).unlink()
    with logcheck.warns("missing"):  # each command that reads the store
        assert a.state == "todo"
    with logcheck.warns("missing"):
        assert "result file missing or corrupt" in ctx.why(a.job_id)
    CALLS.clear()
    with logcheck.warns("missing"):
        ctx.make()
    assert CALLS == [("load", 1)]  # equal result: b is not re-run
    assert a.result() == 10 and b.result() == 11
    # missing, and needed by a dependent that runs
    _result_file(ctx, a.job_id).unlink()
    with logcheck.warns("missing"):
        ctx.clean(b.job_id)
    CALLS.clear()
    with logcheck.warns("missing"):
        ctx.make()
    assert CALLS == [("load", 1), ("process", 10)]
    assert b.result() == 11
    assert_nothing_lost(ctx, keeper, store_path)


def test_missing_result_file_warns(ctx, files):
    a = ctx.comp(load, 1)
    ctx.make()
    _result_file(ctx, a.job_id).unlink()
    with logcheck.warns(a.job_id):
        ctx.make()
    assert a.result() == 10


def test_corrupt_result_file_is_not_done_and_runs_again(ctx, files, keeper, store_path):
    a = ctx.comp(load, 1)
    ctx.make()
    _corrupt(_result_file(ctx, a.job_id))
    CALLS.clear()
    try:
        with logcheck.warns("corrupt"):
            ctx.make()
        assert CALLS == [("load", 1)]
        assert a.state == "done" and a.result() == 10
    finally:
        assert_nothing_lost(ctx, keeper, store_path)


@pytest.mark.parametrize("inline", [True, False], ids=["row", "file"])
def test_corrupt_result_read_is_an_nbmake_error(ctx, inline):
    ctx.store.inline_max *= inline
    a = ctx.comp(load, 1)
    ctx.make()
    _corrupt_result(ctx, a.job_id)
    with pytest.raises((NbmakeError, NotDone)), logcheck.warns("corrupt"):
        a.result()


@pytest.mark.timeout(10)
@pytest.mark.parametrize("inline", [True, False], ids=["row", "file"])
def test_corrupt_result_needed_by_a_dependent_is_remade_with_a_warning(store_path, inline):
    ctx = new_context(store_path)
    ctx.store.inline_max *= inline
    try:
        a = ctx.comp(load, 1)
        b = ctx.comp(process, a)
        ctx.make()
        _corrupt_result(ctx, a.job_id)
        with logcheck.library_warnings():  # a corrupt file may be noticed here already
            ctx.clean(b.job_id)
        CALLS.clear()
        with logcheck.warns("corrupt"):
            ctx.make()
        assert sorted(CALLS) == [("load", 1), ("process", 10)]
        assert a.result() == 10 and b.result() == 11
    finally:
        try:
            ctx.close()
        except Exception:  # noqa: BLE001 - after a timeout inside the store
            pass
