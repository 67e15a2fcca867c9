"""Stored API tokens as the HTTP API sees them: ``StoredTokenAuthenticator`` on a real SQLite
store (live, wrong secret, malformed, revoked, expired) and ``ChainAuthenticator``; then a real
uvicorn server accepting a stored token until it is revoked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from klaw.api.http import Role
from klaw.api.http.tokens import ChainAuthenticator, StoredTokenAuthenticator
from klaw.metadata.sqlite import SQLiteMetadataStore
from klaw.service.tokens import create_token, revoke_token, split_token

from .live import TOKENS, serving, static_tokens


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteMetadataStore]:
    store = SQLiteMetadataStore(tmp_path / "klaw.db")
    store.migrate()
    yield store
    store.close()


def test_a_live_token_is_accepted_with_its_role(store: SQLiteMetadataStore) -> None:
    issued = create_token(store, name="ci", role="operator")
    assert issued.token.startswith(f"klaw_{issued.record.token_id}_")
    principal = StoredTokenAuthenticator(store).authenticate(issued.token)
    assert principal is not None and principal.role is Role.OPERATOR
    assert issued.record.token_id in principal.subject and "ci" in principal.subject
    parts = split_token(issued.token)
    assert parts is not None and parts[1] not in principal.subject
    found = store.find_token(issued.record.token_id)
    assert found is not None and found.last_used_at is not None
    assert parts[1] not in found.secret_hash and len(found.secret_hash) == 64


def test_wrong_secret_malformed_revoked_and_expired_are_refused(
    store: SQLiteMetadataStore,
) -> None:
    auth = StoredTokenAuthenticator(store)
    good = create_token(store, name="ci", role="admin").token
    token_id, secret = good.split("_", 2)[1:]
    other_secret = ("A" if secret[0] != "A" else "B") + secret[1:]
    for bad in (f"klaw_{token_id}_{other_secret}", "klaw_", "nope", f"klaw_abc_{secret}", ""):
        assert auth.authenticate(bad) is None, bad
    assert auth.authenticate(good) is not None
    revoke_token(store, token_id)
    assert auth.authenticate(good) is None

    expired = create_token(store, name="old", role="viewer", expires_in=60.0, now=1_000.0)
    assert auth.authenticate(expired.token) is None
    lasting = create_token(store, name="new", role="viewer", expires_in=3_600.0)
    assert auth.authenticate(lasting.token) is not None


def test_the_chain_asks_each_in_turn(store: SQLiteMetadataStore) -> None:
    stored = create_token(store, name="ci", role="approver").token
    chain = ChainAuthenticator([static_tokens(), StoredTokenAuthenticator(store)])
    static = chain.authenticate(TOKENS[Role.VIEWER])
    assert static is not None and static.role is Role.VIEWER
    found = chain.authenticate(stored)
    assert found is not None and found.role is Role.APPROVER
    assert chain.authenticate("neither") is None
    assert len(chain) == 2 and "StoredTokenAuthenticator" in repr(chain)


def test_a_served_stored_token_works_until_revoked(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    tokens = SQLiteMetadataStore(root / ".klaw" / "klaw.db")  # the project's own database
    tokens.migrate()
    try:
        viewer = create_token(tokens, name="dash", role="viewer")
        operator = create_token(tokens, name="ci", role="operator")
        chain = ChainAuthenticator([static_tokens(), StoredTokenAuthenticator(tokens)])
        with serving(root, "http_stored_token_flows", chain) as live:
            with live.client(token=viewer.token) as client:
                assert client.get("/api/v1/workflows").status_code == 200
                refused = client.post("/api/v1/runs", json={"workflow": "pipe"})
                assert refused.status_code == 403, refused.text
            with live.client(token=operator.token) as client:
                created = client.post("/api/v1/runs", json={"workflow": "pipe"})
                assert created.status_code in (200, 201, 202), created.text
                live.wait_done(created.json()["run"]["run_id"])
                revoke_token(tokens, operator.record.token_id)
                assert client.get("/api/v1/workflows").status_code == 401
            with live.client(Role.ADMIN) as client:  # static tokens still work alongside
                assert client.get("/api/v1/workflows").status_code == 200
    finally:
        tokens.close()
