"""Sending ahead through the real run loop (Driver, a real store in a tmp dir) with a
scripted remote runner and no process: the run loop decides what goes ahead and where
(core/ahead.py), claims it and tells the runner; the runner only runs what it is told, in
order, and says where a job's result is made (``place_of``)."""

from __future__ import annotations

import pickle

from nbmake_ext import Context
from nbmake_ext.shared.outcomes import JobRaised, JobStored, Requeue, Started, Timing
from nbmake_ext.kernel.runner import Capabilities
from nbmake_ext.fingerprint import digest
from nbmake_ext.store import blobs


def step(x, i):
    return x + i


def head(i):
    return i


class OnePlace:
    """One place ("P") running one job per poll, in the order received; values come from
    ``values`` (job -> its value)."""

    capabilities = Capabilities(remote=True, runs_ahead=True, holds_values=False,
                                stops_running_jobs=True, ahead_per_place=2)

    def __init__(self, log: list, fail: set[str] = frozenset()):
        self.log, self.fail = log, set(fail)
        self.queue: list = []             # (job, after)
        self.made: dict[str, tuple] = {}  # job -> (value, checksum) made here this run
        self.out: list = []

    def attach(self):
        self.made.clear()

    def detach(self):
        self.log.append(("detach",))

    def has_capacity(self):
        return self.free_slots() > 0

    def free_slots(self):
        return max(0, 4 - len(self.queue))

    @property
    def busy(self):
        return bool(self.queue or self.out)

    def submit(self, job):
        self.log.append(("submit", job.job_id))
        self.queue.append((job, ()))

    def send_ahead(self, job, place, behind):
        assert place == "P"
        self.log.append(("ahead", job.job_id, behind))
        self.queue.append((job, behind))

    def drop(self, job_ids):
        self.log.append(("drop", tuple(sorted(job_ids))))
        self.queue = [(j, a) for j, a in self.queue if j.job_id not in job_ids]

    def listen_progress(self, tell) -> None:
        pass

    def place_of(self, job_id):
        if job_id in self.made or any(j.job_id == job_id for j, _ in self.queue):
            return "P"
        return None

    def poll(self, timeout):
        out, self.out = self.out, []
        if not self.queue:
            return out
        job, after = self.queue.pop(0)
        jid = job.job_id
        if any(dep not in self.made for dep in after):  # an input failed here
            self.log.append(("skipped", jid))
            return out + [Requeue([jid])]
        consumed = {dep: self.made[dep][1] for dep in after} if after else None
        out.append(Started(jid, "P", 0.0))
        if jid in self.fail:
            self.log.append(("raised", jid))
            return out + [JobRaised(jid, "ValueError: scripted", "", consumed=consumed)]
        value = self.values[jid]
        data = pickle.dumps(value)
        checksum = blobs.checksum(data)
        self.made[jid] = (value, checksum)
        self.log.append(("ran", jid))
        return out + [JobStored(jid, digest(value), "", checksum, (0, 0), Timing(engine="P"),
                                data=data, consumed=consumed)]

    def interrupt(self):
        ids = [j.job_id for j, _ in self.queue]
        self.queue.clear()
        return ids

    def ended_before_interrupt(self):
        return []

    def close(self):
        pass


def make_chain(ctx, n):
    jobs = [ctx.comp(head, 0, job_id="c0")]
    for i in range(1, n):
        jobs.append(ctx.comp(step, jobs[-1], i, job_id=f"c{i}"))
    return {f"c{i}": sum(range(i + 1)) for i in range(n)}


def free_claims(path, ids):
    other = Context(store=path)
    try:
        mine, elsewhere = other.store.claim(ids)
        other.store.release(mine)
        return sorted(mine) == sorted(ids) and not elsewhere
    finally:
        other.close()


def test_a_chain_goes_ahead_two_links_behind_its_head_and_every_link_counts(tmp_path):
    ctx = Context(store=tmp_path / "store")
    ctx.report = lambda line: None
    try:
        values = make_chain(ctx, 5)
        log: list = []
        runner = OnePlace(log)
        runner.values = values
        ctx.sync()
        report = ctx._run(ctx._select(()), runner, "make")
        assert report.ran == 5 and not report.failed
        assert [ctx.result_of(f"c{i}") for i in range(5)] == [0, 1, 3, 6, 10]
        sent = [e for e in log if e[0] in ("submit", "ahead")]
        assert sent == [("submit", "c0"), ("ahead", "c1", ("c0",)), ("ahead", "c2", ("c1",)),
                        ("ahead", "c3", ("c2",)), ("ahead", "c4", ("c3",))], log
        assert ("drop", ()) not in log and not any(e[0] == "drop" and e[1] for e in log), log
        assert free_claims(tmp_path / "store", [f"c{i}" for i in range(5)])
        # never more than two undecided jobs wait ahead at the place
        assert log.index(("ahead", "c3", ("c2",))) > log.index(("ran", "c0"))
    finally:
        ctx.close()


def test_jobs_sent_ahead_behind_a_failure_do_not_run_and_end_blocked(tmp_path):
    ctx = Context(store=tmp_path / "store")
    ctx.report = lambda line: None
    try:
        values = make_chain(ctx, 4)
        log: list = []
        runner = OnePlace(log, fail={"c1"})
        runner.values = values
        ctx.sync()
        try:
            ctx._run(ctx._select(()), runner, "make")
        except Exception:  # noqa: BLE001 - JobsFailed
            pass
        states = {r.job_id: r.state for r in ctx.ls()}
        assert states == {"c0": "done", "c1": "failed", "c2": "blocked", "c3": "blocked"}
        assert ("ahead", "c2", ("c1",)) in log
        assert ("ran", "c2") not in log and ("ran", "c3") not in log
        assert free_claims(tmp_path / "store", ["c0", "c1", "c2", "c3"])
    finally:
        ctx.close()


def test_a_job_that_took_other_results_than_recorded_runs_again(tmp_path):
    ctx = Context(store=tmp_path / "store")
    ctx.report = lambda line: None
    try:
        values = make_chain(ctx, 3)
        log: list = []

        class Liar(OnePlace):
            def poll(self, timeout):
                out = OnePlace.poll(self, timeout)
                for o in out:  # c2's first run says it took another c1
                    if type(o) is JobStored and o.job_id == "c2" and not self.lied:
                        self.lied = True
                        o.consumed = {"c1": "not-what-the-kernel-recorded"}
                return out

        runner = Liar(log)
        runner.lied = False
        runner.values = values
        ctx.sync()
        report = ctx._run(ctx._select(()), runner, "make")
        assert report.ran == 3 and ctx.result_of("c2") == 3
        assert log.count(("ran", "c2")) == 2, log
        assert ("submit", "c2") in log, "the second run is an ordinary one"
        assert free_claims(tmp_path / "store", ["c0", "c1", "c2"])
    finally:
        ctx.close()
