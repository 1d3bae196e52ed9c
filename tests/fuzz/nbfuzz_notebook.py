"""The notebook of the make fuzz test: parameters -> cell source -> a live namespace.

A ``Notebook`` is a frozen value (so a job can keep the version it was defined with). It
renders to cells of Python source that are executed like ipykernel cells: each in a fresh
``/tmp/ipykernel_nbfuzz/<n>.py`` file registered in linecache, in a ``__main__`` namespace.
The same source, executed apart with the probe quiet, is the oracle: plain Python, no cache.

Job values are small ints (and, for dynamic jobs, ``{"base": int, "kids": [ints]}``), so equal
values are equal results. Edits either change a value (``k``, ``a``, ``C``, ...), keep it
(``noop``: code that changes the AST but not the value) or do not count at all (``comment``:
comments, blank lines, spacing and redundant parentheses only).
"""

from __future__ import annotations

import itertools
import linecache
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import nbfuzz_probe as probe

from nbmake_ext.core.jobspec import default_job_id
from nbmake_ext.fingerprint import scan_args
from nbmake_ext.promise import Promise

MOD = 1009
HOWS = ("pos", "list", "nested", "dict")


@dataclass(frozen=True)
class Helper:
    a: int
    b: int
    calls: int | None = None  # index of a lower helper it calls
    uses_c: bool = False
    noop: int = 0
    comment: int = 0


@dataclass(frozen=True)
class GDef:
    """The function every dynamic job's children run."""

    helper: int | None = None
    k: int = 1
    fail_on: int | None = None  # the child index that raises
    noop: int = 0
    comment: int = 0


@dataclass(frozen=True)
class FDef:
    """The own code of one job's function ``f<slot>``."""

    k: int
    helper: int | None = None
    uses_c: bool = False
    mod: int = MOD
    noop: int = 0
    comment: int = 0
    fail: str | None = None   # "top"; for a dynamic job also "end" (after defining children)
    chain: bool = False       # dynamic: child i gets child i-1's promise
    child_ids: bool = True    # dynamic: explicit child ids (else default ids)


@dataclass(frozen=True)
class JobDef:
    slot: int
    dynamic: bool
    explicit: bool                       # explicit job_id J<slot>, else a default id
    x: int
    deps: tuple[tuple[int, str], ...]    # (slot of an earlier job, how it is passed)
    n: int                               # dynamic: number of children
    code: FDef


@dataclass(frozen=True)
class Notebook:
    C: int
    helpers: tuple[Helper, ...]
    g: GDef
    jobs: tuple[JobDef, ...]

    def job(self, slot: int) -> JobDef:
        return self.jobs[slot]


# --- rendering -----------------------------------------------------------------------------


def _style(comment: int) -> tuple[str, str, str, Callable[[str], str]]:
    """(lines before the body, trailing comment, operator spacing, wrap) for a comment
    variant: none of it changes the code's AST."""
    if comment == 0:
        return "", "", " ", lambda e: e
    kind = comment % 3
    if kind == 1:
        return f"    # edit {comment}\n", "", " ", lambda e: e
    if kind == 2:
        return f"\n    # edit {comment}: blank lines around\n\n", f"  # trailing {comment}", "", \
            lambda e: e
    return "", f"  # {comment}", "  ", lambda e: f"({e})"


def _noop(noop: int) -> str:
    return f"    _unused = {noop}\n" if noop else ""


def helper_source(i: int, h: Helper) -> str:
    pre, trail, sp, wrap = _style(h.comment)
    terms = f"x{sp}*{sp}{h.a}{sp}+{sp}{h.b}"
    if h.calls is not None:
        terms += f"{sp}+{sp}h{h.calls}(x)"
    if h.uses_c:
        terms += f"{sp}+{sp}C"
    return f"def h{i}(x):\n{pre}{_noop(h.noop)}    return {wrap(f'({terms}) % {MOD}')}{trail}\n"


def g_source(g: GDef) -> str:
    pre, trail, sp, wrap = _style(g.comment)
    fail = ""
    if g.fail_on is not None:
        fail = f"    if i == {g.fail_on}:\n        raise ValueError('g fails at ' + slot)\n"
    hv = f"h{g.helper}(v)" if g.helper is not None else f"v{sp}*{sp}2"
    expr = f"({hv}{sp}+{sp}{g.k}{sp}*{sp}i{sp}+{sp}probe.total(prev)) % {MOD}"
    return (f"def g(v, i, prev, slot):\n    probe.enter(slot)\n{pre}{_noop(g.noop)}{fail}"
            f"    return {wrap(expr)}{trail}\n")


def _base_expr(f: FDef, sp: str) -> str:
    base = f"h{f.helper}(x)" if f.helper is not None else f"x{sp}*{sp}3"
    base += f"{sp}+{sp}{f.k}"
    if f.uses_c:
        base += f"{sp}+{sp}C"
    return f"({base}{sp}+{sp}probe.total(deps, named)) % {f.mod}"


def job_source(j: JobDef) -> str:
    f = j.code
    pre, trail, sp, wrap = _style(f.comment)
    top = f"    raise ValueError('f{j.slot} is broken')\n" if f.fail == "top" else ""
    if not j.dynamic:
        return (f"def f{j.slot}(x, *deps, slot, **named):\n    probe.enter(slot)\n{pre}"
                f"{_noop(f.noop)}{top}    return {wrap(_base_expr(f, sp))}{trail}\n")
    job_id = ", job_id=ctx.job_id + '.c' + str(i)" if f.child_ids else ""
    chain = "        prev = kid\n" if f.chain else ""
    end = f"    raise ValueError('f{j.slot} breaks after defining its children')\n" \
        if f.fail == "end" else ""
    return (f"def f{j.slot}(ctx, x, *deps, slot, n, **named):\n    probe.enter(slot)\n{pre}"
            f"{_noop(f.noop)}{top}    base = {wrap(_base_expr(f, sp))}{trail}\n"
            "    kids = []\n    prev = 0\n    for i in range(n):\n"
            f"        kid = ctx.comp(g, base + i, i, prev, slot=slot + '.' + str(i){job_id})\n"
            f"        kids.append(kid)\n{chain}{end}"
            "    return {'base': base, 'kids': kids}\n")


def _arg_text(j: JobDef) -> tuple[list[str], list[str]]:
    args, kwargs = [repr(j.x)], []
    for slot, how in j.deps:
        p = f"P[{slot}]"
        if how == "pos":
            args.append(p)
        elif how == "list":
            args.append(f"[{p}]")
        elif how == "nested":
            args.append(f"({p}, [7, {p}])")
        else:
            kwargs.append(f"d{slot}={{'v': {p}}}")
    kwargs.append(f"slot='s{j.slot}'")
    if j.dynamic:
        kwargs.append(f"n={j.n}")
    if j.explicit:
        kwargs.append(f"job_id='J{j.slot}'")
    return args, kwargs


def registration_source(nb: Notebook) -> str:
    """The cell that defines the jobs, as a user would write it."""
    lines = ["P = {}"]
    for j in nb.jobs:
        args, kwargs = _arg_text(j)
        fn = "comp_dynamic" if j.dynamic else "comp"
        lines.append(f"P[{j.slot}] = {fn}(f{j.slot}, {', '.join(args + kwargs)})")
    return "\n".join(lines) + "\n"


def build_args(j: JobDef, lookup: Callable[[int], Any]) -> tuple[tuple, dict]:
    """The call ``registration_source`` makes, with ``lookup(slot)`` for each dependency."""
    args: list[Any] = [j.x]
    kwargs: dict[str, Any] = {}
    for slot, how in j.deps:
        v = lookup(slot)
        if how == "pos":
            args.append(v)
        elif how == "list":
            args.append([v])
        elif how == "nested":
            args.append((v, [7, v]))
        else:
            kwargs[f"d{slot}"] = {"v": v}
    kwargs["slot"] = f"s{j.slot}"
    if j.dynamic:
        kwargs["n"] = j.n
    return tuple(args), kwargs


def cells(nb: Notebook) -> list[tuple[str, str]]:
    """(cell key, source) in notebook order, without the registration cell."""
    out = [("import", "import nbfuzz_probe as probe\n"), ("C", f"C = {nb.C}\n")]
    out += [(f"h{i}", helper_source(i, h)) for i, h in enumerate(nb.helpers)]
    out.append(("g", g_source(nb.g)))
    out += [(f"f{j.slot}", job_source(j)) for j in nb.jobs]
    return out


def cell_of(nb: Notebook, key: str) -> str:
    return dict(cells(nb))[key]


# --- executing cells like ipykernel ---------------------------------------------------------

_serial = itertools.count()


@dataclass
class Kernel:
    """A namespace that cells run in, as in one kernel session."""

    ns: dict = field(default_factory=lambda: {"__name__": "__main__"})
    files: list[str] = field(default_factory=list)

    def run(self, src: str) -> None:
        filename = f"/tmp/ipykernel_nbfuzz_{os.getpid()}/{next(_serial)}.py"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        self.files.append(filename)
        exec(compile(src, filename, "exec"), self.ns)

    def forget_sources(self) -> None:
        for filename in self.files:
            linecache.cache.pop(filename, None)
        self.files.clear()


# --- the oracle -------------------------------------------------------------------------------

_oracle_ns: dict[Notebook, dict] = {}


def oracle_namespace(nb: Notebook) -> dict:
    ns = _oracle_ns.get(nb)
    if ns is None:
        if len(_oracle_ns) > 2000:
            _oracle_ns.clear()
        ns = {"__name__": "__main__"}
        for _, src in cells(nb):
            exec(compile(src, "<nbfuzz-oracle>", "exec"), ns)
        _oracle_ns[nb] = ns
    return ns


def clear_oracle_cache() -> None:
    _oracle_ns.clear()


@dataclass(frozen=True)
class ChildCall:
    """One ``ctx.comp(g, ...)`` a dynamic job made."""

    job_id: str
    index: int
    args: tuple        # may hold the Promise of the previous child
    kwargs: tuple      # sorted items
    deps: tuple[str, ...]

    @property
    def slot(self) -> str:
        return dict(self.kwargs)["slot"]

    def key(self) -> tuple:
        """What the product's argument fingerprint stands for."""
        return tuple(("P", a.job_id) if isinstance(a, Promise) else a for a in self.args) \
            + self.kwargs


class OracleContext:
    """What a dynamic job receives from the oracle: records the children it defines."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.children: list[ChildCall] = []

    def comp(self, func, *args, job_id=None, **kwargs):
        args_fp, deps = scan_args(args, kwargs)
        label = f"{func.__module__}.{func.__qualname__}"
        jid = job_id or default_job_id(func.__name__, label, args_fp, self.job_id)
        self.children.append(ChildCall(jid, len(self.children), args,
                                       tuple(sorted(kwargs.items())), deps))
        return Promise(jid)

    def comp_dynamic(self, *a, **k):  # pragma: no cover - the notebook never nests
        raise AssertionError("not used by the fuzz notebook")


@dataclass
class Outcome:
    ok: bool
    value: Any = None          # plain job: the value; dynamic: the template with promises
    children: list[ChildCall] | None = None  # dynamic jobs that got to define children


def resolve(value: Any, lookup: Callable[[str], Any]) -> Any:
    if isinstance(value, Promise):
        return lookup(value.job_id)
    if isinstance(value, dict):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, lookup) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, lookup) for v in value)
    return value


def run_job(nb: Notebook, j: JobDef, job_id: str, dep_value: Callable[[int], Any]) -> Outcome:
    """Run job ``j`` as version ``nb`` defines it, on the given values of its dependencies."""
    ns = oracle_namespace(nb)
    args, kwargs = build_args(j, dep_value)
    func = ns[f"f{j.slot}"]
    with probe.quiet():
        if j.dynamic:
            ctx = OracleContext(job_id)
            try:
                template = func(ctx, *args, **kwargs)
            except ValueError:
                return Outcome(False, None, ctx.children if j.code.fail == "end" else None)
            return Outcome(True, template, ctx.children)
        try:
            return Outcome(True, func(*args, **kwargs))
        except ValueError:
            return Outcome(False)


def run_child(nb: Notebook, call: ChildCall, value_of: Callable[[str], Any]) -> Outcome:
    ns = oracle_namespace(nb)
    args = resolve(call.args, value_of)
    with probe.quiet():
        try:
            return Outcome(True, ns["g"](*args, **dict(call.kwargs)))
        except ValueError:
            return Outcome(False)


def top_job_id(j: JobDef, id_of_slot: Callable[[int], str]) -> str:
    if j.explicit:
        return f"J{j.slot}"
    args, kwargs = build_args(j, lambda s: Promise(id_of_slot(s)))
    return default_job_id(f"f{j.slot}", f"__main__.f{j.slot}", scan_args(args, kwargs)[0])


def top_args_key(j: JobDef, id_of_slot: Callable[[int], str]) -> tuple:
    """What the arguments of the registered call stand for: keyword arguments in any
    order are the same call."""
    pos = tuple((id_of_slot(s), how) for s, how in j.deps if how != "dict")
    named = tuple(sorted((id_of_slot(s), how) for s, how in j.deps if how == "dict"))
    return (j.x, pos, named, j.n if j.dynamic else None)


def call_order(j: JobDef) -> list[int]:
    """The slots of a job's dependencies in the order its call holds them (positional
    arguments, then keyword arguments by name): the order of its dependencies."""
    pos = [s for s, how in j.deps if how != "dict"]
    named = sorted(s for s, how in j.deps if how == "dict")
    return list(dict.fromkeys(pos + named))


# --- what the code fingerprint of a job stands for ---------------------------------------------


def _strip(obj) -> tuple:
    """A definition without its comment variant: what its normalised AST stands for."""
    d = dict(obj.__dict__)
    d.pop("comment", None)
    return tuple(sorted(d.items()))


def _reach(nb: Notebook, start: int | None) -> set[int]:
    out: set[int] = set()
    h = start
    stack = [] if h is None else [h]
    while stack:
        h = stack.pop()
        if h in out:
            continue
        out.add(h)
        if nb.helpers[h].calls is not None:
            stack.append(nb.helpers[h].calls)
    return out


def _code_parts(nb: Notebook, own_label: str, own: tuple, helper: int | None, uses_c: bool,
                with_g: bool) -> dict[str, Any]:
    parts: dict[str, Any] = {own_label: own}
    reached = _reach(nb, helper)
    if with_g:
        parts["g"] = _strip(nb.g)
        reached |= _reach(nb, nb.g.helper)
    for h in reached:
        parts[f"h{h}"] = _strip(nb.helpers[h])
        uses_c = uses_c or nb.helpers[h].uses_c
    if uses_c:
        parts["global C"] = nb.C
    return parts


def job_code(nb: Notebook, j: JobDef) -> dict[str, Any]:
    """Labels of the tracked code a job's function reaches, each with what it stands for.
    References are read from bytecode: after a ``raise`` at the top nothing is reached."""
    if j.code.fail == "top":
        return {f"f{j.slot}": _strip(j.code)}
    return _code_parts(nb, f"f{j.slot}", _strip(j.code), j.code.helper, j.code.uses_c, j.dynamic)


def child_code(nb: Notebook) -> dict[str, Any]:
    return _code_parts(nb, "g", _strip(nb.g), nb.g.helper, False, False)
