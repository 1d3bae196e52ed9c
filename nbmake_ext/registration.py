"""Turning ``comp(func, *args, **kwargs)`` into a JobSpec, fast, with clear errors.

The same code serves the kernel's Context and the context a dynamic job receives on
whatever process it runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import linecache
import marshal
import os
import pickle
from types import CodeType
from typing import Any

import cloudpickle

from .core.jobspec import JobSpec, default_job_id
from .core.options import NO_OPTIONS, JobOptions, parse_options, split_options, with_outputs
from .errors import InvalidJob
from .files.paths import show
from .fingerprint import CodeFingerprint, Unpicklable, code_fingerprint, function_label, scan_call

# func object -> (func, label, short name); the func is held so its id is never reused.
_labels: dict[int, tuple[Any, str, str]] = {}
# (id(func), code digest) -> (func, key, blob)
_blobs: dict[tuple[int, str], tuple[Any, str, bytes]] = {}


def _label(func: Any) -> tuple[str, str]:
    hit = _labels.get(id(func))
    if hit is not None and hit[0] is func:
        return hit[1], hit[2]
    label = function_label(func)
    name = getattr(func, "__name__", None) or label.rsplit(".", 1)[-1]
    if len(_labels) > 10_000:
        _labels.clear()
    _labels[id(func)] = (func, label, name)
    return label, name


def make_spec(func: Any, args: tuple, kwargs: dict, job_id: str | None = None,
              parent: str | None = None, dynamic: bool = False, *,
              code: CodeFingerprint | None = None, label: str | None = None,
              options: dict[str, Any] | JobOptions | None = None) -> JobSpec:
    """``code`` and ``label`` replace the function's own fingerprint and name (a
    ``%%comp`` cell's code is its cell, not the runner that executes it). ``options``:
    the ``job_`` keywords of ``comp`` (``options.split_options`` takes them out of the
    function's), checked once the job's id is known, or ``JobOptions`` already made.
    ``File`` arguments are the job's input files (``JobSpec.inputs``); ``job_outputs``
    its output files, ``{name}`` filled from ``kwargs``."""
    if job_id is not None and (not isinstance(job_id, str) or not job_id.strip()):
        raise InvalidJob(repr(job_id), "job_id must be a non-empty string")
    if label is not None:
        name = label
    else:
        hit = _labels.get(id(func))  # (a function seen before: callable, its names known)
        if hit is not None and hit[0] is func:
            label, name = hit[1], hit[2]
        else:
            if not callable(func):
                raise InvalidJob(job_id or "?",
                                 f"{func!r} is not callable; comp() takes a function first")
            label, name = _label(func)
    try:
        args_fp, deps, inputs = scan_call(args, kwargs)
    except Unpicklable as exc:
        raise InvalidJob(job_id or f"{name}(...)", str(exc)) from None
    jid = job_id or default_job_id(name, label, args_fp, parent)
    if options is not None and not isinstance(options, JobOptions):
        outputs = options.get("job_outputs")
        if outputs is not None:
            options = {k: v for k, v in options.items() if k != "job_outputs"}
        options = parse_options(jid, options)
        if outputs is not None:
            options = with_outputs(jid, options, outputs, kwargs)
    if options is not None and options.outputs and inputs:
        both = set(options.outputs).intersection(inputs)
        if both:
            raise InvalidJob(jid, f"{show(min(both))} is both an input file and an output "
                                  f"of the job")
    code = code or code_of(func)
    return JobSpec(jid, label, code.digest, code.parts, args_fp, deps, parent, dynamic,
                   func, args, kwargs or _NO_KWARGS, options or NO_OPTIONS, inputs)


def comp_spec(func: Any, args: tuple, kwargs: dict, job_id: str | None = None,
              parent: str | None = None, dynamic: bool = False) -> JobSpec:
    """``make_spec`` for ``comp`` and ``comp_dynamic``: their keywords that start with
    ``job_`` are the job's options, and never reach the function."""
    options = None
    if kwargs:
        kwargs, options = split_options(kwargs)
    return make_spec(func, args, kwargs, job_id, parent, dynamic, options=options)


# The keyword arguments of every job called without any (never changed: read, pickled
# and unpacked only): one dict, not one per job.
_NO_KWARGS: dict = {}


def code_of(func: Any) -> CodeFingerprint:
    """The fingerprint of the code a job runs: a callable may say what its code is
    (``__nbmake_code__``, e.g. a %%comp cell), else its function's code and callees."""
    own = getattr(func, "__nbmake_code__", None)
    return own() if own is not None else code_fingerprint(func)


class _CodePickler(cloudpickle.Pickler):
    """cloudpickle, with each code object kept whole by ``marshal``: its file name and
    lines travel with it, so a traceback from an engine, a Dask worker or the console
    points into the user's cell or script whatever cloudpickle does to code (3.1.3 renames
    every file ``<dynamic-code>``). Loading needs only ``marshal``: the same Python runs
    the job, as cloudpickle's own code objects require."""

    def reducer_override(self, obj):
        if type(obj) is CodeType:
            return marshal.loads, (marshal.dumps(obj),)
        return super().reducer_override(obj)


def dumps_code(obj: Any) -> bytes:
    """Functions (and arguments that hold functions) as jobs travel and are stored."""
    buffer = io.BytesIO()
    _CodePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def function_blob(spec: JobSpec) -> tuple[str, bytes]:
    """The pickled function of a job and its key; pickled once per function and code."""
    func = spec.func
    cache_key = (id(func), spec.code_fp)
    hit = _blobs.get(cache_key)
    if hit is not None and hit[0] is func:
        return hit[1], hit[2]
    try:
        blob = dumps_code(func)
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the user's to see
        raise InvalidJob(spec.job_id, f"its function {spec.function} cannot be pickled: {exc}") \
            from None
    key = hashlib.blake2b(blob, digest_size=16).hexdigest()
    if len(_blobs) > 10_000:
        _blobs.clear()
    _blobs[cache_key] = (func, key, blob)
    return key, blob


_sources: dict[tuple[int, str], tuple[Any, bytes]] = {}


def function_sources(spec: JobSpec) -> bytes:
    """JSON ``{file: text}`` of the code files of a job's function that exist only in
    this process's linecache (notebook cells), for the process that runs it: without
    them its tracebacks have no source lines. Computed once per function and code."""
    func = spec.func
    cache_key = (id(func), spec.code_fp)
    hit = _sources.get(cache_key)
    if hit is not None and hit[0] is func:
        return hit[1]
    from .fingerprint.code import code_files

    found = {}
    for name in sorted(code_files(func)):
        if name and not os.path.exists(name):
            lines = linecache.getlines(name)
            if lines:
                found[name] = "".join(lines)
    blob = json.dumps(found).encode()
    if len(_sources) > 10_000:
        _sources.clear()
    _sources[cache_key] = (func, blob)
    return blob


def install_sources(sources: dict[str, str]) -> None:
    """In the process that runs a job: the lines ``function_sources`` sent, so tracebacks
    of the job's functions show them. An entry without an mtime is never checked against
    the disk (``linecache.checkcache`` keeps it)."""
    for filename, text in sources.items():
        lines = text.splitlines(keepends=True)
        linecache.cache[filename] = (len(text), None, lines, filename)


def payload(spec: JobSpec) -> bytes:
    call = (spec.args, spec.kwargs)
    try:
        return pickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - lambdas and notebook classes need cloudpickle
        try:
            return dumps_code(call)
        except Exception as exc:  # noqa: BLE001
            raise InvalidJob(spec.job_id, f"its arguments cannot be pickled: {exc}") from None


def arg_fingerprints(args: tuple, kwargs: dict) -> dict[str, str]:
    """Per-argument digests, so `why` can name the argument that changed."""
    from .fingerprint import digest

    out = {str(i): digest(a) for i, a in enumerate(args)}
    out.update((k, digest(v)) for k, v in kwargs.items())
    return out


def shell_spec(command: Any, inputs: Any, outputs: Any, job_id: str | None,
               options: dict[str, Any], outputs_of: Any, parent: str | None = None) -> JobSpec:
    """The JobSpec of ``sh(command, inputs=, outputs=, job_id=, **options)``: its function
    a ``ShellCommand`` whose code is the command with its paths filled in, its input files
    its argument, its outputs declared. Default id: ``sh-<8 hex>`` of its outputs (a
    step is known by what it makes, as in make: editing its command makes it stale),
    or, for a step without outputs, of its command and inputs."""
    from .core.jobspec import short_hash
    from .files.shell import (ShellCommand, format_command, input_files, output_list,
                              shell_options)

    where = job_id or "sh(...)"
    if not isinstance(command, str) or not command.strip():
        raise InvalidJob(where, f"sh() needs a command (a str), not {command!r}")
    try:
        files = input_files(inputs, outputs_of)
        outs = output_list(outputs)
        text = format_command(command, [str.__str__(f) for f in files], outs)
        given = shell_options(options)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(where, str(exc)) from None
    jid = job_id or "sh-" + short_hash("sh", parent or "", *(outs or [command, *files]))
    parsed = parse_options(jid, given)
    if outs:
        parsed = JobOptions(parsed.timeout, parsed.retries, parsed.resources, tuple(outs))
    func = ShellCommand(text, os.getcwd(), parsed.timeout)
    return make_spec(func, (files,), {}, jid, parent, label="sh", code=func.__nbmake_code__(),
                     options=parsed)
