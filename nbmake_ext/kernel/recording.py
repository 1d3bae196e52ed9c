"""Recording outcomes, the run loop's part: what a runner reports (results, failures,
dynamic children, results made durable, jobs handed back) goes to the store, the core's
scheduler and the views; and the two questions the scheduler asks to word why a job
runs again (``_since_failure``, ``_current_arg_fps``), answered from the store.

A mixin of ``Driver``: it uses the run loop's state (``self.sched``, ``self.store``,
``self.running``...).
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from typing import Any, Callable

from ..core import events as ev
from ..core import signature
from ..core.jobspec import RunRecord
from ..errors import InvalidJob
from ..files import run as job_files
from ..files.paths import show
from ..fingerprint import Unpicklable, result_digest
from ..registration import arg_fingerprints, function_blob, payload
from ..shared.outcomes import (ChildSpec, DependencyLost, Durable, JobRaised, JobReturned,
                               JobStored, Outcome, Progress, Requeue, Started, Timing)
from ..store import blobs
from ..store.results import INLINE
from ..store.store import FORCED_UNFINISHED, dumps_value

logger = logging.getLogger(__name__)


class Recording:
    def _handle(self, outcomes: list[Outcome]) -> None:
        if self.ahead is not None and self.ahead.held:
            outcomes = self._sort_ahead(outcomes)
        children = [o for o in outcomes if type(o) is ChildSpec]
        if children:
            self._define_children(children)
        # Ctrl-C may stop this loop anywhere (the store holds it back while it commits, and
        # raises it after): the outcomes not reached yet are recorded by _put_back.
        self._unhandled = unhandled = deque(outcomes)
        while unhandled:
            if type(unhandled[0]) is JobStored:  # most outcomes: results, many at once
                self._stored_many(unhandled)
                continue
            outcome = unhandled.popleft()
            kind = type(outcome)
            if kind is Started:
                if outcome.job_id in self.running:  # (not if it ended or went back meanwhile)
                    info = {"reasons": list(self.sched.reasons.get(outcome.job_id, ())),
                            "engine": outcome.where}
                    earlier = self.attempts.get(outcome.job_id)
                    if earlier:  # running again after failed attempts (job_retries)
                        info["attempt"], info["attempts"] = len(earlier) + 1, earlier
                    self.tell(outcome.job_id, "running", info)
                continue
            if kind is Progress:
                self._progress(outcome.job_id, outcome.done, outcome.total, outcome.message)
                continue
            if kind is JobReturned:
                seconds = outcome.timing.duration or 0.0
                mean = self._mean_seconds
                self._mean_seconds = seconds if mean is None else 0.8 * mean + 0.2 * seconds
            if kind is JobReturned:
                jid = outcome.job_id
                if jid in self.bad_children:
                    self._fail(jid, self.bad_children.pop(jid), "", outcome)
                elif self.graph.specs[jid].dynamic:
                    self._release_held(jid)  # it returned: it holds nothing now
                    self.templates[jid] = outcome
                    self._apply(self.sched.handle(ev.Returned(jid)))
                else:
                    self._persist(jid, outcome.value, outcome)
            elif kind is JobRaised:
                self._fail(outcome.job_id, outcome.error, outcome.traceback, outcome)
            elif kind is Durable:
                self._commit_durable(outcome.job_ids)
            elif kind is Requeue:
                for jid in outcome.job_ids:
                    if self.ahead is not None:  # what was sent ahead behind it
                        self._drop_ahead(self.ahead.requeued(jid))
                    self._left(jid)
                    self.claimed.appendleft(jid)
            elif kind is DependencyLost:
                self._left(outcome.job_id)
                self._result_lost(outcome.dependency, outcome.job_id, outcome.why)

    def _progress(self, jid: str, done: float, total: float, message: str) -> None:
        """A running job said how far it is (nbmake_ext.progress): the views are told. In
        the kernel's make this runs in the job's own call (or a timer's thread)."""
        tell = self._job_progress
        if tell is not None and jid in self.running:
            try:
                tell(jid, done, total, message)
            except Exception:  # noqa: BLE001 - a view must never fail the job
                logger.debug("a view failed to show the progress of %s", jid, exc_info=True)

    def _define_children(self, children: list[ChildSpec]) -> None:
        parents = {c.spec.parent for c in children} - self._redefining
        if parents:
            # Its old result no longer matches the children in the store until it finishes.
            self.store.set_forced(parents, FORCED_UNFINISHED)
            self._redefining |= parents
        entries = []
        for child in children:
            spec = child.spec
            self.lagging.discard(spec.job_id)
            try:
                if child.func_blob is None:
                    key, blob = function_blob(spec)
                    data = payload(spec)
                else:
                    key, blob, data = _blob_key(child.func_blob), child.func_blob, child.payload
                    self.child_calls[spec.job_id] = (key, blob, data, child.sources)
                self._apply(self.sched.handle(ev.ChildDefined(spec)))
                if self.sched.state(spec.job_id) in ("waiting", "queued"):
                    self.tell(spec.job_id, "todo", {"parent": spec.parent, "deps": list(spec.deps),
                                                    "function": spec.function})
            except InvalidJob as exc:
                self.bad_children.setdefault(spec.parent, f"defined an invalid child: {exc}")
                continue
            entries.append((spec, key, blob, data))
        self.store.define(entries)

    def _persist(self, jid: str, value: Any, out: JobReturned) -> None:
        consumed, args, kwargs, in_fps = self._left(jid) or _NOT_RUNNING
        spec = self.graph.specs[jid]
        try:
            data = dumps_value(value)
            sum_ = blobs.checksum(data)
            result_fp = self._kept_fingerprint(jid, sum_) or result_digest(value, sum_)
        except (Unpicklable, Exception) as exc:  # noqa: BLE001
            self._fail(jid, f"its result cannot be pickled: {exc}", "", out)
            return
        record = RunRecord(spec.code_fp, spec.code_parts, spec.args_fp, consumed, result_fp,
                           _lazy_arg_fps(args, kwargs))
        if in_fps or spec.options.outputs:
            files = self._files_written(jid, spec, in_fps, out.files, out)
            if files is None:
                return
            record.files = files
        timing = self._timing(jid, out.timing)
        if self.remote:  # engines will read it: write it before anyone is told
            name = blobs.file_name(jid, sum_)
            stamp = blobs.write_atomic(self.store.results_dir, name, data,
                                       durable=self.store.durable)
            self.locations[jid] = (name, sum_)
            self.store.record_stored(jid, record, name, sum_, stamp, timing,
                                     (out.stdout, out.stderr))
        else:
            self.store.record_success(jid, record, data, timing, (out.stdout, out.stderr), sum_)
        self.values.put(jid, value, len(data))
        self.sched.records[jid] = record
        self._apply(self.sched.handle(ev.Succeeded(jid, result_fp)))
        self.tell(jid, "done", _info(out.timing, out.stdout, out.stderr, timing))

    def _kept_fingerprint(self, jid: str, checksum: str) -> str | None:
        """The stored result's fingerprint, when the new result has its very bytes: the
        same value, however it was fingerprinted when stored (an earlier version digested
        every large array: see ``result_digest``), so its dependents stay up to date."""
        st = self.stored.get(jid)
        if st is not None and st.r_checksum == checksum and st.record is not None:
            return st.record.result_fp
        return None

    def _stored_many(self, unhandled: deque[Outcome]) -> None:
        """The results at the head of ``unhandled`` (an engine sends those of short jobs
        together), handled as one: the store is handed them at once, then the scheduler
        is told of them in order, then the views. They leave ``unhandled`` only once the
        store has them (an interrupt before: ``_put_back`` records them). A job with
        files is a batch of its own: its files are looked at first, and may fail it."""
        batch = self._simple_results(unhandled)
        files = None
        if not batch:
            out = unhandled[0]
            spec = self.graph.specs[out.job_id]
            in_fps = self.running[out.job_id][3] if out.job_id in self.running else {}
            files = self._files_written(out.job_id, spec, in_fps, out.files, out)
            if files is None:  # failed: recorded so
                unhandled.popleft()
                return
            batch = [out]
        entries, events, timings, left = [], [], [], []
        specs, running, locations = self.graph.specs, self.running, self.locations
        records, inline_max, mean = self.sched.records, self.store.inline_max, self._mean_seconds
        stored, holdings = self.stored, self.holdings
        try:
            for out in batch:
                jid = out.job_id
                spec = specs[jid]
                was = running.pop(jid, None)
                left.append((jid, was))
                if holdings is not None and holdings.held:  # (some job asked for resources)
                    self._release_held(jid)
                consumed, args, kwargs, _ = was or _NOT_RUNNING
                # (a job with no stored result keeps no fingerprint: not asked)
                result_fp = (self._kept_fingerprint(jid, out.checksum) if jid in stored
                             else None) or out.result_fp
                record = RunRecord(spec.code_fp, spec.code_parts, spec.args_fp, consumed,
                                   result_fp,
                                   _lazy_arg_fps(args, kwargs) if spec.func is not None else {})
                if files is not None:
                    record.files = files
                timing = self._timing(jid, out.timing)
                timings.append(timing)
                logs = (out.stdout, out.stderr)
                data = out.data
                if data is not None:  # a small result: the store writes its file
                    entries.append((jid, record, data, timing, logs, out.checksum))
                    locations[jid] = (INLINE if len(data) <= inline_max
                                      else blobs.file_name(jid, out.checksum), out.checksum)
                else:
                    locations[jid] = (out.file, out.checksum)
                    self.pending_durable[jid] = (record, out.file, out.checksum, out.stamp,
                                                 timing, logs)
                records[jid] = record
                events.append(ev.Succeeded(jid, result_fp))
                seconds = out.timing.duration or 0.0
                mean = seconds if mean is None else 0.8 * mean + 0.2 * seconds
            self.store.record_successes(entries)
        except BaseException:
            for jid, was in left:  # still running to _put_back, which records them
                if was is not None:
                    running[jid] = was
            raise
        self._mean_seconds = mean
        for _ in batch:
            unhandled.popleft()
        self._apply(self.sched.handle_many(events))
        if self.watched:
            tell = self.tell
            for out, timing in zip(batch, timings):
                tell(out.job_id, "done", _info(out.timing, out.stdout, out.stderr, timing))

    def _simple_results(self, unhandled: deque[Outcome]) -> list[JobStored]:
        """The results at the head of ``unhandled`` of jobs without files."""
        specs, batch = self.graph.specs, []
        for out in unhandled:
            if type(out) is not JobStored:
                break
            spec = specs[out.job_id]
            if spec.inputs or spec.options.outputs:
                break
            batch.append(out)
        return batch

    def _files_written(self, jid: str, spec, in_fps: dict[str, str], stamps: dict | None,
                       out) -> dict[str, str] | None:
        """What the job's result is made from and wrote: the fingerprints of its input files
        as it started and of its outputs as it wrote them (taken where it ran; here, if
        its runner did not). None, and the job failed, if an output is missing."""
        outputs = spec.options.outputs
        if outputs and stamps is None:  # a runner that does not look at files itself
            try:
                stamps = job_files.after(outputs)
            except (job_files.FilesProblem, OSError) as exc:
                self._fail(jid, str(exc), "", out)
                return None
        files = dict(in_fps)
        for path in outputs:
            stamp = stamps.get(path)
            if stamp is None:
                self._fail(jid, f"it did not write its output {show(path)}", "", out)
                return None
            files[path] = stamp[0]
        if stamps:
            self.files.written(stamps)
        return files

    def _commit_durable(self, job_ids: list[str]) -> None:
        pending_durable = self.pending_durable
        entries = [(jid, *pending_durable.pop(jid)) for jid in job_ids if jid in pending_durable]
        self.store.record_stored_many(entries)

    def _fail(self, jid: str, error: str, tb: str, out: JobReturned | JobRaised | None) -> None:
        self._left(jid)
        actions = self.sched.handle(ev.Failed(jid, error))
        if actions and type(actions[0]) is ev.Retry:
            self._attempt_failed(actions[0], tb, out)
            self._apply(actions[1:])
            return
        self._record_failure(jid, error, tb, out)
        self._apply(actions)

    def _attempt_failed(self, retry: ev.Retry, tb: str,
                        out: JobReturned | JobRaised | None) -> None:
        """An attempt failed and the job runs again (job_retries): the attempt is kept, to
        be recorded with the job's last one; the job keeps its claim and queues again."""
        jid = retry.job_id
        timing = out.timing if out is not None else Timing()
        self.attempts.setdefault(jid, []).append(
            {"attempt": retry.attempt - 1, "error": retry.error, "traceback": tb,
             **timing.as_dict()})
        self.claimed.append(jid)
        state = "stale" if self.sched.records.get(jid) is not None else "todo"
        self.tell(jid, state, {"attempt": retry.attempt, "error": retry.error})

    def _left(self, jid: str):
        """The job no longer runs (it ended, or went back): what it held is let go."""
        self._release_held(jid)
        return self.running.pop(jid, None)

    def _release_held(self, jid: str) -> None:
        """The resources the job held are free again: the jobs that waited for them may
        start (they keep their claims, first in line)."""
        if self.holdings is not None and self.holdings.give_back(jid) and self.deferred:
            self.claimed.extendleft(reversed(self.deferred))
            self.deferred.clear()

    def _timing(self, jid: str, timing: Timing) -> dict:
        """The record of the job's last attempt, with its earlier ones (job_retries)."""
        record = timing.as_dict(self.sched.reasons.get(jid, ()))
        earlier = self.attempts.pop(jid, None)
        if earlier:
            record["attempts"] = earlier
        return record

    def _record_failure(self, jid: str, error: str, tb: str,
                        out: JobReturned | JobRaised | None) -> None:
        outputs = self.graph.specs[jid].options.outputs if jid in self.graph.specs else ()
        if outputs:  # (its process removed them, unless it died or the failure is ours)
            try:
                job_files.remove(outputs)
            except OSError:
                pass
            self.files.removed(outputs)
        timing = out.timing if out is not None else Timing()
        logs = (out.stdout, out.stderr) if out is not None else ("", "")
        record = self._timing(jid, timing)
        self.store.record_failure(jid, error, tb, record, logs, self.graph.specs.get(jid))
        self.tell(jid, "failed", {**_info(timing, *logs, record), "error": error,
                                  "traceback": tb})

    # -- reasons, asked by the scheduler ------------------------------------------------

    def _since_failure(self, jid: str) -> list[str]:
        """What changed in the job since the definition whose run failed."""
        try:
            row = self.store.details(jid)
        except Exception:  # noqa: BLE001 - only used to word a reason
            return []
        return signature.since_failure(self.graph.specs[jid], row.get("f_code_fp"),
                                       row.get("f_code_parts"), row.get("f_args_fp"))

    def _current_arg_fps(self, jid: str) -> dict[str, str]:
        spec = self.graph.specs[jid]
        try:
            if spec.func is not None:
                return arg_fingerprints(spec.args, spec.kwargs)
            _, args, kwargs = self.store.load_call(jid)
            return arg_fingerprints(args, kwargs)
        except Exception:  # noqa: BLE001 - only used to word a reason
            return {}


_NOT_RUNNING = ({}, (), {}, {})  # what a job that is no longer running left: nothing


def _info(timing: Timing, stdout: str, stderr: str,
          record: dict | None = None) -> dict[str, Any]:
    """What the views are told of a run that ended; ``record``: as the store records it
    (``Recording._timing``), with the failed attempts before it."""
    info = {"duration": timing.duration, "engine": timing.engine, "stdout": stdout,
            "stderr": stderr, "peak_rss": timing.peak_rss}
    if record is not None and record.get("attempts"):
        info["attempts"] = record["attempts"]
    return info


_ONE_ARGUMENT = signature.one_argument("0")


def _lazy_arg_fps(args: tuple, kwargs: dict) -> Callable[[], dict[str, str]] | str:
    """Per-argument digests, taken when the record is written (on the store's writer
    thread) or a reason is asked for: not between a result and its dependent's start.
    A call of one argument records only its name: when the arguments' fingerprint
    differs, that argument changed (``signature.UNRECORDED``)."""
    if len(args) + len(kwargs) == 1:
        return _ONE_ARGUMENT if args else signature.one_argument(next(iter(kwargs)))
    return functools.partial(_arg_fps_or_none, args, kwargs)


def _arg_fps_or_none(args: tuple, kwargs: dict) -> dict[str, str]:
    try:
        return arg_fingerprints(args, kwargs)
    except Exception:  # noqa: BLE001 - only used to word a reason; never stop the writer
        return {}


def _blob_key(blob: bytes) -> str:
    import hashlib

    return hashlib.blake2b(blob, digest_size=16).hexdigest()
