"""What the machine that makes has to share out: its memory and the GPUs it can see
(the defaults of a parmake's resource totals; ``core.options.default_totals``)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from typing import Mapping

from ..core.options import Totals, default_totals


def memory_bytes() -> int:
    """The machine's physical memory, in bytes (0 if the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 0


def cuda_devices(value: str) -> int:
    """How many devices ``CUDA_VISIBLE_DEVICES=value`` shows: the entries before the first
    invalid one (CUDA stops there; ``-1`` is the usual way to hide them all)."""
    count = 0
    for entry in value.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-"):
            break
        count += 1
    return count


def gpu_devices() -> list[str]:
    """The ids of the GPUs the kernel can see, as ``CUDA_VISIBLE_DEVICES`` names them (a
    job holding GPUs is given some of these); empty when it is not set (a job's devices
    are then numbered from 0)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return []
    return [entry.strip() for entry in value.split(",")][:cuda_devices(value)]


def visible_gpus() -> int:
    """The GPUs the kernel can see: the devices ``$CUDA_VISIBLE_DEVICES`` names when it is
    set, else those ``nvidia-smi -L`` lists, else none."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        return cuda_devices(value)
    return _nvidia_smi_gpus()


@functools.lru_cache(maxsize=1)
def _nvidia_smi_gpus() -> int:
    """Asked once per process: the devices do not change, and the tool is slow to start."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return 0
    try:
        out = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def machine_totals(engines: int, given: Mapping[str, float]) -> Totals:
    """The resource totals of a parmake on ``engines`` engines of this machine."""
    return default_totals(engines, given, memory=memory_bytes(), gpus=visible_gpus())
