import sys
from pathlib import Path

# Test helper modules (tests/core/sim.py, ...) import by plain name.
for sub in ("core",):
    sys.path.insert(0, str(Path(__file__).parent / sub))
