"""API tokens kept in the metadata store: made, listed, revoked, and checked.

A token reads ``klaw_<token_id>_<secret>``: ``token_id`` (12 hex digits) finds its row, and
the SHA-256 of ``secret`` (256 random bits, URL-safe base64) is compared with the stored one in
constant time. The token itself is never stored; it is shown once, when it is made. A fast hash
is enough for a high-entropy random secret (there is nothing to guess or brute-force), and a
slow KDF would cost time on every request for no gain.

Roles are labels here (``viewer`` ... ``admin``); the HTTP layer maps them to its ``Role``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final

from klaw.errors import ConfigError, MetadataError
from klaw.metadata.records import TokenRecord
from klaw.metadata.store import TokenStore

PREFIX: Final = "klaw"
ROLE_LABELS: Final = ("viewer", "operator", "approver", "admin")  # lowest to highest
_ID_LENGTH: Final = 12
_TOKEN = re.compile(r"klaw_([0-9a-f]{12})_([A-Za-z0-9_-]{20,200})")


@dataclass(frozen=True)
class IssuedToken:
    """A token just made: ``token`` is the only copy of the secret."""

    token: str
    record: TokenRecord


def parse_role(text: str) -> str:
    """The role label ``text`` names; a ConfigError naming the known roles otherwise."""
    label = text.strip().lower()
    if label not in ROLE_LABELS:
        raise ConfigError(
            f"Unknown role {text.strip()!r}.", hint=f"Roles: {', '.join(ROLE_LABELS)}."
        )
    return label


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(token_id, secret)`` of a well-formed token; None for anything else."""
    found = _TOKEN.fullmatch(token)
    return None if found is None else (found.group(1), found.group(2))


def create_token(
    store: TokenStore,
    *,
    name: str,
    role: str,
    expires_in: float | None = None,
    now: float | None = None,
) -> IssuedToken:
    """Make and store a token with ``role``, valid for ``expires_in`` seconds (None: until
    revoked)."""
    if not name.strip():
        raise ConfigError("A token needs a name.", hint="Name it for who uses it: --name ci.")
    at = time.time() if now is None else now
    token_id = secrets.token_hex(_ID_LENGTH // 2)
    secret = secrets.token_urlsafe(32)
    record = TokenRecord(
        token_id=token_id,
        name=name.strip(),
        role=parse_role(role),
        secret_hash=hash_secret(secret),
        created_at=at,
        expires_at=None if expires_in is None else at + expires_in,
    )
    store.create_token(record)
    return IssuedToken(token=f"{PREFIX}_{token_id}_{secret}", record=record)


def revoke_token(store: TokenStore, token_id: str, *, now: float | None = None) -> TokenRecord:
    """Revoke a token by id; a MetadataError naming the id when there is none."""
    found = store.revoke_token(token_id, now=time.time() if now is None else now)
    if found is None:
        raise MetadataError(
            f"No API token has the id {token_id!r}.",
            hint="`klaw tokens list` shows the ids (the part after klaw_ in a token).",
        )
    return found


def verify_token(store: TokenStore, token: str, *, now: float | None = None) -> TokenRecord | None:
    """The stored token ``token`` is, when it is live (neither revoked nor expired) and its
    secret matches; None otherwise. A match records the use (at most once a minute)."""
    parts = split_token(token)
    if parts is None:
        return None
    token_id, secret = parts
    record = store.find_token(token_id)
    if record is None:
        return None
    at = time.time() if now is None else now
    if not hmac.compare_digest(hash_secret(secret), record.secret_hash) or not record.live(at):
        return None
    store.touch_token(token_id, now=at)
    return record


def has_live_token(store: TokenStore, *, now: float | None = None) -> bool:
    at = time.time() if now is None else now
    return any(record.live(at) for record in store.list_tokens())
