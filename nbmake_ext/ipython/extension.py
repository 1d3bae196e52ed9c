"""``%load_ext nbmake_ext``: one Context per kernel, the magics, and the cell-end hook."""

from __future__ import annotations

from typing import Any

from IPython.display import display

from ..context import Context, current_context, set_current_context
from ..commands import takes_targets, targets_of
from ..errors import JobsFailed, NotDone
from ..shared.dynamic import DynamicContext
from ..promise import resolve
from ..store import ResultUnavailable
from ..ui import views
from .cells import Cells
from .completion import job_id_matcher
from .magics import NbmakeMagics

_session: "KernelSession | None" = None


class KernelSession:
    """What the extension keeps per kernel: the Context (the one module-level ``comp``
    uses) and the ``%%comp`` cells defined on it."""

    def __init__(self, shell: Any):
        self.shell = shell
        self._made = False
        self._board: Any = None  # the job board of the command running now
        # The context a `comp` before %load_ext made, else a new one on the default store.
        self._attach(current_context())

    def _attach(self, ctx: Context) -> None:
        self.ctx = ctx
        ctx.report = self._report
        set_current_context(ctx)
        self.cells = Cells(ctx, self.shell)

    def _report(self, line: str) -> None:
        """The end of every make, from a magic or from ``ctx.make()`` in a cell."""
        self._made = True
        if self._board is not None:
            self._board.set_summary(line)
        display(views.summary_view(line))

    def board_command(self, command: Any, args: Any) -> None:
        """``make``, ``parmake``, ``remake`` (shown live on a job board, which then keeps
        the final states) and ``show``."""
        from ..ui.widget import JobBoard  # anywidget loads with the first board

        ctx = self.ctx
        own = bool(getattr(args, "scope", None))  # no targets: this kernel's jobs
        if command.name == "show":
            board = JobBoard.for_show(ctx, args.targets, own=own)
            board.after_run = self.bind_cell_outputs
            # Nothing runs: the static board at once, which the live page makes interactive.
            board.handle = display(board.static_view(), display_id=True)
            return
        # An unknown target fails here, before anything is shown.
        board = JobBoard.for_run(ctx, command.name, targets_of(command.name, args), own=own)
        board.after_run = self.bind_cell_outputs
        board.handle = display(board, display_id=True)
        args.observer = board
        self._board = board
        outcome, error = "finished", ""
        board.begin()
        try:
            command.run(ctx, args)
        except JobsFailed:
            outcome = "failed"
            raise
        except KeyboardInterrupt:
            outcome = "interrupted"
            raise
        except BaseException as exc:
            outcome, error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._board = None
            board.finish(outcome, error)

    def choose_scope(self, command: Any, args: Any) -> None:
        """What no targets mean in a kernel: the jobs it registered since it started and
        what they need (``args.scope``), so that notebooks sharing a store keep to their
        own jobs; every job of the store when it registered none. ``make`` and ``parmake``
        take the registered jobs alone: they make what those need anyway. So does ``show``:
        its board works out what they need itself, in its one read of the store."""
        if not takes_targets(command) or targets_of(command.name, args):
            return
        alone = command.name in ("make", "parmake", "show")
        args.scope = self.ctx.own_jobs(needs=not alone) or None

    def bind_cell_outputs(self) -> None:
        self._made = False
        self.cells.bind_done()

    def switch_store(self, path: str | None) -> None:
        if path is not None:
            old = self.ctx
            self._attach(Context(path))
            old.close()
        print(f"store: {self.ctx.store.path}")

    def debug(self, job_id: str) -> Any:
        """Run a job here, uncaptured, on its stored inputs: an exception reaches the
        user as is, so ``%debug`` lands in the job's own frame."""
        __tracebackhide__ = True  # IPython hides this frame in tracebacks
        ctx = self.ctx
        ctx.sync()
        spec = ctx.definition(job_id)
        if spec.func is not None:
            func, args, kwargs = spec.func, spec.args, spec.kwargs
        else:  # defined by an earlier kernel and not re-registered in this one
            func, args, kwargs = ctx.store.load_call(job_id)
        load = ctx.store.load_result
        try:
            args, kwargs = resolve(args, load), resolve(kwargs, load)
        except ResultUnavailable as exc:
            raise NotDone(f"cannot debug {job_id!r}: {exc}; make its dependencies first") \
                from None
        if spec.dynamic:
            args = (DynamicContext(job_id, lambda child: None), *args)
        print(f"debug: running {job_id} here; after an exception, %debug opens its frame")
        return func(*args, **kwargs)

    def post_run_cell(self, *_: Any) -> None:
        if self.ctx.has_pending:
            self.ctx.sync()  # definitions reach the store when the cell ends (SPEC 1)
        if self._made:
            self.bind_cell_outputs()  # a make ran in Python code (ctx.make())

    # -- in and out of the shell -----------------------------------------------------------

    def install(self) -> None:
        magics = NbmakeMagics(self.shell, self)
        self.shell.register_magics(magics)
        self._magic_names = {kind: list(fns) for kind, fns in magics.magics.items()}
        self.shell.events.register("post_run_cell", self.post_run_cell)
        self._matcher = job_id_matcher(self)
        self.shell.Completer.custom_matchers.append(self._matcher)

    def uninstall(self) -> None:
        self.shell.events.unregister("post_run_cell", self.post_run_cell)
        if self._matcher in self.shell.Completer.custom_matchers:
            self.shell.Completer.custom_matchers.remove(self._matcher)
        registered = self.shell.magics_manager.magics
        for kind, names in self._magic_names.items():
            for name in names:
                registered[kind].pop(name, None)
        self.ctx.close()
        set_current_context(None)


def load(shell: Any) -> None:
    global _session
    if _session is not None and _session.shell is shell:
        return  # %load_ext twice: keep the one session
    _session = KernelSession(shell)
    _session.install()


def unload(shell: Any) -> None:
    global _session
    if _session is not None:
        _session.uninstall()
        _session = None
