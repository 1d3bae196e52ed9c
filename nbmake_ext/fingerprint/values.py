"""Stable digests of Python values: fingerprints of job arguments and results.

One encoder walks a value and feeds a blake2b hasher a type-tagged, self-delimiting byte
stream, so equal values give equal digests in every process: nothing depends on hash(),
id() or PYTHONHASHSEED. Dicts and sets are order-independent (their entries are encoded
apart, then sorted). Scalars, containers, numpy arrays, promises and the user's functions
have their own encodings; anything else is pickled (pickle, then cloudpickle).
"""

from __future__ import annotations

import io
import pickle
import sys
from collections.abc import Callable
from hashlib import blake2b
from operator import itemgetter
from struct import Struct
from types import FunctionType
from typing import Any

from ..files.paths import File
from ..promise import Promise

__all__ = ["Unpicklable", "counts_by_checksum", "digest", "result_digest", "scan_args",
           "scan_call"]

_Update = Callable[[Any], object]  # hasher.update, or list.append to buffer chunks

# Longer lists/tuples of one plain type are pickled in one go instead of walked per item.
_BULK_MIN = 64
_BULK_TYPES = (int, float, str)
_first = itemgetter(0)
_pack_d = Struct("<d").pack
_pack_dd = Struct("<dd").pack


class Unpicklable(Exception):
    """A value (or a part of it) cannot be pickled, so it cannot be fingerprinted or shipped."""

    def __init__(self, obj_type: str, reason: str, path: str = "value"):
        super().__init__(obj_type, reason, path)
        self.obj_type = obj_type
        self.reason = reason
        self.path = path
        self._steps: list[str] = []  # location inside the value, innermost first

    def _finish(self, root: str) -> None:
        self.path = root + "".join(reversed(self._steps))
        self.args = (self.obj_type, self.reason, self.path)

    def __str__(self) -> str:
        what = "argument " if self.path.startswith(("args", "kwargs")) else ""
        return f"{what}{self.path} cannot be pickled: {self.obj_type} ({self.reason})"


def digest(obj: Any) -> str:
    """32 hex chars identifying ``obj``'s value, the same in every process."""
    kind = type(obj)
    enc = _SCALARS.get(kind)
    if enc is not None:
        return blake2b(enc(obj), digest_size=16).hexdigest()
    if kind is Promise and obj.output is None:  # (a fan-in's arguments: thousands of them)
        return blake2b(b"P" + _enc_str(obj.job_id), digest_size=16).hexdigest()
    h = blake2b(digest_size=16)
    try:
        _feed(h.update, obj, {}, {})
    except Unpicklable as e:
        e._finish("value")
        raise
    except RecursionError:
        raise Unpicklable(_type_name(obj), "RecursionError: nested too deeply") from None
    return h.hexdigest()


# A job's result that is a numpy array of numbers with this much data or more counts by
# the checksum of its stored pickle (``result_digest``).
RESULT_BY_CHECKSUM_FROM = 1 << 20


def result_digest(value: Any, checksum: str) -> str:
    """The fingerprint of a job's result, whose pickle, as it is stored, has ``checksum``.

    A large numpy array of numbers counts by that checksum. Its digest would hash all its
    data once more, with blake2b: about 2 ms a megabyte, more than the checksum and the
    write of its file together. An array pickles to its dtype, shape and data, the same
    bytes every time; an equal array laid out in another memory order pickles otherwise,
    and so counts as a new result: its dependents run again, needlessly but never wrongly.
    Anything else counts by its digest."""
    return checksum[:32] if counts_by_checksum(value) else digest(value)


def counts_by_checksum(value: Any) -> bool:
    """Whether ``result_digest`` takes the checksum of this result (and nothing else)."""
    np = sys.modules.get("numpy")
    return (np is not None and type(value) is np.ndarray and not value.dtype.hasobject
            and value.nbytes >= RESULT_BY_CHECKSUM_FROM)


def scan_args(args: tuple, kwargs: dict) -> tuple[str, tuple[str, ...]]:
    """Fingerprint of a call's arguments and the ids of the promises nested in them.

    One walk does both. Promises are looked for in lists, tuples, dicts (keys and
    values), sets and frozensets, not inside other objects. kwargs order does not count.
    """
    fp, deps, _ = scan_call(args, kwargs)
    return fp, deps


def scan_call(args: tuple, kwargs: dict) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """``scan_args``, and the paths of the ``File``s nested in the arguments (found where
    promises are; a File counts by its path: its content is the job's input file). A File
    that knows the job that writes it adds that job to the dependencies."""
    if not kwargs and len(args) <= _BULK_MIN:
        # Most jobs: a few plain values. The same bytes in one piece (``_feed_seq`` of
        # scalars), so the same digest, with no walk.
        try:
            if len(args) == 1:
                encoded = _SCALARS[type(args[0])](args[0])
            else:
                encoded = b"".join([_SCALARS[type(x)](x) for x in args])
        except KeyError:
            pass
        else:
            return blake2b(b"(%s)" % encoded, digest_size=16).hexdigest(), (), ()
    h = blake2b(digest_size=16)
    deps: dict[str, None] = {}
    root = "args"
    try:
        _feed_seq(h.update, args, deps, {}, b"(", b")")
        if kwargs:
            root = "kwargs"
            _feed_dict(h.update, kwargs, deps, {})
    except Unpicklable as e:
        e._finish(root)
        raise
    except RecursionError:
        raise Unpicklable("object", "RecursionError: nested too deeply", root) from None
    if _FILES in deps:  # (a key no job id can be: files are in the dict under it)
        files = deps.pop(_FILES)
        return h.hexdigest(), tuple(deps), tuple(files)
    return h.hexdigest(), tuple(deps), ()


_FILES = ("files",)  # where _feed keeps the paths of Files, in the deps it fills


def _feed_file(up: _Update, f: File, deps: dict) -> None:
    files = deps.get(_FILES)
    if files is None:
        files = deps[_FILES] = {}
    files[str.__str__(f)] = None
    producer = getattr(f, "producer", None)
    if producer:
        deps[producer] = None
    up(b"F" + _enc_str(str.__str__(f)))


# --- scalars: tag + self-delimiting payload --------------------------------------------


def _enc_str(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return b"s%d:%s" % (len(b), b)


def _enc_int(i: int) -> bytes:
    try:
        return b"i%d;" % i
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        n = (i.bit_length() + 8) // 8
        return b"I%d:%s" % (n, i.to_bytes(n, "little", signed=True))


_SCALARS: dict[type, Callable[[Any], bytes]] = {
    str: _enc_str,
    int: _enc_int,
    float: lambda x: b"f" + _pack_d(x),
    bool: lambda x: b"T" if x else b"F",
    type(None): lambda x: b"N",
    bytes: lambda b: b"b%d:%s" % (len(b), b),
    complex: lambda z: b"c" + _pack_dd(z.real, z.imag),
}


# --- containers --------------------------------------------------------------------------
# A container is its tag, its items' encodings and an end mark. ``stack`` maps id -> depth
# of the lists, dicts and functions being walked: meeting one again is a cycle, encoded as
# a back reference. Tuples and sets cannot close a cycle (a tuple cannot hold itself, a set
# cannot hold a list or dict), so they are not tracked.


def _feed(up: _Update, obj: Any, deps: dict, stack: dict) -> None:
    t = type(obj)
    enc = _SCALARS.get(t)
    if enc is not None:
        up(enc(obj))
    elif t is tuple:
        _feed_seq(up, obj, deps, stack, b"(", b")")
    elif t is list or t is dict:
        oid = id(obj)
        if oid in stack:
            up(b"@%d;" % stack[oid])
            return
        stack[oid] = len(stack)
        if t is list:
            _feed_seq(up, obj, deps, stack, b"[", b"]")
        else:
            _feed_dict(up, obj, deps, stack)
        del stack[oid]
    elif t is File:
        _feed_file(up, obj, deps)
    elif t is Promise:
        deps[obj.job_id] = None
        # A %%comp output promise names one value of its job's result.
        up(b"P" + _enc_str(obj.job_id) + (b"" if obj.output is None else b"." + _enc_str(obj.output)))
    else:
        _feed_other(up, obj, t, deps, stack)


def _feed_seq(up: _Update, seq: Any, deps: dict, stack: dict, tag: bytes, end: bytes) -> None:
    if len(seq) > _BULK_MIN:
        kind = _uniform_type(seq)
        if kind in _BULK_TYPES:
            bulk = _bulk(seq)
            up(b"%s*%d:" % (tag, len(bulk)))
            up(bulk)
            return
        if kind is Promise and not any(p.output for p in seq):
            # Many results taken whole (a fan-in): each encoded as ``_feed`` does.
            ids = [p.job_id for p in seq]
            deps.update(dict.fromkeys(ids))
            up(tag)
            up(b"".join([b"Ps%d:%s" % (len(b), b)
                         for b in [i.encode("utf-8", "surrogatepass") for i in ids]]))
            up(end)
            return
    up(tag)
    scalars = _SCALARS
    # Items as ``_feed`` encodes them, fed in one update per run of scalars and plain
    # promises (a job taking 100,000 results hashes one buffer, not 100,000 pieces).
    chunks: list[bytes] = []
    try:
        for x in seq:
            t = type(x)
            enc = scalars.get(t)
            if enc is not None:
                chunks.append(enc(x))
            elif t is Promise and x.output is None:
                deps[x.job_id] = None
                chunks.append(b"P" + _enc_str(x.job_id))
            else:
                if chunks:
                    up(b"".join(chunks))
                    chunks.clear()
                _feed(up, x, deps, stack)
    except Unpicklable as e:
        e._steps.append(f"[{_index(seq, x)}]")
        raise
    if chunks:
        up(b"".join(chunks))
    up(end)


def _index(seq: Any, item: Any) -> int:
    return next(i for i, x in enumerate(seq) if x is item)


def _bulk(seq: Any) -> bytes:
    """One pickle of a long homogeneous list of ints, floats or strs."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, 5)
    pickler.fast = True  # no memo: equal strs pickle alike whether or not they are one object
    pickler.dump(seq)
    return buf.getvalue()


def _uniform_type(items: Any) -> type | None:
    t0 = type(next(iter(items)))
    for x in items:
        if type(x) is not t0:
            return None
    return t0


def _feed_dict(up: _Update, d: dict, deps: dict, stack: dict) -> None:
    scalars = _SCALARS
    entries: list = []  # each: the encoded key, then the value's chunks
    k = None
    try:
        for k, v in d.items():
            enc = scalars.get(type(k))
            if enc is not None:
                kb = enc(k)
            else:
                chunks: list = []
                _feed(chunks.append, k, deps, stack)
                kb = b"".join(chunks)
            enc = scalars.get(type(v))
            if enc is not None:
                entries.append((kb, enc(v)))
            else:
                chunks = [kb]
                _feed(chunks.append, v, deps, stack)
                entries.append(chunks)
    except Unpicklable as e:
        e._steps.append(f"[{k!r}]")
        raise
    if len(entries) > 1:
        # Encodings are prefix-free, so sorting by encoded key is a value-based order.
        entries.sort(key=_first)
    up(b"{")
    for entry in entries:
        for chunk in entry:
            up(chunk)
    up(b"}")


def _feed_set(up: _Update, s: Any, deps: dict, stack: dict, tag: bytes) -> None:
    if len(s) > _BULK_MIN and _uniform_type(s) in (int, str):  # sortable as they are
        bulk = _bulk(sorted(s))
        up(b"%s*%d:" % (tag, len(bulk)))
        up(bulk)
        return
    encoded = []
    try:
        for x in s:
            chunks: list = []
            _feed(chunks.append, x, deps, stack)
            encoded.append(b"".join(chunks))
    except Unpicklable as e:
        e._steps.append("{element}")
        raise
    encoded.sort()
    up(tag)
    for b in encoded:
        up(b)
    up(b">")


def _feed_other(up: _Update, obj: Any, t: type, deps: dict, stack: dict) -> None:
    if t is set:
        return _feed_set(up, obj, deps, stack, b"<")
    if t is frozenset:
        return _feed_set(up, obj, deps, stack, b"~")
    if t is FunctionType:
        return _feed_function(up, obj, deps, stack)
    np = sys.modules.get("numpy")  # never import numpy ourselves
    if np is not None:
        if t is np.ndarray and not obj.dtype.hasobject:
            return _feed_array(up, obj, np)
        if isinstance(obj, np.generic) and not obj.dtype.hasobject:
            raw = obj.tobytes()
            up(b"g" + _enc_str(_dtype_text(obj.dtype)) + b"%d:%s" % (len(raw), raw))
            return
    if isinstance(obj, (list, tuple, dict, set, frozenset)):
        # Subclasses (namedtuples, OrderedDict, ...): class name, contents, instance dict.
        up(b"x" + _enc_str(f"{t.__module__}.{t.__qualname__}"))
        oid = id(obj)
        if oid in stack:
            up(b"@%d;" % stack[oid])
            return
        stack[oid] = len(stack)
        if isinstance(obj, dict):
            _feed_dict(up, obj, deps, stack)
        elif isinstance(obj, (set, frozenset)):
            _feed_set(up, obj, deps, stack, b"<")
        else:
            _feed_seq(up, obj, deps, stack, b"[", b"]")
        extra = getattr(obj, "__dict__", None)
        up(b"N" if not extra else b"d")
        if extra:
            _feed_dict(up, extra, deps, stack)
        del stack[oid]
        return
    raw = _pickle(obj)
    up(b"p%d:" % len(raw))
    up(raw)


def _dtype_text(dtype: Any) -> str:
    # dtype.str alone ('|V12') hides the fields of structured dtypes.
    return dtype.str if dtype.fields is None and dtype.subdtype is None else repr(dtype.descr)


def _feed_array(up: _Update, a: Any, np: Any) -> None:
    up(b"A" + _enc_str(_dtype_text(a.dtype)) + b"%d:" % a.ndim + b"%d," * a.ndim % a.shape)
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    if a.size and a.dtype.itemsize:
        up(a.reshape(-1).view(np.uint8))  # the raw bytes, without a copy


def _feed_function(up: _Update, f: FunctionType, deps: dict, stack: dict) -> None:
    """Functions of the user's code count by their code fingerprint, closure and defaults:
    pickling a notebook function by value would embed its temporary cell file name."""
    from .code import code_fingerprint, function_label, is_tracked

    if not is_tracked(f):
        raw = _pickle(f)  # installed functions pickle by reference: module and name
        up(b"p%d:" % len(raw))
        up(raw)
        return
    oid = id(f)
    if oid in stack:  # a recursive inner function holds itself in its closure
        up(b"@%d;" % stack[oid])
        return
    stack[oid] = len(stack)
    up(b"z" + _enc_str(function_label(f)) + _enc_str(code_fingerprint(f).digest))
    name = ""
    try:
        for name, cell in zip(f.__code__.co_freevars, f.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                up(b"E")
                continue
            _feed(up, value, deps, stack)
        name = "__defaults__"
        _feed(up, f.__defaults__, deps, stack)
        name = "__kwdefaults__"
        _feed(up, f.__kwdefaults__, deps, stack)
    except Unpicklable as e:
        e._steps.append(f".{name}" if name.startswith("__") else f".<closure {name}>")
        raise
    del stack[oid]


def _pickle(obj: Any) -> bytes:
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:
        pass
    try:
        import cloudpickle

        return cloudpickle.dumps(obj, protocol=5)
    except Exception as e:
        raise Unpicklable(_type_name(obj), f"{type(e).__name__}: {e}") from e


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
