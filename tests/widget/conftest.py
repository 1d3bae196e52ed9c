"""Fixtures for the job board: real kernels (the Python side), a real headless chromium,
and JupyterLab / Notebook 7 servers on loopback, each in its own temporary directories."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "notebook"))

from browser import NoBrowser, browser  # noqa: E402
from jupytools import Kernel, kernel_env  # noqa: E402
from servers import Server  # noqa: E402

SCREENSHOTS = HERE / "screenshots"


@pytest.fixture(scope="session")
def jupyter_env(tmp_path_factory) -> dict[str, str]:
    return kernel_env(tmp_path_factory.mktemp("jupyter"))


@pytest.fixture
def fresh_kernel(jupyter_env, tmp_path):
    """``fresh_kernel(cwd=tmp_path)``: a kernel process of the test's own."""
    started: list[Kernel] = []

    def start(cwd: Path = tmp_path) -> Kernel:
        k = Kernel(cwd, jupyter_env)
        started.append(k)
        return k

    yield start
    for k in started:
        k.close()


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium through Playwright. Missing, it fails the test (never skips)."""
    try:
        with browser() as b:
            yield b
    except NoBrowser as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def screenshots(request) -> Path:
    """Where a test saves what it saw: tests/widget/screenshots/<test>/ (git-ignored)."""
    path = SCREENSHOTS / request.node.name.replace("[", "-").replace("]", "")
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.png"):
        old.unlink()
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory, jupyter_env):
    server = Server("lab", tmp_path_factory.mktemp("lab"), jupyter_env)
    yield server
    server.close()


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory, jupyter_env):
    server = Server("notebook", tmp_path_factory.mktemp("nb7"), jupyter_env)
    yield server
    server.close()
