"""The notebook's face: ``%%comp`` cells and the ``%nbmake`` / ``%make`` / ... magics.

Magics are thin: they parse arguments (argparse built from the one command table, via
IPython's ``magic_arguments`` so that ``%make?`` shows usage and an example) and call the
kernel's session.
"""

from __future__ import annotations

import argparse
import inspect
import shlex
from typing import TYPE_CHECKING

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display

from ..commands import (BOARD_COMMANDS, COMMANDS, Command, argparse_kwargs, parmake_resources,
                        parmake_words)
from ..core.options import (CPUS, GPUS, MEM, NO_OPTIONS, JobOptions, OptionError,
                            amount_from_text, assignment, parse_size, retries_from_text,
                            timeout_from_text)
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
    if command.notes:
        magic.__doc__ += "\n" + command.notes + "\n"
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
            value = "" if arg.action else f" {arg.metavar or name.lstrip('-').upper()}"
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


def _flag(parse):
    """An argparse type from a parser of core/options.py: its complaint names the flag."""

    def convert(text: str):
        try:
            return parse(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _amount(name: str):
    return _flag(lambda text: amount_from_text(name, text))


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
                parmake_resources(args)
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

    @magic_arguments.magic_arguments(name="%comp")  # the usage line reads %%comp
    @magic_arguments.argument("job_id", nargs="?", metavar="JOB_ID",
                              help="the job's id (default: cell- and the names it binds)")
    @magic_arguments.argument("--timeout", metavar="SECONDS", type=_flag(timeout_from_text),
                              help="stop the job and fail it if it runs longer than this")
    @magic_arguments.argument("--retries", metavar="N", type=_flag(retries_from_text),
                              help="run it up to N more times when it raises or its "
                                   "engine dies")
    @magic_arguments.argument("--mem", metavar="SIZE", type=_flag(parse_size),
                              help="memory it holds while it runs: 8GB, 512MB (decimal), "
                                   "1.5GiB (binary) or bytes")
    @magic_arguments.argument("--gpus", metavar="N", type=_amount(GPUS),
                              help="GPUs it holds while it runs")
    @magic_arguments.argument("--cpus", metavar="N", type=_amount(CPUS),
                              help="CPUs it holds while it runs")
    @magic_arguments.argument("--resource", metavar="NAME=AMOUNT", action="append",
                              type=_flag(assignment), default=[],
                              help="an amount of any resource it holds while it runs "
                                   "(licence=1); repeat for more")
    @cell_magic
    def comp(self, line: str, cell: str):
        """Make this cell a job: its outputs are the names it binds, its inputs the names
        it reads (outputs of other %%comp cells and Promises are dependencies; other
        values are captured). The cell runs at the next make; until then its outputs
        are Promises, after it they are the values. The flags are the job's options
        (never a reason to run it again): what ``job_timeout``, ``job_retries`` and
        ``job_resources`` are to ``comp``.

        Example::

            %%comp fit --timeout 600 --retries 2 --mem 8GB --gpus 1
            model = fit(data, alpha)
            score = evaluate(model)
        """
        job_id, options = comp_flags(self.comp, line)
        self.session.cells.define(job_id, cell, options)


def comp_flags(magic, line: str) -> tuple[str | None, JobOptions]:
    """The job id and the options of a ``%%comp`` line; ``UsageError`` naming a bad flag."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{exc}: {line}") from None
    args, extra = magic.parser.parse_known_args(words)
    if extra:
        if any(w.startswith("-") for w in extra):
            raise UsageError(f"%%comp: unrecognized arguments: {' '.join(extra)} (flags: "
                             "--timeout --retries --mem --gpus --cpus --resource)")
        raise UsageError(f"usage: %%comp [JOB_ID] [--timeout SECONDS] ... (one word for "
                         f"the id, got {line.strip()!r})")
    resources: dict[str, float] = {}
    given = [(MEM, args.mem), (GPUS, args.gpus), (CPUS, args.cpus), *args.resource]
    for name, amount in given:
        if amount is None:
            continue
        if name in resources:
            raise UsageError(f"%%comp: the resource {name!r} is given twice")
        resources[name] = amount
    options = JobOptions(args.timeout, args.retries or 0, dict(sorted(resources.items())))
    return args.job_id, options if options else NO_OPTIONS
