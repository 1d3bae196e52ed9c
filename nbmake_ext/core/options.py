"""Job options (SPEC 5, "Job options"): what ``job_timeout``, ``job_retries`` and
``job_resources`` mean as values, and the totals of resources a ``parmake`` shares out.

Pure: no I/O. The keywords of ``comp`` and ``comp_dynamic`` that start with ``job_`` are
split off here, checked, and kept as a ``JobOptions`` beside (never inside) the job's
signature: changing an option never makes a job run again. The store keeps them as the
json of ``to_json``.

Amounts of memory (``mem``) are bytes; a text names a size: ``8GB``, ``200M`` and
``512kB`` are decimal (a GB is 10**9 bytes), ``1.5GiB`` and ``512Mi`` binary (a GiB is
2**30 bytes), ``100`` or ``100B`` bytes. Every other amount is a plain number.
"""

from __future__ import annotations

import json
import math
import numbers
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import BadUsage, InvalidJob

#: The keywords of comp / comp_dynamic that are options (``job_id`` is the job's id).
OPTION_KEYWORDS = ("job_timeout", "job_retries", "job_resources", "job_outputs")
RESERVED_PREFIX = "job_"

#: Resources with a default total other than 1 (see ``default_totals``).
CPUS, MEM, GPUS = "cpus", "mem", "gpus"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_SIZE = re.compile(r"\s*([0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?\s*"
                   r"(?:([kKmMgGtTpP])(i?)[bB]?|[bB])?\s*")
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


class OptionError(ValueError):
    """An option or an amount that cannot be taken; the message says what is needed."""


@dataclass(frozen=True, slots=True)
class JobOptions:
    """How a job is run, not what it computes. ``resources`` maps a name to an amount
    (``mem`` in bytes); it is never changed after it is made."""

    timeout: float | None = None                  # seconds; None: no limit
    retries: int = 0                              # further attempts after a failure
    resources: Mapping[str, float] = field(default_factory=dict)
    # the files it writes (job_outputs): absolute paths, a directory's ending in "/"
    outputs: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        """Whether any option is set."""
        return self.timeout is not None or self.retries != 0 or bool(self.resources) \
            or bool(self.outputs)

    def as_dict(self) -> dict[str, Any]:
        """The options that are set: ``timeout``, ``retries``, ``resources``."""
        out: dict[str, Any] = {}
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.retries:
            out["retries"] = self.retries
        if self.resources:
            out["resources"] = dict(self.resources)
        if self.outputs:
            out["outputs"] = list(self.outputs)
        return out


#: The options of every job that sets none: one instance, shared.
NO_OPTIONS = JobOptions()


# -- values ---------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A real number (not a bool: ``True`` is no amount), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return operator.index(value)  # numpy integers and the like
    except TypeError:
        pass
    return float(value) if isinstance(value, numbers.Real) else None


def _tidy(value: float) -> float:
    """Whole numbers as ints (``2``, not ``2.0``), so they read as given."""
    value = float(value)
    return int(value) if value.is_integer() else value


def check_timeout(value: Any) -> float | None:
    """``job_timeout``: a number of seconds > 0, or None for no limit."""
    if value is None:
        return None
    number = _number(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise OptionError(f"needs a number of seconds > 0, not {value!r}")
    return float(number)


def check_retries(value: Any) -> int:
    """``job_retries``: a whole number >= 0 (None: 0)."""
    if value is None:
        return 0
    n = None
    if not isinstance(value, bool):
        try:
            n = operator.index(value)
        except TypeError:
            pass
    if n is None or n < 0:
        raise OptionError(f"needs a whole number >= 0, not {value!r}")
    return n


def parse_size(text: str) -> int:
    """Bytes of a size written as text: ``8GB``, ``200M``, ``1.5GiB``, ``512Mi``, ``100``."""
    found = _SIZE.fullmatch(text)
    if found is None:
        raise OptionError(f"needs an amount of memory such as 8GB, 512MB, 1.5GiB or a "
                          f"number of bytes, not {text!r}")
    digits, exponent, prefix, binary = found.groups()
    value = float(digits) * 10 ** int(exponent or 0)
    if prefix:
        value *= (1024 if binary else 1000) ** _POWERS[prefix.lower()]
    return int(round(value))


def parse_amount(name: str, value: Any) -> float:
    """The amount of resource ``name`` that ``value`` gives: a number >= 0; for ``mem``
    also a size (``8GB``, see ``parse_size``), in bytes."""
    if name == MEM and isinstance(value, str):
        return parse_size(value)
    number = _number(value)
    if number is None or not math.isfinite(number) or number < 0:
        kind = "a number >= 0 (bytes, or a size such as 8GB)" if name == MEM \
            else "a number >= 0"
        raise OptionError(f"needs {kind}, not {value!r}")
    return _tidy(number)


def amount_from_text(name: str, text: str) -> float:
    """An amount written on a command line (``2``, ``0.5``, ``8GB`` for mem)."""
    text = text.strip()
    if name == MEM:
        return parse_size(text)
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise OptionError(f"needs a number >= 0, not {text!r}")
    return _tidy(number)


def timeout_from_text(text: str) -> float:
    """``--timeout SECONDS`` of a command line."""
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise OptionError(f"needs a number of seconds > 0, not {text!r}")
    return number


def retries_from_text(text: str) -> int:
    """``--retries N`` of a command line."""
    if not re.fullmatch(r"\s*[0-9]+\s*", text):
        raise OptionError(f"needs a whole number >= 0, not {text!r}")
    return int(text)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise OptionError(f"a resource name is a word of letters, digits, '_', '.' or '-' "
                          f"(starting with a letter or '_'), not {name!r}")
    return name


def check_resources(value: Any) -> dict[str, float]:
    """``job_resources``: a mapping of names to amounts (None: none)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise OptionError(f"needs a dict of names to amounts, such as "
                          f"{{'gpus': 1, 'mem': '8GB'}}, not {value!r}")
    out = {}
    for name, amount in value.items():
        check_name(name)
        try:
            out[name] = parse_amount(name, amount)
        except OptionError as exc:
            raise OptionError(f"{name!r} {exc}") from None
    return dict(sorted(out.items()))


def assignment(text: str) -> tuple[str, float]:
    """``NAME=AMOUNT`` of a command line (``licence=1``, ``mem=8GB``)."""
    name, sep, amount = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise OptionError(f"needs NAME=AMOUNT, not {text!r}")
    check_name(name)
    try:
        return name, amount_from_text(name, amount)
    except OptionError as exc:
        raise OptionError(f"{name}: {exc}") from None


# -- the keywords of comp -----------------------------------------------------------------


def split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The keywords for the function and the ``job_`` ones (None when there are none:
    the common case costs one look at each keyword)."""
    for key in kwargs:
        if key.startswith(RESERVED_PREFIX):
            break
    else:
        return kwargs, None
    mine = {k: v for k, v in kwargs.items() if k.startswith(RESERVED_PREFIX)}
    return {k: v for k, v in kwargs.items() if not k.startswith(RESERVED_PREFIX)}, mine


_parsed: dict[tuple, JobOptions] = {}


def _key(given: Mapping[str, Any]) -> tuple | None:
    """What ``given`` is, as a dict key (types included: ``True`` is not ``1``), or None."""
    try:
        key = tuple((k, type(v), v if type(v) is not dict else
                     tuple([(n, type(a), a) for n, a in v.items()])) for k, v in given.items())
        hash(key)
    except TypeError:
        return None
    return key


def parse_options(job_id: str, given: Mapping[str, Any] | None) -> JobOptions:
    """``JobOptions`` from the ``job_`` keywords of ``comp``; ``InvalidJob`` naming the job
    and the keyword for an unknown keyword or a value it cannot take. Jobs registered
    with the same options (a loop of ``comp``) share one instance, checked once."""
    if not given:
        return NO_OPTIONS
    key = _key(given)
    options = _parsed.get(key) if key is not None else None
    if options is None:
        options = _parse_options(job_id, given)
        if key is not None and len(_parsed) < 1000:
            _parsed[key] = options
    return options


def _parse_options(job_id: str, given: Mapping[str, Any]) -> JobOptions:
    # (job_outputs is read by ``with_outputs``: it needs the job's keyword arguments)
    unknown = [k for k in given if k not in OPTION_KEYWORDS]
    if unknown:
        raise InvalidJob(job_id, f"unknown keyword {unknown[0]}: keywords starting with "
                                 f"'job_' are reserved for nbmake_ext (job_id, "
                                 f"{', '.join(OPTION_KEYWORDS)}); a parameter of the "
                                 f"function named so must be renamed")
    checks = (("job_timeout", check_timeout), ("job_retries", check_retries),
              ("job_resources", check_resources))
    values = []
    for key, check in checks:
        value = given.get(key)
        try:
            values.append(check(value))
        except OptionError as exc:
            raise InvalidJob(job_id, f"{key}={value!r}: {exc}") from None
    options = JobOptions(*values)
    return options if options else NO_OPTIONS


# -- stored as json -----------------------------------------------------------------------


_written: dict[int, tuple[JobOptions, str]] = {}


def to_json(options: JobOptions) -> str | None:
    """What the store keeps: None when no option is set. (Written once per instance:
    jobs registered alike share theirs, see ``parse_options``.)"""
    if options is NO_OPTIONS or not options:
        return None
    hit = _written.get(id(options))
    if hit is not None and hit[0] is options:
        return hit[1]
    text = json.dumps(options.as_dict(), sort_keys=True)
    if len(_written) > 10_000:
        _written.clear()
    _written[id(options)] = (options, text)
    return text


_read: dict[str, JobOptions] = {}


def from_json(text: str | None) -> JobOptions:
    """The options ``to_json`` wrote (None or empty: none). Jobs of one kind share their
    text, and so one instance."""
    if not text:
        return NO_OPTIONS
    options = _read.get(text)
    if options is None:
        data = json.loads(text)
        options = JobOptions(data.get("timeout"), data.get("retries", 0),
                             dict(data.get("resources") or {}),
                             tuple(data.get("outputs") or ()))
        if len(_read) < 10_000:
            _read[text] = options
    return options


# -- words for people ---------------------------------------------------------------------


_UNITS = (("TB", 10**12), ("TiB", 2**40), ("GB", 10**9), ("GiB", 2**30), ("MB", 10**6),
          ("MiB", 2**20), ("kB", 10**3), ("KiB", 2**10))


def format_amount(name: str, amount: float) -> str:
    """An amount as people write it: memory in the largest unit that says it exactly
    (to three decimals), else in round GB, MB or kB."""
    if name != MEM:
        return f"{amount:g}"
    for unit, size in _UNITS:
        if size <= amount < 10_000 * size and round(amount / size, 3) * size == amount:
            return f"{amount / size:.7g} {unit}"
    for unit, size in _UNITS[::2]:
        if amount >= size:
            return f"{amount / size:.4g} {unit}"
    return f"{amount:g} B"


def describe(options: JobOptions) -> list[tuple[str, str]]:
    """(label, text) of each option that is set, for ``details``."""
    out = []
    if options.timeout is not None:
        out.append(("timeout", f"{options.timeout:g} s"))
    if options.retries:
        out.append(("retries", str(options.retries)))
    if options.resources:
        out.append(("resources", ", ".join(f"{name}={format_amount(name, amount)}"
                                           for name, amount in options.resources.items())))
    return out


def with_outputs(job_id: str, options: JobOptions, given: Any, kwargs: Mapping[str, Any],
                 cwd: str | None = None) -> JobOptions:
    """``options`` with the files of ``job_outputs=given`` (``{name}`` filled from the
    job's keyword arguments ``kwargs``, relative paths taken from ``cwd``); ``InvalidJob``
    naming the job and the culprit."""
    from ..files.paths import OutputError, output_paths

    try:
        outputs = output_paths(given, kwargs, cwd)
    except OutputError as exc:
        raise InvalidJob(job_id, f"job_outputs: {exc}") from None
    if not outputs:
        return options
    return JobOptions(options.timeout, options.retries, options.resources, outputs)


# -- totals of a parmake ------------------------------------------------------------------


class Totals(dict):
    """Amounts of each resource a parmake shares out among the jobs it runs at once. A
    resource it does not name has a total of 1 (``totals[name]``; ``get`` does not say)."""

    def __missing__(self, name: str) -> float:
        return 1


def parse_totals(value: Any) -> dict[str, float]:
    """The ``resources`` of ``Context.parmake``: a dict of names to amounts (None: none);
    ``BadUsage`` naming the culprit."""
    if isinstance(value, str):
        raise BadUsage(f"parmake resources {value!r}: needs a dict of names to amounts, such "
                       f"as {{'gpus': 2, 'licence': 3}}")
    try:
        return check_resources(value)
    except OptionError as exc:
        raise BadUsage(f"parmake resources {value!r}: {exc}") from None


def totals_from_text(text: str | None) -> dict[str, float]:
    """``--resources NAME=AMOUNT,...`` of a command line (``gpus=2,licence=3``);
    ``BadUsage`` naming the culprit."""
    out: dict[str, float] = {}
    try:
        for word in (text or "").split(","):
            if word.strip():
                name, amount = assignment(word)
                out[name] = amount
    except OptionError as exc:
        raise BadUsage(f"parmake --resources {text}: {exc}") from None
    return out


def default_totals(engines: int, given: Mapping[str, float], *, memory: float,
                   gpus: int) -> Totals:
    """The totals of a parmake on ``engines`` engines: those ``given``, else ``cpus`` the
    number of engines, ``mem`` the machine's ``memory`` (bytes), ``gpus`` the GPUs it can
    see, and any other name 1. (The machine's values are found by kernel/machine.py.)"""
    totals = Totals({CPUS: engines, MEM: memory, GPUS: gpus})
    totals.update(given)
    return totals
