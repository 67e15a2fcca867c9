"""Klaw's MCP server over streamable HTTP, behind Klaw's own bearer tokens.

Every request needs ``Authorization: Bearer <token>``, checked by a Klaw
:class:`~klaw.api.http.auth.Authenticator` (the static ``KLAW_HTTP__TOKENS`` and the stored
tokens of ``klaw tokens create``). A missing or refused token is answered 401 before the MCP
layer sees the request; an accepted one puts its principal in the request's ASGI scope, where
:meth:`KlawMcp.caller <klaw.mcp.server.KlawMcp.caller>` finds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import anyio.to_thread
import msgspec

from klaw.api.http.auth import MISSING_TOKEN_HINT, Authenticator
from klaw.mcp.server import PRINCIPAL, KlawMcp

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
PATH: Final = "/mcp"


class BearerAuth:
    """ASGI middleware: a request passes with the principal of its bearer token, or is
    answered 401 (problem+json, ``WWW-Authenticate: Bearer``)."""

    def __init__(self, app: App, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the MCP session manager starts and stops
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if token is None:
            await _refuse(send, "This MCP server needs a bearer token, and none was sent.")
            return
        # stored tokens are looked up in the metadata database: off the event loop
        principal = await anyio.to_thread.run_sync(self.authenticator.authenticate, token)
        if principal is None:
            await _refuse(send, "The bearer token sent is not accepted.")
            return
        await self.app({**scope, PRINCIPAL: principal}, receive, send)


def _bearer(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


async def _refuse(send: Send, detail: str) -> None:
    body = msgspec.json.encode(
        {
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "code": "AuthError",
            "detail": detail,
            "hint": MISSING_TOKEN_HINT,
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"www-authenticate", b'Bearer realm="klaw"'),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def http_app(mcp: KlawMcp, authenticator: Authenticator, *, host: str) -> App:
    """The ASGI app: streamable HTTP at ``/mcp``, every request behind ``authenticator``.
    ``host`` is the address it is bound to (a loopback one turns on the SDK's DNS rebinding
    protection)."""
    inner = mcp.server().streamable_http_app(streamable_http_path=PATH, host=host)
    return BearerAuth(inner, authenticator)
