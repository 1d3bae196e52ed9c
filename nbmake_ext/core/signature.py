"""Is a job up to date? Reasons, as words, why it is not (SPEC 3).

A job is up to date when it has a present result made from the same code, the same
arguments and the same results of its dependencies (per edge: an upstream that re-ran to an
equal result changes nothing downstream).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from .jobspec import JobSpec, RunRecord

#: The current content fingerprint of a file (or a directory's tree) by its absolute path,
#: None when nothing is there: how the core asks about files (files/fingerprints.py
#: FileState answers, looking at each file once per command).
FileLookup = Callable[[str], "str | None"]

#: The label of a shell step's code (files/shell.py): its command.
SHELL_COMMAND = "shell command"


def _mapping(value: Any) -> Mapping[str, str]:
    # The store hands these back lazily (a callable, or json text): decoded only when a
    # reason is asked for.
    if callable(value):
        value = value()
    if isinstance(value, str):
        return json.loads(value) if value else {}
    return value or {}


def short_label(label: str) -> str:
    return label[len("__main__."):] if label.startswith("__main__.") else label


def code_reasons(old: Any, new: Any) -> list[str]:
    old, new = _mapping(old), _mapping(new)
    out = []
    for label, fp in new.items():
        if label not in old:
            out.append(_added(label))
        elif old[label] != fp:
            out.append(_changed(label))
    out += [_removed(label) for label in old if label not in new]
    return out or ["code changed"]


def _changed(label: str) -> str:
    if label == SHELL_COMMAND:
        return "shell command changed"
    if label.startswith("global "):
        return f"global {short_label(label[7:])} changed"
    return f"code of {short_label(label)} changed"


def _added(label: str) -> str:
    if label.startswith("global "):
        return f"now reads global {short_label(label[7:])}"
    return f"now calls {short_label(label)}"


def _removed(label: str) -> str:
    if label.startswith("global "):
        return f"no longer reads global {short_label(label[7:])}"
    return f"no longer calls {short_label(label)}"


UNRECORDED = ""  # the digest of an argument that was the call's only one: not taken


def one_argument(name: str) -> str:
    """The recorded per-argument digests of a call of one argument (json)."""
    return json.dumps({name: UNRECORDED})


def argument_reasons(old: Any, new: Any) -> list[str]:
    """Which arguments changed, given that the arguments' fingerprint did."""
    old, new = _mapping(old), _mapping(new)
    if not old or not new:
        return ["arguments changed"]
    if len(old) == 1 and old.keys() == new.keys():  # the only argument: it changed
        return [f"argument {_arg_name(k)} changed" for k in new]
    changed = [_arg_name(k) for k in new
               if k in old and old[k] != new[k] and old[k] != UNRECORDED]
    added = [_arg_name(k) for k in new if k not in old]
    removed = [_arg_name(k) for k in old if k not in new]
    out = _grouped(changed, "argument {} changed", "{n} arguments ({names}) changed")
    out += _grouped(added, "argument {} added", "{n} arguments ({names}) added")
    out += _grouped(removed, "argument {} removed", "{n} arguments ({names}) removed")
    return out or ["arguments changed"]


#: Up to this many jobs (or arguments) with the same reason get a line each; more get one
#: line that counts them and names the first few.
FEW = 3


def _grouped(names: list[str], one: str, many: str) -> list[str]:
    if len(names) <= FEW:
        return [one.format(name) for name in names]
    shown = ", ".join(names[:FEW]) + ", ..."
    return [many.format(n=len(names), names=shown)]


def _arg_name(key: str) -> str:
    return f"#{int(key) + 1}" if key.isdigit() else key


def reasons(
    spec: JobSpec,
    record: RunRecord | None,
    dep_results: Mapping[str, str | None],
    *,
    forced: str | None = None,
    arg_fps: Mapping[str, str] | None = None,
    files: FileLookup | None = None,
) -> list[str]:
    """Why ``spec`` must run again; empty when its stored result is up to date.

    ``forced`` is the reason a job must run whatever its signature says ("forced by
    remake"), or None. ``dep_results`` maps each dependency to the fingerprint of its current result (None when
    it has none). ``arg_fps`` (per-argument digests of the current definition) is only
    needed to name which argument changed; it is computed lazily by the caller.
    ``files`` gives the current fingerprints of its input and output files (None: they
    are not looked at).
    """
    if record is None:
        return [NEVER_RAN]
    out = []
    if forced:
        out.append(forced)
    if not record.present:
        out.append("result file missing or corrupt")
    if record.code_fp != spec.code_fp:
        out += code_reasons(record.code_parts, spec.code_parts)
    if record.args_fp != spec.args_fp:
        out += argument_reasons(record.arg_fps, arg_fps or {})
    if files is not None and (spec.inputs or spec.options.outputs):
        out += file_reasons(spec, record, files)
    consumed = record.dep_fps
    added, missing, changed = [], [], []
    for dep in spec.deps:
        if dep not in consumed:
            added.append(dep)
        else:
            now = dep_results.get(dep)
            if now is None:
                missing.append(dep)
            elif now != consumed[dep]:
                changed.append(dep)
    out += _grouped(added, "new dependency {}", "{n} new dependencies ({names})")
    out += _grouped(missing, "dependency {} has no result yet",
                    "{n} dependencies ({names}) have no result yet")
    out += _grouped(changed, "dependency {} produced a new result",
                    "{n} dependencies ({names}) produced new results")
    out += _grouped([d for d in consumed if d not in spec.deps], "no longer depends on {}",
                    "no longer depends on {n} jobs ({names})")
    return out


LAST_RUN_FAILED = "its last run failed"
NEVER_RAN = "never ran"  # the reason of a job without a stored result
#: What `why` says of a job whose last run failed or was blocked while its stored result is
#: up to date again (the edit that broke it was undone): a make takes that result back.
RESTORES = "its stored result matches again: the next make restores it"


def since_failure(spec: JobSpec, failed_code_fp: str | None, failed_code_parts: Any,
                  failed_args_fp: str | None) -> list[str]:
    """What changed in ``spec`` since the definition whose run failed (``failed_*``, as
    recorded with the failure; None when not recorded)."""
    out = []
    if failed_code_fp and failed_code_fp != spec.code_fp:
        out += [f"since then: {r}" for r in code_reasons(failed_code_parts, spec.code_parts)]
    if failed_args_fp and failed_args_fp != spec.args_fp:
        out.append("since then: arguments changed")
    return out


def show_path(path: str) -> str:
    from ..files.paths import show

    return show(path)


def file_reasons(spec: JobSpec, record: RunRecord, files: FileLookup) -> list[str]:
    """Which input files changed, which outputs were deleted or modified since the run
    that made the stored result."""
    known = record.files
    out = []
    for path in spec.inputs:
        now, then = files(path), known.get(path)
        if now is None:
            out.append(f"input file {show_path(path)} is missing")
        elif then is None:
            out.append(f"new input file {show_path(path)}")
        elif now != then:
            out.append(f"input file {show_path(path)} changed")
    for path in spec.options.outputs:
        now, then = files(path), known.get(path)
        if then is None:
            out.append(f"new output {show_path(path)}")
        elif now is None:
            out.append(f"output {show_path(path)} was deleted")
        elif now != then:
            out.append(f"output {show_path(path)} was modified")
    return out


def files_current(spec: JobSpec, record: RunRecord, files: FileLookup) -> bool:
    """Every input file as the stored result read it, every output as it wrote it."""
    known = record.files
    for path in spec.inputs:
        now = files(path)
        if now is None or now != known.get(path):
            return False
    for path in spec.options.outputs:
        then = known.get(path)
        if then is None or files(path) != then:
            return False
    return True


def is_up_to_date(spec: JobSpec, record: RunRecord | None, dep_results: Mapping[str, str | None],
                  forced: str | None = None, files: FileLookup | None = None) -> bool:
    """The hot path of a no-op make: the same answer as ``not reasons(...)``, faster."""
    if record is None or forced or not record.present:
        return False
    if record.code_fp != spec.code_fp or record.args_fp != spec.args_fp:
        return False
    if files is not None and (spec.inputs or spec.options.outputs) \
            and not files_current(spec, record, files):
        return False
    consumed = record.dep_fps
    if len(consumed) != len(spec.deps):
        return False
    for dep in spec.deps:
        now = dep_results.get(dep)
        if now is None or consumed.get(dep) != now:
            return False
    return True


def is_current(spec: JobSpec, record: RunRecord | None, dep_results: Mapping[str, str | None],
               forced: Any = None, files: FileLookup | None = None) -> bool:
    """``is_up_to_date`` as views judge it between makes: a dependency with no current
    result (cleaned) counts as unchanged until it is made again."""
    if record is None or forced or not record.present:
        return False
    if record.code_fp != spec.code_fp or record.args_fp != spec.args_fp:
        return False
    if files is not None and (spec.inputs or spec.options.outputs) \
            and not files_current(spec, record, files):
        return False
    consumed = record.dep_fps
    if len(consumed) != len(spec.deps):
        return False
    for dep in spec.deps:
        if dep not in consumed:
            return False
        now = dep_results.get(dep)
        if now is not None and now != consumed[dep]:
            return False
    return True
