"""How an engine stores what its jobs return: a small result travels to the kernel in its
``done`` message; a larger one is a file this engine writes (a large one pickled straight
into it), flushed to disk in batches by a thread of its own and reported durable after.
A mixin of ``Engine`` (engine/main.py)."""

from __future__ import annotations

import queue

from ..fingerprint import counts_by_checksum, digest, result_digest
from ..shared.outcomes import (DONE_CHECKSUM, DONE_DURABLE, DONE_FILE, DONE_STAMP, JobReturned,
                               done_meta)
from ..store import blobs
from ..store.pickles import dump_value, dumps_value, is_large
from ..store.results import INLINE_MAX as RESULT_ROW_MAX

# A pickled result up to this size travels in its ``done`` message (and becomes a row of
# the store's database); a larger one is a file this engine writes.
INLINE_MAX = RESULT_ROW_MAX
MADE_KEPT = 64  # jobs whose outcome this engine remembers for jobs sent after them


class StoringResults:
    """Needs the engine's ``send``, ``send_outcome``, ``results_dir``, ``values``,
    ``made``, ``durable``, ``to_sync``, ``synced`` and ``unsynced``."""

    def take_synced(self) -> list[str]:
        ids = []
        while self.synced:
            ids.append(self.synced.popleft())
        self.unsynced -= len(ids)
        return ids

    def _made(self, job_id: str, checksum: str, file: str, data: bytes | None) -> None:
        self.made[job_id] = (checksum, file, data)
        while len(self.made) > MADE_KEPT:
            self.made.popitem(last=False)

    def _returned(self, job_id: str, out: JobReturned, dynamic: bool,
                  consumed: dict | None = None) -> None:
        text = (out.stdout.encode(), out.stderr.encode())
        if not dynamic and is_large(out.value):
            self._returned_large(job_id, out, consumed, text)
            return
        try:
            data = dumps_value(out.value)
            if not dynamic:
                sum_ = blobs.checksum(data)
                result_fp = result_digest(out.value, sum_)
        except Exception as exc:  # noqa: BLE001 - the job fails with that message
            self._not_stored(job_id, out, text, f"its result cannot be pickled: {exc}")
            return
        if dynamic:  # the kernel resolves the children's promises, then stores it
            meta = {"job_id": job_id, "timing": _timing(out)}
            if out.files is not None:
                meta["files"] = out.files
            self.send("returned", meta, data, *text)
            return
        self.values.put((job_id, sum_), out.value, len(data))
        # A list (shared/outcomes.py, DONE_*): thousands of these a second.
        meta = done_meta(job_id, result_fp, sum_, out.timing, self.take_synced(), out.files,
                         consumed)
        if len(data) <= INLINE_MAX:  # the kernel stores it: no file, no flush here
            self._made(job_id, sum_, "", data)
            self.send_outcome("done", meta, *text, data)
            return
        name = blobs.file_name(job_id, sum_)
        try:
            stamp = blobs.write_atomic(self.results_dir, name, data, durable=False)
        except OSError as exc:
            self._not_stored(job_id, out, text, f"could not store the result: {exc}")
            return
        self._stored(job_id, meta, name, stamp, text)

    def _returned_large(self, job_id: str, out: JobReturned, consumed: dict | None,
                        text: tuple[bytes, bytes]) -> None:
        """A large result is pickled straight into its file, hashed as it is written."""
        try:
            # Digested before its file is written (a failure leaves no file), unless it
            # counts by the checksum that writing it takes.
            result_fp = None if counts_by_checksum(out.value) else digest(out.value)
            name, sum_, stamp = blobs.write_pickled(
                self.results_dir, job_id, lambda file: dump_value(out.value, file))
        except OSError as exc:
            self._not_stored(job_id, out, text, f"could not store the result: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - the job fails with that message
            self._not_stored(job_id, out, text, f"its result cannot be pickled: {exc}")
            return
        if result_fp is None:
            result_fp = result_digest(out.value, sum_)
        self.values.put((job_id, sum_), out.value, stamp[0])
        meta = done_meta(job_id, result_fp, sum_, out.timing, self.take_synced(), out.files,
                         consumed)
        self._stored(job_id, meta, name, stamp, text)

    def _not_stored(self, job_id: str, out: JobReturned, text: tuple[bytes, bytes],
                    error: str) -> None:
        """The job returned, but its result cannot be kept: it failed."""
        self.send("failed", {"job_id": job_id, "traceback": "", "timing": _timing(out),
                             "error": error}, *text)

    def _stored(self, job_id: str, meta: list, name: str, stamp: tuple[int, int],
                text: tuple[bytes, bytes]) -> None:
        meta[DONE_FILE], meta[DONE_STAMP] = name, list(stamp)
        self._made(job_id, meta[DONE_CHECKSUM], name, None)
        if self.durable:
            # The file is readable now; its record is committed once it is on disk.
            self.unsynced += 1
            self.to_sync.put((job_id, name))
        else:
            meta[DONE_DURABLE].append(job_id)
        self.send_outcome("done", meta, *text)

    def _sync_loop(self) -> None:
        """Flush written files in batches (one syncfs for many), then report them."""
        while True:
            batch = [self.to_sync.get()]
            while True:
                try:
                    batch.append(self.to_sync.get_nowait())
                except queue.Empty:
                    break
            if None in batch:
                return
            try:
                blobs.make_durable(self.results_dir, [name for _, name in batch])
            except OSError:
                pass  # the checksum guards every read anyway
            self.synced.extend(job_id for job_id, _ in batch)


def _timing(out) -> dict:
    t = out.timing
    return {"started": t.started, "ended": t.ended, "duration": t.duration, "cpu": t.cpu,
            "engine": t.engine, "peak_rss": t.peak_rss}
