"""What a Context knows of the files its jobs declare: which job writes each output, the
jobs that read one depending on the job that writes it, and the fingerprints of files
kept in the store. A mixin of ``Context`` (context.py): it uses its registrations."""

from __future__ import annotations

import dataclasses
import os

from ..core.jobspec import JobSpec
from ..errors import InvalidJob
from .paths import show


class DeclaredFiles:
    def _declare_outputs(self, spec: JobSpec) -> None:
        """The job writes its outputs: no other job registered here may write them."""
        producers = self._producers
        for path in spec.options.outputs:
            other = producers.get(path)
            if other is not None and other != spec.job_id and other in self._registered \
                    and other in self.graph \
                    and path in self.graph.specs[other].options.outputs:
                raise InvalidJob(spec.job_id, f"its output {show(path)} is an output of job "
                                              f"{other!r} already")
        for path in spec.options.outputs:
            producers[path] = spec.job_id
            if path.endswith("/"):
                self._dir_outputs = True
        self._outputs_added = True

    def producer_of(self, path: str) -> str | None:
        """The job that declares ``path`` (absolute) as an output, or a directory holding
        it; None if none does."""
        producers = self._producers
        if not producers:
            return None
        job = producers.get(path) or producers.get(path.rstrip("/") + "/")
        if job is not None or not self._dir_outputs:
            return job
        parent = path.rstrip("/")
        while True:
            parent = os.path.dirname(parent)
            job = producers.get(parent.rstrip("/") + "/")
            if job is not None or parent in ("/", ""):
                return job

    def _with_producers(self, spec: JobSpec, check: bool = False) -> JobSpec:
        """``spec`` depending on the jobs that write its input files. With ``check``, an
        input file that does not exist and that no job writes is an error."""
        extra: list[str] = []
        for path in spec.inputs:
            producer = self.producer_of(path)
            if producer is None and check and not os.path.exists(path):
                if not self._loaded:
                    self._load()  # a stored job may write it
                producer = self.producer_of(path)
                if producer is None:
                    raise InvalidJob(spec.job_id, f"its input file {show(path)} does not "
                                                  f"exist (and no job writes it)")
            if producer is not None and producer != spec.job_id and producer in self.graph \
                    and producer not in spec.deps and producer not in extra:
                extra.append(producer)
        return dataclasses.replace(spec, deps=spec.deps + tuple(extra)) if extra else spec

    def _link_inputs(self) -> None:
        """Jobs registered before the job that writes one of their input files: they
        depend on it from now on."""
        self._outputs_added = False
        specs = self.graph.specs
        for jid in list(self._registered):
            spec = specs.get(jid)
            if spec is None or not spec.inputs:
                continue
            linked = self._with_producers(spec)
            if linked is not spec:
                self.graph.add(linked)
                self._pending[jid] = linked

    def _keep_file_stats(self) -> None:
        """Fingerprints of files taken since last time: the store keeps them, so the next
        command (in any process) looks at an unchanged file with one stat."""
        rows = self.files.take_fresh()
        if rows:
            self.store.remember_files(rows)
