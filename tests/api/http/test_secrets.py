"""Secrets over the HTTP API: a run submitted with a reference gets the value, while
``GET /runs/{id}``, the logs and the params schema show only the reference or a mask."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from klaw.api.http import Role

from .live import Live, serving

API = "/api/v1"
VALUE, TOKEN = "api-s3cr3t-value", "t0ken-given-by-value"

FLOWS = """
from pydantic import BaseModel, SecretStr

import klaw


class Creds(BaseModel):
    pw: klaw.Secret = klaw.Secret("api_pw")
    token: SecretStr | None = None


@klaw.stage
def use(params: Creds) -> int:
    token = params.token.get_secret_value() if params.token else ""
    print(f"pw={params.pw.get_secret_value()} token={token}")
    return 1


guarded = klaw.workflow("guarded", [use])
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("secrets")
    (root / ".klaw" / "secrets").mkdir(parents=True)
    (root / ".klaw" / "secrets" / "api_pw").write_text(VALUE + "\n")
    with serving(root, "http_secret_flows", flows=FLOWS) as served:
        yield served


@pytest.fixture(scope="module")
def operator(live: Live) -> Iterator[httpx.Client]:
    with live.client(Role.OPERATOR) as client:
        yield client


def test_the_api_shows_references_and_masks(live: Live, operator: httpx.Client) -> None:
    response = operator.post(
        f"{API}/runs", json={"workflow": "guarded", "params": {"token": TOKEN}}
    )
    assert response.status_code == 201, response.text
    run_id = response.json()["run"]["run_id"]
    assert live.wait_done(run_id)["state"] == "succeeded"
    run = operator.get(f"{API}/runs/{run_id}").json()["run"]
    assert run["params"] == {"pw": "secret:api_pw", "token": {"$redacted": True}}
    logs = operator.get(f"{API}/runs/{run_id}/logs").json()["logs"]
    assert any("pw=*** token=***" in str(line) for line in logs), logs
    assert not any(VALUE in str(line) or TOKEN in str(line) for line in logs)


def test_a_missing_secret_is_a_problem_naming_it(operator: httpx.Client) -> None:
    response = operator.post(
        f"{API}/runs", json={"workflow": "guarded", "params": {"pw": "secret:nowhere"}}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "SecretNotFoundError"
    assert "'nowhere'" in body["detail"] and "KLAW_SECRET_NOWHERE" in body["detail"]


def test_the_params_schema_marks_a_secret(operator: httpx.Client) -> None:
    schema = operator.get(f"{API}/workflows/guarded").json()["params_schema"]
    pw = schema["properties"]["pw"]
    assert (pw["format"], pw["writeOnly"], pw["default"]) == ("password", True, "secret:api_pw")
