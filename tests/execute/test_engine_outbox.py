"""What an engine says to the kernel: outcomes of short jobs travel together, never
behind a long or unknown job (engine/outbox.py); the mark of the running job survives
the engine's death (engine/running_mark.py)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time

from nbmake_ext.engine import outbox as O
from nbmake_ext.engine.outbox import Outbox
from nbmake_ext.engine.running_mark import RunningMark
from nbmake_ext.shared.wire import Signer, Verifier, decode_running

KEY = b"k" * 32


class Kernel:
    """The kernel's side of the wire: verifies each message, unpacks ``many``."""

    def __init__(self):
        self.verifier = Verifier(KEY)
        self.messages: list[list[tuple[str, dict]]] = []  # per message sent

    def __call__(self, frames: list) -> None:
        kind, payloads = self.verifier.open(frames)
        if kind == "many":
            index = pickle.loads(payloads[0])
            assert sum(count for _, _, count in index) == len(payloads) - 1
            self.messages.append([(kind, meta) for kind, meta, _ in index])
        else:
            self.messages.append([(kind, json.loads(payloads[0]))])

    def said(self) -> list[str]:
        return [meta.get("job_id", kind) for message in self.messages for kind, meta in message]


def test_outcomes_of_short_jobs_travel_together_and_in_order():
    kernel = Kernel()
    box = Outbox(Signer(KEY), kernel)
    box.ran("quick", 0.00001)
    for i in range(5):
        box.before_job("quick", 10)
        box.send("done", {"job_id": f"j{i}"}, b"", b"", outcome=True)
    assert kernel.messages == []  # short jobs follow: nothing sent yet
    box.send("child", {"job_id": "c"})  # anything else goes at once, after what waits
    assert kernel.said() == ["j0", "j1", "j2", "j3", "j4", "c"]
    assert len(kernel.messages) == 2


def test_an_outcome_never_waits_behind_a_long_or_unknown_job():
    kernel = Kernel()
    box = Outbox(Signer(KEY), kernel)
    box.ran("quick", 0.00001)
    box.ran("slow", 2.0)
    box.send("done", {"job_id": "a"}, outcome=True)
    box.before_job("slow", 10)
    assert kernel.said() == ["a"]
    box.send("done", {"job_id": "b"}, outcome=True)
    box.before_job("never-ran-here", 10)
    assert kernel.said() == ["a", "b"]
    box.send("done", {"job_id": "c"}, outcome=True)
    box.before_job("quick", O.BUSY - 1)  # few jobs left: the kernel may be waiting on it
    assert kernel.said() == ["a", "b", "c"]


def test_an_outcome_waits_at_most_max_wait_and_a_message_holds_at_most_max_kept():
    kernel = Kernel()
    box = Outbox(Signer(KEY), kernel)
    box.ran("quick", 0.00001)
    box.send("done", {"job_id": "old"}, outcome=True)
    time.sleep(O.MAX_WAIT * 2)
    box.before_job("quick", 10)
    assert kernel.said() == ["old"]
    for i in range(O.MAX_KEPT):
        box.send("done", {"job_id": f"j{i}"}, outcome=True)
    assert len(kernel.messages) == 2 and len(kernel.messages[1]) == O.MAX_KEPT
    box.flush()
    assert len(kernel.messages) == 2  # nothing left


def test_the_running_mark_is_in_the_file_even_after_a_sigkill(tmp_path):
    path = tmp_path / "running"
    long_id = "x" * 10_000  # longer than a page: the mapping grows
    script = (f"import os, signal\nfrom nbmake_ext.engine.running_mark import RunningMark\n"
              f"m = RunningMark({str(path)!r})\nm.set({long_id!r})\nm.set('job-7')\n"
              f"os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert decode_running(path.read_bytes()) == "job-7"
    mark = RunningMark(str(path))
    mark.set("")
    assert decode_running(path.read_bytes()) == ""
    assert os.path.getsize(path) % 4096 == 0


def test_as_the_queue_runs_low_what_waits_goes_once_then_with_the_last_jobs():
    """A fan-out's engine, refilled in bursts: the outcomes go as its queue ebbs (so the
    kernel sends more), and the last few jobs' outcomes together, not one message each.
    A queue that is never deep, as a chain's, has each outcome told before the next job."""
    kernel = Kernel()
    box = Outbox(Signer(KEY), kernel)
    box.ran("quick", 0.00001)
    queued = O.BUSY + 3
    for i in range(O.BUSY + 4):
        box.before_job("quick", queued)
        queued -= 1
        box.send("done", {"job_id": f"j{i}"}, outcome=True)
    assert len(kernel.messages) == 1  # told once, as the queue fell below BUSY
    box.flush()  # the engine is idle: the rest together
    assert len(kernel.messages) == 2
    assert kernel.said() == [f"j{i}" for i in range(O.BUSY + 4)]
    box.jobs_came()
    for i in range(2):  # a shallow queue (a chain): each outcome goes before the next job
        box.send("done", {"job_id": f"k{i}"}, outcome=True)
        box.before_job("quick", 1)
        assert kernel.said()[-1] == f"k{i}" and len(kernel.messages) == 3 + i
