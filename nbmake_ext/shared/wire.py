"""Messages between the kernel and its engines: framing and signing.

A message is two ZeroMQ frames, ``[signature, body]``. The body holds a short ASCII
header ``kind seq`` and the payloads (bytes: pickles, for the kinds that carry objects),
each with its length. The signature is an HMAC-SHA256, under a per-session key, over the
whole body, so nothing (header or payload) is unpickled before it is verified. One body
rather than a frame per part: every frame costs a send and a receive on each side, and
small messages are the common case. Each sender numbers its messages; a receiver drops
any message whose number it has already seen (a replay), and counts what it dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

KEY_BYTES = 32
_COUNT = struct.Struct("!I")
_SIZE = struct.Struct("!Q")


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.digest(key, body, hashlib.sha256)


def _sizes(count: int) -> struct.Struct:
    """The sizes of ``count`` parts, packed in one call (a message of many outcomes has
    dozens of parts)."""
    packer = _SIZES.get(count)
    if packer is None:
        packer = struct.Struct(f"!{count}Q")
        if len(_SIZES) < 1024:
            _SIZES[count] = packer
    return packer


_SIZES: dict[int, struct.Struct] = {}


def pack(header: bytes, payloads: tuple[bytes, ...]) -> bytes:
    parts = [header, *payloads]
    sizes = _sizes(len(parts)).pack(*map(len, parts))
    return b"".join([_COUNT.pack(len(parts)), sizes, *parts])


def unpack(body: bytes) -> list[bytes] | None:
    """[header, *payloads], or None when the body is malformed."""
    try:
        (count,) = _COUNT.unpack_from(body, 0)
        at = _COUNT.size
        if count > (len(body) - at) // _SIZE.size:
            return None  # (more sizes than the body could hold)
        sizes = _sizes(count).unpack_from(body, at)
    except struct.error:
        return None
    at += count * _SIZE.size
    if count < 1 or at + sum(sizes) != len(body):
        return None
    parts = []
    for size in sizes:
        parts.append(body[at:at + size])
        at += size
    return parts


class Signer:
    """Numbers and signs outgoing messages of one sender."""

    def __init__(self, key: bytes):
        self._key = key
        self._seq = 0

    def frames(self, kind: str, *payloads: bytes) -> list[bytes]:
        self._seq += 1
        body = pack(f"{kind} {self._seq}".encode(), payloads)
        return [_mac(self._key, body), body]


@dataclass
class Verifier:
    """Checks incoming messages: signature first, then that the number is new."""

    key: bytes
    dropped: int = 0
    _last: dict[bytes, int] = field(default_factory=dict)

    def open(self, frames: list[bytes], peer: bytes = b"") -> tuple[str, list[bytes]] | None:
        """(kind, payloads) of a valid message, else None (and counted as dropped)."""
        if len(frames) != 2:
            self.dropped += 1
            return None
        signature, body = frames
        if not hmac.compare_digest(signature, _mac(self.key, body)):
            self.dropped += 1
            return None
        parts = unpack(body)
        try:
            if parts is None:
                raise ValueError("malformed body")
            kind, seq_text = parts[0].decode("ascii").split(" ")
            seq = int(seq_text)
        except ValueError:
            self.dropped += 1
            return None
        if seq <= self._last.get(peer, 0):
            self.dropped += 1  # a replayed message
            return None
        self._last[peer] = seq
        return kind, parts[1:]

    def forget(self, peer: bytes) -> None:
        """A peer restarted under the same identity: its numbering starts again."""
        self._last.pop(peer, None)


# The engine's "running" file: the id of the job it runs now, read by the kernel when
# the engine dies (which job it took down with it).

def encode_running(job_id: str) -> bytes:
    data = job_id.encode("utf-8", "surrogatepass")
    return len(data).to_bytes(4, "big") + data


def decode_running(data: bytes) -> str:
    """The job id ``encode_running`` wrote ("" for none; the file may hold a longer
    older id after it)."""
    size = int.from_bytes(data[:4], "big")
    return data[4:4 + size].decode("utf-8", "surrogatepass") if len(data) >= 4 + size else ""
