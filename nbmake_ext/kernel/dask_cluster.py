"""``parmake --dask``, reaching the cluster from the kernel: importing ``distributed`` (or
saying how to install it), connecting (a scheduler address, a Client or a cluster object),
and the event topic on which tasks say they started, routed to the runner of each run;
and a warning when the cluster runs a task again whose worker died.
"""

from __future__ import annotations

import logging
from typing import Any

from ..dask_worker.task import PROGRESS_TOPIC
from ..errors import NbmakeError

INSTALL_HINT = 'parmake --dask needs the Dask distributed package: pip install "nbmake-ext[dask]"'

TOPIC = "nbmake-started"
_listeners: dict[str, Any] = {}     # run nonce -> its runner's _on_started
_subscribed: set[str] = set()       # ids of the clients that route TOPIC to them
_progress_listeners: dict[str, Any] = {}   # run nonce -> its runner's _on_progress
_subscribed_progress: set[str] = set()     # ... that route PROGRESS_TOPIC to them
_warned_retries = False
logger = logging.getLogger(__name__)


def _route(event) -> None:
    try:
        _, (key, address) = event
        nonce = key.rsplit("-", 2)[-2]
    except (TypeError, ValueError, IndexError):
        return  # not one of ours
    listener = _listeners.get(nonce)
    if listener is not None:
        listener(key, address)


def _route_progress(event) -> None:
    try:
        _, (key, done, total, message) = event
        nonce = key.rsplit("-", 2)[-2]
    except (TypeError, ValueError, IndexError):
        return
    listener = _progress_listeners.get(nonce)
    if listener is not None:
        listener(key, done, total, message)


def listen(client, nonce: str, listener, progress=None) -> None:
    """One subscription per client (a client keeps one handler per topic), routed to the
    runner of each run by the nonce in the task's key. ``progress``: told what running
    jobs report with nbmake_ext.progress (dask_worker/task.py PROGRESS_TOPIC)."""
    _listeners[nonce] = listener
    if client.id not in _subscribed:
        client.subscribe_topic(TOPIC, _route)
        _subscribed.add(client.id)
    if progress is not None:
        _progress_listeners[nonce] = progress
        if client.id not in _subscribed_progress:
            client.subscribe_topic(PROGRESS_TOPIC, _route_progress)
            _subscribed_progress.add(client.id)


def import_distributed():
    try:
        import distributed
    except ImportError:
        raise NbmakeError(INSTALL_HINT) from None
    return distributed


def stop_listening(nonce: str) -> None:
    _listeners.pop(nonce, None)
    _progress_listeners.pop(nonce, None)


def connect(dask: Any, distributed) -> tuple[Any, bool]:
    """(client, whether this runner made it and must close it)."""
    if isinstance(dask, distributed.Client):
        return dask, False
    if hasattr(dask, "scheduler_address"):  # a cluster object: LocalCluster, SLURMCluster...
        address = dask.scheduler_address
    elif isinstance(dask, str) and dask.strip():
        address = dask.strip()
    else:
        raise NbmakeError(f"dask= takes a scheduler address (tcp://host:8786), a "
                          f"distributed.Client or a cluster, not {dask!r}")
    try:
        client = distributed.Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise NbmakeError(f"cannot reach the Dask scheduler at {address}: "
                          f"{type(exc).__name__}: {exc}") from None
    return client, True


def warn_if_tasks_run_again(client: Any) -> None:
    """Dask runs a task again elsewhere when its worker dies, up to the scheduler's
    ``allowed-failures`` times; nbmake's rule is that a job that crashed its worker
    fails (not retried): say so once if the cluster is set otherwise."""
    global _warned_retries
    if _warned_retries:
        return
    try:
        allowed = client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.allowed_failures)
    except Exception:  # noqa: BLE001 - e.g. a scheduler that refuses run_on_scheduler
        return
    if isinstance(allowed, int) and allowed > 0:
        _warned_retries = True
        logger.warning(
            "the Dask scheduler runs a task again when its worker dies (allowed-failures"
            " = %d): a job that crashes its worker may run up to %d times before it "
            "fails. Start the scheduler with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0"
            " to fail it at once.", allowed, allowed + 1)
