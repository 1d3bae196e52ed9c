"""What a fresh install gives: one version everywhere, types, and a clear word off POSIX."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import nbmake_ext


def _nbmake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbmake_ext", *args], capture_output=True,
                          text=True, timeout=60)


def test_version_is_one_and_the_same_everywhere():
    installed = importlib.metadata.version("nbmake-ext")
    assert nbmake_ext.__version__ == installed
    run = _nbmake("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"nbmake {installed}"


def test_the_package_says_it_is_typed_and_carries_its_licence():
    assert (Path(nbmake_ext.__file__).parent / "py.typed").is_file()
    meta = importlib.metadata.metadata("nbmake-ext")
    assert "Operating System :: POSIX" in meta.get_all("Classifier")
    assert meta["License-Expression"] == "MIT"


def test_importing_off_posix_fails_with_a_clear_message():
    code = "import os; os.name = 'nt'; import nbmake_ext"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert run.returncode != 0
    assert "ImportError: nbmake_ext runs on POSIX systems only" in run.stderr, run.stderr
    assert "fcntl" in run.stderr
