"""Auth from one place: every protected route refuses no token, a wrong token (401) and a
role one step too low (403); the probes need none; static tokens; a failing authenticator is a
500 without a traceback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from klaw.api.http import ROLES, Principal, Role, StaticTokenAuthenticator
from klaw.api.http.routes import PUBLIC
from klaw.errors import ConfigError
from klaw.settings import KlawSettings

from .live import TOKENS, Live, serving

API = "/api/v1"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with pytest.MonkeyPatch.context() as env:
        # a wrong token for every route: more failures than the default burst (test_limits)
        env.setenv("KLAW_HTTP__AUTH_FAIL_BURST", "1000")
        with serving(tmp_path_factory.mktemp("auth"), "http_auth_flows") as served:
            yield served


def protected(live: Live) -> list[tuple[str, str, Role]]:
    """(method, concrete path, minimum role) of every /api/v1 route."""
    found = []
    for route in live.app.routes:
        if isinstance(route, APIRoute) and route.path.startswith(API) and route.name not in PUBLIC:
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            found.extend((method, path, ROLES[route.name]) for method in sorted(route.methods))
    return found


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_every_protected_route_refuses_without_the_role(live: Live) -> None:
    routes = protected(live)
    assert len(routes) == len(ROLES) >= 16
    assert {role for *_, role in routes} == {Role.VIEWER, Role.OPERATOR, Role.APPROVER, Role.ADMIN}
    with live.client() as anonymous, live.client(token="not-a-token") as wrong:
        for method, path, needed in routes:
            assert_refused(anonymous.request(method, path, json={}), 401, "AuthError")
            assert_refused(wrong.request(method, path, json={}), 401, "AuthError")
            if needed > Role.VIEWER:
                with live.client(Role(needed - 1)) as low:
                    assert_refused(low.request(method, path, json={}), 403, "ForbiddenError")


def test_only_the_bearer_header_counts(live: Live) -> None:
    token = TOKENS[Role.ADMIN]
    with live.client() as client:
        assert_refused(client.get(f"{API}/runs", params={"token": token}), 401, "AuthError")
        assert_refused(client.get(f"{API}/runs", params={"access_token": token}), 401, "AuthError")
        basic = client.get(f"{API}/runs", headers={"Authorization": f"Basic {token}"})
        assert_refused(basic, 401, "AuthError")
        ok = client.get(f"{API}/runs", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200


def test_higher_roles_may_do_what_lower_ones_may(live: Live) -> None:
    for role in Role:
        with live.client(role) as client:
            assert client.get(f"{API}/workflows").status_code == 200
            paused = client.post(f"{API}/schedules/nope/pause")
            assert paused.status_code == (403 if role is Role.VIEWER else 404), paused.text


def test_probes_need_no_token(live: Live) -> None:
    with live.client() as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json() == {"status": "ready"}
        assert client.get("/openapi.json").status_code == 200


def test_an_unknown_host_header_is_refused(live: Live) -> None:
    with live.client() as client:
        assert client.get("/health", headers={"Host": "evil.example"}).status_code == 400


def test_static_tokens_parse_and_authenticate() -> None:
    tokens = StaticTokenAuthenticator.parse(" viewer:aaa , Admin:bbb:with-colon ,")
    assert len(tokens) == 2
    viewer = tokens.authenticate("aaa")
    assert viewer is not None and viewer.role is Role.VIEWER
    admin = tokens.authenticate("bbb:with-colon")
    assert admin is not None and admin.role is Role.ADMIN
    assert "bbb" not in admin.subject and "bbb" not in repr(tokens)
    assert tokens.authenticate("aa") is None
    assert tokens.authenticate("") is None


@pytest.mark.parametrize("text", ["aaa", "viewer:", "boss:aaa"])
def test_malformed_static_tokens_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        StaticTokenAuthenticator.parse(text)


def test_no_api_tokens_is_refused() -> None:
    with pytest.raises(ConfigError, match="KLAW_HTTP__TOKENS"):
        StaticTokenAuthenticator.from_settings(KlawSettings())
    found = StaticTokenAuthenticator.from_settings(KlawSettings(http={"tokens": "operator:ccc"}))
    principal = found.authenticate("ccc")
    assert principal is not None and principal.role is Role.OPERATOR


class _FailingAuthenticator:
    """A real authenticator whose backend is down: every call raises."""

    def authenticate(self, token: str) -> Principal | None:
        raise RuntimeError("identity provider unreachable: secret-detail-123")


def test_an_unexpected_error_is_a_500_without_details(tmp_path: Path) -> None:
    with serving(tmp_path, "http_auth_fail_flows", _FailingAuthenticator()) as live:
        with live.client(token="anything") as client:
            response = client.get(f"{API}/runs")
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["code"] == "InternalError"
        assert "secret-detail-123" not in response.text
        assert "Traceback" not in response.text
