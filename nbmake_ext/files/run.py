"""What the process that runs a job does with its files, wherever it runs (the kernel, an
engine, a Dask worker): before the job, its input files must be there and its old outputs
go; after it returns, each output must be there, and is fingerprinted; after it fails,
its outputs go."""

from __future__ import annotations

import os
import shutil

from .fingerprints import FileCache, Stamps
from .paths import show


class FilesProblem(Exception):
    """An input file is missing, or an output was not written: the job fails with this."""


def before(inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
    """Check the inputs, remove the old outputs, make the directories the outputs go in
    (a directory output is made empty). ``FilesProblem`` or ``OSError`` if it cannot."""
    for path in inputs:
        if not os.path.exists(path):
            raise FilesProblem(f"input file {show(path)} is missing")
    remove(outputs)
    for path in outputs:
        if path.endswith("/"):
            os.makedirs(path, exist_ok=True)
        else:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)


def after(outputs: tuple[str, ...]) -> Stamps:
    """The fingerprints of the outputs the job wrote; ``FilesProblem`` naming the first
    one it did not write."""
    for path in outputs:
        if not os.path.exists(path) or path.endswith("/") and not os.path.isdir(path):
            raise FilesProblem(f"it did not write its output {show(path)}")
    return FileCache().stamps(outputs)


def remove(outputs: tuple[str, ...]) -> None:
    """Remove what is at each path (a file, a link, a directory's whole tree)."""
    for path in outputs:
        plain = path.rstrip("/") or path
        try:
            if os.path.isdir(plain) and not os.path.islink(plain):
                shutil.rmtree(plain)
            else:
                os.remove(plain)
        except FileNotFoundError:
            pass
