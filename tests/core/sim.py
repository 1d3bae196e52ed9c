"""A pure simulation of makes over the core: no store, no processes, no files.

``Sim`` keeps the stored records between runs like a store would, runs the scheduler with
``validate=True``, and executes jobs by looking up what each job 'computes' in tables the
test controls (results, failures, dynamic children).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nbmake_ext.core import events as ev
from nbmake_ext.core.graph import Graph
from nbmake_ext.core.jobspec import JobSpec, RunRecord
from nbmake_ext.core.scheduler import Scheduler


def spec(job_id, deps=(), code="c", args="a", parent=None, dynamic=False) -> JobSpec:
    return JobSpec(job_id, f"m.{job_id.split('-')[0]}", code, {f"m.{job_id}": code}, args,
                   tuple(deps), parent, dynamic)


@dataclass
class Sim:
    graph: Graph = field(default_factory=Graph)
    records: dict[str, RunRecord] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)       # what a job computes now
    fails: set[str] = field(default_factory=set)
    children: dict[str, list[JobSpec]] = field(default_factory=dict)  # dynamic parent -> kids
    ran: list[str] = field(default_factory=list)
    log: list = field(default_factory=list)

    def make(self, targets=None, forced=(), interrupt_after=None):
        self.ran = []
        targets = list(self.graph.specs) if targets is None else targets
        sched = Scheduler(self.graph, self.records, targets,
                          forced=dict.fromkeys(forced, "forced by remake"), validate=True)
        queue = list(sched.start())
        while queue:
            action = queue.pop(0)
            self.log.append(action)
            if type(action) is ev.Run:
                if interrupt_after is not None and len(self.ran) >= interrupt_after:
                    return sched  # stop: nothing of the running jobs is recorded
                queue += self._run(sched, action.job_id)
            elif type(action) is ev.Complete:
                queue += self._succeed(sched, action.job_id)
            elif type(action) is ev.Forget:
                for j in action.job_ids:
                    self.records.pop(j, None)
        assert sched.finished
        return sched

    def _run(self, sched, jid):
        self.ran.append(jid)
        if jid in self.fails:
            return sched.handle(ev.Failed(jid, "boom"))
        spec_ = self.graph.specs[jid]
        if spec_.dynamic:
            out = []
            for child in self.children.get(jid, []):
                out += sched.handle(ev.ChildDefined(child))
            return out + sched.handle(ev.Returned(jid))
        return self._succeed(sched, jid)

    def _succeed(self, sched, jid):
        spec_ = self.graph.specs[jid]
        fp = self.results.get(jid, "r-" + jid)
        self.records[jid] = RunRecord(spec_.code_fp, spec_.code_parts, spec_.args_fp,
                                      {d: sched.results[d] for d in spec_.deps}, fp)
        return sched.handle(ev.Succeeded(jid, fp))
