"""The engine pool, when an engine dies: what it was running fails (with the end of its
log), what it held but had not started goes back to the run loop, its results not yet on
disk are flushed from here, and a new engine takes its place; engines that cannot start at
all stop the make. A mixin of ``EnginePool`` (pool.py): it uses its state.
"""

from __future__ import annotations

import logging
import os
import time

from ..errors import NbmakeError
from ..shared.outcomes import JobRaised, Requeue, Timing
from ..shared.limits import timed_out_message
from ..shared.wire import decode_running
from ..store import blobs
from .engine_proc import Engine, how_ended, log_tail

DEATH_GRACE_MS = 20   # wait for a dead engine's last messages

logger = logging.getLogger(__name__)


class EngineDeaths:
    def _check_engines(self, out: list) -> None:
        self._checked = time.monotonic()
        dead = [(e, code) for e in self.engines.values() if (code := e.proc.poll()) is not None]
        if dead:
            # What a dead engine said before it died counts: a result it sent just before
            # a job of it crashed must not be blamed for the crash. Its last bytes may
            # still be on their way through ZeroMQ's I/O thread.
            self.socket.poll(DEATH_GRACE_MS)
            self._drain(out)
        cannot_start = None
        for engine, code in dead:
            if self.engines.pop(engine.identity, None) is None:
                continue  # buried meanwhile (a send to it failed while draining)
            if engine.undurable:
                # Its results are whole files; it died before saying they were on disk:
                # flush them from here, so their records are committed.
                blobs.make_durable(self.store_path / "results", list(engine.undurable.values()))
                self._durable(engine, list(engine.undurable), out)
            if engine.outbox:
                jobs, engine.outbox = engine.outbox, []
                self._unsent(jobs, out)
            running = self._running_job(engine)
            death = f"engine {engine.pid} died while running it: {how_ended(code)}"
            if engine.timed_out is not None and engine.timed_out in engine.queue:
                running = engine.timed_out  # killed for it (its mark may not be written yet)
                death = (f"{timed_out_message(engine.timeouts.get(running, 0))} (it did not "
                         f"stop: engine {engine.pid} was killed)")
            stderr = log_tail(engine.log, engine.log_from) if running else ""
            if not engine.ready and code >= 0:  # it exited before it connected
                self._failed_starts += 1
                if self._failed_starts >= 2 * self.n + 3:
                    cannot_start = (engine, code, log_tail(engine.log, 0))
            self._forget_files(engine)
            again, void = [], set(engine.void)
            for jid in engine.queue:
                if jid in void:  # dropped already: its outcome does not count
                    void.discard(jid)
                    continue
                if jid == running:
                    raised = JobRaised(jid, death, "", "", stderr, _timing_of_head(engine))
                    self._outcome(jid, raised, self._took(jid, engine), out)
                else:
                    # It did not run, or its outcome never left the engine: again.
                    self.after.pop(jid, None)
                    again.append(jid)
            for jid in [j for j, (i, _) in self.made_here.items() if i == engine.identity]:
                del self.made_here[jid]
            if again:
                out.append(Requeue(again))
            logger.info("engine %d %s%s; a new engine takes its place", engine.pid,
                        how_ended(code), f" while running {running}" if running else "")
            self._spawn()
        if cannot_start is not None:
            self._failed_starts = 0  # a later make tries again
            engine, code, stderr = cannot_start
            said = f"; its stderr ends with:\n{stderr.rstrip()}" if stderr.strip() else ""
            raise NbmakeError(f"engines cannot start: the last {2 * self.n + 3} exited before "
                              f"they connected (engine {engine.pid} {how_ended(code)}){said}")

    def _forget_files(self, engine: Engine) -> None:
        """A dead engine's log and running file: read, no longer needed."""
        for path in (engine.log, self._running_file(engine.identity)):
            try:
                os.unlink(path)
            except OSError:
                pass

    def _took(self, jid: str, engine: Engine) -> dict | None:
        """The results a job sent ahead that crashed its engine took: the ones this engine
        made of its inputs (an input it did not make: none)."""
        consumed = {}
        for dep in self.after.get(jid, ()):
            made = self.made_here.get(dep)
            if made is None or made[0] != engine.identity:
                return None
            consumed[dep] = made[1]
        return consumed

    def _running_job(self, engine: Engine) -> str:
        """The job a dead engine was running ("" if it was between jobs)."""
        try:
            with open(self._running_file(engine.identity), "rb") as f:
                return decode_running(f.read())
        except FileNotFoundError:
            return ""


def _timing_of_head(engine: Engine) -> Timing:
    """The timing of the job at the head of a dead engine's queue, as far as the kernel
    saw it: from when it reached the head to now."""
    now, ran = time.time(), max(0.0, time.monotonic() - engine.head_since)
    return Timing(started=now - ran, ended=now, duration=ran, engine=f"engine {engine.pid}")
