"""Authenticators beyond static tokens: tokens kept (hashed) in the metadata store, and a chain
that asks several authenticators in turn.

:class:`StoredTokenAuthenticator` accepts ``klaw_<id>_<secret>`` tokens made with
``klaw tokens create``: looked up by id, the secret's SHA-256 compared in constant time, and
refused once revoked or expired. It reads the store on every request, so a revocation takes
effect on the next one.
"""

from __future__ import annotations

from collections.abc import Iterable

from klaw.api.http.auth import Authenticator, Principal, Role
from klaw.metadata.store import TokenStore
from klaw.service.tokens import verify_token


class StoredTokenAuthenticator:
    """Tokens of the metadata store's ``api_tokens`` table (``klaw tokens create``)."""

    def __init__(self, store: TokenStore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return "StoredTokenAuthenticator()"

    def authenticate(self, token: str) -> Principal | None:
        record = verify_token(self._store, token)
        if record is None:
            return None
        try:
            role = Role[record.role.upper()]
        except KeyError:  # a role this Klaw does not know: accept nothing rather than guess
            return None
        return Principal(subject=f"token:{record.token_id} ({record.name})", role=role)


class ChainAuthenticator:
    """Asks each authenticator in order; the first principal wins, None when none accepts."""

    def __init__(self, authenticators: Iterable[Authenticator]) -> None:
        self._chain = tuple(authenticators)

    def __repr__(self) -> str:
        return f"ChainAuthenticator({', '.join(repr(a) for a in self._chain)})"

    def __len__(self) -> int:
        return len(self._chain)

    def authenticate(self, token: str) -> Principal | None:
        for authenticator in self._chain:
            principal = authenticator.authenticate(token)
            if principal is not None:
                return principal
        return None
