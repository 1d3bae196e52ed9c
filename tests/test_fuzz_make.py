"""The make fuzz test: random notebooks through many consecutive makes with random edits.

A hypothesis state machine keeps a generated notebook (helpers ``h<i>``, a constant ``C``,
the children's function ``g`` and one function ``f<slot>`` per job, some of them dynamic)
running in a real ``Context`` on a real store, and applies random edits (code that changes the
result, code that keeps it, comment-only edits, helpers, the constant, arguments, failures,
fixes), deleted and corrupted result files, ``clean``, ``remake``, ``make`` of all or some
targets (ids, globs, state words), interrupts at any job, and kernel restarts. Before most
commands it re-runs the registration cell, as a user re-running the notebook would; before
the others it does not (an edited helper counts all the same).

An independent model (tests/fuzz/nbfuzz_model.py) predicts each make from the contract alone.
After every command it checks that
- the jobs that ran are exactly those that had to (none that was up to date, all that were
  not; after a restart or a comment-only edit that means none), each run in an order its
  inputs allow, and each with the reasons it ran recorded;
- every job's state, `why` (empty or naming what changed), dependencies and dynamic
  children agree with the model, and `stats` agrees with the states;
- no stale result is ever served: every `done` job's result is the model's, and every job
  that is done together with everything upstream of it holds exactly what plain Python
  computes from the current notebook;
- make raises JobsFailed / KeyboardInterrupt exactly when it should, and the store's result
  files are exactly one per stored result.

Open product bugs (``KNOWN_BUGS``, each with a test in tests/test_fuzz_regressions.py) are
steered around; ``NBMAKE_FUZZ_FIXED=all`` (or a comma list of their names) drives the machine
into those paths to check a fix. ``NBMAKE_FUZZ_STATS=1`` (with ``-s``) prints what the run
exercised (early cutoffs, interrupts, failures, forgotten children, ...). ``NBMAKE_FUZZ_EXAMPLES`` and
``NBMAKE_FUZZ_STEPS`` make it run longer; pytest's ``--hypothesis-seed=N`` picks a seed;
``NBMAKE_FUZZ_NO_SHRINK=1`` reports a failure at once, unshrunk (shrinking a long stateful
run can take minutes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import warnings
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import event as _event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))

import logcheck  # noqa: E402
import nbfuzz_probe as probe  # noqa: E402
from nbfuzz_model import (  # noqa: E402
    BLOCKED, FAIL, MAY, REMAKE, RUN, STATE_WORDS, UNFINISHED, Model,
)
from nbfuzz_notebook import (  # noqa: E402
    HOWS, MOD, FDef, GDef, Helper, JobDef, Kernel, Notebook, cell_of, cells, clear_oracle_cache,
    registration_source, resolve, run_child, run_job,
)

from nbmake_ext import Context, JobFailed, JobsFailed, NotDone  # noqa: E402
from nbmake_ext.kernel import clean_makes  # noqa: E402
from nbmake_ext.errors import UnknownTarget  # noqa: E402
from nbmake_ext.fingerprint import set_tracked_root  # noqa: E402

# Bugs found and not fixed yet: the machine steers around their paths (see fixed()).
KNOWN_BUGS: dict[str, str] = {}
# Found by this test and fixed since (see tests/test_fuzz_regressions.py): code fingerprints
# frozen at registration (also in state_of); stale children after an incomplete dynamic run;
# reasons lost when a child failed; a dynamic job failing on a corrupt child; a remade corrupt
# result crashing make or losing its file; Complete emitted twice; `why` omitting a swapped
# dependency; queued dependents of a lost result; a claim kept after an interrupt; waiting
# dependents of a lost result; a dynamic child read back after a restart with the globals of
# a later command.
_FIXED = set(filter(None, os.environ.get("NBMAKE_FUZZ_FIXED", "").split(",")))


def fixed(bug: str) -> bool:
    """Whether the machine may drive into ``bug``'s path: yes once it is no longer known."""
    return bug not in KNOWN_BUGS or bug in _FIXED or "all" in _FIXED


EXAMPLES = int(os.environ.get("NBMAKE_FUZZ_EXAMPLES", "200"))
STEPS = int(os.environ.get("NBMAKE_FUZZ_STEPS", "40"))
HANG_SECONDS = 60


EVENTS: Counter = Counter()  # what the machine exercised, over all examples


def event(what: str) -> None:
    EVENTS[what] += 1
    _event(what)


# --- a watchdog, so that a make that never ends fails the test instead of hanging it --------

class MakeHung(Exception):
    pass


_armed = False


def _on_alarm(signum, frame):
    if _armed:
        raise MakeHung(f"a command did not finish within {HANG_SECONDS}s")


@contextlib.contextmanager
def watchdog():
    global _armed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGUSR1, _on_alarm)
    timer = threading.Timer(HANG_SECONDS, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.daemon = True
    _armed = True
    timer.start()
    try:
        yield
    finally:
        _armed = False
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGUSR1, old)


# --- random notebooks -----------------------------------------------------------------------


@st.composite
def notebooks(draw) -> Notebook:
    nh = draw(st.integers(1, 3))
    helpers = []
    for i in range(nh):
        calls = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        helpers.append(Helper(draw(st.integers(1, 4)), draw(st.integers(0, 3)), calls,
                              draw(st.booleans())))
    g = GDef(draw(st.one_of(st.none(), st.integers(0, nh - 1))), draw(st.integers(0, 3)))
    jobs = []
    for s in range(draw(st.integers(3, 8))):
        dynamic = draw(st.integers(0, 2)) == 0
        deps = draw(st.lists(st.tuples(st.integers(0, s - 1), st.sampled_from(HOWS)),
                             max_size=3, unique_by=lambda t: t[0])) if s else []
        code = FDef(draw(st.integers(0, 3)), draw(st.one_of(st.none(), st.integers(0, nh - 1))),
                    draw(st.booleans()), draw(st.sampled_from([MOD, MOD, 7, 2])),
                    chain=dynamic and draw(st.booleans()),
                    child_ids=not dynamic or draw(st.booleans()))
        jobs.append(JobDef(s, dynamic, draw(st.booleans()), draw(st.integers(0, 5)),
                           tuple(deps), draw(st.integers(0, 3)) if dynamic else 0, code))
    return Notebook(draw(st.integers(0, 3)), tuple(helpers), g, tuple(jobs))


def file_prefix(job_id: str) -> str:
    return hashlib.blake2b(job_id.encode(), digest_size=10).hexdigest() + "-"


JOB_EDITS = ("k", "noop", "comment", "helper", "uses_c", "mod", "fail", "fix", "chain", "child_ids")
HELPER_EDITS = ("a", "b", "calls", "uses_c", "noop", "comment")
G_EDITS = ("helper", "k", "fail_on", "noop", "comment")
TARGET_KINDS = ("all", "all", "ids", "glob", "state")
REGISTER = st.sampled_from([True, True, True, False])


class MakeFuzz(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="nbfuzz-")
        root = os.path.join(self.tmp, "project")  # tracked root: nothing of ours is in it
        os.mkdir(root)
        set_tracked_root(root)
        self.store = os.path.join(self.tmp, "store")
        self.ctx: Context | None = None
        self.kernel: Kernel | None = None
        self.model: Model | None = None
        self.damaged: set[str] = set()  # jobs whose result file we deleted or corrupted
        self.settled = False            # the last command was a complete make of everything
        #                                 with nothing failed, and nothing changed since
        # Makes told by the record of the last clean make (kernel/clean_makes.py): counted
        # in the statistics, checked like any other.
        self.told = 0
        self._unchanged_report = clean_makes.unchanged_report

        def counted(*args, **kwargs):
            report = self._unchanged_report(*args, **kwargs)
            self.told += report is not None
            return report
        clean_makes.unchanged_report = counted

    # -- the kernel -----------------------------------------------------------------------

    @initialize(nb=notebooks(), inline=st.booleans())
    def start(self, nb: Notebook, inline: bool):
        self.nb = nb
        self.model = Model(nb)
        self.open_kernel(inline=inline)
        note("notebook:\n" + "".join(src for _, src in cells(nb)) + registration_source(nb))

    def open_kernel(self, durable: bool = False, inline: bool = True) -> None:
        """``inline``: small results are rows of the database (the default), else files;
        a store may hold both kinds after a restart."""
        with self.product():
            self.ctx = Context(self.store, durable=durable)
        if not inline:
            self.ctx.store.inline_max = 0
        self.ctx.validate = True
        self.ctx.report = lambda line: None
        self.kernel = Kernel()
        self.kernel.ns.update(comp=self.ctx.comp, comp_dynamic=self.ctx.comp_dynamic)
        for _, src in cells(self.nb):
            self.kernel.run(src)

    def teardown(self):
        clean_makes.unchanged_report = self._unchanged_report
        try:
            if self.ctx is not None:
                with self.product():
                    self.ctx.close()
        finally:
            if self.kernel is not None:
                self.kernel.forget_sources()
            set_tracked_root(None)
            probe.reset()
            clear_oracle_cache()
            shutil.rmtree(self.tmp, ignore_errors=True)

    @contextlib.contextmanager
    def product(self):
        """Calls into the product: the warnings it logs are caught, and each must be about
        a result file we deleted or corrupted; it issues no Python warning."""
        with warnings.catch_warnings(record=True) as python_warnings, \
                logcheck.library_warnings() as caught:
            warnings.simplefilter("always")
            yield caught
        assert not python_warnings, [str(w.message) for w in python_warnings]
        for msg in logcheck.messages(caught):
            assert any(f"'{j}'" in msg for j in self.damaged), f"unexpected warning: {msg}"

    def edit(self, nb: Notebook, key: str) -> None:
        """The user edits one cell and runs it."""
        self.nb = self.model.cur = nb
        self.kernel.run(cell_of(nb, key))
        self.settled = False

    def register(self) -> None:
        """The user re-runs the cell that defines the jobs."""
        if self.model.registered != self.nb.jobs:
            self.settled = False  # registering changes definitions
        with self.product():
            self.kernel.run(registration_source(self.nb))
        self.model.register(self.nb)
        for j in self.nb.jobs:
            assert self.kernel.ns["P"][j.slot].job_id == self.model.top[j.slot]

    # -- edits ----------------------------------------------------------------------------

    @rule(i=st.integers(0, 9), what=st.sampled_from(JOB_EDITS), v=st.integers(0, 3))
    def edit_job(self, i, what, v):
        j = self.nb.jobs[i % len(self.nb.jobs)]
        f = j.code
        nh = len(self.nb.helpers)
        if what in ("chain", "child_ids") and not j.dynamic:
            what = "noop"
        if what == "k":
            f = dataclasses.replace(f, k=v)
        elif what == "noop":
            f = dataclasses.replace(f, noop=f.noop + 1)
        elif what == "comment":
            f = dataclasses.replace(f, comment=f.comment + 1)
        elif what == "helper":
            f = dataclasses.replace(f, helper=None if v == 3 else v % nh)
        elif what == "uses_c":
            f = dataclasses.replace(f, uses_c=not f.uses_c)
        elif what == "mod":
            f = dataclasses.replace(f, mod=(MOD, 7, 2, MOD)[v])
        elif what == "fail":
            f = dataclasses.replace(f, fail="end" if j.dynamic and v % 2 else "top")
        elif what == "fix":
            f = dataclasses.replace(f, fail=None)
        elif what == "chain":
            f = dataclasses.replace(f, chain=not f.chain)
        elif what == "child_ids":
            f = dataclasses.replace(f, child_ids=not f.child_ids)
        jobs = list(self.nb.jobs)
        jobs[j.slot] = dataclasses.replace(j, code=f)
        self.edit(dataclasses.replace(self.nb, jobs=tuple(jobs)), f"f{j.slot}")

    @rule(i=st.integers(0, 2), what=st.sampled_from(HELPER_EDITS), v=st.integers(0, 3))
    def edit_helper(self, i, what, v):
        i %= len(self.nb.helpers)
        h = self.nb.helpers[i]
        if what == "a":
            h = dataclasses.replace(h, a=v + 1)
        elif what == "b":
            h = dataclasses.replace(h, b=v)
        elif what == "calls":
            h = dataclasses.replace(h, calls=None if i == 0 or v == 3 else v % i)
        elif what == "uses_c":
            h = dataclasses.replace(h, uses_c=not h.uses_c)
        elif what == "noop":
            h = dataclasses.replace(h, noop=h.noop + 1)
        else:
            h = dataclasses.replace(h, comment=h.comment + 1)
        helpers = list(self.nb.helpers)
        helpers[i] = h
        self.edit(dataclasses.replace(self.nb, helpers=tuple(helpers)), f"h{i}")

    @rule(what=st.sampled_from(G_EDITS), v=st.integers(0, 3))
    def edit_g(self, what, v):
        g = self.nb.g
        if what == "helper":
            g = dataclasses.replace(g, helper=None if v == 3 else v % len(self.nb.helpers))
        elif what == "k":
            g = dataclasses.replace(g, k=v)
        elif what == "fail_on":
            g = dataclasses.replace(g, fail_on=None if v == 3 else v)
        elif what == "noop":
            g = dataclasses.replace(g, noop=g.noop + 1)
        else:
            g = dataclasses.replace(g, comment=g.comment + 1)
        self.edit(dataclasses.replace(self.nb, g=g), "g")

    @rule(v=st.integers(0, 3))
    def edit_constant(self, v):
        self.edit(dataclasses.replace(self.nb, C=v), "C")

    @rule(i=st.integers(0, 9), what=st.sampled_from(["x", "dep", "how", "n"]),
          v=st.integers(0, 9))
    def change_arguments(self, i, what, v):
        # Only jobs with an explicit id: a default id changes with the arguments, which
        # would leave the old job behind as an orphan the notebook no longer defines.
        explicit = [j for j in self.nb.jobs if j.explicit]
        if not explicit:
            return
        j = explicit[i % len(explicit)]
        if what == "n" and not j.dynamic:
            what = "x"
        if what == "x" or (what in ("dep", "how") and j.slot == 0):
            j = dataclasses.replace(j, x=v % 6)
        elif what == "n":
            j = dataclasses.replace(j, n=v % 4)
        elif what == "dep":  # toggle one dependency
            s = v % j.slot
            deps = dict(j.deps)
            if s in deps:
                del deps[s]
            else:
                deps[s] = HOWS[v % len(HOWS)]
            j = dataclasses.replace(j, deps=tuple(deps.items()))
        elif j.deps:  # pass one dependency another way: a change of arguments
            k = v % len(j.deps)
            deps = list(j.deps)
            deps[k] = (deps[k][0], HOWS[(HOWS.index(deps[k][1]) + 1) % len(HOWS)])
            j = dataclasses.replace(j, deps=tuple(deps))
        jobs = list(self.nb.jobs)
        jobs[j.slot] = j
        self.nb = self.model.cur = dataclasses.replace(self.nb, jobs=tuple(jobs))
        self.settled = False

    @rule()
    def run_all_cells(self):
        """Re-run every cell unchanged: new function objects, the same code."""
        for _, src in cells(self.nb):
            self.kernel.run(src)

    @rule(durable=st.booleans(), inline=st.booleans())
    def restart_kernel(self, durable, inline):
        """Close the context, start a fresh namespace, re-run the whole notebook."""
        with self.product():
            self.ctx.close()
        self.kernel.forget_sources()
        self.model.restart()
        self.open_kernel(durable, inline)
        self.register()
        self.check_all()

    # -- the store behind the product's back ------------------------------------------------

    def result_files(self) -> list[str]:
        d = os.path.join(self.store, "results")
        return sorted(f for f in os.listdir(d) if not f.startswith("."))

    def result_rows(self) -> list[str]:
        """Jobs whose result is a row of the database."""
        with contextlib.closing(sqlite3.connect(os.path.join(self.store, "nbmake.db"))) as conn:
            return [j for (j,) in conn.execute("SELECT job_id FROM results ORDER BY job_id")]

    def damage_row(self, jid: str, delete: bool) -> None:
        with contextlib.closing(sqlite3.connect(os.path.join(self.store, "nbmake.db"))) as conn:
            if delete:
                conn.execute("DELETE FROM results WHERE job_id=?", (jid,))
            else:
                (data,) = conn.execute("SELECT data FROM results WHERE job_id=?",
                                       (jid,)).fetchone()
                i = len(data) // 2
                conn.execute("UPDATE results SET data=? WHERE job_id=?",
                             (data[:i] + bytes([(data[i] + 1) % 256]) + data[i + 1:], jid))
            conn.commit()

    @rule(i=st.integers(0, 50), delete=st.booleans())
    def damage_result_row(self, i, delete):
        """Delete or change a result kept in the database: found only when it is read, like
        a corrupt file whose size and time are kept."""
        rows = self.result_rows()
        if not rows:
            return
        jid = rows[i % len(rows)]
        assert jid in self.model.records, f"a result row of no job: {jid}"
        if not (fixed("lost-result-queued-dependents")
                and fixed("lost-result-waiting-dependents")):
            spec = self.model.specs[jid]
            if len(self.model.dependents().get(jid, [])) + (spec.parent is not None) > 1:
                return
        self.damage_row(jid, delete)
        rec = self.model.records[jid]
        rec.corrupt = rec.present
        self.damaged.add(jid)
        self.settled = False
        note(f"{'deleted' if delete else 'corrupted'} the result row of {jid}")

    def owner_of(self, name: str) -> str | None:
        for jid in self.model.specs:
            if name.startswith(file_prefix(jid)):
                return jid
        return None

    @rule(i=st.integers(0, 50))
    def delete_result_file(self, i):
        files = self.result_files()
        if not files:
            return
        name = files[i % len(files)]
        os.unlink(os.path.join(self.store, "results", name))
        jid = self.owner_of(name)
        assert jid is not None, f"result file {name} belongs to no job"
        self.model.records[jid].present = False
        self.damaged.add(jid)
        self.settled = False
        note(f"deleted the result file of {jid}")

    @rule(i=st.integers(0, 50), stealthy=st.booleans())
    def corrupt_result_file(self, i, stealthy):
        """Change a byte. Stealthy: keep size and time, so only the checksum can tell."""
        files = self.result_files()
        if not files:
            return
        name = files[i % len(files)]
        jid = self.owner_of(name)
        assert jid is not None, f"result file {name} belongs to no job"
        path = os.path.join(self.store, "results", name)
        before = os.stat(path)
        data = bytearray(Path(path).read_bytes())
        data[len(data) // 2] = (data[len(data) // 2] + 1) % 256  # twice is still corrupt
        Path(path).write_bytes(bytes(data))
        if stealthy and not (fixed("lost-result-queued-dependents")
                             and fixed("lost-result-waiting-dependents")):
            spec = self.model.specs[jid]
            readers = len(self.model.dependents().get(jid, [])) + (spec.parent is not None)
            stealthy = readers <= 1
        if stealthy:
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        else:
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
        note(f"corrupted the result file of {jid}" + (" (stealthily)" if stealthy else ""))
        rec = self.model.records[jid]
        if stealthy:
            rec.corrupt = rec.present
        else:
            rec.present = False
        self.damaged.add(jid)
        self.settled = False

    @rule(i=st.integers(0, 50))
    def read_result(self, i):
        """Read one result as a user would: the value, or the error its state calls for."""
        m = self.model
        ids = sorted(m.specs)
        if not ids:
            return
        jid = ids[i % len(ids)]
        state, rec = m.state(jid), m.records.get(jid)
        note(f"read the result of {jid} ({state}{', corrupt' if rec and rec.corrupt else ''})")
        top = {v: k for k, v in m.top.items()}
        if not fixed("state-of-no-refresh"):
            self.sync()
        with self.product() as caught:
            try:
                if jid in top:
                    got = self.kernel.ns["P"][top[jid]].result()
                else:
                    got = self.ctx.result_of(jid)
            except JobFailed:
                assert state == "failed", f"{jid}: JobFailed but it is {state}"
            except NotDone:
                if state == "done":
                    assert rec.corrupt, f"{jid} is done but its result cannot be read"
                    assert caught, "a corrupt result without a warning"
                    rec.present = rec.corrupt = False
                    self.settled = False  # found out: the next make runs it again
                else:
                    assert state in ("todo", "stale", "blocked"), state
            else:
                assert state == "done" and not rec.corrupt, f"{jid} ({state}) served {got!r}"
                assert got == rec.value, f"{jid} served {got!r}, made {rec.value!r}"
        self.check_all()

    # -- commands -------------------------------------------------------------------------

    def targets(self, kind: str, picks: list[int]) -> list[str]:
        ids = sorted(self.model.specs)
        if kind == "all" or not ids:
            return ["all"] if picks and picks[0] % 2 else []  # the same thing
        if kind == "ids":
            return list(dict.fromkeys(ids[p % len(ids)] for p in picks or [0]))
        if kind == "glob":
            jid = ids[(picks or [0])[0] % len(ids)]
            return [jid[: max(1, len(jid) // 2)] + "*"]
        return [STATE_WORDS[(picks or [0])[0] % len(STATE_WORDS)]]

    @rule(kind=st.sampled_from(TARGET_KINDS), picks=st.lists(st.integers(0, 50), max_size=3),
          interrupt=st.one_of(st.none(), st.none(), st.integers(1, 6)), register=REGISTER)
    def make(self, kind, picks, interrupt, register):
        """Re-run the registration cell (or not: edits of helpers count anyway), then make."""
        if register:
            self.register()
        self.command("make", self.targets(kind, picks), interrupt)

    @rule(picks=st.lists(st.integers(0, 50), min_size=1, max_size=2),
          interrupt=st.one_of(st.none(), st.none(), st.integers(1, 4)), register=REGISTER)
    def remake(self, picks, interrupt, register):
        if register:
            self.register()
        self.command("remake", self.targets("ids", picks), interrupt)

    @rule()
    def make_again(self):
        """make right after make: nothing may run."""
        settled = self.settled and self.model.registered == self.nb.jobs
        self.register()
        ran = self.command("make", [], None)
        if settled:
            assert ran == [], f"a make right after a complete make ran {ran}"

    @rule(kind=st.sampled_from(TARGET_KINDS), picks=st.lists(st.integers(0, 50), max_size=2),
          register=REGISTER)
    def clean(self, kind, picks, register):
        if register:
            self.register()
        self.check_why()
        targets = self.targets(kind, picks)
        ids = self.model.select(targets)
        with self.product():
            if ids is None:
                with pytest.raises(UnknownTarget):
                    self.ctx.clean(*targets)
            else:
                got = self.ctx.clean(*targets)
                want = self.model.clean(ids)
                assert sorted(got) == sorted(want)
        self.settled = False
        self.check_all()

    def command(self, name: str, targets: list[str], interrupt: int | None) -> list[str]:
        m = self.model
        self.check_why()
        ids = m.select(targets)
        if ids is None or (name == "remake" and not targets):
            event(f"{name}: unknown target")
            with self.product(), pytest.raises(UnknownTarget):
                getattr(self.ctx, name)(*targets)
            self.check_all()
            return []
        if interrupt is not None and not fixed("interrupt-leaks-claim") \
                and any(r.corrupt for r in m.records.values()):
            interrupt = None
        forced: dict[str, str] = {}
        order = ids
        if name == "remake":
            forced = dict.fromkeys(ids, REMAKE)
            order = ids + sorted(m.downstream(ids) - set(ids))
        with self.product():
            why_before = {j: self.ctx.why(j) for j in m.closure(order)}
        m.forced.update(forced)
        plan = m.plan(order, forced)
        probe.reset(interrupt)
        error: BaseException | None = None
        with self.product() as caught, watchdog():
            try:
                getattr(self.ctx, name)(*targets)
            except (JobsFailed, KeyboardInterrupt) as exc:
                error = exc
        calls = list(probe.calls)
        probe.reset()
        interrupted = interrupt is not None and len(calls) >= interrupt
        ran = self.map_calls(plan, calls)
        note(f"{name}{tuple(targets)} ran {ran}" + (" (interrupted)" if interrupted else ""))

        if interrupted:
            assert isinstance(error, KeyboardInterrupt), f"interrupt not re-raised: {error!r}"
        else:
            assert not isinstance(error, KeyboardInterrupt), error
        # what ran: only jobs that had to (or may), each once, all of those that had to
        allowed = plan.allowed()
        assert len(set(ran)) == len(ran), f"a job ran twice: {ran}"
        for jid in ran:
            assert jid in allowed, f"{jid} ran but was up to date (outcome {plan.outcome.get(jid)})"
        if not interrupted:
            missing = plan.must() - set(ran)
            assert not missing, f"{sorted(missing)} had to run but did not"
        # each job ran after the jobs it reads
        seen: set[str] = set()
        for jid in ran:
            s = plan.specs[jid]
            for d in s.deps:
                assert d not in ran or d in seen, f"{jid} ran before its dependency {d}"
            # (a parent re-run only because a dependent found its result corrupt comes late)
            assert s.parent not in ran or s.parent in seen or s.parent in plan.rerun_corrupt, \
                f"{jid} ran before its parent"
            seen.add(jid)
        # every job that ran had a reason `why` could name, or something upstream ran first
        seen = set()
        for jid in ran:
            s = plan.specs[jid]
            upstream_ran = any(d in seen for d in s.deps) or s.parent in seen
            new = jid not in why_before
            corrupt = jid in plan.rerun_corrupt or jid in plan.may_rerun
            assert why_before.get(jid) or upstream_ran or new or corrupt or jid in forced, \
                f"{jid} ran although `why` said it was up to date and nothing upstream ran"
            seen.add(jid)
        if plan.rerun_corrupt and not interrupted:
            assert caught, "a corrupt result was read without a warning"

        # the model takes what ran
        adopt = {}
        with self.product():
            for jid, o in plan.outcome.items():
                if o == MAY and jid not in ran:  # (a child may be new: plan.specs)
                    try:
                        adopt[jid] = self.ctx.state_of(jid)
                    except UnknownTarget:  # its parent was interrupted: never defined
                        assert interrupted, f"{jid} was never defined"
                    else:
                        assert adopt[jid] != "failed" or interrupted, f"{jid} was not decided"
        for jid in plan.may_rerun:
            if jid in ran:
                plan.outcome[jid] = RUN
                plan.consumed[jid] = {d: m.records[d].value for d in plan.specs[jid].deps}
                plan.value[jid] = m.records[jid].value
        recorded = m.apply(plan, ran, interrupt - 1 if interrupted else None, adopt)
        self.events(name, plan, ran, interrupted)
        for jid in plan.rerun_corrupt | plan.may_rerun:  # (a child its parent read: may_rerun)
            rec = m.records.get(jid)
            if rec is None or not rec.corrupt:
                continue
            if jid in ran:
                rec.present = rec.corrupt = False  # found corrupt, its re-run interrupted
            elif interrupted:  # a reader found it corrupt before the interrupt, or none did
                with self.product():
                    if self.ctx.state_of(jid) == "todo":
                        rec.present = rec.corrupt = False
        # A job the plan left open (MAY: the children of a failed dynamic job) may read a
        # corrupt result the plan did not see read: that result's job then runs again, and
        # has none until it ends (an interrupt may come first). The product says which.
        for jid, rec in m.records.items():
            if rec.corrupt and (jid in ran or interrupted) and jid in m.specs:
                with self.product():
                    if self.ctx.state_of(jid) == "todo":
                        rec.present = rec.corrupt = False

        # JobsFailed exactly when a target failed or is blocked
        if not interrupted:
            bad = [t for t in order if t in m.specs and m.field.get(t) in ("failed", "blocked")
                   and plan.outcome.get(t) in (FAIL, BLOCKED, MAY)]
            if bad:
                assert isinstance(error, JobsFailed), f"targets {bad} failed but no JobsFailed"
            else:
                assert error is None, f"unexpected {error!r}"
        # the reasons of each job that ran were recorded
        with self.product():
            for jid in sorted(recorded):
                assert self.ctx.details(jid).reasons_last_run, \
                    f"{jid} ran with no recorded reasons"
        self.settled = not interrupted and not targets and name == "make" and not any(
            o in (FAIL, BLOCKED, MAY) for o in plan.outcome.values())
        self.check_all()
        return ran

    def events(self, name, plan, ran, interrupted) -> None:
        """What this command exercised (see --hypothesis-show-statistics)."""
        event(f"{name}: interrupted" if interrupted else f"{name}: ran {min(len(ran), 5)}+ jobs")
        if self.told:
            event("make told by the record of the last clean make")
            self.told = 0
        o = plan.outcome
        if any(v == "skip" and any(d in ran for d in plan.specs[j].deps) for j, v in o.items()):
            event("early cutoff: skipped although a dependency ran")
        if any(plan.gone.values()):
            event("dynamic children forgotten")
        if any(plan.defined.values()):
            event("dynamic children defined")
        if FAIL in o.values():
            event("a job failed")
        if BLOCKED in o.values():
            event("a job was blocked")
        if plan.child_failed:
            event("a dynamic job failed through a child")
        if plan.failed_after_return:
            event("a dynamic job failed after defining children")
        if plan.rerun_corrupt:
            event("a corrupt result was read and remade")
        if MAY in o.values():
            event("children of a failed dynamic job: may run")
        if any(j in self.damaged for j in ran):
            event("a deleted or corrupt result was remade")
        if any(self.model.forced.get(j) == UNFINISHED for j in plan.outcome):
            event("a dynamic job whose last run did not finish")

    def map_calls(self, plan, calls: list[str]) -> list[str]:
        """Job ids of the slots the probe logged."""
        allowed = plan.allowed()
        out = []
        for slot in calls:
            cands = [j for j in allowed if plan.specs[j].slot == slot]
            if len(cands) != 1:
                known = {j: plan.outcome.get(j) for j, s in plan.specs.items() if s.slot == slot}
                raise AssertionError(f"a job with slot {slot} ran; model outcomes: {known}")
            out.append(cands[0])
        return out

    # -- checks ---------------------------------------------------------------------------

    def sync(self) -> None:
        """A command that syncs (takes code fingerprints again): `why` of any job."""
        if self.model.specs:
            with self.product():
                self.ctx.why(next(iter(self.model.specs)))
            self.model.synced = self.model.cur

    def check_why(self) -> None:
        self.model.synced = self.model.cur
        with self.product():
            for jid in self.model.specs:
                want = self.model.reasons(jid)
                got = self.ctx.why(jid)
                if want is None:
                    assert got == [], f"why({jid}) = {got}, but it is up to date"
                else:
                    assert got, f"why({jid}) is empty, but it is not up to date"
                    text = " | ".join(got)
                    for phrase in want:
                        assert phrase in text, f"why({jid}) = {got} does not say {phrase!r}"

    def check_all(self) -> None:
        self.model.synced = self.model.cur
        with self.product():
            self._check_all()

    def _check_all(self) -> None:
        ctx, m = self.ctx, self.model
        rows = {r.job_id: r for r in ctx.ls()}
        assert set(rows) == set(m.specs), \
            f"jobs: extra {sorted(set(rows) - set(m.specs))}, missing {sorted(set(m.specs) - set(rows))}"
        states = {}
        for jid, row in rows.items():
            spec = m.specs[jid]
            assert row.parent == spec.parent, f"{jid}: parent {row.parent} != {spec.parent}"
            want = m.state(jid)
            assert row.state == want, f"{jid} is {row.state}, model says {want}"
            states[jid] = want
            rec = m.records.get(jid)
            if want == "done" and not rec.corrupt:
                got = ctx.result_of(jid)
                assert got == rec.value, f"{jid} served {got!r}, made {rec.value!r}"
        # stats agree with ls
        by_state = ctx.stats()["by_state"]
        assert {k: v for k, v in by_state.items() if v} == dict(Counter(states.values()))
        # at most one stored result per job (a file or a row), one for each readable
        # result, none left over
        owners = Counter(self.owner_of(f) for f in self.result_files())
        owners.update(self.result_rows())
        present = {j for j, r in m.records.items() if r.present and not r.corrupt}
        assert None not in owners, f"result files of no job: {dict(owners)}"
        assert all(n == 1 for n in owners.values()), f"several result files: {dict(owners)}"
        assert present <= set(owners) <= set(m.records), \
            f"result files of {sorted(owners)}, results of {sorted(present)}"
        # the graph as details shows it
        for jid, spec in m.specs.items():
            if spec.dynamic or spec.parent is not None:
                d = ctx.details(jid)
                assert sorted(d.children) == sorted(m.children.get(jid, []))
                assert sorted(d.dependencies) == sorted(spec.deps)
        self.check_no_stale(states)

    def check_no_stale(self, states: dict[str, str]) -> None:
        """Jobs done together with everything upstream hold what the notebook computes now."""
        m = self.model
        nb = dataclasses.replace(m.cur, jobs=m.registered)  # what the kernel would run now
        memo: dict[str, bool] = {}

        def fully_done(j: str) -> bool:
            if j not in memo:
                s = m.specs[j]
                memo[j] = states[j] == "done" and not m.records[j].corrupt \
                    and all(fully_done(d) for d in s.deps) \
                    and (s.parent is None or fully_done(s.parent))
            return memo[j]

        oracle: dict[str, object] = {}
        for j in m.registered:
            jid = m.top[j.slot]
            if not fully_done(jid):
                continue
            out = run_job(nb, j, jid, lambda s: oracle[m.top[s]])
            assert out.ok, f"{jid} is done but its code now fails"
            value = out.value
            if j.dynamic:
                kids: dict[str, object] = {}
                for call in out.children:
                    kid = run_child(nb, call, kids.__getitem__)
                    kids[call.job_id] = kid.value if kid.ok else None
                for c in m.children.get(jid, []):
                    if not fully_done(c):
                        continue
                    if not m.specs[c].live and not fixed("stale-stored-child"):
                        continue
                    assert c in kids, f"{c} is done but {jid} no longer defines it"
                    got = self.ctx.result_of(c)
                    assert got == kids[c], f"stale child {c}: {got!r}, notebook says {kids[c]!r}"
                assert all(v is not None for v in kids.values()), f"{jid} done, a child fails now"
                value = resolve(value, kids.__getitem__)
            oracle[jid] = value
            got = self.ctx.result_of(jid)
            assert got == value, f"stale result of {jid}: {got!r}, notebook says {value!r}"


SETTINGS = settings(
    phases=[Phase.explicit, Phase.reuse, Phase.generate] + (
        [] if os.environ.get("NBMAKE_FUZZ_NO_SHRINK") else [Phase.shrink]),
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    database=None,
    print_blob=True,
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.timeout(0)
def test_make_fuzz():
    EVENTS.clear()
    run_state_machine_as_test(MakeFuzz, settings=SETTINGS)
    if os.environ.get("NBMAKE_FUZZ_STATS"):
        print("\nwhat the make fuzz exercised (times, over all examples):")
        for what, n in sorted(EVENTS.items()):
            print(f"{n:8d}  {what}")


# --- fixed scenarios: what the machine checks, spelled out once --------------------------------


class Session:
    """One kernel session on a store: cells run like ipykernel cells; ``make`` returns the
    slots of the jobs that ran, in order (every job function starts with probe.enter)."""

    def __init__(self, tmp_path: Path):
        self.store = tmp_path / "store"
        (tmp_path / "project").mkdir(exist_ok=True)
        set_tracked_root(tmp_path / "project")
        self.kernels: list[Kernel] = []
        self.restart()

    def restart(self) -> None:
        if self.kernels:
            self.ctx.close()
        self.ctx = Context(self.store, durable=False)
        self.ctx.validate = True
        self.ctx.report = lambda line: None
        self.kernel = Kernel()
        self.kernel.ns.update(comp=self.ctx.comp, comp_dynamic=self.ctx.comp_dynamic)
        self.kernel.run("import nbfuzz_probe as probe\n")
        self.kernels.append(self.kernel)

    def cell(self, src: str) -> None:
        import textwrap

        self.kernel.run(textwrap.dedent(src))

    def make(self, *targets: str, interrupt: int | None = None) -> list[str]:
        probe.reset(interrupt)
        try:
            self.ctx.make(*targets)
        finally:
            ran = list(probe.calls)
            probe.reset()
        return ran

    def close(self) -> None:
        self.ctx.close()
        for k in self.kernels:
            k.forget_sources()
        set_tracked_root(None)


@pytest.fixture
def session(tmp_path):
    s = Session(tmp_path)
    yield s
    s.close()


HELPER = "def helper(x):\n    return x + 1\n"
CHAIN = """
def load(x):
    probe.enter("load")
    return helper(x)

def process(a):
    probe.enter("process")
    return a % 2

def report(b):
    probe.enter("report")
    return b * 10
"""
CHAIN_JOBS = """
L = comp(load, 4, job_id="load")
P = comp(process, L, job_id="process")
R = comp(report, P, job_id="report")
"""


def test_helper_edit_makes_its_caller_stale_comments_do_not(session):
    session.cell(HELPER)
    session.cell(CHAIN)
    session.cell(CHAIN_JOBS)
    assert session.make() == ["load", "process", "report"]
    session.cell("def helper(x):\n    # only a comment\n    return (x  +  1)\n")
    session.cell(CHAIN_JOBS)
    assert session.ctx.why("load") == []
    assert session.make() == []
    session.cell("def helper(x):\n    return x + 3\n")  # 5 -> 7: process still gives 1
    session.cell(CHAIN_JOBS)
    assert session.ctx.state_of("load") == "stale"
    assert session.ctx.why("load") == ["code of helper changed"]
    assert session.make() == ["load", "process"]       # report: early cutoff
    assert session.ctx.result_of("report") == 10
    assert session.ctx.details("process").reasons_last_run == \
        ["dependency load produced a new result"]


def test_noop_edit_reruns_the_job_and_nothing_downstream(session):
    session.cell(HELPER)
    session.cell(CHAIN)
    session.cell(CHAIN_JOBS)
    session.make()
    session.cell("""
        def load(x):
            probe.enter("load")
            unused = 0
            return helper(x)
    """)
    session.cell(CHAIN_JOBS)
    assert session.ctx.why("load") == ["code of load changed"]
    assert session.make() == ["load"]
    assert [session.ctx.state_of(j) for j in ("load", "process", "report")] == ["done"] * 3


def test_dynamic_children_follow_their_parent(session):
    session.cell("""
        def child(v):
            probe.enter(f"child{v}")
            return v * v

        def parent(ctx, n):
            probe.enter("parent")
            return [ctx.comp(child, v) for v in range(n)]
    """)
    session.cell("P = comp_dynamic(parent, 3, job_id='P')")
    assert session.make() == ["parent", "child0", "child1", "child2"]
    kids = session.ctx.details("P").children
    assert len(kids) == 3 and session.ctx.result_of("P") == [0, 1, 4]
    session.cell("P = comp_dynamic(parent, 2, job_id='P')")     # one child fewer
    assert session.make() == ["parent"]                       # the others are up to date
    assert sorted(session.ctx.details("P").children) == sorted(kids[:2])
    assert {r.job_id for r in session.ctx.ls()} == {"P", *kids[:2]}
    assert session.ctx.result_of("P") == [0, 1]


def test_kernel_restart_runs_nothing(session):
    session.cell(HELPER)
    session.cell(CHAIN)
    session.cell(CHAIN_JOBS)
    session.make()
    session.restart()
    session.cell(HELPER)
    session.cell(CHAIN)
    session.cell(CHAIN_JOBS)
    assert [session.ctx.why(j) for j in ("load", "process", "report")] == [[], [], []]
    assert session.make() == []


def test_interrupt_keeps_what_finished(session):
    session.cell(HELPER)
    session.cell(CHAIN)
    session.cell(CHAIN_JOBS)
    with pytest.raises(KeyboardInterrupt):
        session.make(interrupt=2)                        # Ctrl-C while process runs
    assert [session.ctx.state_of(j) for j in ("load", "process", "report")] == \
        ["done", "todo", "todo"]
    assert session.make() == ["process", "report"]
    assert session.ctx.result_of("report") == 10


def test_failure_blocks_dependents_and_undoing_it_reruns_nothing(session):
    session.cell(HELPER)
    session.cell(CHAIN)
    session.cell(CHAIN_JOBS + "X = comp(load, 7, job_id='other')\n")
    session.make()
    session.cell("""
        def process(a):
            probe.enter("process")
            raise ValueError("broken")
    """)
    session.cell(CHAIN_JOBS + "X = comp(load, 7, job_id='other')\n")
    with pytest.raises(JobsFailed):
        session.make()
    states = {r.job_id: r.state for r in session.ctx.ls()}
    assert states == {"load": "done", "process": "failed", "report": "blocked", "other": "done"}
    session.cell(CHAIN)                                   # undo the edit
    session.cell(CHAIN_JOBS + "X = comp(load, 7, job_id='other')\n")
    assert session.make() == []                           # the old results are current again
    assert {r.state for r in session.ctx.ls()} == {"done"}
    assert session.ctx.result_of("report") == 10
