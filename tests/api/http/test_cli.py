"""``klaw api`` as a real process: it serves /health and the API, exits 0 on SIGTERM and
SIGINT, and refuses to start (exit 2) without KLAW_HTTP__TOKENS."""

from __future__ import annotations

import json
import signal
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path

import httpx
import pytest

from ...cli.driver import WAIT, Background, flat, klaw, service
from .live import TOKENS, write_project

API_TOKENS = ",".join(f"{role.label}:{token}" for role, token in TOKENS.items())


def klaw_api(cwd: Path, *args: str, **extra_env: str) -> ContextManager[Background]:
    return service(cwd, "api", *args, **extra_env)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_and_exits_0_on_a_signal(tmp_path: Path, sig: int) -> None:
    root = write_project(tmp_path, f"http_cli_flows_{sig}")
    with klaw_api(root, KLAW_HTTP__TOKENS=API_TOKENS) as api:
        line = api.first_line()
        assert line.startswith("Klaw API listening on http://127.0.0.1:"), line
        url = line.removeprefix("Klaw API listening on ")
        with httpx.Client(base_url=url, timeout=WAIT) as client:
            assert client.get("/health").json() == {"status": "ok"}
            assert client.get("/api/v1/workflows").status_code == 401
            viewer = {"Authorization": f"Bearer {TOKENS[min(TOKENS)]}"}
            names = client.get("/api/v1/workflows", headers=viewer).json()["workflows"]
            assert {w["name"] for w in names} == {"pipe", "broken"}
        code, _, err = api.stop(sig)
        assert code == 0, err
        assert "Klaw API stopped." in err
        assert "Traceback" not in err


def test_json_output(tmp_path: Path) -> None:
    root = write_project(tmp_path, "http_cli_json_flows")
    with klaw_api(root, "-o", "json", KLAW_HTTP__TOKENS=API_TOKENS) as api:
        started = json.loads(api.first_line())
        assert started["host"] == "127.0.0.1"
        assert started["project"] == "httpproj"
        assert started["listening"] == f"http://127.0.0.1:{started['port']}"
        assert started["ui"] == f"{started['listening']}/login"
        with httpx.Client(base_url=started["listening"], timeout=WAIT) as client:
            assert client.get("/ready").json() == {"status": "ready"}
        code, _, err = api.stop(signal.SIGTERM)
        assert code == 0, err


def test_refuses_to_start_without_tokens(tmp_path: Path) -> None:
    root = write_project(tmp_path, "http_cli_notoken_flows")
    result = klaw(root, "api", "--port", "0")
    assert result.returncode == 2, result
    assert "KLAW_HTTP__TOKENS" in result.out
    assert "Traceback" not in result.out
    bad = klaw(root, "api", "--port", "0", extra_env={"KLAW_HTTP__TOKENS": "boss:abc"})
    assert bad.returncode == 2, bad
    assert "boss" in flat(bad.out)


def test_tokens_and_prune_over_http_need_the_admin_role(tmp_path: Path) -> None:
    root = write_project(tmp_path, "http_cli_admin_flows")
    with klaw_api(root, KLAW_HTTP__TOKENS=API_TOKENS) as api:
        url = api.first_line().removeprefix("Klaw API listening on ")
        admin = {"KLAW_TOKEN": TOKENS[max(TOKENS)]}
        operator = {"KLAW_TOKEN": TOKENS[sorted(TOKENS)[1]]}
        made = klaw(
            root,
            "--url",
            url,
            "tokens",
            "create",
            "--role",
            "viewer",
            "--name",
            "ci",
            "-o",
            "json",
            extra_env=admin,
        )
        assert made.returncode == 0, made
        secret = made.json()["token"]
        with httpx.Client(base_url=url, timeout=WAIT) as client:
            me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"})
            assert me.json()["role"] == "viewer", me.text
        listed = klaw(root, "--url", url, "tokens", "list", "-o", "json", extra_env=admin)
        assert [t["name"] for t in listed.json()] == ["ci"], listed
        refused = klaw(root, "--url", url, "db", "prune", "--older-than", "1d", extra_env=operator)
        assert refused.returncode != 0 and "admin" in refused.out, refused
        assert "Traceback" not in refused.out
        pruned = klaw(
            root, "--url", url, "db", "prune", "--older-than", "1d", "-o", "json", extra_env=admin
        )
        assert pruned.json()["older_than_seconds"] == 86400, pruned
        revoked = klaw(root, "--url", url, "tokens", "revoke", made.json()["id"], extra_env=admin)
        assert revoked.returncode == 0, revoked
        with httpx.Client(base_url=url, timeout=WAIT) as client:
            me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"})
            assert me.status_code == 401
        api.stop(signal.SIGTERM)
