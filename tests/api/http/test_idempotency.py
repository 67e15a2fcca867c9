"""Idempotency-Key on POST /runs against a real uvicorn server: a repeat gets the same run, a
different body with the key is a 409 naming it, keys are per principal, a failed submit does
not hold its key; and the key store alone, with an injected clock, for the TTL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from klaw.api.http import Role
from klaw.api.http.idempotency import IdempotencyError, IdempotencyKeys, MalformedKeyError

from .live import Live, serving

API = "/api/v1"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serving(tmp_path_factory.mktemp("idempotency"), "http_idem_flows") as served:
        yield served


def post(client: httpx.Client, key: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(f"{API}/runs", json=body, headers={"Idempotency-Key": key})


def test_a_repeat_gets_the_same_run(live: Live) -> None:
    body = {"workflow": "pipe", "params": {"n": 2}}
    with live.client(Role.OPERATOR) as operator:
        first = post(operator, "key-1", body)
        assert first.status_code == 201, first.text
        run_id = first.json()["run"]["run_id"]
        again = post(operator, "key-1", {"params": {"n": 2}, "workflow": "pipe"})
        assert again.status_code == 200, again.text
        assert again.json()["run"]["run_id"] == run_id
        assert again.headers["location"] == first.headers["location"]
        runs = operator.get(f"{API}/runs", params={"workflow": "pipe"}).json()["runs"]
        assert [r["run_id"] for r in runs].count(run_id) == 1
        assert live.wait_done(run_id)["state"] == "succeeded"
        # once done, a repeat still answers that run, as it stands now
        later = post(operator, "key-1", body)
        assert later.status_code == 200 and later.json()["run"]["run_id"] == run_id
        assert later.json()["run"]["state"] == "succeeded"


def test_the_same_key_with_another_body_is_a_conflict(live: Live) -> None:
    with live.client(Role.OPERATOR) as operator:
        first = post(operator, "key-2", {"workflow": "pipe"})
        assert first.status_code == 201, first.text
        other = post(operator, "key-2", {"workflow": "pipe", "params": {"n": 5}})
        assert other.status_code == 409, other.text
        assert other.headers["content-type"] == "application/problem+json"
        assert other.json()["code"] == "IdempotencyError"
        assert "key-2" in other.json()["detail"]
        live.wait_done(first.json()["run"]["run_id"])


def test_keys_are_per_principal(live: Live) -> None:
    body = {"workflow": "pipe"}
    with live.client(Role.OPERATOR) as operator, live.client(Role.ADMIN) as admin:
        mine = post(operator, "shared-key", body)
        assert mine.status_code == 201, mine.text
        live.wait_done(mine.json()["run"]["run_id"])  # the workflow runs one at a time
        theirs = post(admin, "shared-key", body)
        assert theirs.status_code == 201, theirs.text
        assert mine.json()["run"]["run_id"] != theirs.json()["run"]["run_id"]
        live.wait_done(theirs.json()["run"]["run_id"])


def test_a_failed_submit_does_not_hold_its_key(live: Live) -> None:
    with live.client(Role.OPERATOR) as operator:
        for _ in range(2):
            refused = post(operator, "key-3", {"workflow": "nope"})
            assert refused.status_code == 400, refused.text
            assert refused.json()["code"] == "DefinitionError"
        made = post(operator, "key-3", {"workflow": "pipe"})
        assert made.status_code == 201, made.text
        live.wait_done(made.json()["run"]["run_id"])
        malformed = post(operator, "k" * 300, {"workflow": "pipe"})
        assert malformed.status_code == 422, malformed.text
        assert malformed.json()["code"] == "MalformedKeyError"


def test_keys_expire_after_their_ttl() -> None:
    now = [0.0]
    keys = IdempotencyKeys(60.0, clock=lambda: now[0])
    assert keys.begin("alice", "k", "body-a") is None
    with pytest.raises(IdempotencyError, match="still being answered"):
        keys.begin("alice", "k", "body-a")
    keys.finish("alice", "k", "run-1")
    assert keys.begin("alice", "k", "body-a") == "run-1"
    with pytest.raises(IdempotencyError, match="different request body"):
        keys.begin("alice", "k", "body-b")
    assert keys.begin("bob", "k", "body-b") is None
    now[0] = 60.0
    assert keys.begin("alice", "k", "body-b") is None  # expired: a new request
    with pytest.raises(MalformedKeyError):
        keys.begin("alice", "", "body-a")
