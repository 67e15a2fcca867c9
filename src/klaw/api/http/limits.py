"""Rate and size limits of the HTTP API.

* :class:`RateLimiter`: a moving window of ``burst`` requests per ``ceil(burst / rate)``
  seconds by key (the ``limits`` library's ``MovingWindowRateLimiter``): bursts of ``burst``,
  and ``rate`` per second sustained (a little less when ``burst / rate`` is not whole). The
  API keeps two: one per authenticated principal (``api_rate`` per second, ``api_burst`` at
  once), and a stricter one per client IP that only *failed* authentications draw from
  (``api_auth_fail_rate`` per minute, ``api_auth_fail_burst`` at once). Both are applied in
  one place, the route guard, through :class:`ThrottledAuthenticator`; a full window is a
  :class:`RateLimitedError`: 429 problem+json with ``Retry-After``.
* Where the windows live: ``api_rate_limit_storage``. ``memory://`` (the default) is this
  process only; ``redis://host:port[/db]`` is shared by every API process using it, so N
  replicas together allow the configured rate, not N times it. A storage that does not answer
  at start is a :class:`~klaw.errors.ConfigError` naming its URL. One that fails later
  *fails open*: the request is let through and a warning is logged (at most once a minute),
  so an outage of Redis never takes the API down with it.
* :class:`BodyLimitMiddleware`: a body over ``api_max_body`` bytes is a 413 (by its
  ``Content-Length``, or as it streams in when chunked) and a JSON body nested deeper than
  ``api_max_depth`` is a 422, both before any route reads it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from klaw.api.http.auth import Authenticator, Principal
from klaw.api.http.problems import problem, problem_of
from klaw.errors import ConfigError, RateLimitedError
from klaw.observability import get_logger
from klaw.settings import KlawSettings

if TYPE_CHECKING:
    from limits.storage import Storage

_log: Final = get_logger(__name__)
SETTING: Final = "KLAW_HTTP__RATE_LIMIT_STORAGE"
STORAGE_TIMEOUT: Final = 2.0  # seconds a request waits on a shared storage before failing open
_WARN_EVERY: Final = 60.0


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def open_storage(url: str, *, prefix: str = "klaw") -> Storage:
    """The rate-limit storage ``url`` names (``memory://``, ``redis://host:port/db``, or any
    other synchronous storage of the ``limits`` library with moving windows), checked to
    answer; a ConfigError naming the URL and the setting otherwise. ``prefix`` starts every
    key a shared storage holds (deployments sharing one Redis pick different ones)."""
    from limits.errors import ConfigurationError
    from limits.storage import MovingWindowSupport, Storage, storage_from_string

    shown = redact(url)
    options: dict[str, float | str | bool] = {}
    scheme = urlsplit(url).scheme
    if scheme.startswith(("redis", "valkey")):
        options = {
            "key_prefix": prefix,
            "socket_timeout": STORAGE_TIMEOUT,
            "socket_connect_timeout": STORAGE_TIMEOUT,
        }
    try:
        storage = storage_from_string(url, **options)
    except ConfigurationError as exc:
        raise ConfigError(
            f"{SETTING}={shown!r} is not a rate-limit storage Klaw can use: {exc}.",
            hint="Use memory:// (this process only) or redis://HOST:PORT[/DB] (shared); Redis "
            'needs the server extra: pip install "klaw[server]".',
        ) from None
    except Exception as exc:  # a malformed URL: the storage's own parser refused it
        raise ConfigError(
            f"{SETTING}={shown!r} is not a valid storage URL: {exc}.",
            hint="Write memory:// or redis://HOST:PORT[/DB].",
        ) from None
    if not isinstance(storage, Storage) or not isinstance(storage, MovingWindowSupport):
        raise ConfigError(
            f"{SETTING}={shown!r} is a storage without synchronous moving windows.",
            hint="Use memory:// or redis://HOST:PORT[/DB].",
        )
    if not storage.check():
        raise ConfigError(
            f"The rate-limit storage {shown} ({SETTING}) does not answer.",
            hint="Start it (redis-server), fix the URL, or unset the setting to keep the "
            "limits in this process (memory://).",
        )
    return storage


class RateLimiter:
    """Up to ``burst`` requests per key in any window of ``ceil(burst / rate)`` seconds, on
    ``storage``; :meth:`take` spends one."""

    def __init__(self, storage: Storage, rate: float, burst: int, *, name: str) -> None:
        from limits import RateLimitItemPerSecond
        from limits.strategies import MovingWindowRateLimiter

        if rate <= 0 or burst < 1:
            raise ValueError(f"A rate limit needs rate > 0 and burst >= 1, not {rate}, {burst}.")
        self.rate = rate
        self.burst = burst
        self.window = max(1, math.ceil(burst / rate))
        self.storage = storage
        self._item = RateLimitItemPerSecond(burst, self.window, namespace=name)
        self._strategy = MovingWindowRateLimiter(storage)
        self._warned = -math.inf
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one request of ``key``: 0.0 when it was allowed, else the seconds until one
        more is (nothing is spent then). A storage error lets the request through (logged)."""
        try:
            if self._strategy.hit(self._item, key):
                return 0.0
            reset = self._strategy.get_window_stats(self._item, key).reset_time
        except Exception as exc:  # the storage failed (Redis down): fail open
            self._storage_failed(exc)
            return 0.0
        return max(reset - time.time(), 1e-3)

    def _storage_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._warned < _WARN_EVERY:
                return
            self._warned = now
        _log.warning(
            "rate-limit storage failed: requests are let through unlimited until it answers",
            storage=type(self.storage).__name__,
            error=repr(exc),
        )


def retry_after(wait: float) -> int:
    """``wait`` seconds as a ``Retry-After`` value: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


@dataclass(frozen=True)
class Limits:
    """The API's limits (see :class:`~klaw.settings.KlawSettings` for each)."""

    rate: float = 20.0
    burst: int = 40
    auth_fail_rate: float = 10.0  # per minute
    auth_fail_burst: int = 20
    max_body: int = 1024 * 1024
    max_depth: int = 64
    idempotency_ttl: float = 86400.0
    storage: str = "memory://"
    prefix: str = "klaw"

    @classmethod
    def from_settings(cls, settings: KlawSettings) -> Limits:
        return cls(
            rate=settings.http.rate,
            burst=settings.http.burst,
            auth_fail_rate=settings.http.auth_fail_rate,
            auth_fail_burst=settings.http.auth_fail_burst,
            max_body=settings.http.max_body,
            max_depth=settings.http.max_depth,
            idempotency_ttl=settings.http.idempotency_ttl,
            storage=settings.http.rate_limit_storage,
            prefix=settings.http.rate_limit_prefix,
        )


class Throttle:
    """The two rate limits of the API: per principal, and per client IP for failed
    authentications, both on the storage of ``limits`` (opened and checked here)."""

    def __init__(self, limits: Limits, *, storage: Storage | None = None) -> None:
        shared = (
            storage if storage is not None else open_storage(limits.storage, prefix=limits.prefix)
        )
        self.principals = RateLimiter(shared, limits.rate, limits.burst, name="api-principal")
        self.failures = RateLimiter(
            shared, limits.auth_fail_rate / 60.0, limits.auth_fail_burst, name="api-auth-failure"
        )

    def admit(self, principal: Principal) -> None:
        wait = self.principals.take(principal.subject)
        if wait > 0:
            raise RateLimitedError(
                f"Too many requests from {principal.subject}: more than "
                f"{self.principals.burst} in {self.principals.window} s.",
                retry_after=retry_after(wait),
                hint="Wait the seconds of Retry-After, then send fewer requests.",
            )

    def failed(self, client: str) -> None:
        wait = self.failures.take(client)
        if wait > 0:
            raise RateLimitedError(
                f"Too many failed authentications from {client}.",
                retry_after=retry_after(wait),
                hint="Check the bearer token; retry after the seconds of Retry-After.",
            )


class ThrottledAuthenticator:
    """``inner`` with the throttle applied, for one request from ``client``: a token it refuses
    draws from the client's failure bucket (429 once that is empty, instead of 401); a token it
    accepts draws from the principal's bucket. Failures never slow down valid tokens."""

    def __init__(self, inner: Authenticator, throttle: Throttle, client: str) -> None:
        self._inner = inner
        self._throttle = throttle
        self._client = client

    def authenticate(self, token: str) -> Principal | None:
        principal = self._inner.authenticate(token)
        if principal is None:
            self._throttle.failed(self._client)
            return None
        self._throttle.admit(principal)
        return principal


async def _rate_limited(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimitedError)
    return problem_of(exc, headers={"Retry-After": str(exc.retry_after)})


# outside a string, "\x" pairs are skipped so an escaped quote never toggles the string state
_JSON_MARKS: Final = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)


def json_too_deep(body: bytes | bytearray, limit: int) -> bool:
    """Whether the JSON text ``body`` nests arrays and objects deeper than ``limit`` (one
    linear scan; it need not be valid JSON)."""
    depth = 0
    in_string = False
    for match in _JSON_MARKS.finditer(body):
        mark = match.group()
        if mark == b'"':
            in_string = not in_string
        elif in_string or len(mark) == 2:
            continue
        elif mark in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class BodyLimitMiddleware:
    """Reads a request's body (at most ``max_body`` bytes) before the app does: larger is a
    413, without reading the rest; JSON nested deeper than ``max_depth`` is a 422."""

    def __init__(self, app: ASGIApp, *, max_body: int, max_depth: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}
        length = headers.get(b"content-length")
        if length is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        if b"json" in headers.get(b"content-type", b"") and json_too_deep(body, self.max_depth):
            response = problem(
                422,
                "InvalidRequest",
                f"The request body is JSON nested deeper than {self.max_depth} levels.",
                hint="Send flatter JSON.",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "RequestTooLarge",
            f"The request body is larger than {self.max_body} bytes.",
            hint="Send a smaller body (KLAW_HTTP__MAX_BODY on the server sets the limit).",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` once, then whatever ``receive`` does (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def install(app: FastAPI, limits: Limits) -> None:
    """Answer :class:`RateLimitedError` with 429 and check bodies against ``limits``."""
    app.add_exception_handler(RateLimitedError, _rate_limited)
    app.add_middleware(BodyLimitMiddleware, max_body=limits.max_body, max_depth=limits.max_depth)
