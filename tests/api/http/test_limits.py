"""Rate and size limits against a real uvicorn server: a token over its burst gets 429 with
Retry-After while others go on; a storm of bad tokens gets 429 while valid tokens still work;
the probes are never limited; big bodies are 413 unread; deep JSON is a 422. The buckets are
driven by request counts (a refill rate so slow that no refill happens during the test)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import httpx
import pytest

from klaw.api.http import Role
from klaw.api.http.limits import RateLimiter, json_too_deep, retry_after

from .live import TOKENS, WAIT, Live, serving

API = "/api/v1"
BURST = 5
FAIL_BURST = 3


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KLAW_API_RATE", "0.0001")
        env.setenv("KLAW_API_BURST", str(BURST))
        env.setenv("KLAW_API_AUTH_FAIL_RATE", "0.0001")
        env.setenv("KLAW_API_AUTH_FAIL_BURST", str(FAIL_BURST))
        with serving(tmp_path_factory.mktemp("limits"), "http_limits_flows") as served:
            yield served


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "RateLimitedError"
    assert int(response.headers["retry-after"]) >= 1


def test_a_token_over_its_burst_is_limited_and_others_are_not(live: Live) -> None:
    with live.client(Role.VIEWER) as viewer, live.client(Role.OPERATOR) as operator:
        answers = [viewer.get(f"{API}/workflows").status_code for _ in range(BURST)]
        assert answers == [200] * BURST
        assert_limited(viewer.get(f"{API}/workflows"))
        assert_limited(viewer.get(f"{API}/runs"))
        assert operator.get(f"{API}/workflows").status_code == 200


def test_each_request_counts_once(live: Live) -> None:
    # POST /runs reads the principal too: it must not be charged twice
    with live.client(Role.APPROVER) as approver:
        for _ in range(BURST):
            refused = approver.post(f"{API}/runs", json={"workflow": "nope"})
            assert refused.status_code == 400, refused.text
        assert_limited(approver.post(f"{API}/runs", json={"workflow": "nope"}))


def test_a_storm_of_bad_tokens_is_limited_but_valid_tokens_are_not(live: Live) -> None:
    with live.client(token="wrong-token") as wrong:
        answers = [wrong.get(f"{API}/runs").status_code for _ in range(FAIL_BURST)]
        assert answers == [401] * FAIL_BURST
        for _ in range(3):
            assert_limited(wrong.get(f"{API}/runs"))
    # the same client IP (loopback) with a valid token: only failures are throttled
    with live.client(Role.ADMIN) as admin:
        assert admin.get(f"{API}/runs").status_code == 200
    # no token at all is not a failed authentication
    with live.client() as anonymous:
        assert anonymous.get(f"{API}/runs").status_code == 401


def test_probes_are_never_limited(live: Live) -> None:
    with live.client() as client:
        for _ in range(BURST * 4):
            assert client.get("/health").status_code == 200
            assert client.get("/ready").status_code == 200


def _raw(live: Live, head: bytes, chunks: Iterator[bytes]) -> bytes:
    """Send ``head`` and as many ``chunks`` as the server takes; its whole answer."""
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        sock.sendall(head)
        # the server may answer and close without reading the rest: what we want
        with contextlib.suppress(OSError):
            for chunk in chunks:
                sock.sendall(chunk)
        answer = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    return answer


def _head(extra: str) -> bytes:
    token = TOKENS[Role.ADMIN]
    return (
        f"POST {API}/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_a_huge_body_is_refused_without_being_read(live: Live) -> None:
    sent = 0

    def some() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(4):  # 256 KiB of the 50 MB announced, then the client stops sending
            sent += 65536
            yield b" " * 65536

    answer = _raw(live, _head("Content-Length: 50000000\r\n"), some())
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"application/problem+json" in answer
    assert b'"code":"RequestTooLarge"' in answer
    assert sent < 50_000_000


def test_a_chunked_body_over_the_limit_is_refused(live: Live) -> None:
    def chunks() -> Iterator[bytes]:
        piece = b" " * 65536
        for _ in range(40):  # 2.5 MiB against the 1 MiB default
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        yield b"0\r\n\r\n"

    answer = _raw(live, _head("Transfer-Encoding: chunked\r\n"), chunks())
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"code":"RequestTooLarge"' in answer


def test_deeply_nested_json_is_a_problem(live: Live) -> None:
    deep = '{"workflow": "pipe", "params": {"x": ' + "[" * 10_000 + "]" * 10_000 + "}}"
    with live.client(Role.ADMIN) as admin:
        response = admin.post(
            f"{API}/runs", content=deep, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "InvalidRequest"
    assert "64" in response.json()["detail"]


def test_a_bucket_refills_at_its_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0
    now[0] += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(0.5)
    now[0] += 60.0
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # never above the burst
    assert limiter.take("a") > 0
    assert retry_after(0.01) == 1 and retry_after(1.2) == 2


def test_json_depth_is_counted_outside_strings() -> None:
    assert not json_too_deep(b"[" * 64 + b"]" * 64, 64)
    assert json_too_deep(b"[" * 65 + b"]" * 65, 64)
    assert not json_too_deep(b'{"a": "[[[[[[", "b": "\\"[[[["}', 2)
    assert json_too_deep(b'{"a": "\\\\", "b": [[1]]}', 2)
    assert not json_too_deep(b"", 1)
