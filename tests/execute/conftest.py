"""Fixtures of the tests that drive nbmake_ext in processes of their own
(test_processes.py, test_interrupt.py). test_engines.py and test_dask.py have a ``lab`` of
their own (a directory for their jobs' logs), which takes precedence in those modules."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "scripts"))

import proctools as pt  # noqa: E402


@pytest.fixture
def procs():
    """Processes a test starts; whatever is left of them is killed at the end."""
    p = pt.Procs()
    try:
        yield p
    finally:
        p.cleanup()


@pytest.fixture
def lab(tmp_path):
    """(directory, log, store, env) for one test."""
    log = tmp_path / "jobs.log"
    store = tmp_path / "store"
    env = pt.env_for(log, NBMAKE_TEST_STORE=str(store))
    return tmp_path, log, store, env
