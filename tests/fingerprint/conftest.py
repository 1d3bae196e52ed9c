"""Fixtures that imitate where user code comes from: notebook cells and project modules."""

from __future__ import annotations

import importlib
import itertools
import linecache
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from nbmake_ext.fingerprint import set_tracked_root

_serial = itertools.count()


@pytest.fixture
def run_cell() -> Callable[..., dict]:
    """``run_cell(src, ns=None, in_linecache=True)`` executes ``src`` like an ipykernel cell:
    in a ``__main__`` namespace, compiled from a fresh temporary cell file name whose source
    is in linecache (or nowhere, with ``in_linecache=False``). Returns the namespace."""
    registered: list[str] = []

    def run(src: str, ns: dict | None = None, *, in_linecache: bool = True) -> dict:
        src = textwrap.dedent(src)
        n = next(_serial)
        if in_linecache:
            filename = f"/tmp/ipykernel_{os.getpid()}/cell{n}.py"
            linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
            registered.append(filename)
        else:
            filename = f"<nbmake-test-{n}>"
        ns = {"__name__": "__main__"} if ns is None else ns
        exec(compile(src, filename, "exec"), ns)
        return ns

    yield run
    for filename in registered:
        linecache.cache.pop(filename, None)


class Project:
    """Module files under a temporary tracked root."""

    def __init__(self, root: Path):
        self.root = root
        self.names: list[str] = []

    def module(self, stem: str, src: str) -> ModuleType:
        """Write ``<stem>_<n>.py`` (a name unique in this session) and import it."""
        name = f"{stem}_{next(_serial)}"
        self.names.append(name)
        self.write(name, src)
        return importlib.import_module(name)

    def write(self, name: str, src: str) -> None:
        (self.root / f"{name}.py").write_text(textwrap.dedent(src))
        importlib.invalidate_caches()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # reloads must read the new source
    set_tracked_root(root)
    proj = Project(root)
    yield proj
    set_tracked_root(None)
    for name in proj.names:
        sys.modules.pop(name, None)
