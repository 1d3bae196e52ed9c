"""Jupyter servers for the browser tests and benchmarks: JupyterLab or Notebook 7 on
loopback with a random port and token, each in its own temporary directories."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A Jupyter server (``lab`` or ``notebook``) bound to loopback with a random port and
    token, in its own HOME, config, runtime, settings and workspace directories."""

    def __init__(self, app: str, root: Path, jupyter_env: dict[str, str]):
        self.app, self.root = app, root
        self.notebooks = root / "notebooks"
        self.notebooks.mkdir(parents=True)
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(jupyter_env)
        for name, sub in (("HOME", "home"), ("JUPYTER_CONFIG_DIR", "config"),
                          ("JUPYTER_RUNTIME_DIR", "runtime"),
                          ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                          ("JUPYTERLAB_WORKSPACES_DIR", "workspaces")):
            (root / sub).mkdir(exist_ok=True)
            env[name] = str(root / sub)
        news = root / "settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True)
        (news / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        klass = "LabApp" if app == "lab" else "JupyterNotebookApp"
        cmd = [sys.executable, "-m", "jupyter", app, "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.notebooks}", "--ServerApp.allow_root=True",
               f"--{klass}.expose_app_in_browser=True"]
        if app == "lab":
            cmd += ["--LabApp.news_url=None",
                    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        self.log = open(root / "server.log", "w")
        self.proc = subprocess.Popen(cmd, cwd=self.notebooks, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_up()

    def _wait_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}",
                                            timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"jupyter {self.app} did not come up:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        self.log.flush()
        return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-n:])

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path}{sep}token={self.token}"

    def api(self, method: str, path: str) -> object:
        req = urllib.request.Request(self.url(f"api/{path}"), method=method)
        with urllib.request.urlopen(req, timeout=20) as r:
            body = r.read()
        return json.loads(body) if body else None

    def close(self) -> None:
        try:  # kernels run in sessions of their own: shut them down through the server
            for session in self.api("GET", "sessions") or []:
                self.api("DELETE", f"sessions/{session['id']}")
        except OSError:
            pass
        try:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()
        finally:
            self.log.close()


IDLE = """() => window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel
             ?.status === 'idle'"""


def restart_kernel(page, tries: int = 3, timeout: float = 30_000) -> None:
    """Restarts the current notebook's kernel and waits until it is idle. A restart after
    which the front end lost its kernel (status "Unknown", the cells never run: seen about
    once in a hundred restarts on a loaded machine) is tried again: that is between
    JupyterLab and its server, not what the tests look at."""
    from playwright.sync_api import TimeoutError as PageTimeout

    for attempt in range(1, tries + 1):
        page.evaluate("""async () => { const ctx = window.jupyterapp.shell.currentWidget
                           .sessionContext; await ctx.session.kernel.restart(); }""")
        try:
            page.wait_for_function(IDLE, timeout=timeout)
            return
        except PageTimeout:
            if attempt == tries:
                raise
