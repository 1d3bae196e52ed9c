"""The console: ``python -m nbmake_ext [--store DIR] CMD ...`` (also ``nbmake``).

Exit codes: 0 done; 1 a target failed or is blocked; 2 bad usage (unknown target, ...);
130 interrupted.

What a command prints (the summary line of a make, tables, reasons) is its output. What the
library says along the way goes through ``logging`` (loggers under ``nbmake_ext``): warnings
by default, ``-v`` adds what it does (engines replaced...), ``-vv`` the details. On a
terminal, make, parmake and remake show a live progress line on stderr while they run
(``ui/progress_line.py``; off with ``--no-progress`` or ``NBMAKE_PROGRESS=0``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Iterator

from .commands import COMMANDS, add_arguments
from . import __version__
from .errors import InternalError, JobsFailed, NbmakeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbmake", description="make for Jupyter notebooks: inspect and run a job store.")
    parser.add_argument("--store", metavar="DIR",
                        help="the store directory (default: $NBMAKE_STORE or ./.nbmake)")
    parser.add_argument("--version", action="version", version=f"nbmake {__version__}")
    _console_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help,
                           epilog="example:\n  " + cmd.example.replace("\n", "\n  ")
                           + (f"\n\n{cmd.notes}" if cmd.notes else ""),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(p, cmd)
        _console_options(p)  # also after the command: `nbmake make -v`
    return parser


def _console_options(parser: argparse.ArgumentParser) -> None:
    # No defaults: where they are not given, the namespace has no attribute (the one given
    # before the command is not undone by the command's parser).
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="say more on stderr: -v what nbmake does (engines replaced, "
                             "...), -vv the details")
    parser.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS,
                        help="no live progress line on the terminal during make, parmake, "
                             "remake (also: NBMAKE_PROGRESS=0)")


class _Stderr(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record (the live line redirects it while
    it shows, so that records print above it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _Format(logging.Formatter):
    def __init__(self, verbosity: int):
        super().__init__()
        self.verbosity = verbosity

    def format(self, record: logging.LogRecord) -> str:
        where = ""
        if self.verbosity >= 2:  # which part of nbmake_ext said it
            where = f"[{record.name.removeprefix('nbmake_ext.')}] "
        text = f"nbmake: {record.levelname.lower()}: {where}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


@contextlib.contextmanager
def console_logging(verbosity: int = 0) -> Iterator[None]:
    """The console's logging, while the block runs: records of the ``nbmake_ext`` loggers
    go to stderr, from WARNING (default), INFO (``-v``) or DEBUG (``-vv``) up. The logger
    is left as it was afterwards (``main`` may be called from Python)."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 \
        else logging.DEBUG
    logger = logging.getLogger("nbmake_ext")
    saved = logger.level, logger.propagate
    handler = _Stderr()
    handler.setFormatter(_Format(verbosity))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with console_logging(getattr(args, "verbose", 0) or 0):
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    # `nbmake ls | head` should end quietly, like any console tool.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # Jobs whose functions live in modules next to the store's notebook must import.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from .context import Context, default_store_path

    command = COMMANDS[args.command]
    path = Path(args.store).absolute() if args.store else default_store_path()
    if not path.exists():
        # The console inspects and runs a store a notebook or script made: never invent one.
        print(f"nbmake: no store at {path} (pass --store DIR or set $NBMAKE_STORE)",
              file=sys.stderr)
        return 2
    try:
        ctx = Context(path)
    except NbmakeError as exc:
        print(f"nbmake: {exc}", file=sys.stderr)
        return 2
    ctx.progress = not getattr(args, "no_progress", False)
    try:
        result = command.run(ctx, args)
        out = command.render(result, args)
        if out:
            print(out)
        return 0
    except JobsFailed as exc:
        print("\n".join(exc._render_traceback_()), file=sys.stderr)
        return 1
    except InternalError as exc:  # a bug: the whole traceback, for the report
        print("\n".join(exc._render_traceback_()), file=sys.stderr)
        return 3
    except NbmakeError as exc:
        print(f"nbmake: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nbmake: interrupted", file=sys.stderr)
        return 130
    finally:
        ctx.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
