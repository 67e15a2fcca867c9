"""Identifiers and references: the only things the control plane passes around."""

from __future__ import annotations

import itertools
import os
import time

import msgspec

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_run_id() -> str:
    """A sortable, unique run id: millisecond time then randomness (Crockford base32, 16 chars)."""
    value = (time.time_ns() // 1_000_000) << 40 | int.from_bytes(os.urandom(5), "big")
    chars = []
    for _ in range(16):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


_token_prefix = os.urandom(6).hex()
_token_counter = itertools.count(1)


def new_token() -> str:
    """An opaque attempt token, unique across processes (fencing: a stale attempt's writes
    carry an old token). A random per-process prefix and a counter: no syscall per attempt."""
    return f"{_token_prefix}{next(_token_counter):x}"


class AssetRef(msgspec.Struct, frozen=True):
    """A reference to one snapshot of an asset: what stages hand each other through Klaw."""

    key: str
    snapshot: int

    def __str__(self) -> str:
        return f"{self.key}@{self.snapshot}"
