"""Fixtures for the notebook layer: real kernels, each test in its own working directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from jupytools import Kernel, kernel_env  # noqa: E402


@pytest.fixture(scope="session")
def jupyter_env(tmp_path_factory) -> dict[str, str]:
    return kernel_env(tmp_path_factory.mktemp("jupyter"))


@pytest.fixture(scope="module")
def shared_kernel(jupyter_env, tmp_path_factory):
    """One kernel for a module; tests get it through ``nb``."""
    with Kernel(tmp_path_factory.mktemp("kernel-home"), jupyter_env) as k:
        yield k


@pytest.fixture
def nb(shared_kernel, tmp_path) -> Kernel:
    """The module's kernel, moved to this test's directory: its own working directory and
    store, a namespace emptied of the earlier tests' names, the extension loaded (an
    earlier test may have unloaded it)."""
    k = shared_kernel
    k.ok(f"%reset -f\n%cd {tmp_path}\n%load_ext nbmake_ext\n%nbmake store .nbmake\n"
         "from nbmake_ext import comp, comp_dynamic, current_context")
    k.cwd = tmp_path
    return k


@pytest.fixture
def fresh_kernel(jupyter_env, tmp_path):
    """``fresh_kernel(cwd=tmp_path, **env)`` starts a kernel process of its own; all are
    shut down when the test ends."""
    started: list[Kernel] = []

    def start(cwd: Path = tmp_path, **env: str) -> Kernel:
        k = Kernel(cwd, {**jupyter_env, **env})
        started.append(k)
        return k

    yield start
    for k in started:
        k.close()


@pytest.fixture(autouse=True, scope="module")
def _jupyter_environ(jupyter_env):
    """nbclient and KernelManager in this process find kernelspecs through os.environ."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(jupyter_env)
    yield
    os.environ.clear()
    os.environ.update(saved)
