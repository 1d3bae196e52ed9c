import sys
from pathlib import Path

import pytest

# Test helper modules (tests/contexts.py, tests/core/sim.py, ...) import by plain name.
for sub in ("", "core"):
    sys.path.insert(0, str(Path(__file__).parent / sub))

from contexts import new_context  # noqa: E402


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def ctx(store_path: Path):
    c = new_context(store_path)
    yield c
    c.close()
