"""``klaw tokens create|list|revoke`` on a real project, and the tokens used against a real
``klaw api`` process that has no KLAW_HTTP__TOKENS: accepted with their role, refused (401)
once revoked or expired. The secret is printed once and never listed."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from ..api.http.live import write_project
from ..api.http.test_cli import klaw_api
from .driver import WAIT, klaw


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path, "tokens_cli_flows")


def test_create_list_and_revoke(project: Path) -> None:
    made = klaw(project, "tokens", "create", "--role", "Operator", "--name", "ci", "-o", "json")
    assert made.returncode == 0, str(made)
    issued = made.json()
    token, token_id = issued["token"], issued["id"]
    assert token.startswith(f"klaw_{token_id}_")
    assert (issued["role"], issued["name"], issued["state"]) == ("operator", "ci", "active")
    assert issued["expires_at"] is None

    human = klaw(
        project, "tokens", "create", "--role", "viewer", "--name", "dash", "--expires", "30d"
    )
    assert human.returncode == 0, str(human)
    assert human.stdout.startswith("klaw_") and "shown only now" in human.out

    listed = klaw(project, "tokens", "list", "-o", "json").json()
    assert [t["name"] for t in listed] == ["ci", "dash"]
    assert listed[1]["expires_at"] - listed[1]["created_at"] == pytest.approx(30 * 86_400)
    table = klaw(project, "tokens", "list")
    secret = token.split("_", 2)[2]
    for text in (table.stdout, klaw(project, "tokens", "list", "-o", "json").stdout):
        assert token_id in text and secret not in text and "hash" not in text

    revoked = klaw(project, "tokens", "revoke", token_id)
    assert revoked.returncode == 0, str(revoked)
    assert f"token {token_id} (ci) is revoked" in revoked.out
    states = {t["name"]: t["state"] for t in klaw(project, "tokens", "list", "-o", "json").json()}
    assert states == {"ci": "revoked", "dash": "active"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("create", "--role", "boss", "--name", "x"), "Unknown role 'boss'"),
        (
            ("create", "--role", "admin", "--name", "x", "--expires", "soon"),
            "--expires 'soon' is not a duration",
        ),
        (("create", "--role", "admin", "--name", "x", "--expires", "0d"), "--expires '0d' is zero"),
        (("create", "--role", "admin", "--name", " "), "needs a name"),
        (("revoke", "0123456789ab"), "No API token has the id '0123456789ab'"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    project: Path, args: tuple[str, ...], expected: str
) -> None:
    result = klaw(project, "tokens", *args)
    assert result.returncode == 2, str(result)
    assert expected in result.out and "Traceback" not in result.out
    assert klaw(project, "tokens", "list", "-o", "json").json() == []


def test_stored_tokens_against_a_real_klaw_api(project: Path) -> None:
    refused = klaw(project, "api", "--port", "0")
    assert refused.returncode == 2, str(refused)
    assert "KLAW_HTTP__TOKENS" in refused.out and "klaw tokens create" in refused.out

    def make(role: str, *extra: str) -> str:
        made = klaw(
            project, "tokens", "create", "--role", role, "--name", role, *extra, "-o", "json"
        )
        assert made.returncode == 0, str(made)
        token: str = made.json()["token"]
        return token

    viewer, operator, brief = make("viewer"), make("operator"), make("admin", "--expires", "2s")
    with klaw_api(project) as api:
        url = api.first_line().removeprefix("Klaw API listening on ")
        with httpx.Client(base_url=url, timeout=WAIT) as client:

            def status(token: str, method: str = "GET", path: str = "/api/v1/workflows") -> int:
                headers = {"Authorization": f"Bearer {token}"}
                return client.request(method, path, headers=headers).status_code

            assert status(viewer) == 200
            assert status(viewer, "POST", "/api/v1/schedules/pipe/pause") == 403
            assert status(operator, "POST", "/api/v1/schedules/pipe/pause") == 200
            assert status("klaw_0123456789ab_not-a-real-secret-at-all") == 401

            token_id = operator.split("_", 2)[1]
            assert klaw(project, "tokens", "revoke", token_id).returncode == 0
            assert status(operator) == 401
            assert status(viewer) == 200

            deadline = time.monotonic() + WAIT  # the 2 s token expires: refused from then on
            while status(brief) == 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert status(brief) == 401
