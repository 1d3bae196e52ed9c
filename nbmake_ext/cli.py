"""The console: ``python -m nbmake_ext [--store DIR] CMD ...`` (also ``nbmake``).

Exit codes: 0 done; 1 a target failed or is blocked; 2 bad usage (unknown target, ...);
130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .commands import COMMANDS, add_arguments
from . import __version__
from .errors import InternalError, JobsFailed, NbmakeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbmake", description="make for Jupyter notebooks: inspect and run a job store.")
    parser.add_argument("--store", metavar="DIR",
                        help="the store directory (default: $NBMAKE_STORE or ./.nbmake)")
    parser.add_argument("--version", action="version", version=f"nbmake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help,
                           epilog="example:\n  " + cmd.example.replace("\n", "\n  ")
                           + (f"\n\n{cmd.notes}" if cmd.notes else ""),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(p, cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
