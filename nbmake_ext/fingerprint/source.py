"""The normalised code of one code object: its def or lambda found in the source (without
the tokenizer when possible), digested as AST, or as bytecode when the source is missing."""

from __future__ import annotations

import ast
import dis
import inspect
import linecache
import re
import sys
import textwrap
import weakref
from dataclasses import dataclass
from hashlib import blake2b
from types import CodeType
from typing import Any

from .values import Unpicklable
from .values import digest as value_digest


def _hex(*chunks: bytes) -> str:
    h = blake2b(digest_size=16)
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()



# --- the code of one code object ----------------------------------------------------------


@dataclass(frozen=True)
class _CodeInfo:
    digest: str  # normalised source, or normalised bytecode when the source is unavailable
    globals: tuple[str, ...]  # names read as globals by the code and its nested code
    names: tuple[str, ...]  # all co_names: attribute candidates on referenced modules
    lambda_text: str | None  # a lambda's normalised source, for its label


# Keyed by identity, not by code equality: equal code objects can come from sources that
# differ outside the code object (defaults, decorators) or from a file without source.
_code_infos: dict[int, tuple[weakref.ref, _CodeInfo]] = {}

_DEF_START = re.compile(r"^(\s*def\s)|(\s*async\s+def\s)|(.*(?<!\w)lambda(:|\s))|^(\s*@)")
_NESTED_NAMES = {"<lambda>", "<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"}
_CO_OPTIMIZED = 0x1
_CO_HAS_DOCSTRING = 0x4000000  # Python >= 3.14 flags the docstring instead of co_consts[0]
_GLOBAL_OPS = {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS", "STORE_GLOBAL", "DELETE_GLOBAL"}


def _code_info(code: CodeType) -> _CodeInfo:
    key = id(code)
    hit = _code_infos.get(key)
    if hit is not None and hit[0]() is code:
        return hit[1]
    globals_: dict[str, None] = {}
    names: dict[str, None] = {}
    _collect_names(code, globals_, names)
    node = _source_node(code)
    if node is None:
        own, text = "bytecode:" + _bytecode_digest(code), None
    else:
        text = ast.unparse(node)[:80] if isinstance(node, ast.Lambda) else None
        own = "ast:" + _ast_digest(node)
    info = _CodeInfo(_hex(own.encode()), tuple(globals_), tuple(names), text)

    def drop(ref: weakref.ref, key: int = key) -> None:
        if _code_infos.get(key, (None,))[0] is ref:
            del _code_infos[key]

    _code_infos[key] = (weakref.ref(code, drop), info)
    return info


def _collect_names(code: CodeType, globals_: dict[str, None], names: dict[str, None]) -> None:
    for ins in dis.get_instructions(code):
        if ins.opname in _GLOBAL_OPS and isinstance(ins.argval, str):
            globals_[ins.argval] = None
    names.update(dict.fromkeys(code.co_names))
    for const in code.co_consts:
        if isinstance(const, CodeType):
            _collect_names(const, globals_, names)


def _source_node(code: CodeType) -> ast.AST | None:
    """The def/lambda node of ``code`` parsed from its source, None if the source is
    missing or does not match (a file edited since it was loaded)."""
    filename = code.co_filename
    linecache.checkcache(filename)  # drops edited files; ipykernel cells are kept
    lines = linecache.getlines(filename)
    lnum = code.co_firstlineno - 1
    if not lines or not 0 <= lnum < len(lines):
        return None
    while lnum > 0 and not _DEF_START.match(lines[lnum]):
        lnum -= 1
    if code.co_name != "<lambda>":
        parsed = _parse_block(_def_block(lines, lnum))
        if parsed is not None and _def_of(parsed[0], code) is not None:
            return _def_of(parsed[0], code)
    try:
        block = "".join(inspect.getblock(lines[lnum:]))
    except Exception:  # tokenize errors: a stale or partial block
        return None
    parsed = _parse_block(block)
    if parsed is None:
        return None
    tree, margin = parsed
    if code.co_name == "<lambda>":
        return _find_lambda(tree, code, lnum, margin)
    return _def_of(tree, code)


def _def_block(lines: list[str], lnum: int) -> str:
    """The lines of the def at ``lnum`` (from its decorators) up to the next line as little
    indented: the block ``inspect.getblock`` finds, without tokenizing (whose first use
    compiles a large regular expression). A line that ends the block early is inside an
    open bracket or string, so the block does not parse and the caller tokenizes."""
    indent = len(lines[lnum]) - len(lines[lnum].lstrip())
    end = lnum
    while end < len(lines) and not lines[end].lstrip().startswith(("def ", "async ")):
        end += 1  # decorators
    end += 1
    while end < len(lines):
        line = lines[end]
        text = line.strip()
        if text and not text.startswith("#") and len(line) - len(line.lstrip()) <= indent:
            break
        end += 1
    return "".join(lines[lnum:end])


def _def_of(tree: ast.Module, code: CodeType) -> ast.AST | None:
    first = tree.body[0] if tree.body else None
    if isinstance(first, (ast.FunctionDef, ast.AsyncFunctionDef)) and first.name == code.co_name:
        return first
    return None


def _parse_block(block: str) -> tuple[ast.Module, int] | None:
    """The parsed block and the number of columns its dedent removed."""
    dedented = textwrap.dedent(block)
    try:
        tree = ast.parse(dedented)
    except SyntaxError:
        pass
    else:
        return tree, len(block.split("\n", 1)[0]) - len(dedented.split("\n", 1)[0])
    try:  # dedent fails on multi-line strings less indented than the code
        wrapper = ast.parse("if 1:\n" + block).body[0]
    except SyntaxError:
        return None
    if not isinstance(wrapper, ast.If):
        return None
    tree = ast.Module(body=wrapper.body, type_ignores=[])
    ast.increment_lineno(tree, -1)
    return tree, 0


def _find_lambda(tree: ast.AST, code: CodeType, lnum: int, margin: int) -> ast.Lambda | None:
    """The lambda node of ``code``; block lines count from 1 at file line ``lnum + 1``."""
    line = code.co_firstlineno - lnum
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda) and n.lineno == line]
    if len(found) > 1:  # several lambdas on one line: those with the same parameters
        nargs = code.co_argcount + code.co_kwonlyargcount
        params = code.co_varnames[:nargs]
        found = [n for n in found if tuple(a.arg for a in (*n.args.posonlyargs, *n.args.args,
                                                           *n.args.kwonlyargs)) == params]
    if len(found) <= 1:
        return found[0] if found else None
    # Still ambiguous: the innermost lambda around the code's first positioned
    # instruction after RESUME (Python >= 3.11).
    positions = getattr(code, "co_positions", None)
    if positions is None:
        return None
    for pos_line, _, col, _ in positions():
        if pos_line is None or col is None or (pos_line == code.co_firstlineno and col == 0):
            continue
        here = (pos_line - lnum, col - margin)
        inside = [n for n in found if (n.lineno, n.col_offset) <= here <= (n.end_lineno, n.end_col_offset)]
        return min(inside, key=lambda n: (n.end_lineno, n.end_col_offset)) if inside else None
    return None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:]
    return tree


def _ast_digest(node: ast.AST) -> str:
    dump = ast.dump(_strip_docstrings(node), annotate_fields=False, include_attributes=False)
    return _hex(dump.encode("utf-8", "surrogatepass"))


def _bytecode_digest(code: CodeType) -> str:
    h = blake2b(digest_size=16)
    _feed_code(h.update, code)
    return h.hexdigest()


def _feed_code(up: Any, code: CodeType) -> None:
    """Bytecode without line numbers, file names or the docstring."""
    consts = list(code.co_consts)
    if consts and _has_docstring(code):
        consts[0] = None
    header = (code.co_name, code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
              code.co_flags & ~_CO_HAS_DOCSTRING, code.co_names, code.co_varnames,
              code.co_freevars, code.co_cellvars)
    up(value_digest(header).encode())
    up(b"%d:%s" % (len(code.co_code), code.co_code))
    up(getattr(code, "co_exceptiontable", b""))
    for const in consts:
        if isinstance(const, CodeType):
            up(b"C")
            _feed_code(up, const)
        else:
            try:
                up(value_digest(const).encode())
            except Unpicklable:  # consts are literals; be safe anyway
                up(repr(const).encode("utf-8", "surrogatepass"))


def _has_docstring(code: CodeType) -> bool:
    if sys.version_info >= (3, 14):
        return bool(code.co_flags & _CO_HAS_DOCSTRING)
    # Up to 3.13 a def's co_consts[0] is its docstring or None.
    return bool(code.co_flags & _CO_OPTIMIZED) and code.co_name not in _NESTED_NAMES \
        and isinstance(code.co_consts[0], str)
