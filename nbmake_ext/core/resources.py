"""What the running jobs hold of the resources a make shares out (``job_resources``): the
decision whether a job may start now, and which GPUs it gets. Pure: the run loop asks and
acts (kernel/driver.py).

A job that asks for no resources holds none: ``cpus`` counts only for the jobs that ask
for it. GPUs are whole devices: a job asking for ``gpus`` gets that many devices (rounded
up) that no other running job holds, named in its ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

GPUS = "gpus"
OTHER_TOTAL = 1.0  # the total of a resource no total was given for (SPEC 5)
_SLACK = 1e-9      # amounts are floats: 0.1 + 0.2 must fit in 0.3


def amount_text(amount: float) -> str:
    return f"{amount:g}"


class Holdings:
    def __init__(self, totals: Mapping[str, float], devices: Sequence[str] = ()):
        self.totals = dict(totals)
        self.free = dict(totals)
        gpus = int(self.totals.get(GPUS, 0))
        self._devices = list(devices)[:gpus] if devices else [str(i) for i in range(gpus)]
        self.free_devices = list(self._devices)
        self.held: dict[str, tuple[Mapping[str, float], list[str]]] = {}

    def total(self, name: str) -> float:
        return self.totals.get(name, OTHER_TOTAL)

    def over_total(self, need: Mapping[str, float]) -> str | None:
        """Why the job can never start (it asks for more than a total), or None."""
        for name, amount in need.items():
            if amount > self.total(name) + _SLACK:
                return (f"it asks for {name}={amount_text(amount)}, more than the total of "
                        f"{amount_text(self.total(name))} this make shares out")
        return None

    def fits(self, need: Mapping[str, float]) -> bool:
        for name, amount in need.items():
            if amount > self.free.get(name, OTHER_TOTAL) + _SLACK:
                return False
        return len(self.free_devices) >= _devices_for(need)

    def take(self, job_id: str, need: Mapping[str, float]) -> list[str]:
        """Hold ``need`` for ``job_id`` (it fits); the GPU devices it gets."""
        for name, amount in need.items():
            self.free[name] = self.free.get(name, OTHER_TOTAL) - amount
        count = _devices_for(need)
        devices, self.free_devices = self.free_devices[:count], self.free_devices[count:]
        self.held[job_id] = (need, devices)
        return devices

    def give_back(self, job_id: str) -> bool:
        """The job no longer runs: what it held is free again. False if it held nothing."""
        held = self.held.pop(job_id, None)
        if held is None:
            return False
        need, devices = held
        for name, amount in need.items():
            self.free[name] = self.free.get(name, OTHER_TOTAL) + amount
        self.free_devices.extend(devices)
        self.free_devices.sort(key=self._devices.index)
        return True


def _devices_for(need: Mapping[str, float]) -> int:
    amount = need.get(GPUS, 0)
    return math.ceil(amount - _SLACK) if amount > 0 else 0
