import logging
import sys
from pathlib import Path

import pytest

# Test helper modules (tests/contexts.py, tests/core/sim.py, ...) import by plain name.
for sub in ("", "core"):
    sys.path.insert(0, str(Path(__file__).parent / sub))

from contexts import new_context  # noqa: E402
from logcheck import LOGGER, Recorder  # noqa: E402


@pytest.fixture(autouse=True)
def _no_unexpected_library_warnings():
    """A warning nbmake_ext logs fails the test unless the test expects it
    (``logcheck.warns``, ``logcheck.library_warnings``). The ``nbmake_ext`` logger is left
    as it was found (the console's ``main``, run in-process, configures it)."""
    logger = logging.getLogger(LOGGER)
    saved = list(logger.handlers), logger.level, logger.propagate
    recorder = Recorder()
    logger.addHandler(recorder)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
    stray = [r.getMessage() for r in recorder.records if not getattr(r, "nbmake_expected", False)]
    if stray:
        pytest.fail(f"nbmake_ext logged warnings this test does not expect: {stray}")


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def ctx(store_path: Path):
    c = new_context(store_path)
    yield c
    c.close()
