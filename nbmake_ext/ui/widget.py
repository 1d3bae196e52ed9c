"""The job board widget: an anywidget whose state is the board's data (``board.py``) and
whose front end (``js/``, built into ``static/``) draws it.

- One widget per command output (``make``, ``parmake``, ``remake``, ``show``). It is the
  run's observer: every change is merged into a pending batch, and at most one batch every
  ``FLUSH_EVERY`` seconds goes to the browser, sent from the thread that runs the cell (the
  run loop's ``tick``). Everything a click shows travels with the changes, because the
  browser's messages to a busy kernel wait until the cell ends.
- Every batch of changes carries a number ``n``, and so does every snapshot (the ``data``
  trait): the number of the last batch it includes. The front end drops a batch that a
  snapshot it holds already includes, whatever order they reach it in (a board whose code
  loads after its run ended must not replay the run's batches over its final snapshot).
- When the command ends, the widget's state becomes the final snapshot and the output is
  updated (through its display id) to the static board (``views.board_view``), without the
  widget's view: a saved notebook shows the board as it ended wherever no kernel runs
  (JupyterLab, Notebook 7, nbconvert, nbviewer, GitHub), never "model not found". In the
  live page the board's code mounts the interactive board over that static one again
  (``js/src/mount.js``): it finds it by ``data-nbmake-board``, the board's ``_uid``.
  ``show`` displays the static board at once, the same way.
- Notebooks save every widget's ES module in their metadata, so a board's own ``_esm`` is a
  small loader; the board code (and its graph layout library) is held once per kernel by a
  shared ``BoardCode`` model that every board refers to.
- On an idle kernel the board answers the front end: full details of a job, refresh from the
  store, remake or clean a job.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import anywidget
import ipywidgets
import traitlets

from ..errors import JobsFailed
from . import views
from .board import LETTER, Board, expected_jobs, extras_from_details

STATIC = Path(__file__).parent / "static"
FLUSH_EVERY = 0.1   # seconds between two batches of changes, at least


class BoardCode(ipywidgets.Widget):
    """The board's front-end code and styles, shared by every board of the kernel (a plain
    ``@jupyter-widgets/base`` model: it has no view). ``busy`` names the command this
    kernel runs, so that every board can tell that its buttons would wait."""

    code = traitlets.Unicode().tag(sync=True)
    css = traitlets.Unicode().tag(sync=True)
    version = traitlets.Unicode().tag(sync=True)
    busy = traitlets.Unicode("").tag(sync=True)


_shared: BoardCode | None = None


def board_code() -> BoardCode:
    """The kernel's one BoardCode (made again if it was closed)."""
    global _shared
    if _shared is None or _shared.comm is None:
        code = (STATIC / "board.js").read_text(encoding="utf-8")
        css = (STATIC / "board.css").read_text(encoding="utf-8")
        version = hashlib.blake2b((code + css).encode(), digest_size=8).hexdigest()
        _shared = BoardCode(code=code, css=css, version=version)
    return _shared


class JobBoard(anywidget.AnyWidget):
    """A live view of the jobs of one command. Use ``for_run`` / ``for_show``."""

    _esm = (STATIC / "loader.js").read_text(encoding="utf-8")
    _code = traitlets.Instance(BoardCode).tag(sync=True, **ipywidgets.widget_serialization)
    _uid = traitlets.Unicode().tag(sync=True)   # names the board's store in the browser
    data = traitlets.Dict().tag(sync=True)      # Board.to_json(): the jobs
    run = traitlets.Dict().tag(sync=True)       # Run.to_json(): the command and its progress

    def __init__(self, ctx: Any, board: Board, **kwargs: Any):
        self.ctx = ctx
        self.board = board
        self.handle: Any = None                 # the DisplayHandle of this output
        self.after_run: Callable[[], None] | None = None
        self._last_flush = 0.0
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._seq = 0                           # number of the last batch sent
        self.batches = 0
        super().__init__(_code=board_code(), _uid=uuid.uuid4().hex,
                         data={**board.to_json(), "n": 0}, run=board.run.to_json(), **kwargs)
        self.on_msg(self._on_msg)

    @classmethod
    def for_show(cls, ctx: Any, targets: Iterable[str] = (), own: bool = False) -> "JobBoard":
        """The jobs the targets select; with ``own`` (a kernel's command with no targets),
        the jobs the context registered and what they need, as ``Context.own_jobs``."""
        return cls(ctx, Board.from_context(ctx, targets, own=own))

    @classmethod
    def for_run(cls, ctx: Any, command: str, targets: Iterable[str],
                own: bool = False) -> "JobBoard":
        """Every job of the store (with ``own``: the context's own jobs, as ``for_show``);
        the run's own progress counts those it has to finish."""
        board = Board.from_context(ctx, own=own)
        board.start_run(command, expected_jobs(board, ctx.graph, command, targets))
        return cls(ctx, board)

    # -- shown as -------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any):
        data, metadata = super()._repr_mimebundle_(**kwargs)
        view = views.board_view(self.board)
        data["text/plain"] = view.plain
        data["text/html"] = view.html
        return data, metadata

    def static_view(self) -> views.View:
        """The board as it stands, with no widget: what the output keeps once the command
        ended (and what ``show`` displays). Its HTML names the board (``data-nbmake-board``)
        so that the live page mounts the interactive board over it."""
        view = views.board_view(self.board)
        return views.View(view.plain, views.board_host(self._uid, view.html))

    def __repr__(self) -> str:
        counts = self.board.counts()
        tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no jobs"
        what = self.board.run.command or "show"
        return f"<JobBoard {what}: {len(self.board.jobs)} jobs: {tally}>"

    # -- the run's observer ---------------------------------------------------------------

    def begin(self) -> None:
        """The run starts now (the board is displayed)."""
        self.board.run.started = time.time()
        self.board.run.active = True
        board_code().busy = self.board.run.command
        self._last_flush = 0.0

    def job_changed(self, job_id: str, state: str, info: dict[str, Any]) -> None:
        with self._lock:
            self.board.change(job_id, state, info)
        if state == "running":
            # `make` runs the job in this thread next, and no tick comes until it ends:
            # show that it started, now or (rate limit) as soon as allowed.
            if not self.tick():
                self._flush_later()

    def job_progress(self, job_id: str, done: float, total: float, message: str) -> None:
        """A running job reported how far it is (nbmake_ext.progress, a few times a second
        at most): shown with the next batch; in ``make`` the job runs in this thread and
        no tick comes until it ends, so as for a start, sent now or soon."""
        with self._lock:
            shown = self.board.progress(job_id, done, total, message)
        if shown and not self.tick():
            self._flush_later()

    def tick(self) -> bool:
        """Sends the pending changes if the last batch went at least FLUSH_EVERY ago (none
        once the run ended: the final snapshot holds them)."""
        with self._lock:
            now = time.monotonic()
            if (now - self._last_flush < FLUSH_EVERY or not self.board.pending
                    or not self.board.run.active):
                return False
            self._last_flush = now
            self.batches += 1
            self._send_delta(self.board.take_delta())
            return True

    def _send_delta(self, delta: dict[str, Any]) -> None:
        """A batch, numbered (under the lock: batches leave in order)."""
        with self._lock:
            self._seq += 1
            delta["n"] = self._seq
            self.send(delta)

    def _set_snapshot(self) -> None:
        """The board as it stands becomes the widget's state; it supersedes every batch
        sent so far and every change not sent yet."""
        with self._lock:
            self.board.take_delta()
            data = {**self.board.to_json(), "n": self._seq}
            with self.hold_sync():
                self.data = data
                self.run = self.board.run.to_json()

    def _flush_later(self) -> None:
        """One timer thread sends the batch when the rate limit allows, in case the thread
        that runs the cell is busy with a job by then (it runs in the cell's context, so
        the message keeps the cell as its parent). A tick that comes first leaves it
        nothing to do."""
        if self._timer is not None and self._timer.is_alive():
            return
        delay = max(0.0, FLUSH_EVERY - (time.monotonic() - self._last_flush)) + 0.005
        context = contextvars.copy_context()
        self._timer = threading.Timer(delay, context.run, args=(self._flush_quietly,))
        self._timer.daemon = True
        self._timer.start()

    def _flush_quietly(self) -> None:
        try:
            if self.board.run.active:
                self.tick()
        except Exception:  # noqa: BLE001 - the cell's own ticks carry on regardless
            pass

    def finish(self, outcome: str, error: str = "") -> None:
        """The command ended (``finished``, ``failed``, ``interrupted`` or ``error``): the
        final snapshot read back from the store becomes the widget's state, the output
        shows the static board, and the kernel is no longer busy, whatever fails or
        interrupts on the way."""
        try:
            if self._timer is not None:
                self._timer.cancel()
            with self._lock:  # no batch of the run leaves after this
                run = self.board.run
                run.active = False
                run.ended = time.time()
                run.outcome = outcome
                run.error = error
            try:
                self.board = self.board.reload(self.ctx)
            except Exception as exc:  # noqa: BLE001 - keep what the run told us; the
                # command's own outcome (an error, an interrupt) is what the user must see
                run.error = run.error or str(exc)
        finally:
            try:
                self._publish()
            finally:
                board_code().busy = ""

    def _publish(self) -> None:
        """The final snapshot to the browser, the static board to the output."""
        self._set_snapshot()
        if self.handle is not None:
            self.handle.update(self.static_view())

    def set_summary(self, line: str) -> None:
        self.board.run.summary = line

    # -- messages from the front end (only ever handled while the kernel is idle) ------------

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        kind, job, request = content.get("t"), content.get("job"), content.get("re")
        try:
            if kind == "details":
                reply = self._details(job)
            elif kind == "refresh":
                self._reload()
                reply = "read again from the store"
            elif kind == "clean":
                ids = self.ctx.clean(job)
                self._reload()
                reply = f"cleaned {', '.join(ids)}"
            elif kind == "remake":
                reply = self._remake(job)
            else:
                reply = f"unknown request {kind!r}"
            self.send({"t": "reply", "re": request, "ok": True, "msg": reply})
        except Exception as exc:  # noqa: BLE001 - reported in the board, not lost
            self.send({"t": "reply", "re": request, "ok": False,
                       "msg": f"{type(exc).__name__}: {exc}"})

    def _details(self, job_id: str) -> str:
        d = self.ctx.details(job_id)
        job = self.board.jobs.get(job_id)
        if job is not None:
            job.x = extras_from_details(d)
            job.state = d.state
        self._send_delta({"t": "delta", "j": {job_id: {"s": LETTER[d.state],
                                                       "x": extras_from_details(d)}},
                          "run": self.board.run.to_json()})
        return "details loaded"

    def _reload(self) -> None:
        self.board = self.board.reload(self.ctx)
        self._publish()

    def _remake(self, job_id: str) -> str:
        """``remake JOB`` from the details panel, shown live on this board."""
        scope = self.board.scope
        self.board = self.board.reload(self.ctx)
        self.board.scope = scope
        self.board.start_run("remake", expected_jobs(self.board, self.ctx.graph, "remake",
                                                     [job_id]))
        self._set_snapshot()
        self.begin()
        outcome, error = "finished", ""
        report, self.ctx.report = self.ctx.report, self.set_summary  # no cell to print in
        try:
            self.ctx.remake(job_id, observer=self)
        except JobsFailed:
            outcome = "failed"
        except Exception as exc:  # noqa: BLE001
            outcome, error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.ctx.report = report
            self.finish(outcome, error)
            if self.after_run is not None:
                self.after_run()
        return self.board.run.summary
