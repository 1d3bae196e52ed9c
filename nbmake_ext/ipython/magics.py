"""The notebook's face: ``%%comp`` cells and the ``%nbmake`` / ``%make`` / ... magics.

Magics are thin: they parse arguments (argparse built from the one command table, via
IPython's ``magic_arguments`` so that ``%make?`` shows usage and an example) and call the
kernel's session.
"""

from __future__ import annotations

import inspect
import shlex
from typing import TYPE_CHECKING

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display

from ..commands import BOARD_COMMANDS, COMMANDS, Command, argparse_kwargs, parmake_words
from ..errors import BadUsage
from ..ui import views

if TYPE_CHECKING:
    from .extension import KernelSession

#: Commands of ``%nbmake`` that are not in the command table: they need the kernel.
KERNEL_COMMANDS = {
    "debug": ("debug JOB", "re-run a failed job here on its stored inputs, so %debug "
                           "opens its frame"),
    "store": ("store [PATH]", "show the store, or switch to the one at PATH"),
}


def _build_magic(command: Command, run):
    """A magic function for ``command`` whose parser and docstring come from the table."""

    def magic(line: str = ""):
        return run(command, line)

    magic.__name__ = command.name
    magic.__doc__ = (f"{command.help}.\n\nExample::\n\n    %"
                     + command.example.replace("\n", "\n    %") + "\n")
    for arg in reversed(command.args):
        magic = magic_arguments.argument(*arg.flags, **argparse_kwargs(arg))(magic)
    return magic_arguments.magic_arguments()(magic)


def parse(magic, line: str):
    """The arguments of a magic built by ``_build_magic``. Quotes are shell quotes:
    ``%make 'fit-*'`` means the glob fit-*."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{exc}: {line}") from None
    return magic.parser.parse_args(words)


def _usage(command: Command) -> str:
    words = [command.name]
    for arg in sorted(command.args, key=lambda a: not a.flags[0].startswith("-")):
        name = arg.flags[0]
        if name.startswith("-"):
            value = "" if arg.action else f" {name.lstrip('-').upper()}"
            words.append(f"[{name}{value}]")
        elif arg.nargs == "*":
            words.append(f"[{name.upper()} ...]")
        elif arg.nargs == "+":
            words.append(f"{name.upper()} ...")
        else:
            words.append(name.upper())
    return " ".join(words)


def _nbmake_doc() -> str:
    usage = [(_usage(c), c.help) for c in COMMANDS.values()] + list(KERNEL_COMMANDS.values())
    width = max(len(u) for u, _ in usage)
    lines = [f"    %nbmake {u:<{width}}  {h}" for u, h in usage]
    return ("Run an nbmake command; `%make?` etc. tell more about each.\n\n"
            "Commands::\n\n" + "\n".join(lines) + "\n\nExample::\n\n"
            "    %nbmake ls failed\n    %nbmake why report\n    %nbmake details fit-3\n"
            "    %nbmake store /data/project/.nbmake\n")


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

    @line_magic
    def nbmake(self, line: str = ""):
        __tracebackhide__ = True  # IPython hides this frame in tracebacks
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"{exc}: {line}") from None
        if not words:
            print(inspect.cleandoc(self.nbmake.__doc__))
            return None
        name, rest = words[0], words[1:]
        if name == "store":
            if len(rest) > 1:
                raise UsageError("usage: %nbmake store [PATH]")
            return self.session.switch_store(rest[0] if rest else None)
        if name == "debug":
            if len(rest) != 1:
                raise UsageError("usage: %nbmake debug JOB")
            return self.session.debug(rest[0])
        if name not in COMMANDS:
            known = ", ".join([*COMMANDS, *KERNEL_COMMANDS])
            raise UsageError(f"unknown nbmake command {name!r}; commands: {known}")
        return self._run(COMMANDS[name], " ".join(shlex.quote(w) for w in rest))

    nbmake.__doc__ = _nbmake_doc()

    def _run(self, command: Command, line: str):
        try:
            args = parse(self._parsers[command.name], line)
        except SystemExit:  # -h: argparse already printed the usage
            return None
        if command.name == "parmake":
            try:
                parmake_words(args)  # `%parmake 0`: a usage error before anything runs
            except BadUsage as exc:
                raise UsageError(str(exc)) from None
        self.session.choose_scope(command, args)
        if command.name in BOARD_COMMANDS:
            try:
                return self.session.board_command(command, args)
            finally:
                self.session.bind_cell_outputs()
        try:
            result = command.run(self.session.ctx, args)
        finally:
            self.session.bind_cell_outputs()
        view = views.for_command(command.name, result, args)
        if view is not None:
            display(view)
        return None

    @cell_magic
    def comp(self, line: str, cell: str):
        """Make this cell a job: its outputs are the names it binds, its inputs the names
        it reads (outputs of other %%comp cells and Promises are dependencies; other
        values are captured). The cell runs at the next make; until then its outputs
        are Promises, after it they are the values.

        Example::

            %%comp fit
            model = fit(data, alpha)
            score = evaluate(model)
        """
        words = line.split()
        if len(words) > 1:
            raise UsageError(f"usage: %%comp [JOB_ID] (one word, got {line.strip()!r})")
        self.session.cells.define(words[0] if words else None, cell)
