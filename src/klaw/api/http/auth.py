"""Who calls, and what they may do: roles, principals, authenticators.

An :class:`Authenticator` turns a bearer token into a :class:`Principal` (who, and with which
:class:`Role`), or refuses it. The HTTP app asks it once per request, in one dependency
(:mod:`klaw.api.http.routes`), and compares the principal's role with the route's minimum.
:class:`StaticTokenAuthenticator` is the first one: tokens with roles from settings
(``KLAW_HTTP__TOKENS="role:token,role:token"``). Hashed revocable tokens and OIDC/JWT are further
authenticators behind the same protocol.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from klaw.errors import AuthError, ConfigError, ForbiddenError
from klaw.settings import KlawSettings

MISSING_TOKEN_HINT: Final = (
    "Send the header 'Authorization: Bearer <token>' with one of the tokens the server "
    "accepts (KLAW_HTTP__TOKENS on the server)."
)


class Role(enum.IntEnum):
    """Roles in order: each may do everything the ones below it may."""

    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            known = ", ".join(r.label for r in cls)
            raise ConfigError(
                f"Unknown role {text.strip()!r} in KLAW_HTTP__TOKENS.",
                hint=f"Roles: {known}; write each token as role:token.",
            ) from None


@dataclass(frozen=True)
class Principal:
    """Who made a request: ``subject`` names them (never the token itself)."""

    subject: str
    role: Role


class Authenticator(Protocol):
    """Turns a bearer token into a principal; None when the token is not accepted."""

    def authenticate(self, token: str) -> Principal | None: ...


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class StaticTokenAuthenticator:
    """Fixed tokens, each with a role. Compared in constant time (``hmac.compare_digest`` of
    SHA-256 digests, against every token); only the digests are kept."""

    def __init__(self, tokens: Iterable[tuple[Role, str]]) -> None:
        self._known = tuple((_digest(token), role) for role, token in tokens)

    def __repr__(self) -> str:  # never the tokens themselves
        return f"StaticTokenAuthenticator({len(self._known)} tokens)"

    def __len__(self) -> int:
        return len(self._known)

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> StaticTokenAuthenticator:
        """Tokens from ``role:token,role:token`` (or those entries as a list); a malformed
        entry is a ConfigError."""
        entries = text.split(",") if isinstance(text, str) else text
        pairs = []
        for entry in filter(None, (part.strip() for part in entries)):
            role, sep, token = entry.partition(":")
            if not sep or not token.strip():
                raise ConfigError(
                    "An entry of KLAW_HTTP__TOKENS is not role:token.",
                    hint="Write KLAW_HTTP__TOKENS=viewer:<token>,operator:<token>,...",
                )
            pairs.append((Role.parse(role), token.strip()))
        return cls(pairs)

    @classmethod
    def from_settings(cls, settings: KlawSettings) -> StaticTokenAuthenticator:
        """The tokens of ``settings.http.tokens``; refuses (ConfigError) having none."""
        found = cls.parse([t.get_secret_value() for t in settings.http.tokens])
        if not len(found):
            raise ConfigError(
                "No API tokens: KLAW_HTTP__TOKENS is not set; the API would refuse every call.",
                hint="Set KLAW_HTTP__TOKENS=admin:<token>[,viewer:<token>...]; make a token with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'.",
            )
        return found

    def authenticate(self, token: str) -> Principal | None:
        given = _digest(token)
        found: Role | None = None
        for known, role in self._known:
            if hmac.compare_digest(given, known) and found is None:
                found = role
        if found is None:
            return None
        return Principal(subject=f"token:{given.hex()[:12]}", role=found)


def authorize(authenticator: Authenticator, token: str | None, needed: Role) -> Principal:
    """The principal of ``token`` when its role is at least ``needed``; AuthError (no or
    unknown token) or ForbiddenError (role too low) otherwise."""
    if token is None:
        raise AuthError(
            "This route needs a bearer token, and none was sent.", hint=MISSING_TOKEN_HINT
        )
    principal = authenticator.authenticate(token)
    if principal is None:
        raise AuthError("The bearer token sent is not accepted.", hint=MISSING_TOKEN_HINT)
    if principal.role < needed:
        raise ForbiddenError(
            f"This route needs the role {needed.label}; {principal.subject} has "
            f"{principal.role.label}.",
            hint="Ask an admin for a token with that role.",
        )
    return principal
