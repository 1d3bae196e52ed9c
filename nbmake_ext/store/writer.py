"""The store's writer: the writes of a run, applied in order and in batches.

A batch's result files are written and flushed to disk together (one ``syncfs`` rather
than one fsync per file), and only then are its records committed, in one transaction.

Who applies a batch: a background thread, once the oldest write has waited ``MAX_AGE``;
the thread that records, as it records, only once ``MAX_BACKLOG`` writes (or ``MAX_BYTES``
of results) wait (the background thread is behind). So the make's thread goes on handing
out jobs while a batch commits: the database's work and its flush to disk release the
interpreter lock. Large batches are cheap batches: a commit costs about the same for ten
results as for a thousand.
Handing every write to another thread would cost more than the write itself: the two
threads share one interpreter lock, and each hand-over waits for it. A batch is handed
over whole, by the age of its oldest write; a make returns without waiting for the last
one (``Store.end_run``).
"""

from __future__ import annotations

import functools
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..core.jobspec import RunRecord
from ..errors import StoreError
from . import blobs, db

MAX_BACKLOG = 1024    # writes (each holds its job's claim until committed)
MAX_BYTES = 64 << 20  # of results held in memory until written
# SPEC 4 promises that a kill loses at most the jobs that finished in the last 0.1 s: a
# write waits at most 0.05 s to be applied, which leaves the other half for its commit
# (and for the background thread to get the interpreter lock: a few milliseconds).
MAX_AGE = 0.045       # seconds
# Results written by one set of statements. The rows of a write are made, and its
# statements' values bound, holding the interpreter lock; the make's thread, which hands
# out jobs, gets it back between two writes (while SQLite works), not once a whole batch
# of a thousand results is through.
RESULTS_PER_WRITE = 64


@dataclass(slots=True)
class Result:
    """A result to record: consecutive ones are committed together (Store._commit_results)."""

    job_id: str
    record: RunRecord
    name: str                 # its file, or INLINE
    sum_: str
    stamp: tuple[int, int]
    timing: dict
    logs: tuple[str, str]
    data: bytes | None = None  # the bytes of an inline result
    made_here: bool = False    # held in Store._inflight until committed


class Writer:
    """``db(fn)`` runs ``fn(conn)`` in the batch's transaction (it may return a callable to
    run once committed); ``result(...)`` writes a file, then records it."""

    def __init__(self, store: Any, commit_results: Callable[..., Callable[[], None]]):
        self._store = store
        self._commit_results = commit_results
        self._items: list[tuple] = []
        self._bytes = 0                     # of the results among them
        self._since = 0.0                   # when the oldest waiting write came
        self._lock = threading.Lock()       # guards _items
        self._wake = threading.Condition(self._lock)
        self._applying = threading.Lock()   # one batch at a time: batches commit in order
        self._conn: sqlite3.Connection | None = None
        self._failure: str | None = None
        self._closing = False
        self.errors: list[str] = []
        # The store's count of writes (db.py) as this store's last commit left it, and how
        # often another connection was found to have written since (unchanged.py).
        self.expected_writes: int | None = None
        self.foreign = 0
        self._thread = threading.Thread(target=self._late_writes, name="nbmake-writer",
                                        daemon=True)
        self._thread.start()

    def db(self, fn: Callable[[sqlite3.Connection], Any], size: int = 0) -> None:
        """``size``: bytes it holds in memory until applied (an inline result's)."""
        self._put(("db", fn), size)

    def db_many(self, fns: list[Callable[[sqlite3.Connection], Any]], size: int = 0) -> None:
        """``db(fn)`` for each, in order, handed over at once (a batch of results)."""
        if fns:
            self._put_many([("db", fn) for fn in fns], size)

    def result(self, write, commit, on_error, size: int) -> None:
        """``write()`` makes the file (of ``size`` bytes); ``commit(its info)`` gives the
        Result to record once it is durable; ``on_error(exc)`` gives the write to record
        instead when it fails."""
        self._put(("file", write, commit, on_error), size)

    def _put(self, item: tuple, size: int) -> None:
        self._put_many([item], size)

    def _put_many(self, new: list[tuple], size: int) -> None:
        with self._lock:
            items = self._items
            if not items:
                self._since = time.monotonic()
                self._wake.notify()  # the background thread applies them by MAX_AGE
            items += new
            self._bytes += size
            full = len(items) >= MAX_BACKLOG or self._bytes >= MAX_BYTES
        if full:
            self.apply()

    def waiting(self) -> int:
        """How many writes wait."""
        return len(self._items)

    def pending_files(self) -> bool:
        """Whether result files may still be written (or a batch is being applied)."""
        with self._lock:
            return self._applying.locked() or any(item[0] == "file" for item in self._items)

    def on_its_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def apply(self) -> None:
        """Apply every write waiting (after the batch being applied, if any)."""
        with self._applying:
            _without_interrupts(self._apply_waiting)

    def _apply_waiting(self) -> None:
        with self._lock:
            batch, self._items, self._bytes = self._items, [], 0
        if batch:
            self._apply_batch(batch)

    def flush(self) -> None:
        """Wait until every write so far is committed; raise if any failed."""
        self.apply()
        if self.errors:
            errors, self.errors = self.errors, []
            raise StoreError("could not write to the store: " + "; ".join(errors[:3]))

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with self._lock:
                self._closing = True
                self._wake.notify()
            self._thread.join()
            if self._conn is not None:
                self._conn.close()

    def _late_writes(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._closing:
                        return
                    if not self._items:
                        self._wake.wait()
                        continue
                    wait = self._since + MAX_AGE - time.monotonic()
                    if wait <= 0:
                        break
                    self._wake.wait(wait)
            self.apply()

    # -- one batch ----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is None and self._failure is None:
            try:
                conn = db.connect(self._store.path / "nbmake.db")
                if self._store.durable:  # inline results are durable once their commit returns
                    conn.execute("PRAGMA synchronous=FULL")
                self._conn = conn
            except sqlite3.Error as exc:
                # Every write fails and each flush says so; nothing waits for a retry.
                self._failure = f"cannot open the store's database: {exc}"
        return self._conn

    def _apply_batch(self, batch: list[tuple]) -> None:
        conn = self._connection()
        if conn is None:
            self.errors.append(self._failure or "no database")
            return
        try:
            self._commit(conn, self._write_files(batch))
        except Exception as exc:  # noqa: BLE001 - reported by flush, never lost silently
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _write_files(self, batch: list[tuple]) -> list[Callable | Result]:
        ops, wrote = [], []
        for item in batch:
            if item[0] == "db":
                ops.append(item[1])
                continue
            _, write, commit, on_error = item
            try:
                info = write()
            except OSError as exc:
                ops.append(on_error(exc))
                continue
            wrote.append(info[0])
            ops.append(commit(info))
        if wrote and self._store.durable:
            blobs.make_durable(self._store.results_dir, wrote)
        return ops

    def _commit(self, conn: sqlite3.Connection, ops: list[Callable | Result]) -> None:
        afters = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            expected = self.expected_writes
            if expected is not None and db.write_count(conn) != expected:
                self.foreign += 1
            for fn in _runs_of_results(ops, self._commit_results):
                try:
                    after = fn(conn)
                except sqlite3.Error as exc:
                    self.errors.append(str(exc))
                    continue
                if callable(after):
                    afters.append(after)
            db.prune_changes(conn)
            self.expected_writes = db.write_count(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.errors.append(str(exc))
            self.foreign += 1  # (what the count is now is not known: as if another wrote)
            self.expected_writes = None
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return
        for after in afters:
            after()


def _runs_of_results(ops: list, commit: Callable) -> Iterator[Callable]:
    """The writes in order, each run of consecutive results as one write (of at most
    ``RESULTS_PER_WRITE``)."""
    run: list[Result] = []
    for op in ops:
        if type(op) is Result:
            run.append(op)
            if len(run) == RESULTS_PER_WRITE:
                yield functools.partial(commit, results=run)
                run = []
            continue
        if run:
            yield functools.partial(commit, results=run)
            run = []
        yield op
    if run:
        yield functools.partial(commit, results=run)


def _without_interrupts(fn: Callable[[], None]) -> None:
    """Run ``fn`` with Ctrl-C held back until it returns: a batch is committed whole (its
    results, the claims it releases) or, if it fails, reported whole; never cut in half
    by an interrupt that arrives while the make's own thread applies it."""
    if threading.current_thread() is not threading.main_thread():
        fn()  # interrupts only ever reach the main thread
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # installed outside Python: cannot be put back
        fn()
        return
    caught: list[Any] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        fn()
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(signal.SIGINT, caught[0])
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)
