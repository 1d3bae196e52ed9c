"""What a ``%%comp`` cell binds and reads (pure: source text in, names out).

Outputs are the names the cell binds at top level, in the order they are first bound.
Inputs are the names it reads before binding them, and the free names of functions and
lambdas it defines that the cell does not bind at all (a function reads the cell's
namespace when it is called, so it may use what the cell binds after defining it).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class CellNames:
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]


def analyse(source: str) -> CellNames:
    tree = ast.parse(source)
    walker = _TopLevel()
    for stmt in tree.body:
        walker.visit(stmt)
    for name in walker.called_later:
        walker._read(name)
    return CellNames(tuple(walker.outputs), tuple(walker.inputs))


class _TopLevel(ast.NodeVisitor):
    """Walks top-level statements in execution order, tracking what is bound so far."""

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.outputs: dict[str, None] = {}
        self.inputs: dict[str, None] = {}
        self.called_later: dict[str, None] = {}  # free names of functions and lambdas

    def _read(self, name: str) -> None:
        if name not in self.bound:
            self.inputs[name] = None

    def _bind(self, name: str) -> None:
        self.bound.add(name)
        self.outputs[name] = None

    # -- names -----------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        elif isinstance(node.ctx, ast.Del):
            self._read(node.id)
            self.bound.discard(node.id)
            self.outputs.pop(node.id, None)
        else:
            self._bind(node.id)

    # Right-hand sides are read before targets are bound.
    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
        self.visit(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        # ``except E as err`` binds err for the handler only: Python deletes it after.
        if node.type is not None:
            self.visit(node.type)
        temporary = node.name is not None and node.name not in self.bound
        if temporary:
            self.bound.add(node.name)
        for stmt in node.body:
            self.visit(stmt)
        if temporary:
            self.bound.discard(node.name)

    # ``match`` patterns bind by plain strings, not Name nodes.
    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name is not None:
            self._bind(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name is not None:
            self._bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        if node.rest is not None:
            self._bind(node.rest)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._bind(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._bind(alias.asname or alias.name)

    # -- nested scopes: their free names are reads of the cell's namespace ---------------
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for expr in [*node.decorator_list, node.returns]:
            if expr is not None:
                self.visit(expr)
        self._visit_signature(node.args)
        self.called_later.update(dict.fromkeys(_free_names(node)))
        self._bind(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        for name in _free_names(node):
            self._read(name)
        self._bind(node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_signature(node.args)
        self.called_later.update(dict.fromkeys(_free_names(node)))

    def _comprehension(self, node) -> None:
        # The first iterable is evaluated in the enclosing scope; the rest is its own scope.
        self.visit(node.generators[0].iter)
        for name in _free_names(node):
            self._read(name)
        for sub in ast.walk(node):  # ``(last := y) for y in ...`` binds last in the cell
            if isinstance(sub, ast.NamedExpr):
                self._bind(sub.target.id)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension

    def _visit_signature(self, args: ast.arguments) -> None:
        """Defaults and annotations are evaluated where the function is defined."""
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        annotations = [p.annotation for p in params if p is not None]
        for expr in [*args.defaults, *args.kw_defaults, *annotations]:
            if expr is not None:
                self.visit(expr)

    def visit_Global(self, node: ast.Global) -> None:
        pass


def _free_names(node: ast.AST) -> list[str]:
    """Names a nested scope reads that it does not bind itself (one level of nesting is
    resolved through symtable-like bookkeeping: params and assignments are local)."""
    local: set[str] = set()
    loads: dict[str, None] = {}
    body: list[ast.AST]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = node.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
            if arg is not None:
                local.add(arg.arg)
        body = node.body if isinstance(node.body, list) else [node.body]
    elif isinstance(node, ast.ClassDef):
        body = node.body
    else:  # comprehension
        body = [node]
    declared_global: set[str] = set()
    for sub in body:
        for n in ast.walk(sub):
            if isinstance(n, ast.Name):
                if isinstance(n.ctx, ast.Load):
                    loads[n.id] = None
                else:
                    local.add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if n is not node:
                    local.add(n.name)
            elif isinstance(n, ast.arg):
                local.add(n.arg)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                for alias in n.names:
                    local.add((alias.asname or alias.name).split(".")[0])
            elif isinstance(n, ast.Global):
                declared_global.update(n.names)
    local -= declared_global
    return [name for name in loads if name not in local]


def default_job_id(outputs: tuple[str, ...], code_digest: str) -> str:
    return "cell-" + ("+".join(outputs) if outputs else code_digest[:8])
