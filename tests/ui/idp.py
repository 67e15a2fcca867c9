"""A small OIDC identity provider on loopback for the sign-in tests: an authorization endpoint
that signs "alice" in at once (it redirects back with a code), a token endpoint that checks the
code, the client and the PKCE verifier (S256) and answers a signed JWT, and the JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "klaw-ui-test"
CLIENT = "klaw-ui"


@dataclass
class Idp:
    url: str = ""
    role: str = "operator"
    key: Any = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    codes: dict[str, dict[str, str]] = field(default_factory=dict)  # code -> the request
    refused: list[str] = field(default_factory=list)  # why token requests were refused

    def settings(self) -> dict[str, str]:
        """The KLAW_* settings of a Klaw that signs in here."""
        return {
            "KLAW_HTTP__OIDC__ISSUER": self.url,
            "KLAW_HTTP__OIDC__AUDIENCE": AUDIENCE,
            "KLAW_HTTP__OIDC__JWKS_URL": f"{self.url}/jwks",
            "KLAW_HTTP__OIDC__CLIENT_ID": CLIENT,
            "KLAW_HTTP__OIDC__AUTHORIZE_URL": f"{self.url}/authorize",
            "KLAW_HTTP__OIDC__TOKEN_URL": f"{self.url}/token",
        }

    def token(self) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600}
        return jwt.encode(
            {**claims, "klaw_role": self.role}, self.key, algorithm="RS256", headers={"kid": "k1"}
        )

    def check(self, form: dict[str, str]) -> str | None:
        """Why the token request ``form`` is refused (None: it is not)."""
        asked = self.codes.pop(form.get("code", ""), None)
        if asked is None:
            return "unknown or used code"
        if form.get("client_id") != CLIENT or form.get("redirect_uri") != asked["redirect_uri"]:
            return "client or redirect_uri differ"
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != asked["code_challenge"]:
            return "PKCE verifier does not match"
        return None


@contextmanager
def serving() -> Iterator[Idp]:
    idp = Idp()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/jwks":
                entry = json.loads(RSAAlgorithm.to_jwk(idp.key.public_key()))
                self._send(200, {"keys": [{**entry, "kid": "k1", "use": "sig"}]}, {})
            elif url.path == "/authorize" and query.get("code_challenge_method") == "S256":
                code = secrets.token_urlsafe(16)
                idp.codes[code] = query
                back = urllib.parse.urlencode({"code": code, "state": query.get("state", "")})
                self.send_response(302)
                self.send_header("Location", f"{query['redirect_uri']}?{back}")
                self.end_headers()
            else:
                self._send(400, {"error": "invalid_request"}, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            why = idp.check(form) if self.path == "/token" else "no such endpoint"
            if why is None:
                self._send(200, {"access_token": idp.token(), "token_type": "Bearer"}, {})
            else:
                idp.refused.append(why)
                self._send(400, {"error": "invalid_grant", "error_description": why}, {})

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    idp.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield idp
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
