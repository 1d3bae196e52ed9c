"""``%load_ext nbmake_ext``: one Context per kernel, the magics, and the cell-end hook."""

from __future__ import annotations

from typing import Any

from ..context import Context, set_current_context
from ..errors import UnknownTarget
from ..execute.dynamic import DynamicContext
from ..promise import Promise, resolve
from .magics import CellDefiner, NbmakeMagics, complete_job_ids

_session: "KernelSession | None" = None


class KernelSession:
    """What the extension keeps per kernel: the Context, the %%comp cells, the names it
    bound to Promises (so a later make can bind them to values)."""

    def __init__(self, shell: Any, store: str | None = None):
        self.shell = shell
        self.ctx = Context(store)
        set_current_context(self.ctx)
        self.cells = CellDefiner(self)

    # -- %%comp ---------------------------------------------------------------------------

    def define_cell(self, job_id: str | None, source: str) -> None:
        jid = self.cells.define(job_id, source)
        self.ctx.sync()
        self._bind(jid, only_if_promise=False)

    def _bind(self, jid: str, only_if_promise: bool) -> None:
        """Bind a cell's output names: to values when it is up to date, else to Promises."""
        ns = self.shell.user_ns
        outputs = self.cells.outputs.get(jid, ())
        if only_if_promise and not any(
                isinstance(ns.get(n), Promise) and ns[n].job_id == jid for n in outputs):
            return
        values = None
        if self.ctx.state_of(jid) == "done":
            try:
                values = self.ctx.result_of(jid)
            except Exception:  # noqa: BLE001 - unreadable: leave Promises, make will redo it
                values = None
        for name in outputs:
            current = ns.get(name)
            if only_if_promise and not (isinstance(current, Promise) and current.job_id == jid):
                continue  # the user rebound this name: leave it alone
            if values is not None and name in values:
                ns[name] = values[name]
            else:
                ns[name] = Promise(jid, self.ctx, output=name)

    def bind_cell_outputs(self) -> None:
        """After a command: outputs still bound to Promises get their values."""
        for jid in list(self.cells.outputs):
            if jid in self.ctx.graph:
                self._bind(jid, only_if_promise=True)

    # -- %nbmake store / debug ------------------------------------------------------------

    def switch_store(self, path: str | None) -> None:
        if path is None:
            print(f"store: {self.ctx.store.path}")
            return
        old = self.ctx
        self.ctx = Context(path)
        set_current_context(self.ctx)
        self.cells = CellDefiner(self)
        old.close()
        print(f"store: {self.ctx.store.path}")

    def debug(self, job_id: str) -> Any:
        """Run a job here, uncaptured, on its stored inputs: an exception reaches the
        user as is, so ``%debug`` lands in the job's own frame."""
        ctx = self.ctx
        ctx.sync()
        if job_id not in ctx.graph:
            raise UnknownTarget(f"no job {job_id!r}")
        spec = ctx.graph.specs[job_id]
        if spec.func is not None:
            func, args, kwargs = spec.func, spec.args, spec.kwargs
        else:
            func, args, kwargs = ctx.store.load_call(job_id)
        load = ctx.store.load_result
        args, kwargs = resolve(args, load), resolve(kwargs, load)
        if spec.dynamic:
            args = (DynamicContext(job_id, lambda child: None), *args)
        print(f"debug: running {job_id} here; after an exception, %debug opens its frame")
        return func(*args, **kwargs)

    # -- hooks ----------------------------------------------------------------------------

    def post_run_cell(self, *_: Any) -> None:
        # Definitions reach the store when the cell ends (SPEC 1).
        if self.ctx._pending:
            self.ctx.sync()

    def close(self) -> None:
        self.ctx.close()
        set_current_context(None)


def load(shell: Any) -> None:
    global _session
    if _session is not None and _session.shell is shell:
        return  # %load_ext twice: keep the one session
    _session = KernelSession(shell)
    shell.register_magics(NbmakeMagics(shell, _session))
    shell.events.register("post_run_cell", _session.post_run_cell)
    completer = complete_job_ids(_session)
    for name in ("make", "remake", "clean", "nbmake"):
        shell.set_hook("complete_command", completer, str_key=f"%{name}")


def unload(shell: Any) -> None:
    global _session
    if _session is None:
        return
    try:
        shell.events.unregister("post_run_cell", _session.post_run_cell)
    except ValueError:
        pass
    magics = shell.magics_manager.magics
    for kind, names in (("line", ("nbmake", "make", "remake", "clean")), ("cell", ("comp",))):
        for name in names:
            magics[kind].pop(name, None)
    _session.close()
    _session = None

