"""Paths of the files jobs read and write (SPEC 10): ``File`` (an input), declared outputs
and how paths are shown. Pure: nothing here reads the disk."""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping


class File(str):
    """An input file of a job: ``comp(f, File("data/raw.csv"))``.

    It is a ``str``, the file's absolute path (a relative path is taken relative to the
    working directory when the ``File`` is made, wherever the job later runs), so the
    function receives a path it can open as it is. The file's content counts in the job's
    signature: editing it makes the job stale. A path that another job declares as an
    output makes that job a dependency. A path ending in ``/`` (or naming a directory)
    counts with its whole tree."""

    # (a str subclass cannot have slots: ``producer`` lives in the instance's dict)

    def __new__(cls, path: "str | os.PathLike[str]", *, producer: str | None = None) -> "File":
        obj = super().__new__(cls, absolute(path))
        obj.producer = producer  # the job that declares it as an output, when known
        return obj

    @property
    def path(self) -> str:
        """The absolute path, as a plain str."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"File({show(self)!r})"

    def __reduce__(self):  # travels as its path; which job writes it is the kernel's to know
        return (File, (str.__str__(self),))


def absolute(path: Any, cwd: str | None = None) -> str:
    """``path`` made absolute and normal (``a/../b`` -> ``b``); a trailing ``/`` (a
    directory) is kept. ``TypeError`` / ``ValueError`` for what is no path."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        raise TypeError(f"a path must be text, not bytes: {path!r}")
    if not text:
        raise ValueError("a path must not be empty")
    is_dir = text.endswith("/")
    full = os.path.normpath(os.path.join(cwd or os.getcwd(), os.path.expanduser(text)))
    return full + "/" if is_dir and full != "/" else full


def is_dir_path(path: str) -> bool:
    return path.endswith("/")


def show(path: str, cwd: str | None = None) -> str:
    """A path as people read it: relative to the working directory when under it."""
    cwd = cwd or os.getcwd()
    prefix = cwd.rstrip("/") + "/"
    if path.startswith(prefix) and len(path) > len(prefix):
        return path[len(prefix):]
    return path


# -- declared outputs ---------------------------------------------------------------------

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


class OutputError(ValueError):
    """A declared output that cannot be taken; the message names the culprit."""


def output_paths(given: Any, kwargs: Mapping[str, Any], cwd: str | None = None) -> tuple[str, ...]:
    """The ``job_outputs`` of a job: each a path, ``{name}`` filled from the job's keyword
    arguments (``{{`` and ``}}`` are braces), made absolute; in the order given, each once."""
    if given is None:
        return ()
    if isinstance(given, (str, os.PathLike)):
        given = [given]
    try:
        items = list(given)
    except TypeError:
        raise OutputError(f"needs a list of paths, not {given!r}") from None
    out: dict[str, None] = {}
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise OutputError(f"needs paths (str), not {item!r}")
        text = os.fspath(item)
        if isinstance(text, bytes):
            raise OutputError(f"needs paths (str), not {item!r}")
        try:
            filled = _fill(text, kwargs)
            out[absolute(filled, cwd)] = None
        except (TypeError, ValueError) as exc:
            raise OutputError(f"{text!r}: {exc}") from None
    return tuple(out)


def _fill(text: str, kwargs: Mapping[str, Any]) -> str:
    def token(found: re.Match) -> str:
        whole, name = found.group(0), found.group(1)
        if whole == "{{":
            return "{"
        if whole == "}}":
            return "}"
        if name is None:
            raise ValueError("a brace that is not a {keyword} (write {{ or }} for one)")
        if name not in kwargs:
            raise ValueError(f"{{{name}}} names no keyword argument of the job")
        return str(kwargs[name])

    return _TOKEN.sub(token, text) if "{" in text or "}" in text else text


def covering(path: str, outputs: Iterable[str]) -> str | None:
    """The declared output among ``outputs`` that is ``path`` or a directory holding it."""
    for out in outputs:
        if out == path or (out.endswith("/") and (path + "/").startswith(out)):
            return out
    return None
