"""Real Jupyter kernels and notebooks for the tests: what a user's front end does.

``Kernel`` drives one ipykernel process through jupyter_client, the way JupyterLab does:
execute requests, completion requests, stdin for the debugger. ``kernel_env`` makes the
``python3`` kernel this interpreter (so the kernel imports this checkout's nbmake_ext).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from jupyter_client.manager import KernelManager

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def kernel_env(root: Path) -> dict[str, str]:
    """Environment for kernels and nbconvert: a ``python3`` kernelspec under ``root`` that
    runs ``sys.executable`` (first on JUPYTER_PATH, so it wins over any user-level spec),
    a private IPython dir (no user startup files), and no NBMAKE_STORE from outside."""
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (nbmake_ext tests)", "language": "python"}))
    env = {k: v for k, v in os.environ.items() if k != "NBMAKE_STORE"}
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root), env.get("JUPYTER_PATH")]))
    env["IPYTHONDIR"] = str(root / "ipython")
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env


@dataclass
class Reply:
    """What one execute request produced."""

    status: str
    msgs: list[dict] = field(default_factory=list)
    payload: list[dict] = field(default_factory=list)

    @property
    def bundles(self) -> list[dict[str, Any]]:
        """The mimebundles of display_data and execute_result outputs."""
        return [m["content"]["data"] for m in self.msgs
                if m["msg_type"] in ("display_data", "execute_result")]

    @property
    def text(self) -> str:
        """Streams and text/plain outputs, as a reader sees them."""
        parts = []
        for m in self.msgs:
            if m["msg_type"] == "stream":
                parts.append(m["content"]["text"])
            elif m["msg_type"] in ("display_data", "execute_result"):
                parts.append(m["content"]["data"].get("text/plain", "") + "\n")
        return ANSI.sub("", "".join(parts))

    @property
    def error(self) -> dict[str, Any] | None:
        for m in self.msgs:
            if m["msg_type"] == "error":
                c = m["content"]
                return {"ename": c["ename"], "evalue": c["evalue"],
                        "traceback": ANSI.sub("", "\n".join(c["traceback"]))}
        return None

    @property
    def value(self) -> str:
        """The text/plain of the execute_result (the cell's last expression)."""
        results = [m["content"]["data"]["text/plain"] for m in self.msgs
                   if m["msg_type"] == "execute_result"]
        assert len(results) == 1, self
        return results[0]

    def __str__(self) -> str:
        err = self.error
        tail = f"\nERROR {err['ename']}: {err['evalue']}\n{err['traceback']}" if err else ""
        return f"[{self.status}]\n{self.text}{tail}"


class Kernel:
    """One kernel process started in ``cwd``. Use as a context manager or ``close()``."""

    def __init__(self, cwd: Path, env: dict[str, str], timeout: float = 60):
        self.cwd = Path(cwd)
        self.timeout = timeout
        # ipc paths must stay short (107 chars): the connection file lives in its own
        # short temp dir, and its name anchors the ipc paths the kernel binds.
        self._conn_dir = tempfile.mkdtemp(prefix="nbk-")
        self.km = KernelManager(kernel_name="python3", transport="ipc",
                                connection_file=os.path.join(self._conn_dir, "k.json"))
        self.km.start_kernel(cwd=str(self.cwd), env=env)
        try:
            self.kc = self.km.client()
            self.kc.start_channels()
            self.kc.wait_for_ready(timeout=timeout)
        except BaseException:
            self.close()
            raise

    def run(self, code: str, *, stdin: Iterable[str] = (), timeout: float | None = None) -> Reply:
        msgs: list[dict] = []
        answers = iter(stdin)
        # stop_on_error=False: these requests come one at a time, and ipykernel 6 may still
        # be aborting the queue after a failed cell when the next request arrives.
        reply = self.kc.execute_interactive(
            code, timeout=timeout or self.timeout, output_hook=msgs.append, stop_on_error=False,
            allow_stdin=True, stdin_hook=lambda _msg: self.kc.input(next(answers)))
        content = reply["content"]
        return Reply(content["status"], msgs, content.get("payload", []))

    def ok(self, code: str, **kw: Any) -> Reply:
        reply = self.run(code, **kw)
        assert reply.status == "ok", f"{code!r} failed:\n{reply}"
        return reply

    def fails(self, code: str, **kw: Any) -> Reply:
        reply = self.run(code, **kw)
        assert reply.status == "error", f"{code!r} did not fail:\n{reply}"
        return reply

    def complete(self, code: str) -> tuple[list[str], str]:
        """The matches a front end offers at the end of ``code``, and the text they replace."""
        msg_id = self.kc.complete(code, len(code))
        while True:
            reply = self.kc.get_shell_msg(timeout=self.timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        c = reply["content"]
        return c["matches"], code[c["cursor_start"]:c["cursor_end"]]

    def close(self) -> None:
        try:
            if getattr(self, "kc", None) is not None:
                self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
        finally:
            shutil.rmtree(self._conn_dir, ignore_errors=True)

    def __enter__(self) -> "Kernel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- notebooks ---------------------------------------------------------------------------

_NORMALISE: list[tuple[re.Pattern, str]] = [
    (ANSI, ""),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "<TIME>"),
    (re.compile(r"\b\d+(\.\d+)?(ms|s|min)\b"), "<T>"),
    (re.compile(r"peak memory \d+(\.\d+)? [kMGT]?B"), "peak memory <M>"),
    (re.compile(r"/tmp/ipykernel_\d+/\d+\.py"), "<cell>"),
    (re.compile(r"0x[0-9a-f]+"), "0x?"),
    (re.compile(r"^[ \t]*[~^]+[ \t]*\n", re.M), ""),  # carets under a traceback line
    (re.compile(r"-{2,}"), "--"),     # table rules: their width follows the durations
    (re.compile(r"[ \t]+"), " "),     # and so does the padding
    (re.compile(r" +\n"), "\n"),
]


def normalise(text: str) -> str:
    """Text of an output with what changes from run to run (times, padding) blotted out."""
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    return text.strip()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _ipython_internal(entry: str) -> bool:
    """A traceback entry of IPython's own machinery (which IPython releases show or hide
    differently), not of the user's code or of nbmake_ext."""
    plain = _ANSI.sub("", entry)
    return f"{os.sep}IPython{os.sep}" in plain or "skipping hidden" in plain


def output_texts(cell: dict) -> list[str]:
    """What a reader sees of one code cell's outputs, normalised; consecutive streams of
    one name are joined (front ends and nbclient may split them differently)."""
    out: list[tuple[str, str]] = []
    for o in cell.get("outputs", []):
        kind = o["output_type"]
        if kind == "stream":
            key, text = f"stream:{o['name']}", o["text"]
            if out and out[-1][0] == key:
                out[-1] = (key, out[-1][1] + text)
                continue
        elif kind == "error":
            frames = [t for t in o["traceback"] if not _ipython_internal(t)]
            key, text = "error", f"{o['ename']}: {o['evalue']}\n" + "\n".join(frames)
        else:
            key, text = kind, o["data"].get("text/plain", "")
        out.append((key, text))
    return [f"{key}\n{normalise(text)}" for key, text in out]
