"""Messages between the kernel and its engines: framing and signing.

A message is a list of frames ``[signature, header, *payloads]``. The header is a short
ASCII line ``kind seq``; payloads are bytes (pickles, for the kinds that carry objects).
The signature is an HMAC-SHA256, under a per-session key, over every other frame with
its length, so nothing (header or payload) is unpickled before it is verified. Each
sender numbers its messages; a receiver drops any message whose number it has already
seen (a replay), and counts what it dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

KEY_BYTES = 32


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def _mac(key: bytes, frames: list[bytes]) -> bytes:
    h = hmac.new(key, digestmod=hashlib.sha256)
    for frame in frames:
        h.update(struct.pack("!Q", len(frame)))
        h.update(frame)
    return h.digest()


class Signer:
    """Numbers and signs outgoing messages of one sender."""

    def __init__(self, key: bytes):
        self._key = key
        self._seq = 0

    def frames(self, kind: str, *payloads: bytes) -> list[bytes]:
        self._seq += 1
        body = [f"{kind} {self._seq}".encode(), *payloads]
        return [_mac(self._key, body), *body]


@dataclass
class Verifier:
    """Checks incoming messages: signature first, then that the number is new."""

    key: bytes
    dropped: int = 0
    _last: dict[bytes, int] = field(default_factory=dict)

    def open(self, frames: list[bytes], peer: bytes = b"") -> tuple[str, list[bytes]] | None:
        """(kind, payloads) of a valid message, else None (and counted as dropped)."""
        if len(frames) < 2:
            self.dropped += 1
            return None
        signature, body = frames[0], frames[1:]
        if not hmac.compare_digest(signature, _mac(self.key, body)):
            self.dropped += 1
            return None
        try:
            kind, seq_text = body[0].decode("ascii").split(" ")
            seq = int(seq_text)
        except ValueError:
            self.dropped += 1
            return None
        if seq <= self._last.get(peer, 0):
            self.dropped += 1  # a replayed message
            return None
        self._last[peer] = seq
        return kind, body[1:]

    def forget(self, peer: bytes) -> None:
        """A peer restarted under the same identity: its numbering starts again."""
        self._last.pop(peer, None)
