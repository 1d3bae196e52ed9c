"""Helpers for tests that run nbmake_ext in fresh interpreters.

What ran is proven by side effects: every job calls ``note(name)``, which appends the line
``<name>:<pid>`` to a log file opened with O_APPEND (one ``write`` per line, so lines from
concurrent processes never interleave). Nothing here relies on timing for correctness:
waits poll for a side effect and only bound how long a broken build may hang.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent
NBMAKE = str(VENV_BIN / "nbmake")

# The top of every job script: the side-effect log and a way to block a job until the
# test says so. ``LOG`` and ``STORE`` come from the environment, so the console (which
# runs the cloudpickled functions) writes to the same log.
PRELUDE = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path

    LOG = os.environ["NBMAKE_TEST_LOG"]


    def note(name):
        # The log of the process running the job (the console may run it, from a copy
        # of the store): read at call time, not captured when the function is pickled.
        fd = os.open(os.environ["NBMAKE_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                     0o600)
        try:
            os.write(fd, f"{name}:{os.getpid()}\\n".encode())
        finally:
            os.close(fd)


    def hold(name):
        """Block until the file <LOG>.release-<name> exists (bounded: 50 s)."""
        gate = Path(os.environ["NBMAKE_TEST_LOG"] + ".release-" + name)
        end = time.monotonic() + 50
        while not gate.exists():
            if time.monotonic() > end:
                raise TimeoutError("never released: " + name)
            time.sleep(0.02)
''')


def script(path: Path, body: str) -> Path:
    """Write PRELUDE + body (dedented) to path."""
    path.write_text(PRELUDE + "\n" + textwrap.dedent(body))
    return path


def env_for(log: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NBMAKE_STORE"}
    env["NBMAKE_TEST_LOG"] = str(log)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 40,
        stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """Run to completion (killed on timeout by subprocess.run)."""
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=stdin)


def run_script(path: Path, *args: str, cwd: Path, env: dict[str, str],
               timeout: float = 40) -> subprocess.CompletedProcess:
    return run([PYTHON, str(path), *args], cwd=cwd, env=env, timeout=timeout)


def console(*args: str, cwd: Path, env: dict[str, str],
            timeout: float = 40) -> subprocess.CompletedProcess:
    return run([PYTHON, "-m", "nbmake_ext", *args], cwd=cwd, env=env, timeout=timeout)


class Procs:
    """Popen'd processes of one test; every one is killed and reaped at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        p = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.procs.append(p)
        return p

    def finish(self, p: subprocess.Popen, timeout: float = 40) -> tuple[int, str, str]:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
            try:
                p.communicate(timeout=10)
            except Exception:  # noqa: BLE001
                pass


def read_log(log: Path) -> list[tuple[str, int]]:
    """[(name, pid)] in the order written."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        name, _, pid = line.rpartition(":")
        out.append((name, int(pid)))
    return out


def names(log: Path) -> list[str]:
    return [n for n, _ in read_log(log)]


def counts(log: Path) -> Counter:
    return Counter(names(log))


def wait_until(pred, timeout: float = 30, what: str = "condition", procs=()) -> None:
    """Poll until pred() is true; fail after timeout, or early if a process died."""
    end = time.monotonic() + timeout
    while True:
        if pred():
            return
        for p in procs:
            if p.poll() is not None:
                out, err = p.communicate()
                raise AssertionError(f"process exited ({p.returncode}) before {what}:\n"
                                     f"stdout:\n{out}\nstderr:\n{err}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def logged(log: Path, name: str):
    return lambda: name in names(log)


def release(log: Path, name: str) -> None:
    Path(str(log) + ".release-" + name).touch()


def summary_lines(out: str, command: str = "make") -> list[str]:
    return [line for line in out.splitlines() if line.startswith(command + ":")]


def integrity(store: Path) -> str:
    conn = sqlite3.connect(f"file:{store / 'nbmake.db'}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def ls_states(store: Path, *, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """{job: state} as the console's `ls` shows it."""
    r = console("--store", str(store), "ls", cwd=cwd, env=env)
    assert r.returncode == 0, r.stderr
    return parse_ls(r.stdout)


def parse_ls(text: str) -> dict[str, str]:
    lines = text.splitlines()
    out = {}
    # header, a rule of dashes, rows, then a tally line "N jobs: ..."
    for line in lines[2:]:
        cols = line.split()
        if len(cols) < 2 or line.split(":")[0].endswith("jobs"):
            continue
        out[cols[0]] = cols[1]
    return out


def interrupt(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGINT)
