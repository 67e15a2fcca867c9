"""Browser login: one-time codes that hand a bearer token to a browser, and who the token is.

With an OIDC issuer, the web UI signs in there: ``GET /api/v1/auth/config`` names the issuer's
authorization endpoint and the UI's client id; the UI sends the browser there with a PKCE
challenge, and posts the code it comes back with (and its verifier) to
``POST /api/v1/auth/oidc``, which trades them at the issuer's token endpoint and answers the
access token once the API's authenticator accepts it (issuer, audience, role claim), so the UI
never holds a token the API would refuse.

``klaw dev`` knows the development token, but a token in a URL stays in the browser's history
and in the logs of whatever sits in between. So it prints a link with a one-time code instead
(``/login?code=...``): the web UI posts the code to ``POST /api/v1/auth/exchange`` and gets the
token back in the body, once. A used or expired code is refused, so the link left in history
is worth nothing. ``GET /api/v1/auth/me`` tells a client which subject and role its token has
(the UI hides what the role may not do; the API refuses it anyway).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from typing import Annotated, Final

import msgspec
from fastapi import APIRouter, Body, Request, Response

from klaw.api.http.auth import Authenticator, Principal
from klaw.api.http.limits import Throttle, ThrottledAuthenticator
from klaw.api.http.routes import PREFIX, guard
from klaw.errors import AuthError, ForbiddenError
from klaw.settings import KlawSettings

CODE_TTL: Final = 3600.0  # seconds a login code may wait for its browser
MAX_CODES: Final = 64  # codes waiting at once (the oldest goes first)


class LoginCodes:
    """One-time codes, each standing for a token until it is exchanged or expires. Only the
    codes' digests are kept; the clock is injectable for tests."""

    def __init__(self, ttl: float = CODE_TTL, clock: Callable[[], float] = time.monotonic):
        self._ttl, self._clock = ttl, clock
        self._codes: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def issue(self, token: str) -> str:
        """A new code for ``token``, good for one exchange within the TTL."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._expire()
            while len(self._codes) >= MAX_CODES:
                del self._codes[next(iter(self._codes))]
            self._codes[_digest(code)] = (token, self._clock() + self._ttl)
        return code

    def exchange(self, code: str) -> str:
        """The token of ``code``, which is then spent; AuthError for a code unknown, spent or
        expired."""
        given = _digest(code)
        with self._lock:
            self._expire()
            found = next((k for k in self._codes if hmac.compare_digest(k, given)), None)
            if found is None:
                raise AuthError(
                    "This login link is not valid: it was used already, has expired, or was "
                    "made by another server.",
                    hint="Sign in with a token, or restart klaw dev for a new link.",
                )
            token, _ = self._codes.pop(found)
        return token

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, (_, until) in self._codes.items() if until <= now]:
            del self._codes[key]


def _digest(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


class Login(msgspec.Struct, kw_only=True, frozen=True):
    token: str
    subject: str
    role: str


class Me(msgspec.Struct, kw_only=True, frozen=True):
    subject: str
    role: str


class OidcClient(msgspec.Struct, kw_only=True, frozen=True):
    """How the web UI signs in at the issuer (a public client with PKCE)."""

    authorize_url: str
    token_url: str
    client_id: str
    scope: str = "openid"

    @classmethod
    def from_settings(cls, settings: KlawSettings) -> OidcClient | None:
        s = settings
        if not (
            s.http.oidc.issuer
            and s.http.oidc.client_id
            and s.http.oidc.authorize_url
            and s.http.oidc.token_url
        ):
            return None
        return cls(
            authorize_url=s.http.oidc.authorize_url,
            token_url=s.http.oidc.token_url,
            client_id=s.http.oidc.client_id,
            scope=s.http.oidc.scope,
        )


class AuthConfig(msgspec.Struct, kw_only=True, frozen=True):
    oidc: dict[str, str] | None = None  # authorize_url, client_id, scope (no token_url: ours)


class OidcCode(msgspec.Struct, kw_only=True, frozen=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    code_verifier: Annotated[str, msgspec.Meta(min_length=43, max_length=128)]
    redirect_uri: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


def trade_code(client: OidcClient, given: OidcCode, timeout: float = 10.0) -> str:
    """The access token the issuer gives for ``given``'s code; AuthError naming what the
    issuer said when it gives none."""
    import httpx

    form = {
        "grant_type": "authorization_code",
        "code": given.code,
        "redirect_uri": given.redirect_uri,
        "client_id": client.client_id,
        "code_verifier": given.code_verifier,
    }
    try:
        answer = httpx.post(client.token_url, data=form, timeout=timeout)
    except httpx.HTTPError as exc:
        raise AuthError(
            f"The identity provider's token endpoint could not be reached: {exc}.",
            hint=f"Check KLAW_HTTP__OIDC__TOKEN_URL ({client.token_url}) and that it answers.",
        ) from None
    body: dict[str, object] = {}
    with contextlib.suppress(ValueError):
        found = answer.json()
        body = found if isinstance(found, dict) else {}
    token = body.get("access_token")
    if answer.status_code != 200 or not isinstance(token, str):
        said = body.get("error_description") or body.get("error") or f"HTTP {answer.status_code}"
        raise AuthError(
            f"The identity provider gave no access token for this sign-in: {said}.",
            hint="Sign in again; a code works once and for a short time.",
        )
    return token


def login_router(
    codes: LoginCodes,
    authenticator: Authenticator,
    throttle: Throttle | None = None,
    oidc: OidcClient | None = None,
) -> APIRouter:
    """``POST /api/v1/auth/exchange`` (no token: the code is the credential; a wrong code
    counts against the client's failed-token limit) and ``GET /api/v1/auth/me`` (behind the
    API's guard, like every route of ROLES)."""
    router = APIRouter(prefix=f"{PREFIX}/auth", tags=["auth"])
    checked = guard(authenticator, throttle)

    def _caller(request: Request) -> tuple[str, Authenticator]:
        """The client's address, and the authenticator with its rate limits applied."""
        client = request.client.host if request.client is not None else ""
        if throttle is None:
            return client, authenticator
        return client, ThrottledAuthenticator(authenticator, throttle, client)

    @router.post("/exchange", name="exchange_login_code")
    def exchange(
        request: Request, code: Annotated[str, Body(embed=True, max_length=200)]
    ) -> Response:
        """Trade a one-time login code (printed by ``klaw dev``) for its bearer token."""
        client, checker = _caller(request)
        try:
            token = codes.exchange(code)
        except AuthError:
            if throttle is not None:
                throttle.failed(client)  # counts as a wrong token would
            raise
        principal = checker.authenticate(token)
        if principal is None:
            raise AuthError("The token behind this login link is no longer accepted.")
        body = Login(token=token, subject=principal.subject, role=principal.role.label)
        return _json(body, {"Cache-Control": "no-store"})

    @router.get("/config", name="auth_config")
    def config() -> Response:
        """How a browser may sign in: at the OIDC issuer (``oidc``), or with a token."""
        shown = None
        if oidc is not None:
            shown = {"authorize_url": oidc.authorize_url, "client_id": oidc.client_id}
            shown["scope"] = oidc.scope
        return _json(AuthConfig(oidc=shown))

    @router.post("/oidc", name="exchange_oidc_code")
    def exchange_oidc(request: Request, body: Annotated[dict[str, object], Body()]) -> Response:
        """Trade the code the issuer sent the browser back with (and its PKCE verifier) for an
        access token the API accepts."""
        if oidc is None:
            raise AuthError(
                "This server has no OIDC sign-in.",
                hint="Set KLAW_HTTP__OIDC__CLIENT_ID, KLAW_HTTP__OIDC__AUTHORIZE_URL and "
                "KLAW_HTTP__OIDC__TOKEN_URL "
                "with the issuer, or sign in with a token.",
            )
        try:
            given = msgspec.convert(body, OidcCode)
        except msgspec.ValidationError as exc:
            raise AuthError(f"Not an OIDC sign-in: {exc}.") from None
        _, checker = _caller(request)
        token = trade_code(oidc, given)
        principal = checker.authenticate(token)
        if principal is None:
            raise ForbiddenError(
                "The identity provider signed you in, but its token is not accepted here.",
                hint="The token needs this API's audience and a role in its role claim "
                "(KLAW_HTTP__OIDC__ROLE_CLAIM); ask an admin to grant one.",
            )
        answer = Login(token=token, subject=principal.subject, role=principal.role.label)
        return _json(answer, {"Cache-Control": "no-store"})

    @router.get("/me", name="who_am_i")
    def me(who: Principal = checked) -> Response:
        """The subject and role of the bearer token sent."""
        return _json(Me(subject=who.subject, role=who.role.label))

    return router


def _json(value: msgspec.Struct, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(value), 200, headers, media_type="application/json")
