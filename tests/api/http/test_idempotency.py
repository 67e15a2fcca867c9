"""Idempotency-Key on POST /runs against a real uvicorn server: a repeat gets the same run, a
different body with the key is a 409 naming it, keys are per principal, a failed submit does
not hold its key; the keys on a real SQLite store with an injected clock (TTL, a dead claim
taken over); and real `klaw api` processes: a retry after a restart gets the same run, and two
processes on one Postgres racing with one key make one run."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from psycopg import sql

from klaw.api.http import Role
from klaw.api.http.idempotency import (
    IdempotencyError,
    IdempotencyKeys,
    KeyInProgressError,
    MalformedKeyError,
    fingerprint,
)
from klaw.metadata.records import IdempotencyRecord
from klaw.metadata.sqlite import SQLiteMetadataStore

from ...cli.driver import WAIT, Background, klaw, wait_for
from .live import TOKENS, Live, serving, write_project
from .test_cli import API_TOKENS, klaw_api

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


def test_keys_expire_after_their_ttl(tmp_path: Path) -> None:
    now = [1000.0]
    with SQLiteMetadataStore(tmp_path / "klaw.db") as store:
        store.migrate()
        keys = IdempotencyKeys(store, 60.0, pending=30.0, clock=lambda: now[0])
        claim = keys.begin("alice", "k", "body-a")
        assert isinstance(claim, IdempotencyRecord)
        with pytest.raises(KeyInProgressError, match="still being answered"):
            keys.begin("alice", "k", "body-a")
        keys.finish(claim, "run-1")
        assert keys.begin("alice", "k", "body-a") == "run-1"
        with pytest.raises(IdempotencyError, match="different request body"):
            keys.begin("alice", "k", "body-b")
        assert isinstance(keys.begin("bob", "k", "body-b"), IdempotencyRecord)
        now[0] += 60.0
        assert isinstance(keys.begin("alice", "k", "body-b"), IdempotencyRecord)  # expired
        with pytest.raises(MalformedKeyError):
            keys.begin("alice", "", "body-a")


def test_a_claim_whose_request_died_is_taken_over(tmp_path: Path) -> None:
    now = [1000.0]
    with SQLiteMetadataStore(tmp_path / "klaw.db") as store:
        store.migrate()
        keys = IdempotencyKeys(store, 600.0, pending=30.0, clock=lambda: now[0])
        assert isinstance(keys.begin("alice", "k", "body"), IdempotencyRecord)  # never finished
        now[0] += 29.0
        with pytest.raises(KeyInProgressError):
            keys.begin("alice", "k", "body")
        now[0] += 1.0
        taker = keys.begin("alice", "k", "body")
        assert isinstance(taker, IdempotencyRecord)
        keys.finish(taker, "run-2")
        assert keys.begin("alice", "k", "body") == "run-2"


# -- across restarts and processes -------------------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh schema on the test Postgres (dropped afterwards)."""
    server = os.environ.get("KLAW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"klaw_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(server, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"Postgres is not reachable at {server}: {exc}")
    with admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield f"{server}?options=-csearch_path%3D{schema}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _post_with_key(url: str, token: str, key: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    return httpx.post(f"{url}{API}/runs", json=body, headers=headers, timeout=WAIT)


def _wait_done(url: str, token: str, run_id: str) -> None:
    def ended() -> bool:
        found = httpx.get(
            f"{url}{API}/runs/{run_id}", headers={"Authorization": f"Bearer {token}"}, timeout=WAIT
        )
        return found.json()["run"]["state"] in {"succeeded", "failed", "cancelled"}

    wait_for(f"run {run_id} to end", ended)


def _listening(api: Background) -> str:
    line = api.first_line()
    assert line.startswith("Klaw API listening on "), line
    return line.removeprefix("Klaw API listening on ")


@pytest.mark.slow
def test_a_retry_after_a_restart_gets_the_same_run(tmp_path: Path) -> None:
    root = write_project(tmp_path, "http_idem_restart_flows")
    token = TOKENS[Role.OPERATOR]
    body = {"workflow": "pipe", "params": {"n": 4}}
    with klaw_api(root, KLAW_HTTP__TOKENS=API_TOKENS) as first:
        url = _listening(first)
        made = _post_with_key(url, token, "restart-key", body)
        assert made.status_code == 201, made.text
        _wait_done(url, token, made.json()["run"]["run_id"])  # stop an idle server
        code, _, err = first.stop(signal.SIGTERM)
        assert code == 0, err
    with klaw_api(root, KLAW_HTTP__TOKENS=API_TOKENS) as second:
        url = _listening(second)
        again = _post_with_key(url, token, "restart-key", body)
        assert again.status_code == 200, again.text
        assert again.json()["run"]["run_id"] == made.json()["run"]["run_id"]
        other = _post_with_key(url, token, "restart-key", {"workflow": "x"})
        assert other.status_code == 409, other.text
    listed = klaw(root, "runs", "list", "-o", "json")
    assert listed.returncode == 0, str(listed)
    assert [r["run_id"] for r in listed.json()] == [made.json()["run"]["run_id"]]


RACE_FLOWS = """
import klaw


@klaw.stage
def one() -> int:
    return 1


noop = klaw.workflow("noop", [one], max_active_runs=100)
"""


@pytest.mark.slow
def test_two_api_processes_on_postgres_racing_one_key_make_one_run(
    tmp_path: Path, postgres_url: str
) -> None:
    root = write_project(tmp_path, "http_idem_race_flows", RACE_FLOWS)
    env = {"KLAW_HTTP__TOKENS": API_TOKENS, "KLAW_METADATA__URL": postgres_url}
    upgraded = klaw(root, "db", "upgrade", extra_env={"KLAW_METADATA__URL": postgres_url})
    assert upgraded.returncode == 0, str(upgraded)
    token, keys, per_key = TOKENS[Role.OPERATOR], [f"race-{i}" for i in range(4)], 8
    with klaw_api(root, **env) as one, klaw_api(root, **env) as two:
        urls = [_listening(one), _listening(two)]
        for key in keys:
            start = threading.Barrier(per_key)

            def post(i: int, key: str = key, start: threading.Barrier = start) -> httpx.Response:
                start.wait()
                return _post_with_key(urls[i % 2], token, key, {"workflow": "noop"})

            with ThreadPoolExecutor(per_key) as pool:
                answers = list(pool.map(post, range(per_key)))
            made = [a for a in answers if a.status_code == 201]
            assert len(made) == 1, [(a.status_code, a.text) for a in answers]
            run_id = made[0].json()["run"]["run_id"]
            for answer in answers:
                if answer.status_code == 200:
                    assert answer.json()["run"]["run_id"] == run_id
                else:
                    assert answer.status_code in {201, 409}, answer.text
                    if answer.status_code == 409:
                        assert answer.json()["code"] == "KeyInProgressError"
                        assert answer.headers["retry-after"] == "1"
    with psycopg.connect(postgres_url) as conn:
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()
        claimed = conn.execute("SELECT count(*) FROM idempotency_keys").fetchone()
    assert runs == (len(keys),) and claimed == (len(keys),)


def test_a_stored_fingerprint_is_salted_by_caller_and_key() -> None:
    body = {"workflow": "pipe", "params": {"email": "alice@example.com"}}
    plain = hashlib.sha256(msgspec.json.encode(body, order="sorted")).hexdigest()
    mine = fingerprint(body, "static:admin", "key-1")
    assert mine == fingerprint(dict(reversed(body.items())), "static:admin", "key-1")
    assert len({plain, mine, fingerprint(body, "static:admin", "key-2")}) == 3
    assert fingerprint(body, "static:viewer", "key-1") != mine
