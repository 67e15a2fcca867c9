"""The pipeline lifecycle over the HTTP API on a real uvicorn server: the roles of its routes,
an operator's request approved by an approver's token (never the requester's), JSON bodies,
the audit log naming each token, bundles, drafts, and the CLI over ``--url``."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from klaw.api.http import Role

from ...cli.driver import klaw, service
from .live import TOKENS, Live, serving, write_project

API = "/api/v1"
API_TOKENS = ",".join(f"{role.label}:{token}" for role, token in TOKENS.items())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serving(tmp_path_factory.mktemp("lifecycle"), "http_lifecycle_flows") as served:
        yield served


def test_versions_promotions_and_approvals_over_http(live: Live) -> None:
    with (
        live.client(Role.VIEWER) as viewer,
        live.client(Role.OPERATOR) as operator,
        live.client(Role.APPROVER) as approver,
    ):
        refused = viewer.post(f"{API}/workflows/pipe/versions", json={"message": "no"})
        assert refused.status_code == 403, refused.text
        made = operator.post(f"{API}/workflows/pipe/versions", json={"message": "first"})
        assert made.status_code == 201, made.text
        version = made.json()["version"]
        assert version["version"] == 1 and version["kind"] == "python"
        again = operator.post(f"{API}/workflows/pipe/versions", json={"message": "same"})
        assert again.status_code == 200 and again.json()["created"] is False
        bad = operator.post(f"{API}/workflows/pipe/versions", json={"mesage": "typo"})
        assert bad.status_code == 422 and "mesage" in bad.json()["detail"], bad.text
        qa = operator.post(f"{API}/workflows/pipe/versions/1/promote", params={"to": "qa"})
        assert qa.status_code == 200, qa.text
        assert qa.json()["deployment"]["environment"] == "qa", qa.text
        skip = operator.post(f"{API}/workflows/pipe/versions/1/promote", params={"to": "prod"})
        assert skip.status_code == 409 and skip.json()["code"] == "PromotionError"
        asked = operator.post(f"{API}/workflows/pipe/versions/1/promote", params={"to": "uat"})
        request_id = asked.json()["request"]["request_id"]
        by_operator = operator.post(f"{API}/approvals/{request_id}/approve", json={})
        assert by_operator.status_code == 403  # the approver role is needed
        pending = viewer.get(f"{API}/approvals", params={"workflow": "pipe"}).json()
        assert [r["request_id"] for r in pending["requests"]] == [request_id]
        done = approver.post(f"{API}/approvals/{request_id}/approve", json={"comment": "lgtm"})
        assert done.status_code == 200, done.text
        assert done.json()["deployment"]["environment"] == "uat"
        listed = viewer.get(f"{API}/workflows/pipe/versions").json()
        assert listed["versions"][0]["read_only"] is True
        assert [d["environment"] for d in listed["deployments"]] == ["dev", "qa", "uat"]
        entries = viewer.get(f"{API}/audit", params={"workflow": "pipe"}).json()["entries"]
        actors = {e["action"]: e["actor"] for e in entries}
        assert actors["promotion.requested"] != actors["promotion.approved"]
        assert actors["promotion.approved"].startswith("token:")
        detail = viewer.get(f"{API}/workflows/pipe/versions/1").json()["detail"]
        assert "pipe = klaw.workflow" in next(iter(detail["files"].values()))
        diff = viewer.get(f"{API}/workflows/pipe/diff", params={"a": 1}).json()
        assert diff["files"] == [] and diff["b"] is None  # the working copy is v1


def test_bundles_and_drafts_over_http(live: Live) -> None:
    with live.client(Role.OPERATOR) as operator:
        operator.post(f"{API}/workflows/pipe/versions", json={"message": "for export"})
        bundle = operator.get(f"{API}/workflows/pipe/versions/1/bundle").json()["bundle"]
        assert bundle["klaw_bundle"] == 1 and bundle["workflow"] == "pipe"
        tampered = {**bundle, "hash": "0" * 64}
        refused = operator.post(f"{API}/versions/import", json={"bundle": tampered})
        assert refused.status_code == 422 and refused.json()["code"] == "VersionBundleError"
        same = operator.post(f"{API}/versions/import", json={"bundle": bundle})
        assert same.status_code == 200 and same.json()["created"] is False
        files = {"config.yaml": "engine: duckdb\n", "workflow.sql": "-- name: a\nSELECT 1 AS x;\n"}
        checked = operator.post(f"{API}/drafts/check", json={"workflow": "draft", "files": files})
        assert checked.status_code == 200 and checked.json()["error"] is None, checked.text
        assert checked.json()["plan"]["stages"] == ["a"]
        broken = {**files, "config.yaml": "engine: spark\n"}
        said = operator.post(f"{API}/drafts/check", json={"workflow": "draft", "files": broken})
        assert "draft/config.yaml" in said.json()["error"]["message"]


def test_openapi_documents_the_bodies(live: Live) -> None:
    with live.client() as anonymous:
        spec = anonymous.get("/openapi.json").json()
    body = spec["paths"][f"{API}/workflows/{{workflow}}/versions"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"message", "files"}
    approve = spec["paths"][f"{API}/approvals/{{request_id}}/approve"]["post"]
    assert (
        "comment" in approve["requestBody"]["content"]["application/json"]["schema"]["properties"]
    )


def test_cli_over_url_as_two_people(tmp_path: Path) -> None:
    root = write_project(tmp_path, "http_lifecycle_cli_flows")
    with service(root, "api", KLAW_HTTP__TOKENS=API_TOKENS) as api:
        url = api.first_line().removeprefix("Klaw API listening on ")
        operator = {"KLAW_TOKEN": TOKENS[Role.OPERATOR]}
        approver = {"KLAW_TOKEN": TOKENS[Role.APPROVER]}

        def cli(who: dict[str, str], *args: str) -> object:
            return klaw(root, "--url", url, *args, extra_env=who)

        made = cli(operator, "versions", "create", "pipe", "-m", "v1")
        assert made.returncode == 0 and "created pipe v1" in made.out, made
        assert cli(operator, "promote", "pipe", "1", "--to", "qa").returncode == 0
        asked = cli(operator, "promote", "pipe", "1", "--to", "uat", "-o", "json")
        request_id = asked.json()["request"]["request_id"]
        own = cli(operator, "approvals", "approve", request_id)
        assert own.returncode != 0 and "approver" in own.out and "Traceback" not in own.out
        done = cli(approver, "approvals", "approve", request_id, "-m", "ok")
        assert done.returncode == 0 and "deployed in uat" in done.out, done
        audit = cli(operator, "audit", "list", "-o", "json")
        assert [e["action"] for e in audit.json()["entries"]][:2] == [
            "promoted",
            "promotion.approved",
        ]
        api.stop(signal.SIGTERM)
