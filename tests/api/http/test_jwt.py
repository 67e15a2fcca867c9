"""``JwtAuthenticator`` against a real JWKS served on loopback (stdlib http.server in a thread),
with keys made in the test: a valid JWT is accepted with its role; expired, not yet valid,
wrong audience, wrong issuer, bad signature, ``alg: none``, HS256 signed with the public key,
unknown kid and unknown role are refused; a rotated key (new kid) is picked up."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from klaw.api.http import Role
from klaw.api.http.oidc import JwtAuthenticator
from klaw.errors import ConfigError
from klaw.settings import KlawSettings

AUDIENCE = "klaw-api"


@dataclass
class Issuer:
    """Signing keys by kid, and the JWKS of their public halves served at ``url``."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    fetches: int = 0
    down_hits: int = 0

    def add_rsa(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def add_ec(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, Any]:
        entries = []
        for kid, key in self.keys.items():
            public = key.public_key()
            codec = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
            entry = json.loads(codec.to_jwk(public))
            entries.append({**entry, "kid": kid, "use": "sig"})
        return {"keys": entries}

    def sign(self, kid: str, alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600}
        body.update(claims)
        return jwt.encode(body, self.keys[kid], algorithm=alg, headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    state = Issuer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/garbage":
                self.send_response(200)
                self.send_header("Content-Length", "8")
                self.end_headers()
                self.wfile.write(b"not json")
                return
            if self.path == "/down":
                state.down_hits += 1
                self.send_error(503)
                return
            if self.path != "/.well-known/jwks.json":
                self.send_error(404)
                return
            state.fetches += 1
            body = json.dumps(state.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    state.add_rsa("rsa-1")
    state.add_ec("ec-1")
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def authenticator(issuer: Issuer, **kwargs: Any) -> JwtAuthenticator:
    return JwtAuthenticator(issuer=issuer.url, audience=AUDIENCE, refresh_every=0.0, **kwargs)


def test_valid_tokens_are_accepted_with_their_role(issuer: Issuer) -> None:
    auth = authenticator(issuer)
    rsa_principal = auth.authenticate(issuer.sign("rsa-1", klaw_role="operator"))
    assert rsa_principal is not None
    assert (rsa_principal.role, rsa_principal.subject) == (Role.OPERATOR, "oidc:alice")
    ec_principal = auth.authenticate(issuer.sign("ec-1", "ES256", klaw_role="admin"))
    assert ec_principal is not None and ec_principal.role is Role.ADMIN
    listed = auth.authenticate(issuer.sign("rsa-1", klaw_role=["viewer", "approver", "x"]))
    assert listed is not None and listed.role is Role.APPROVER
    assert issuer.fetches == 1  # keys are cached


def test_the_role_claim_is_configurable(issuer: Issuer) -> None:
    auth = authenticator(issuer, role_claim="groups")
    assert auth.authenticate(issuer.sign("rsa-1", klaw_role="admin")) is None
    found = auth.authenticate(issuer.sign("rsa-1", groups="viewer"))
    assert found is not None and found.role is Role.VIEWER


def test_bad_tokens_are_refused(issuer: Issuer) -> None:
    auth = authenticator(issuer)
    now = int(time.time())
    good = issuer.sign("rsa-1", klaw_role="admin")
    head, body, signature = good.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    unsigned = jwt.encode(
        {"iss": issuer.url, "aud": AUDIENCE, "exp": now + 600, "klaw_role": "admin"},
        None,
        algorithm="none",
        headers={"kid": "rsa-1"},
    )
    refused = {
        "expired": issuer.sign("rsa-1", klaw_role="admin", exp=now - 3600),
        "not yet valid": issuer.sign("rsa-1", klaw_role="admin", nbf=now + 3600),
        "wrong audience": issuer.sign("rsa-1", klaw_role="admin", aud="someone-else"),
        "wrong issuer": issuer.sign("rsa-1", klaw_role="admin", iss="https://evil.example"),
        "no exp": _without_exp(issuer),
        "bad signature": f"{head}.{body}.{flipped}",
        "alg none": unsigned,
        "unknown kid": _with_kid(issuer, "rsa-1", "nobody"),
        "rsa key claimed as ES256": _with_kid(issuer, "ec-1", "rsa-1", alg="ES256"),
        "missing role": issuer.sign("rsa-1"),
        "unknown role": issuer.sign("rsa-1", klaw_role="superuser"),
        "not a jwt": "klaw_0123456789ab_secret",
    }
    for why, token in refused.items():
        assert auth.authenticate(token) is None, why
    assert auth.authenticate(good) is not None


def test_hs256_signed_with_the_public_key_is_refused(issuer: Issuer) -> None:
    """The classic algorithm-confusion attack: an HMAC keyed with the published RSA key."""
    import base64
    import hashlib
    import hmac

    public_pem = (
        issuer.keys["rsa-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    claims = {"iss": issuer.url, "aud": AUDIENCE, "exp": int(time.time()) + 600}
    payload = b64(json.dumps({**claims, "klaw_role": "admin"}).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert authenticator(issuer).authenticate(f"{header}.{payload}.{b64(mac)}") is None


def test_a_rotated_key_is_picked_up(issuer: Issuer) -> None:
    auth = authenticator(issuer)
    assert auth.authenticate(issuer.sign("rsa-1", klaw_role="viewer")) is not None
    issuer.add_rsa("rsa-2")
    del issuer.keys["rsa-1"]
    rotated = auth.authenticate(issuer.sign("rsa-2", klaw_role="operator"))
    assert rotated is not None and rotated.role is Role.OPERATOR
    assert issuer.fetches == 2


def test_unknown_kids_refetch_at_most_once_per_interval(issuer: Issuer) -> None:
    auth = JwtAuthenticator(issuer=issuer.url, audience=AUDIENCE, refresh_every=3600.0)
    assert auth.authenticate(issuer.sign("rsa-1", klaw_role="viewer")) is not None
    for n in range(5):
        assert auth.authenticate(_with_kid(issuer, "rsa-1", f"made-up-{n}")) is None
    assert issuer.fetches == 1


def test_an_unreachable_jwks_refuses_rather_than_fails(issuer: Issuer) -> None:
    auth = authenticator(issuer, jwks_url=f"{issuer.url}/missing")
    assert auth.authenticate(issuer.sign("rsa-1", klaw_role="admin")) is None
    garbage = authenticator(issuer, jwks_url=f"{issuer.url}/garbage")
    assert garbage.authenticate(issuer.sign("rsa-1", klaw_role="admin")) is None


def test_a_jwks_that_is_down_is_left_alone_for_the_backoff(issuer: Issuer) -> None:
    now = [1000.0]
    auth = authenticator(
        issuer, jwks_url=f"{issuer.url}/down", backoff=(1.0, 4.0), clock=lambda: now[0]
    )
    token = issuer.sign("rsa-1", klaw_role="admin")
    for _ in range(10):  # a burst of requests while the issuer is down: one fetch
        assert auth.authenticate(token) is None
    assert issuer.down_hits == 1
    now[0] += 1.5  # past the first back-off: asked again, then quiet for twice as long
    for _ in range(10):
        assert auth.authenticate(token) is None
    assert issuer.down_hits == 2
    now[0] += 1.5  # still inside the doubled back-off
    assert auth.authenticate(token) is None
    assert issuer.down_hits == 2
    now[0] += 100.0  # the back-off is capped (4 s here): asked again
    assert auth.authenticate(token) is None
    assert issuer.down_hits == 3


def test_a_jwks_url_that_is_not_http_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="KLAW_HTTP__OIDC__JWKS_URL"):
        JwtAuthenticator(issuer="https://id.example", audience="a", jwks_url="file:///etc/passwd")


def test_settings() -> None:
    assert JwtAuthenticator.from_settings(KlawSettings()) is None
    with pytest.raises(ConfigError) as info:
        JwtAuthenticator.from_settings(
            KlawSettings(http={"oidc": {"issuer": "https://id.example"}})
        )
    assert "KLAW_HTTP__OIDC__AUDIENCE" in info.value.message
    made = JwtAuthenticator.from_settings(
        KlawSettings(http={"oidc": {"issuer": "https://id.example/", "audience": "klaw"}})
    )
    assert made is not None
    assert made.jwks_url == "https://id.example/.well-known/jwks.json"
    assert made.role_claim == "klaw_role"


def _with_kid(issuer: Issuer, signer: str, kid: str, alg: str | None = None) -> str:
    """A token signed by ``signer``'s key whose header names ``kid`` (and ``alg``)."""
    key = issuer.keys[signer]
    use = alg or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
    claims = {"iss": issuer.url, "aud": AUDIENCE, "exp": int(time.time()) + 600}
    return jwt.encode({**claims, "klaw_role": "admin"}, key, algorithm=use, headers={"kid": kid})


def _without_exp(issuer: Issuer) -> str:
    claims = {"iss": issuer.url, "aud": AUDIENCE, "klaw_role": "admin"}
    return jwt.encode(claims, issuer.keys["rsa-1"], algorithm="RS256", headers={"kid": "rsa-1"})
