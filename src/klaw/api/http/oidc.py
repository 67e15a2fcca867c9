"""Bearer JWTs from an OIDC issuer: :class:`JwtAuthenticator`.

A JWT is accepted when it is signed with RS256 or ES256 by a key of the issuer's JWKS (found by
the header's ``kid``), and its ``iss``, ``aud``, ``exp`` (required) and ``nbf`` (when present)
hold. Any other algorithm is refused before a key is looked at, so neither ``alg: none`` nor an
HMAC "signed" with the public key gets through. The role comes from one claim
(``oidc_role_claim``, default ``klaw_role``): a role label, or a list of them (the highest
known one counts). A JWT without a known role is refused, not treated as a viewer: a token the
issuer gives for other purposes must not read Klaw.

The JWKS is fetched and cached by :class:`jwt.PyJWKClient`: the key set is kept for
``lifespan`` seconds, and an unknown ``kid`` makes it be fetched again (key rotation), at most
once per ``refresh_every`` seconds (its cooldown) so that made-up ``kid`` values cannot hammer
the issuer. A JWKS that cannot be fetched refuses the token (401), never fails the request
(500), and is not asked again for a while: 1 s after the first failure, doubling up to 60 s,
so that an issuer that is down is neither hammered nor waited on (5 s) by every request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

import jwt

from klaw.api.http.auth import Principal, Role
from klaw.errors import ConfigError
from klaw.settings import KlawSettings

ALGORITHMS: Final = ("RS256", "ES256")
LEEWAY: Final = 30.0  # seconds of clock skew allowed on exp and nbf
FETCH_TIMEOUT: Final = 5.0
LIFESPAN: Final = 300.0  # seconds a fetched JWKS is used before it is fetched again
BACKOFF: Final = (1.0, 60.0)  # seconds the JWKS is not asked after a failure: first, most


class JwtAuthenticator:
    """JWTs of one issuer and audience, verified against the issuer's JWKS."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        role_claim: str = "klaw_role",
        refresh_every: float = 10.0,
        lifespan: float = LIFESPAN,
        backoff: tuple[float, float] = BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url or f"{issuer.rstrip('/')}/.well-known/jwks.json"
        self.role_claim = role_claim
        self._backoff, self._clock = backoff, clock
        self._lock = threading.Lock()
        self._failures = 0
        self._quiet_until = 0.0  # no fetch before this (clock), after failures
        try:
            self._jwks = jwt.PyJWKClient(
                self.jwks_url,
                cache_jwk_set=True,
                lifespan=lifespan,
                cooldown_duration=refresh_every,
                timeout=FETCH_TIMEOUT,
                headers={"Accept": "application/json"},
            )
        except jwt.PyJWKClientError as exc:
            raise ConfigError(
                f"The JWKS URL {self.jwks_url!r} (KLAW_HTTP__OIDC__JWKS_URL) cannot be used: {exc}",
                hint="Give the issuer's https:// JWKS URL (or unset it: "
                "<issuer>/.well-known/jwks.json).",
            ) from None

    def __repr__(self) -> str:
        return f"JwtAuthenticator(issuer={self.issuer!r}, audience={self.audience!r})"

    @classmethod
    def from_settings(cls, settings: KlawSettings) -> JwtAuthenticator | None:
        """The authenticator ``oidc_*`` settings describe; None when no issuer is set."""
        if not settings.http.oidc.issuer:
            return None
        if not settings.http.oidc.audience:
            raise ConfigError(
                "KLAW_HTTP__OIDC__ISSUER is set but KLAW_HTTP__OIDC__AUDIENCE is not; every "
                "JWT would be "
                "accepted whoever it was issued for.",
                hint="Set KLAW_HTTP__OIDC__AUDIENCE to the audience (client id) the issuer puts in "
                "`aud` for Klaw.",
            )
        return cls(
            issuer=settings.http.oidc.issuer,
            audience=settings.http.oidc.audience,
            jwks_url=settings.http.oidc.jwks_url,
            role_claim=settings.http.oidc.role_claim,
        )

    def authenticate(self, token: str) -> Principal | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS or not isinstance(kid, str):
            return None
        key = self._signing_key(kid)
        if key is None:
            return None
        # the key's algorithm (its `alg`, or the one its type and curve imply) must be the
        # header's: an RSA key never verifies an ES256 JWT, nor a P-384 key an ES256 one
        if key.algorithm_name != alg:
            return None
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        role = self._role(claims.get(self.role_claim))
        if role is None:
            return None
        return Principal(subject=f"oidc:{claims.get('sub', '?')}", role=role)

    def _signing_key(self, kid: str) -> jwt.PyJWK | None:
        """The JWKS key ``kid``; None when it is unknown or the JWKS cannot be had (then the
        JWKS is left alone for the back-off)."""
        with self._lock:
            if self._clock() < self._quiet_until:
                return None
        try:
            key = self._jwks.get_signing_key(kid)
        except (jwt.PyJWKClientConnectionError, ValueError, OSError):  # down, or not JSON
            with self._lock:
                first, most = self._backoff
                self._quiet_until = self._clock() + min(most, first * 2**self._failures)
                self._failures += 1
            return None
        except jwt.PyJWTError:  # unknown kid (its refetch is PyJWKClient's cooldown)
            return None
        with self._lock:
            self._failures = 0
        return key

    @staticmethod
    def _role(value: object) -> Role | None:
        labels = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        known = [
            Role[v.upper()] for v in labels if isinstance(v, str) and v.upper() in Role.__members__
        ]
        return max(known) if known else None
