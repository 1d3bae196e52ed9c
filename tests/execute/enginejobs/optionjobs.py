"""Jobs of the job-option tests (test_job_options.py): they sleep past their timeout,
ignore the alarm, fail a given number of times, allocate memory, and log when they held
which GPUs. Side effects go to ``lab`` (see jobs.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .jobs import log


def forever(lab: str, name: str) -> str:
    log(lab, f"{name}-start")
    time.sleep(3600)
    return name


def deaf_forever(lab: str, name: str) -> str:
    """Blocks every signal a time limit could use, as code stuck in C would ignore them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGINT})
    log(lab, f"{name}-start")
    time.sleep(3600)
    return name


def quick(lab: str, name: str) -> str:
    log(lab, f"{name}-ran")
    return name


def flaky(lab: str, name: str, failures: int, how: str = "raise") -> str:
    """Fails its first ``failures`` attempts (counted in a file), then returns."""
    counter = Path(lab, f"{name}.attempts")
    made = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(made + 1))
    log(lab, f"{name}-attempt{made + 1}")
    if made < failures:
        if how == "die":
            os._exit(3)
        raise ConnectionError(f"flaky read, attempt {made + 1}")
    return f"{name} after {made + 1}"


def allocate(lab: str, name: str, megabytes: int) -> int:
    block = bytearray(megabytes << 20)
    for i in range(0, len(block), 4096):  # touch every page: resident, not just reserved
        block[i] = 1
    log(lab, f"{name}-allocated")
    return len(block)


def hold(lab: str, name: str, seconds: float) -> dict:
    """Logs its start and end and the GPUs it was given."""
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    log(lab, f"{name}-start")
    time.sleep(seconds)
    log(lab, f"{name}-end")
    return {"name": name, "devices": devices, "pid": os.getpid()}
