"""The notebook's face: ``%%comp`` cells and the ``%nbmake`` / ``%make`` / ... magics.

Magics are thin: they parse arguments (argparse built from the one command table, via
IPython's ``magic_arguments`` so that ``%make?`` shows usage and an example) and call the
kernel's Context.
"""

from __future__ import annotations

import builtins
import shlex
from typing import TYPE_CHECKING, Any

from IPython.core import magic_arguments
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display

from ..commands import COMMANDS, Command
from ..errors import InvalidJob, UnknownTarget
from ..promise import Promise
from ..registration import make_spec
from ..ui import views
from . import cellcode
from .celljob import CellJob, cell_code_fingerprint

if TYPE_CHECKING:
    from .extension import KernelSession


def _build_magic(command: Command, run):
    """A magic function for ``command`` whose parser and docstring come from the table."""

    def magic(line: str = ""):
        return run(command, line)

    magic.__name__ = command.name
    magic.__doc__ = (f"{command.help}.\n\nExample::\n\n    %"
                     + command.example.replace("\n", "\n    %") + "\n")
    for arg in reversed(command.args):
        kwargs: dict[str, Any] = {"help": arg.help}
        if arg.nargs is not None:
            kwargs["nargs"] = arg.nargs
        if arg.action is not None:
            kwargs["action"] = arg.action
        magic = magic_arguments.argument(*arg.flags, **kwargs)(magic)
    return magic_arguments.magic_arguments()(magic)


@magics_class
class NbmakeMagics(Magics):
    def __init__(self, shell, session: "KernelSession"):
        super().__init__(shell)
        self.session = session
        self._parsers = {}
        for name, command in COMMANDS.items():
            fn = _build_magic(command, self._run)
            self._parsers[name] = fn
            if command.own_magic:
                self.magics["line"][name] = fn

    # -- %nbmake CMD ... --------------------------------------------------------------------

    @line_magic
    def nbmake(self, line: str = ""):
        """Run an nbmake command: make remake clean ls details why stats debug store.

        Example::

            %nbmake ls failed
            %nbmake why report
            %nbmake details fit-3
            %nbmake store /data/project/.nbmake
        """
        words = shlex.split(line)
        if not words:
            print(self.nbmake.__doc__)
            return None
        name, rest = words[0], " ".join(shlex.quote(w) for w in words[1:])
        if name == "store":
            return self.session.switch_store(rest.strip() or None)
        if name == "debug":
            if len(words) != 2:
                raise UnknownTarget("usage: %nbmake debug JOB")
            return self.session.debug(words[1])
        if name not in COMMANDS:
            known = ", ".join([*COMMANDS, "debug", "store"])
            raise UnknownTarget(f"unknown nbmake command {name!r}; commands: {known}")
        return self._run(COMMANDS[name], rest)

    def _run(self, command: Command, line: str):
        fn = self._parsers[command.name]
        try:
            args = magic_arguments.parse_argstring(fn, line)
        except SystemExit:  # argparse already printed the usage
            return None
        result = command.run(self.session.ctx, args)
        self.session.bind_cell_outputs()
        view = views.for_command(command.name, result, args)
        if view is not None:
            display(view)
        return None

    # -- %%comp ---------------------------------------------------------------------------

    @cell_magic
    def comp(self, line: str, cell: str):
        """Make this cell a job: its outputs are the names it binds, its inputs the names
        it reads (outputs of other %%comp cells and Promises are dependencies; other
        values are captured). The cell runs at the next make.

        Example::

            %%comp fit
            model = fit(data, alpha)
            score = evaluate(model)
        """
        self.session.define_cell(line.strip() or None, cell)


def complete_job_ids(session: "KernelSession"):
    def completer(_shell, event) -> list[str]:
        prefix = event.symbol or ""
        try:
            return [j for j in session.ctx.graph.specs if j.startswith(prefix)][:500]
        except Exception:  # noqa: BLE001 - a completer must never raise
            return []
    return completer


class CellDefiner:
    """Turns a cell body into a job, classifying each name it reads (SPEC 1)."""

    def __init__(self, session: "KernelSession"):
        self.session = session
        self.output_of: dict[str, str] = {}      # output name -> its cell job
        self.outputs: dict[str, tuple[str, ...]] = {}  # cell job -> its outputs

    def define(self, job_id: str | None, source: str) -> str:
        ns = self.session.shell.user_ns
        try:
            names = cellcode.analyse(source)
        except SyntaxError as exc:
            raise InvalidJob(job_id or "cell", f"the cell does not parse: {exc}") from None
        code_hint = cell_code_fingerprint(source, {}).digest
        job_id = job_id or cellcode.default_job_id(names.outputs, code_hint)
        inputs: dict[str, Any] = {}
        captured: dict[str, Any] = {}
        for name in names.inputs:
            owner = self.output_of.get(name)
            if owner == job_id:
                raise InvalidJob(job_id, f"reads {name!r} before binding it, and {name!r} is "
                                         "its own output; give the input another name")
            if owner is not None and owner in self.session.ctx.graph:
                inputs[name] = Promise(owner, self.session.ctx, output=name)
            elif name in ns and isinstance(ns[name], Promise):
                inputs[name] = ns[name]
            elif name in ns and not _is_shell_name(name):
                inputs[name] = captured[name] = ns[name]
            elif hasattr(builtins, name):
                continue
            else:
                raise InvalidJob(job_id, f"name {name!r} is not defined")
        code = cell_code_fingerprint(source, captured)
        spec = make_spec(CellJob(job_id, source, names.outputs), (), inputs, job_id,
                         code=code, label="cell")
        self.session.ctx._register(spec)
        for name, owner in list(self.output_of.items()):
            if owner == job_id and name not in names.outputs:
                del self.output_of[name]
        self.output_of.update(dict.fromkeys(names.outputs, job_id))
        self.outputs[job_id] = names.outputs
        return job_id


_SHELL_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "_ih", "_oh", "_dh"})


def _is_shell_name(name: str) -> bool:
    return name in _SHELL_NAMES or (name.startswith("_") and name.lstrip("_i").isdigit())

