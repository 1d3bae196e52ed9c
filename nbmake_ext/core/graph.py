"""The job graph: definitions by id, dependency closures, target selection."""

from __future__ import annotations

import fnmatch
from typing import Callable, Iterable, Literal

from ..errors import InvalidJob, UnknownTarget
from .jobspec import JobSpec
from .states import ALL, STATE_WORDS

AddOutcome = Literal["new", "same", "replaced"]

_GLOB_CHARS = frozenset("*?[")


class Graph:
    """Job definitions by id. Children of dynamic jobs point to their parent."""

    def __init__(self, specs: Iterable[JobSpec] = ()):
        self.specs: dict[str, JobSpec] = {}
        self._children: dict[str, list[str]] = {}
        for spec in specs:
            self.add(spec)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self.specs

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, job_id: str) -> JobSpec:
        return self.specs[job_id]

    def add(self, spec: JobSpec) -> AddOutcome:
        """Add or redefine a job. Same definition: a no-op, but for new options (they are
        not part of the definition: the job keeps its result). Raises InvalidJob on a
        cycle."""
        old = self.specs.get(spec.job_id)
        if old is not None and old.same_definition(spec) and old.deps == spec.deps:
            if spec.func is not None and old.func is None or (
                    old.options is not spec.options and old.options != spec.options):
                self.specs[spec.job_id] = spec  # the richer in-process definition; options
            return "same"
        if spec.job_id in spec.deps:
            raise InvalidJob(spec.job_id, "depends on itself")
        for dep in spec.deps:
            if dep not in self.specs:
                raise InvalidJob(spec.job_id, f"depends on unknown job {dep!r}")
        if old is not None:
            cycle = self._path(spec.deps, spec.job_id)
            if cycle:
                path = " -> ".join([spec.job_id, *cycle])
                raise InvalidJob(spec.job_id, f"redefinition would make a dependency cycle: {path}")
            if old.parent != spec.parent:
                self._unlink_child(old)
        self.specs[spec.job_id] = spec
        if spec.parent is not None and (old is None or old.parent != spec.parent):
            self._children.setdefault(spec.parent, []).append(spec.job_id)
        return "new" if old is None else "replaced"

    def put_stored(self, spec: JobSpec) -> None:
        """Take a definition read back from the store as it is (no checks: the store only
        ever holds definitions that passed ``add``)."""
        old = self.specs.get(spec.job_id)
        if old is not None and old.parent != spec.parent:
            self._unlink_child(old)
        self.specs[spec.job_id] = spec
        if spec.parent is not None and (old is None or old.parent != spec.parent):
            self._children.setdefault(spec.parent, []).append(spec.job_id)

    def remove(self, job_id: str) -> list[str]:
        """Forget a job and, recursively, its dynamic children. Returns the removed ids."""
        removed = []
        stack = [job_id]
        while stack:
            jid = stack.pop()
            spec = self.specs.pop(jid, None)
            if spec is None:
                continue
            removed.append(jid)
            self._unlink_child(spec)
            stack += self._children.pop(jid, [])
        return removed

    def _unlink_child(self, spec: JobSpec) -> None:
        if spec.parent is not None:
            siblings = self._children.get(spec.parent)
            if siblings and spec.job_id in siblings:
                siblings.remove(spec.job_id)

    def children(self, job_id: str) -> list[str]:
        return list(self._children.get(job_id, ()))

    def descendants(self, job_id: str) -> list[str]:
        out, stack = [], list(self._children.get(job_id, ()))
        while stack:
            jid = stack.pop()
            out.append(jid)
            stack += self._children.get(jid, ())
        return out

    def dependents(self) -> dict[str, list[str]]:
        rev: dict[str, list[str]] = {}
        for spec in self.specs.values():
            deps = spec.deps
            if deps:  # most jobs of a large graph have none
                jid = spec.job_id
                for dep in deps:
                    users = rev.get(dep)
                    if users is None:
                        rev[dep] = [jid]
                    else:
                        users.append(jid)
        return rev

    def upstream(self, job_ids: Iterable[str]) -> set[str]:
        """The ids and everything they depend on, transitively."""
        seen: set[str] = set()
        stack = list(job_ids)
        specs = self.specs
        while stack:
            jid = stack.pop()
            if jid in seen:
                continue
            seen.add(jid)
            spec = specs.get(jid)
            if spec is not None:
                stack += spec.deps
        return seen

    def downstream(self, job_ids: Iterable[str]) -> set[str]:
        rev = self.dependents()
        seen: set[str] = set()
        stack = list(job_ids)
        while stack:
            jid = stack.pop()
            if jid not in seen:
                seen.add(jid)
                stack += rev.get(jid, ())
        return seen

    def _path(self, starts: Iterable[str], goal: str) -> list[str] | None:
        """A dependency path from one of ``starts`` up to ``goal``, if any."""
        parent: dict[str, str | None] = {s: None for s in starts}
        stack = list(parent)
        while stack:
            jid = stack.pop()
            if jid == goal:
                path = []
                node: str | None = jid
                while node is not None:
                    path.append(node)
                    node = parent[node]
                return path[::-1]
            spec = self.specs.get(jid)
            for dep in spec.deps if spec else ():
                if dep not in parent:
                    parent[dep] = jid
                    stack.append(dep)
        return None

    def select(self, targets: Iterable[str], state_of: Callable[[str], str]) -> list[str]:
        """Job ids matching targets: ids, shell-style globs, state words, or ``all``.
        No targets, or ``all``, means every job. A state word is a query: one that no job
        is in selects nothing. An id or a glob that matches nothing is an error (a typo
        must not pass silently)."""
        targets = list(targets)
        if not targets or ALL in targets:
            for target in targets:  # a typo next to `all` is still a typo
                if target != ALL and target not in STATE_WORDS:
                    self._match(target, state_of)
            return list(self.specs)
        chosen: dict[str, None] = {}
        for target in targets:
            chosen.update(dict.fromkeys(self._match(target, state_of)))
        return list(chosen)

    def _match(self, target: str, state_of: Callable[[str], str]) -> list[str]:
        if target in self.specs:
            return [target]
        if target in STATE_WORDS:
            return [j for j in self.specs if state_of(j) == target]
        matched = fnmatch.filter(self.specs, target) if _GLOB_CHARS.intersection(target) else []
        if not matched:
            matched = self.writers(target)
        if not matched:
            raise UnknownTarget(f"no job matches {target!r}" + self._suggest(target))
        return matched

    def writers(self, target: str) -> list[str]:
        """The jobs that declare the file ``target`` as an output (a path relative to the
        working directory, or absolute; a directory output holding it counts), or, for a
        glob, any file it matches (``figs/*.png``)."""
        from ..files.paths import absolute, covering

        try:
            path = absolute(target)
        except (TypeError, ValueError):
            return []
        glob = bool(_GLOB_CHARS.intersection(target))
        out = []
        for jid, spec in self.specs.items():
            outputs = spec.options.outputs
            if not outputs:
                continue
            if glob:
                if any(fnmatch.fnmatchcase(o.rstrip("/"), path.rstrip("/")) for o in outputs):
                    out.append(jid)
            elif covering(path, outputs) or covering(path + "/", outputs):
                out.append(jid)
        return out

    def writer(self, target: str) -> str | None:
        """The one job that writes the file ``target`` (see ``writers``); None if none
        does; UnknownTarget if several do."""
        found = self.writers(target) if not _GLOB_CHARS.intersection(target) else []
        if len(found) > 1:
            raise UnknownTarget(f"{target!r} is an output of {len(found)} jobs "
                                f"({', '.join(found[:5])}): name one by its id")
        return found[0] if found else None

    def _suggest(self, target: str) -> str:
        import difflib

        close = difflib.get_close_matches(target, list(self.specs)[:20000], n=3)
        return f" (did you mean {', '.join(close)}?)" if close else ""
