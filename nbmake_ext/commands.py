"""One table of commands, read by the console (argparse) and the notebook magics.

Each command names its arguments once; ``run`` returns data (what the Python API returns),
``render`` turns that data into text.
"""

from __future__ import annotations

import argparse
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .core.options import totals_from_text
from .errors import BadUsage
from .ui import text


@dataclass(frozen=True)
class Arg:
    flags: tuple[str, ...]          # ("targets",) or ("--echo",)
    help: str
    nargs: str | None = None
    action: str | None = None
    type_: type | None = None
    metavar: str | None = None


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    example: str
    run: Callable[[Any, argparse.Namespace], Any]
    render: Callable[[Any, argparse.Namespace], str]
    args: tuple[Arg, ...] = field(default=())
    own_magic: bool = False         # also a line magic of its own (%make)
    notes: str = ""                 # more for its help (%make?, nbmake make -h)


TARGETS = Arg(("targets",), "job ids, shell-style globs (draw*), state words (todo stale "
              "running failed blocked done: a state no job is in selects nothing) or all "
              "(every job in the store); none means every job, but in a notebook the jobs "
              "its kernel defined and what they need (every job if it defined none)",
              nargs="*")
TARGETS_REQUIRED = Arg(("targets",), "job ids, globs, state words or all", nargs="+")
JOB = Arg(("job",), "a job id")
ECHO = Arg(("--echo",), "show the jobs' printed output as they run", action="store_true")


def _report(report: Any, ns: argparse.Namespace) -> str:
    return ""  # make and remake print their summary line as they end


#: A word that reads as a number (``8``, ``-3``, ``1.5``): in first place, parmake's N.
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def engine_count(value: Any, *, word: bool = True) -> int:
    """``value`` as a number of engines: a whole number >= 1, else ``BadUsage`` naming it.
    With ``word``, a word of a command line (``"8"``) counts as its number."""
    n: int | None = None
    if isinstance(value, str):
        if word and re.fullmatch(r"[0-9]+", value.strip()):
            n = int(value)
    elif not isinstance(value, bool):
        try:
            n = operator.index(value)
        except TypeError:
            pass
    if n is None or n < 1:
        raise BadUsage(f"parmake: the number of engines must be a whole number >= 1, "
                       f"not {value!r}")
    return n


def parmake_words(ns: argparse.Namespace) -> tuple[int | None, list[str]]:
    """`parmake [N | n=N] [TARGETS]`: a leading number or an n=N word is the engine count;
    returns it and the targets. A count that is not a whole number >= 1 is ``BadUsage``."""
    n, targets = ns.n, []
    if n is not None:
        n = engine_count(n)
    for i, word in enumerate(ns.targets):
        if i == 0 and _NUMBER.fullmatch(word):
            n = engine_count(word)
        elif word.startswith("n="):
            n = engine_count(word[2:])
        else:
            targets.append(word)
    return n, targets


def targets_of(name: str, ns: argparse.Namespace) -> list[str]:
    """The targets a command line names; when it names none, ``ns.scope`` if set (what no
    targets mean in a kernel: its own jobs, set by the magics), else none (every job)."""
    targets = parmake_words(ns)[1] if name == "parmake" else list(ns.targets)
    return targets or list(getattr(ns, "scope", None) or ())


def takes_targets(command: "Command") -> bool:
    return any(arg.flags == ("targets",) for arg in command.args)


def _observer(ns: argparse.Namespace) -> Any:
    return getattr(ns, "observer", None)  # the notebook's job board, when it shows one


def parmake_resources(ns: argparse.Namespace) -> dict[str, float]:
    """The totals ``--resources gpus=2,licence=3`` sets; ``BadUsage`` naming the culprit."""
    return totals_from_text(getattr(ns, "resources", None))


def _parmake(ctx: Any, ns: argparse.Namespace) -> Any:
    n, _ = parmake_words(ns)
    return ctx.parmake(*targets_of("parmake", ns), n=n, dask=ns.dask, observer=_observer(ns),
                       resources=parmake_resources(ns))


def _show(ctx: Any, ns: argparse.Namespace) -> Any:
    from .ui.board import Board

    return Board.from_context(ctx, targets_of("show", ns))


def _render_show(board: Any, ns: argparse.Namespace) -> str:
    from .ui import views

    return views.board_text(board)


JOB_OPTIONS = """\
Job options (keywords of comp and comp_dynamic; they never make a job run again):
  job_timeout=SECONDS     a job still running after that long is stopped and failed
  job_retries=N           a job that raises, or whose engine dies, runs up to N more times
  job_resources={"cpus": 2, "mem": "8GB", "gpus": 1, "licence": 1}
                          amounts the job holds while it runs; parmake starts a job only
                          while what the running jobs hold fits in its totals
                          (parmake --resources gpus=2,licence=3)
In a %%comp cell they are flags: %%comp fit --timeout 600 --retries 2 --mem 8GB --gpus 1
--cpus 2 --resource licence=1. Memory: 8GB, 512MB (decimal), 1.5GiB (binary) or bytes."""

COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("make", "run every job the targets need that is not up to date, one at a time",
            "make            # in a notebook its own jobs; in a shell every job\n"
            "make all        # every job in the store\n"
            "make report     # what 'report' needs\nmake 'fit-*' failed",
            lambda ctx, ns: ctx.make(*targets_of("make", ns), echo=ns.echo,
                                     observer=_observer(ns)), _report,
            (TARGETS, ECHO), True, JOB_OPTIONS),
    Command("parmake", "the same as make, on N engine processes (default: one per CPU)",
            "parmake 8            # 8 engines\nparmake n=4 'fit-*'\n"
            "parmake 8 --resources gpus=2,licence=3\n"
            "parmake --dask tcp://10.0.0.5:8786",
            _parmake, _report,
            (Arg(("targets",), "[N | n=N] (N a whole number >= 1), then targets: "
                 + TARGETS.help, nargs="*"), Arg(("-n",), "number of engines", type_=int),
             Arg(("--dask",), "run on the Dask distributed cluster at this scheduler address "
                 "(tcp://host:8786) instead of local engines"),
             Arg(("--resources",), "NAME=AMOUNT,...: totals of the resources the jobs "
                 "running at once may hold (gpus=2,licence=3,mem=64GB); unset: cpus = the "
                 "number of engines, mem = the machine's memory, gpus = the GPUs the kernel "
                 "can see, any other name 1", metavar="NAME=AMOUNT,...")), True, JOB_OPTIONS),
    Command("remake", "force the targets to run again, then make what depends on them",
            "remake 'draw*'",
            lambda ctx, ns: ctx.remake(*ns.targets, echo=ns.echo, observer=_observer(ns)), _report,
            (TARGETS_REQUIRED, ECHO), True),
    Command("clean", "forget the results (and dynamic children) of the targets",
            "clean failed",
            lambda ctx, ns: ctx.clean(*targets_of("clean", ns)),
            lambda ids, ns: text.render_cleaned(ids), (TARGETS,), True),
    Command("ls", "list jobs: id, state, function, duration, parent", "ls 'fit-*'",
            lambda ctx, ns: ctx.ls(*targets_of("ls", ns)), lambda rows, ns: text.render_ls(rows),
            (TARGETS,)),
    Command("details", "everything about one job: state, why, timings, traceback, output",
            "details report",
            lambda ctx, ns: ctx.details(ns.job), lambda d, ns: text.render_details(d), (JOB,)),
    Command("why", "the reasons a job is not up to date", "why report",
            lambda ctx, ns: ctx.why(ns.job), lambda r, ns: text.render_why(ns.job, r), (JOB,)),
    Command("stats", "counts per state and per function", "stats\nstats 'fit-*'",
            lambda ctx, ns: ctx.stats(*targets_of("stats", ns)),
            lambda s, ns: text.render_stats(s), (TARGETS,)),
    Command("show", "the job board: in a notebook the live widget, in a shell a summary "
            "with the failed and blocked jobs", "show\nshow 'fit-*' failed",
            _show, _render_show, (TARGETS,)),
]}

#: Commands that show the job board in a notebook.
BOARD_COMMANDS = frozenset({"make", "parmake", "remake", "show"})


def argparse_kwargs(arg: Arg) -> dict[str, Any]:
    """The keywords of ``add_argument`` for one Arg (the console and the magics share them)."""
    kwargs: dict[str, Any] = {"help": arg.help}
    if arg.nargs is not None:
        kwargs["nargs"] = arg.nargs
    if arg.action is not None:
        kwargs["action"] = arg.action
    if arg.type_ is not None:
        kwargs["type"] = arg.type_
    if arg.metavar is not None:
        kwargs["metavar"] = arg.metavar
    return kwargs


def add_arguments(parser: argparse.ArgumentParser, command: Command) -> None:
    for arg in command.args:
        parser.add_argument(*arg.flags, **argparse_kwargs(arg))
