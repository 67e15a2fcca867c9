"""Signing in to the web UI at an OIDC identity provider (authorization code with PKCE): the
browser goes to the provider and back, the API trades the code, and the page is signed in with
the provider's user and role; a code traded twice, or with the wrong verifier, is refused."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.driver import WAIT
from tests.ui import idp as fake
from tests.ui.conftest import dev_server, shot

pytestmark = pytest.mark.slow
MS = WAIT * 1000


def test_sign_in_at_the_identity_provider(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with fake.serving() as provider, dev_server(tmp_path / "sso", provider.settings(), None) as dev:
        with httpx.Client(base_url=dev.url, timeout=WAIT) as anonymous:
            config = anonymous.get("/api/v1/auth/config").json()["oidc"]
        assert config["client_id"] == fake.CLIENT
        assert "token_url" not in config  # the API trades codes; the page needs no URL
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(urllib.parse.urljoin(dev.url, "/login?next=/schedules"))
        page.get_by_test_id("login-oidc").click()
        page.wait_for_url(lambda url: "/schedules" in url, timeout=MS)
        expect(page.get_by_test_id("whoami")).to_contain_text("oidc:alice", timeout=MS)
        expect(page.get_by_test_id("whoami")).to_contain_text("operator")
        assert "code=" not in page.url and provider.refused == []
        shot(page, "signed-in-with-oidc")
        context.close()


def test_a_code_is_traded_once_and_only_with_its_verifier(tmp_path: Path) -> None:
    with (
        fake.serving() as provider,
        dev_server(tmp_path / "sso2", provider.settings(), None) as dev,
    ):
        verifier = "v" * 50
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        redirect = f"{dev.url}/login"
        params = {
            "response_type": "code",
            "client_id": fake.CLIENT,
            "redirect_uri": redirect,
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        with httpx.Client(timeout=WAIT) as browserless:
            sent = browserless.get(f"{provider.url}/authorize", params=params)
            code = dict(urllib.parse.parse_qsl(sent.headers["location"].split("?")[1]))["code"]
            body = {"code": code, "code_verifier": "w" * 50, "redirect_uri": redirect}
            wrong = browserless.post(f"{dev.url}/api/v1/auth/oidc", json=body)
            assert wrong.status_code == 401, wrong.text
            assert "PKCE verifier does not match" in wrong.json()["detail"]
            again = browserless.post(
                f"{dev.url}/api/v1/auth/oidc", json={**body, "code_verifier": verifier}
            )
            assert again.status_code == 401  # the provider spent the code on the first try
            assert "unknown or used code" in again.json()["detail"]
