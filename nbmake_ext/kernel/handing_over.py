"""What the run loop hands a runner: a ``Call`` (the job's function and its arguments with
their dependencies' values, for a runner in this process) or a ``RemoteJob`` (bytes, and
where its inputs' results are, for engines and Dask), with its time limit and the
environment of the resources it holds. A mixin of ``Driver`` (driver.py): it uses the run
loop's state.
"""

from __future__ import annotations

import pickle
from typing import Any, Mapping

from ..files.paths import show
from ..promise import resolve
from ..registration import function_blob, function_sources, payload
from ..shared.outcomes import Call, RemoteJob
from ..store import ResultUnavailable
from ..store import blobs
from ..store.pickles import loads_value


class Lost(Exception):
    """A dependency's result cannot be read: ``job_id`` must be made again."""

    def __init__(self, job_id: str, why: str):
        self.job_id, self.why = job_id, why


_NO_FILES: dict[str, str] = {}  # the input files of a job that reads none (never changed)


class HandingOver:
    def _prepare(self, jid: str, env: dict[str, str] | None = None) -> Call | RemoteJob | None:
        spec = self.graph.specs[jid]
        if jid in self.lagging:
            self.lagging.discard(jid)
            self.store.define([(spec, *function_blob(spec), payload(spec))])
        in_fps = self._input_files(jid, spec) if spec.inputs else _NO_FILES
        if in_fps is None:
            return None
        files = (spec.inputs, spec.options.outputs) \
            if spec.inputs or spec.options.outputs else None
        if self.remote:
            job = self._prepare_remote(jid, spec, in_fps)
            if job is not None and spec.options:
                job.timeout, job.env = spec.options.timeout, env
                job.resources = dict(spec.options.resources) or None
            if job is not None:
                job.files = files
            return job
        try:
            if spec.func is not None:
                func, args, kwargs = spec.func, spec.args, spec.kwargs
            else:
                func, args, kwargs = self.store.load_call(jid)
        except Exception as exc:  # noqa: BLE001 - e.g. a module the console cannot import
            self._fail(jid, f"cannot load the job's definition: {exc!r}", "", None)
            return None
        try:
            r_args = resolve(args, self._value)
            r_kwargs = resolve(kwargs, self._value)
        except Lost as lost:
            # Our claim stays; the job runs again once the dependency is remade.
            self._result_lost(lost.job_id, jid, lost.why)
            return None
        except LookupError as exc:  # a %%comp output its cell did not bind
            self._fail(jid, str(exc), "", None)
            return None
        results = self.sched.results
        self.running[jid] = (_consumed(results, spec.deps), args, kwargs, in_fps)
        return Call(jid, func, r_args, r_kwargs, spec.dynamic, spec.options.timeout, env, files)

    def _input_files(self, jid: str, spec) -> dict[str, str] | None:
        """The fingerprints of the job's input files as it starts (what its result will be
        made from); None (and the job failed) if one is missing."""
        files = self.files
        out = {}
        for path in spec.inputs:
            fp = files(path)
            if fp is None:
                self._fail(jid, f"input file {show(path)} is missing", "", None)
                return None
            out[path] = fp
        return out

    def _prepare_remote(self, jid: str, spec, in_fps: dict[str, str]) -> RemoteJob | None:
        """Engines get bytes and the places of their inputs; no value is loaded here. A job
        sent ahead gets no definition: the runner has it (see ``_adopt``)."""
        if self.ahead is not None and self.ahead.waiting(jid):
            key, blob, data, sources = "", b"", b"", b"{}"
        else:
            try:
                key, blob, data, sources = self._definition(jid)
            except Exception as exc:  # noqa: BLE001
                self._fail(jid, f"cannot load the job's definition: {exc!r}", "", None)
                return None
        args, kwargs = (spec.args, spec.kwargs) if spec.func is not None else ((), {})
        deps, inline = {}, {}
        for dep in spec.deps:
            where = self._location(dep)
            if where is None:
                self._result_lost(dep, jid, f"the result of {dep!r} is missing")
                return None
            deps[dep] = where
            pending = self.store.pending_result(dep)
            if pending is not None:  # its file may not be written yet: it travels along
                inline[dep] = pending
        results = self.sched.results
        self.running[jid] = (_consumed(results, spec.deps), args, kwargs, in_fps)
        return RemoteJob(jid, key, blob, data, deps, spec.dynamic, inline, sources)

    def describe(self, jid: str) -> RemoteJob:
        """A job as a runner would send it ahead, before it is decided: with the places of
        those inputs that have a stored result (a runner that sends jobs ahead prefers the
        ones it is making). Raises if the definition cannot be loaded."""
        spec = self.graph.specs[jid]
        deps, inline = {}, {}
        for dep in spec.deps:
            where = self._location(dep)
            if where is not None:
                deps[dep] = where
                pending = self.store.pending_result(dep)
                if pending is not None:
                    inline[dep] = pending
        key, blob, data, sources = self._definition(jid)
        return RemoteJob(jid, key, blob, data, deps, spec.dynamic, inline, sources,
                         timeout=spec.options.timeout,
                         resources=dict(spec.options.resources) or None)

    def _definition(self, jid: str) -> tuple[str, bytes, bytes, bytes]:
        """(function key, function pickle, arguments pickle, function sources) of a job, as
        engines get it."""
        spec = self.graph.specs[jid]
        sources = b"{}"
        if spec.func is not None:
            key, blob = function_blob(spec)
            sources = function_sources(spec)
            data = payload(spec)
        elif jid in self.child_calls:
            key, blob, data, sources = self.child_calls[jid]
        else:
            key = self.stored[jid].func_key
            blob = self._blobs.get(key) or self.store.function_blob(key)
            data = self.store.load_payload(jid)
        self._blobs[key] = blob
        return key, blob, data, sources

    def _location(self, job_id: str) -> tuple[str, str] | None:
        where = self.locations.get(job_id)
        if where is not None:
            return where
        st = self.stored.get(job_id)
        if st is None or st.record is None or not st.record.present or not st.r_file \
                or job_id in self.lost:
            return None
        return st.r_file, st.r_checksum

    def _value(self, job_id: str) -> Any:
        found, value = self.values.get(job_id)
        if found:
            return value
        pending = self.store.pending_result(job_id)
        if pending is not None:
            return loads_value(pending)
        where = self.locations.get(job_id)
        if where is not None:  # made by an engine in this run; maybe not committed yet
            try:
                return loads_value(self.reader.read(job_id, *where))
            except (OSError, blobs.CorruptResult, pickle.UnpicklingError) as exc:
                raise Lost(job_id, f"the result file of {job_id!r} is unreadable: {exc}") from None
        try:
            return self.store.load_result(job_id)
        except ResultUnavailable as exc:
            raise Lost(job_id, str(exc)) from None


# What a job without dependencies consumed: one shared empty dict (it becomes its run
# record's ``dep_fps``, which is never changed), not one per job.
_CONSUMED_NOTHING: dict[str, str] = {}


def _consumed(results: Mapping[str, str | None], deps: tuple[str, ...]) -> Mapping[str, str]:
    return {d: results[d] for d in deps} if deps else _CONSUMED_NOTHING
