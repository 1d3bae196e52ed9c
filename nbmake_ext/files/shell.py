"""Shell steps (SPEC 10): ``sh("sort {input} > {output}", inputs=[...], outputs=[...])``.

A shell step is a job whose code is its command: the command text (its placeholders
filled) is its code fingerprint, so editing the command makes it stale ("shell command
changed"). It runs ``/bin/sh -c COMMAND`` in the working directory of its registration,
in a process group of its own (``start_new_session``): when the job is interrupted, the
whole group gets SIGTERM, then SIGKILL after ``GRACE`` seconds; when it is timed out,
SIGKILL at once; either way it is waited for, so nothing it started is left running. Its stdout and stderr are the job's
log (shown as they come with ``make``'s echo); a non-zero exit fails the job with the
exit code and the last lines of stderr.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from typing import Any, Iterable

from ..core.signature import SHELL_COMMAND
from ..fingerprint.code import CodeFingerprint
from ..shared.limits import JobTimedOut, timed_out_message
from .paths import File, absolute

#: Seconds between SIGTERM and SIGKILL for the process group of an interrupted shell
#: step (a timed-out one gets SIGKILL at once: an engine that does not report its job
#: stopped soon after its timeout is killed, and its step must not outlive it).
GRACE = 0.5
#: Lines of stderr a failure shows.
TAIL_LINES = 10

_PLACE = re.compile(r"(\{)?\{(input|inputs|output|outputs)(?:\[(-?[0-9]+)\])?\}(\})?")


class CommandFailed(Exception):
    """A shell step exited with a non-zero code (or was killed by a signal)."""

    def __init__(self, code: int, stderr_tail: list[str]):
        self.code = code
        self.stderr_tail = stderr_tail
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            what = f"command was killed by signal {-code} ({name})"
        else:
            what = f"command exited with code {code}"
        last = next((line.strip() for line in reversed(stderr_tail) if line.strip()), "")
        text = f"{what}: {last}" if last else what
        if stderr_tail:
            text += "\n--- last lines of stderr:\n" + "\n".join(stderr_tail)
        super().__init__(text)


def quote_all(paths: Iterable[str]) -> str:
    return " ".join(shlex.quote(p) for p in paths)


def format_command(command: str, inputs: list[str], outputs: list[str]) -> str:
    """``command`` with ``{input}`` (the first input), ``{inputs}`` (all of them),
    ``{output}``, ``{outputs}`` and ``{inputs[1]}``-like items filled in, each path
    shell-quoted. Other braces are left as they are (``awk '{print $1}'``, ``${HOME}``);
    ``{{input}}`` is the text ``{input}``. ``ValueError`` naming a placeholder that has
    no path."""
    def fill(found: re.Match) -> str:
        open2, name, index, close2 = found.groups()
        if open2 and close2:
            return found.group(0)[1:-1]
        paths = inputs if name.startswith("input") else outputs
        kind = "input" if name.startswith("input") else "output"
        if index is not None:
            try:
                text = shlex.quote(paths[int(index)])
            except IndexError:
                raise ValueError(f"{{{name}[{index}]}}: the step has {len(paths)} "
                                 f"{kind}{'' if len(paths) == 1 else 's'}") from None
        elif name in ("input", "output"):
            if not paths:
                raise ValueError(f"{{{name}}}: the step has no {kind}")
            text = shlex.quote(paths[0])
        else:
            text = quote_all(paths)
        return (open2 or "") + text + (close2 or "")

    return _PLACE.sub(fill, command)


class ShellCommand:
    """The function of a shell step: runs its command (``run``). Its code is the command
    text (``__nbmake_code__``); its working directory and its time limit are how it runs,
    not what it computes."""

    __name__ = "sh"
    __qualname__ = "sh"

    def __init__(self, command: str, cwd: str, timeout: float | None = None):
        self.command = command
        self.cwd = cwd
        self.timeout = timeout

    def __nbmake_code__(self) -> CodeFingerprint:
        d = hashlib.blake2b(b"sh\x00" + self.command.encode("utf-8", "surrogatepass"),
                            digest_size=16).hexdigest()
        return CodeFingerprint(d, {SHELL_COMMAND: d})

    def __call__(self, inputs: list[str] | None = None) -> None:
        run(self.command, self.cwd, self.timeout)

    def __repr__(self) -> str:
        return f"<shell step {self.command!r}>"


def run(command: str, cwd: str, timeout: float | None = None) -> None:
    """Run ``command`` with ``/bin/sh``; its output goes to sys.stdout and sys.stderr
    (the job's log). ``CommandFailed`` for a non-zero exit. Whatever stops it (an
    interrupt, a time limit raised inside, ``timeout`` of its own: a backstop a little
    after the job's, for runners that cannot stop a running job) ends its whole process
    group first."""
    proc = subprocess.Popen(command, shell=True, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    # (where the job's own time limit stops it, at ``timeout``, this one never comes)
    deadline = time.monotonic() + timeout + 0.25 if timeout else None
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        _pump(proc, tail, deadline, timeout)
        code = proc.wait()
    except BaseException as exc:
        _end_group(proc, gently=isinstance(exc, KeyboardInterrupt))
        raise
    finally:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    if code != 0:
        raise CommandFailed(code, list(tail))


def _pump(proc: subprocess.Popen, tail: deque, deadline: float | None,
          timeout: float | None) -> None:
    """Copy the command's stdout and stderr to this job's, until both are closed and the
    command has ended (or it has ended and what it left running holds them open)."""
    out = {proc.stdout.fileno(): (sys.stdout, codecs.getincrementaldecoder("utf-8")("replace")),
           proc.stderr.fileno(): (sys.stderr, codecs.getincrementaldecoder("utf-8")("replace"))}
    err_fd = proc.stderr.fileno()
    partial = [""]
    sel = selectors.DefaultSelector()
    for fd in out:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    ended_at = None
    try:
        while sel.get_map():
            # A short wait: a time limit raised from another thread (Dask) lands in Python.
            for key, _ in sel.select(0.1):
                fd = key.fd
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                stream, decoder = out[fd]
                text = decoder.decode(data, final=not data)
                if text:
                    stream.write(text)
                    if fd == err_fd:
                        _keep_tail(tail, partial, text)
                if not data:
                    sel.unregister(fd)
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimedOut(timed_out_message(timeout))
            if ended_at is None and _ended(proc):
                ended_at = time.monotonic()
            elif ended_at is not None and time.monotonic() - ended_at > 0.2:
                break  # something it started in the background holds its output open
    finally:
        sel.close()
    if partial[0]:
        tail.append(partial[0])


def _keep_tail(tail: deque, partial: list[str], text: str) -> None:
    lines = (partial[0] + text).split("\n")
    partial[0] = lines.pop()
    tail.extend(lines)


def _ended(proc: subprocess.Popen) -> bool:
    """Whether the command's shell exited, without reaping it (its pid names the group
    until it is waited for)."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _end_group(proc: subprocess.Popen, gently: bool) -> None:
    """SIGKILL to the command's process group (``gently``: SIGTERM first, SIGKILL after
    GRACE seconds to what is left of it); returns once the group is gone (or after a few
    seconds more)."""
    pgid = proc.pid
    try:
        try:
            os.killpg(pgid, signal.SIGTERM if gently else signal.SIGKILL)
        except ProcessLookupError:
            proc.wait()
            return
        killed = not gently
        end = time.monotonic() + (GRACE if gently else 5)
        while True:
            if proc.poll() is not None and not _group_alive(pgid):
                return
            if not killed and time.monotonic() > end:
                _kill(pgid)
                killed = True
                end = time.monotonic() + 5
            elif killed and time.monotonic() > end:
                return
            time.sleep(0.01)
    except BaseException:  # interrupted again while ending it: no more waiting
        _kill(pgid)
        try:
            proc.wait(timeout=1)
        except Exception:  # noqa: BLE001
            pass
        raise


def _kill(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group runs (zombies, left for their new parent to reap,
    do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    members = group_members(pgid)
    return members is None or bool(members)


def group_members(pgid: int) -> list[int] | None:
    """The processes of a process group that are not zombies, from /proc (None where
    there is no /proc)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    out = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            out.append(int(name))
    return out


# -- registering a shell step ---------------------------------------------------------------

_BARE_OPTIONS = ("timeout", "retries", "resources")


def shell_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options of ``sh``: ``job_timeout=...`` or ``timeout=...`` alike. ``ValueError``
    for a keyword that is none."""
    out = {}
    for key, value in options.items():
        if key in _BARE_OPTIONS:
            key = f"job_{key}"
        elif key not in ("job_timeout", "job_retries", "job_resources"):
            raise ValueError(f"sh() takes no keyword {key!r} (its options: timeout, retries, "
                             f"resources, also as job_timeout, ...; its outputs are "
                             f"outputs=[...])")
        out[key] = value
    return out


def input_files(given: Any, outputs_of) -> list[File]:
    """The ``inputs`` of ``sh`` as Files: paths, Files, or promises (their declared
    outputs, through ``outputs_of(promise)``), alone or in a list."""
    from ..promise import Promise

    if given is None:
        return []
    if isinstance(given, (str, os.PathLike, Promise)):
        given = [given]
    out: list[File] = []
    for item in given:
        if isinstance(item, Promise):
            found = outputs_of(item)
            if not found:
                raise ValueError(f"job {item.job_id!r} declares no output to take as input")
            out.extend(found)
        elif isinstance(item, File):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            out.append(File(item))
        else:
            raise ValueError(f"an input is a path, a File or a promise, not {item!r}")
    return out


def output_list(given: Any) -> list[str]:
    if given is None:
        return []
    if isinstance(given, (str, os.PathLike)):
        given = [given]
    out = []
    for item in given:
        if not isinstance(item, (str, os.PathLike)):
            raise ValueError(f"an output is a path, not {item!r}")
        path = absolute(item)
        if path not in out:
            out.append(path)
    return out
