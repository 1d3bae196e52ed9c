"""The live progress line (nbmake_ext/ui/progress_line.py): on a real pseudo-terminal for
the console and a script, nothing of it in pipes or when switched off, and a terminal left
clean at the end and after Ctrl-C. What the terminal shows is worked out by ``Screen``, a
small emulator of the control sequences a one-line live display uses."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "execute" / "scripts"))

import proctools as pt  # noqa: E402

from nbmake_ext.ui import progress_line  # noqa: E402
from nbmake_ext.ui.progress_line import ProgressLine, clock  # noqa: E402

pytestmark = pytest.mark.timeout(90)

# Seven jobs: three sleep 0.3 s, so that a parmake on two engines lasts long enough for the
# line to be drawn a few times; `total` needs all six.
JOBS = '''
from nbmake_ext import Context


def nap(i, seconds):
    note(f"nap-{i}")
    time.sleep(seconds)
    return i


def total(xs):
    note("total")
    return sum(xs)


def waits(x):
    note("waits-start")
    hold("never")
    return x


ctx = Context(os.environ["NBMAKE_TEST_STORE"])
naps = [ctx.comp(nap, i, 0.3 if i % 2 else 0.0, job_id=f"nap-{i}") for i in range(6)]
ctx.comp(total, naps, job_id="total")
if "--waits" in sys.argv:
    ctx.comp(waits, naps[0], job_id="waits")
if "--make" in sys.argv:
    ctx.make()
ctx.close()
'''

SUMMARY = re.compile(r"^(par)?make: 7 done, 0 up to date in \d+\.\d\ds$")
FRAME = re.compile(r"(\d+)/(\d+) · (\d+) done · (?:.* · )?(\d+) to go · \S+ · (\d+) running")


class Screen:
    """What a terminal of ``cols`` columns shows after ``data``: its lines, and whether the
    cursor is visible. Knows what rich's live display and plain output send: text, CR, LF,
    cursor up/down/left/right/column, erase in line and display, SGR (ignored), and cursor
    show/hide."""

    CSI = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])")

    def __init__(self, data: bytes, cols: int = 120):
        self.lines: list[list[str]] = [[]]
        self.row = self.col = 0
        self.cursor_visible = True
        self.cols = cols
        text = data.decode("utf-8", "replace")
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                m = self.CSI.match(text, i)
                assert m, f"an unknown control sequence: {text[i:i + 12]!r}"
                self._csi(m.group(1), m.group(2))
                i = m.end()
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self._move(self.row + 1)
            elif ch >= " ":
                self._put(ch)
            i += 1

    def _move(self, row: int) -> None:
        self.row = max(0, row)
        while len(self.lines) <= self.row:
            self.lines.append([])

    def _put(self, ch: str) -> None:
        if self.col >= self.cols:  # the terminal wraps
            self._move(self.row + 1)
            self.col = 0
        line = self.lines[self.row]
        line.extend(" " * (self.col + 1 - len(line)))
        line[self.col] = ch
        self.col += 1

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            if params == "?25" and final in "hl":
                self.cursor_visible = final == "h"
            return
        n = int(params.split(";")[0] or 0)
        line = self.lines[self.row]
        if final == "A":
            self._move(self.row - max(n, 1))
        elif final == "B":
            self._move(self.row + max(n, 1))
        elif final == "C":
            self.col += max(n, 1)
        elif final == "D":
            self.col = max(0, self.col - max(n, 1))
        elif final == "G":
            self.col = max(n, 1) - 1
        elif final == "K":
            if n == 0:
                del line[self.col:]
            elif n == 1:
                line[:self.col] = [" "] * min(self.col, len(line))
            else:
                line.clear()
        elif final == "J":
            if n == 0:
                del line[self.col:]
                del self.lines[self.row + 1:]
            else:
                self.lines = [[] for _ in self.lines]
        elif final != "m":
            raise AssertionError(f"an unexpected control sequence: ESC[{params}{final}")

    def text(self) -> list[str]:
        """The non-empty lines on screen."""
        return [s for s in ("".join(line).rstrip() for line in self.lines) if s]


def run_in_pty(args: list[str], *, cwd: Path, env: dict[str, str], cols: int = 120,
               interrupt_when=None, timeout: float = 60) -> tuple[bytes, int]:
    """Run ``args`` with stdin, stdout and stderr on a new pseudo-terminal of ``cols``
    columns; return what it wrote there and its exit code. ``interrupt_when()`` true:
    Ctrl-C is typed (the terminal sends SIGINT to the foreground process group)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: never returns
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
            os.chdir(cwd)
            os.execve(args[0], args, env)
        finally:
            os._exit(127)
    out = bytearray()
    typed = False
    end = time.monotonic() + timeout
    try:
        while True:
            if interrupt_when is not None and not typed and interrupt_when():
                os.write(fd, b"\x03")
                typed = True
            if time.monotonic() > end:
                raise AssertionError(f"still running after {timeout} s:\n{out.decode()}")
            ready, _, _ = select.select([fd], [], [], 0.02)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: every process holding the terminal is gone
                break
            if not data:
                break
            out += data
    finally:
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return bytes(out), os.waitstatus_to_exitcode(status)


def frames(out: bytes) -> list[str]:
    """Every text the live line showed (control sequences taken out)."""
    plain = Screen.CSI.sub("", out.decode("utf-8", "replace"))
    return [part for part in re.split(r"[\r\n]", plain) if FRAME.search(part)]


@pytest.fixture
def lab(tmp_path):
    store = tmp_path / "store"
    log = tmp_path / "jobs.log"
    env = pt.env_for(log, NBMAKE_TEST_STORE=str(store))
    env.pop("NBMAKE_PROGRESS", None)
    env["TERM"] = "xterm-256color"
    script = pt.script(tmp_path / "jobs.py", JOBS)

    class Lab:
        pass

    lab = Lab()
    lab.tmp, lab.store, lab.log, lab.env, lab.script = tmp_path, store, log, env, script

    def define(*flags: str) -> None:
        r = pt.run_script(script, *flags, cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stdout + r.stderr

    def console(*args: str, **kw):
        return run_in_pty([pt.PYTHON, "-m", "nbmake_ext", "--store", str(store), *args],
                          cwd=tmp_path, env={**env, **kw.pop("env", {})}, **kw)

    lab.define, lab.console = define, console
    return lab


def test_parmake_on_a_terminal_shows_a_live_line_then_its_summary(lab):
    lab.define()
    out, code = lab.console("parmake", "2")
    assert code == 0, out.decode()
    shown = frames(out)
    assert len(shown) >= 2, out.decode()  # drawn while it ran (every 0.1 s), not only once
    for frame in shown:
        finished, total, done, to_go, running = map(int, FRAME.search(frame).groups())
        assert frame.startswith("parmake "), frame
        assert total == 7 and done <= finished <= total, frame
        assert finished + running + to_go == total, frame
    assert any(" running: nap-" in f for f in shown), shown  # names the jobs it runs
    assert FRAME.search(shown[-1]).group(1) == "7"  # its last frame: every job finished
    screen = Screen(out)
    # The line is gone; what stays on the terminal is the summary line, and the cursor.
    assert len(screen.text()) == 1 and SUMMARY.match(screen.text()[0]), screen.text()
    assert screen.cursor_visible
    assert sorted(pt.names(lab.log)) == sorted([f"nap-{i}" for i in range(6)] + ["total"])


@pytest.mark.parametrize("how", ["NBMAKE_PROGRESS=0", "--no-progress"])
def test_the_line_can_be_switched_off(lab, how):
    lab.define()
    if how == "--no-progress":
        out, code = lab.console("--no-progress", "parmake", "2")
    else:
        out, code = lab.console("parmake", "2", env={"NBMAKE_PROGRESS": "0"})
    assert code == 0, out.decode()
    assert frames(out) == [] and b"to go" not in out
    assert b"\x1b[?25l" not in out  # the cursor was never hidden
    lines = [line for line in out.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and SUMMARY.match(lines[0]), lines  # printed as it is, no more


def test_no_line_in_pipes(lab):
    """With stdout and stderr piped (CI logs), the output is what it always was: the
    summary line on stdout, nothing on stderr, no control sequences."""
    lab.define()
    r = pt.console("--store", str(lab.store), "parmake", "2", cwd=lab.tmp, env=lab.env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert SUMMARY.match(r.stdout.rstrip("\n")) and r.stdout.count("\n") == 1, r.stdout
    assert "\x1b" not in r.stdout


def test_ctrl_c_leaves_the_terminal_clean(lab):
    lab.define("--waits")
    out, code = lab.console("make", interrupt_when=pt.logged(lab.log, "waits-start"))
    assert code == 130, out.decode()
    assert frames(out), out.decode()  # the line was there when Ctrl-C came
    screen = Screen(out)
    assert screen.cursor_visible
    shown = screen.text()
    assert not any("to go" in line for line in shown), shown
    assert len(shown) == 2 and shown[-1] == "nbmake: interrupted", shown
    assert re.fullmatch(r"make: \d done, 0 up to date in \d+\.\d\ds \(interrupted\)", shown[0])


def test_a_script_on_a_terminal_gets_the_line_from_the_api(lab):
    """``ctx.make()`` with no observer, stderr a terminal: the same line, then the summary
    line the script prints."""
    out, code = run_in_pty([pt.PYTHON, str(lab.script), "--make"], cwd=lab.tmp, env=lab.env)
    assert code == 0, out.decode()
    assert frames(out) and all(f.startswith("make ") for f in frames(out)), out.decode()
    shown = Screen(out).text()
    assert len(shown) == 1 and SUMMARY.match(shown[0]), shown


def test_a_script_with_stderr_in_a_pipe_gets_no_line(lab):
    r = pt.run_script(lab.script, "--make", cwd=lab.tmp, env=lab.env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert SUMMARY.match(r.stdout.strip()), r.stdout


# -- the observer itself --------------------------------------------------------------------


def test_counts_follow_what_the_run_tells():
    line = ProgressLine()
    needed = [5]
    line.needed = lambda: needed[0]
    line.job_changed("a", "done", {})                    # up to date: told done, no run
    line.job_changed("b", "running", {"engine": "engine 1"})
    line.job_changed("c", "running", {"engine": "engine 2"})
    line.job_changed("b", "done", {"duration": 0.1, "engine": "engine 1"})
    line.job_changed("c", "failed", {"error": "x", "duration": 0.1})
    line.job_changed("d", "blocked", {"blocked_by": "c"})
    text = line.text()
    assert text.startswith("4/5 · 1 done · 1 up to date · 1 failed · 1 blocked · 1 to go · ")
    assert text.endswith(" · 0 running")
    needed[0] = 7                                         # a dynamic job defined children
    line.job_changed("e", "todo", {"parent": "b"})
    line.job_changed("e", "running", {})
    line.job_changed("a-very-long-job-id-that-goes-on-and-on", "running", {})
    assert re.fullmatch(r"4/7 · 1 done · 1 up to date · 1 failed · 1 blocked · 1 to go · "
                        r"\d\.\ds · 2 running: e, a-very-long-job-id-that…", line.text())
    line.job_changed("e", "forgotten", {})
    assert line.counts["running"] == 1 and "e" not in line.running


def test_the_line_shows_at_most_three_running_jobs():
    line = ProgressLine()
    for j in "pqrst":
        line.job_changed(j, "running", {})
    assert line.text().endswith("5 running: p, q, r +2")


def test_clock():
    assert [clock(s) for s in (0.04, 59.9, 61, 3600 + 62)] == ["0.0s", "59.9s", "1:01",
                                                              "1:01:02"]


def test_wanted_only_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NBMAKE_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert progress_line.wanted(Tty()) and not progress_line.wanted(io.StringIO())
    monkeypatch.setenv("NBMAKE_PROGRESS", "0")
    assert not progress_line.wanted(Tty())
    monkeypatch.setenv("NBMAKE_PROGRESS", "1")
    monkeypatch.setenv("TERM", "dumb")
    assert not progress_line.wanted(Tty())
