"""The function a ``%%comp`` job runs: the cell's code on its inputs, returning its outputs."""

from __future__ import annotations

import builtins
import linecache
from typing import Any

from ..fingerprint import CodeFingerprint, cell_fingerprint, code_fingerprint, digest, is_tracked


class CellJob:
    """Runs a cell body in a fresh namespace made of its inputs; returns ``{output: value}``.

    Tracebacks show the cell's lines: the source is put in linecache under a name that
    says which job it is, wherever the job runs (kernel or engine).
    """

    __name__ = "cell"
    __qualname__ = "cell"

    def __init__(self, job_id: str, source: str, outputs: tuple[str, ...],
                 captured: dict[str, Any] | None = None):
        self.job_id = job_id
        self.source = source
        self.outputs = outputs
        # The notebook functions the cell uses: their code (and their callees') is the
        # cell's code too, read again before every command.
        self.functions = {k: v for k, v in (captured or {}).items()
                          if callable(v) and not isinstance(v, type)}

    def __nbmake_code__(self) -> CodeFingerprint:
        return cell_code_fingerprint(self.source, self.functions)

    def __getstate__(self) -> dict[str, Any]:
        # The functions travel as the job's inputs already; the code is all a run needs.
        return {"job_id": self.job_id, "source": self.source, "outputs": self.outputs,
                "functions": {}}

    @property
    def filename(self) -> str:
        return f"<%%comp {self.job_id}>"

    def __call__(self, /, **inputs: Any) -> dict[str, Any]:  # an input may be named self
        __tracebackhide__ = True  # IPython shows the cell's frame, not ours
        filename = self.filename
        lines = self.source.splitlines(True)
        linecache.cache[filename] = (len(self.source), None, lines, filename)
        namespace = {"__name__": "__main__", "__builtins__": builtins, **inputs}
        exec(compile(self.source, filename, "exec"), namespace)  # noqa: S102 - the user's cell
        return {name: namespace[name] for name in self.outputs if name in namespace}

    def __repr__(self) -> str:
        return f"<cell job {self.job_id}>"


def cell_code_fingerprint(source: str, captured: dict[str, Any]) -> CodeFingerprint:
    """The cell's normalised code, plus the code of notebook functions it uses, so editing
    a helper function makes the cells that call it stale."""
    parts = {"cell": cell_fingerprint(source)}
    for _, value in sorted(captured.items()):
        if callable(value) and not isinstance(value, type) and _tracked(value):
            parts.update(code_fingerprint(value).parts)
    return CodeFingerprint(digest(sorted(parts.items())), parts)


def _tracked(value: Any) -> bool:
    try:
        return is_tracked(value)
    except Exception:  # noqa: BLE001 - anything odd is simply not tracked code
        return False
