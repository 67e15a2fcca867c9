"""Rate and size limits against a real uvicorn server: a token over its burst gets 429 with
Retry-After while others go on; a storm of bad tokens gets 429 while valid tokens still work;
the probes are never limited; big bodies are 413 unread; deep JSON is a 422. The windows are
driven by request counts (a rate so slow that no request leaves a window during the test).
Then the storage: one that does not answer at start is refused by URL, one failing later
fails open with one warning, and API processes sharing a real Redis share one window."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from limits.storage import MemoryStorage

from klaw.api.http import Role
from klaw.api.http.auth import Principal
from klaw.api.http.limits import (
    Limits,
    RateLimitedError,
    RateLimiter,
    Throttle,
    json_too_deep,
    open_storage,
    retry_after,
)
from klaw.errors import ConfigError

from ...cli.driver import Background, klaw
from .live import TOKENS, WAIT, Live, serving, write_project
from .test_cli import API_TOKENS, klaw_api

API = "/api/v1"
BURST = 5
FAIL_BURST = 3


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KLAW_HTTP__RATE", "0.0001")
        env.setenv("KLAW_HTTP__BURST", str(BURST))
        env.setenv("KLAW_HTTP__AUTH_FAIL_RATE", "0.0001")
        env.setenv("KLAW_HTTP__AUTH_FAIL_BURST", str(FAIL_BURST))
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


def test_a_window_holds_its_burst_and_names_the_wait() -> None:
    limiter = RateLimiter(open_storage("memory://"), 2.0, 3, name="t")
    assert limiter.window == 2  # 3 per 2 s: bursts of 3, at most 1.5 a second sustained
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert 0 < wait <= 2.0
    assert limiter.take("b") == 0.0
    slow = RateLimiter(open_storage("memory://"), 10.0 / 60.0, 20, name="t")
    assert slow.window == 120  # 20 per 2 minutes: 10 a minute
    assert retry_after(0.01) == 1 and retry_after(1.2) == 2


def test_a_storage_that_does_not_answer_at_start_is_refused_by_url() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    with pytest.raises(ConfigError) as info:
        open_storage(url)
    assert f"redis://:***@127.0.0.1:{port}/0" in info.value.message
    assert "KLAW_HTTP__RATE_LIMIT_STORAGE" in info.value.message and "s3cret" not in str(info.value)
    assert info.value.hint and "memory://" in info.value.hint
    with pytest.raises(ConfigError, match="not a rate-limit storage"):
        open_storage("carrier-pigeon://coop")
    with pytest.raises(ConfigError, match="moving windows"):
        open_storage("async+memory://")


class _Failing(MemoryStorage):
    """A storage whose every moving-window call fails, like a Redis that went away."""

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        raise ConnectionError("gone")


def test_a_storage_failing_later_lets_requests_through_and_warns(
    capfd: pytest.CaptureFixture[str],
) -> None:
    limiter = RateLimiter(_Failing(), 1.0, 1, name="t")
    assert [limiter.take("a") for _ in range(5)] == [0.0] * 5
    err = capfd.readouterr().err
    assert err.count("rate-limit storage failed") == 1  # once, not per request
    assert "gone" in err


@pytest.fixture
def redis_url() -> str:
    url = "redis://127.0.0.1:6379/0"
    try:
        open_storage(url)
    except ConfigError:
        pytest.skip(f"Redis is not reachable at {url}")
    return url


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    name = f"klaw-test-{uuid.uuid4()}"
    yield name
    open_storage(redis_url, prefix=name).reset()


def test_throttles_sharing_redis_share_their_windows(redis_url: str, prefix: str) -> None:
    limits = Limits(rate=0.0001, burst=4, storage=redis_url, prefix=prefix)
    one, two = Throttle(limits), Throttle(limits)
    alice = Principal("alice", Role.VIEWER)
    for throttle in (one, two, one, two):
        throttle.admit(alice)
    for throttle in (one, two):
        with pytest.raises(RateLimitedError) as info:
            throttle.admit(alice)
        assert info.value.retry_after >= 1
    two.admit(Principal("bob", Role.VIEWER))
    # with memory storage each process has its own windows: twice the burst gets through
    alone = [Throttle(Limits(rate=0.0001, burst=4)) for _ in range(2)]
    for throttle in (*alone, *alone):
        throttle.admit(alice)


def test_json_depth_is_counted_outside_strings() -> None:
    assert not json_too_deep(b"[" * 64 + b"]" * 64, 64)
    assert json_too_deep(b"[" * 65 + b"]" * 65, 64)
    assert not json_too_deep(b'{"a": "[[[[[[", "b": "\\"[[[["}', 2)
    assert json_too_deep(b'{"a": "\\\\", "b": [[1]]}', 2)
    assert not json_too_deep(b"", 1)


@pytest.mark.slow
def test_two_api_processes_sharing_redis_enforce_one_combined_rate(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    root = write_project(tmp_path, "http_limits_shared_flows")
    settings = {
        "KLAW_HTTP__TOKENS": API_TOKENS,
        "KLAW_HTTP__RATE": "0.0001",
        "KLAW_HTTP__BURST": "4",
        "KLAW_HTTP__RATE_LIMIT_STORAGE": redis_url,
        "KLAW_HTTP__RATE_LIMIT_PREFIX": prefix,
    }
    viewer = {"Authorization": f"Bearer {TOKENS[Role.VIEWER]}"}
    with klaw_api(root, **settings) as one, klaw_api(root, **settings) as two:
        urls = [_listening(one), _listening(two)]
        answers = [
            httpx.get(f"{url}{API}/workflows", headers=viewer, timeout=WAIT).status_code
            for url in urls * 2
        ]
        assert answers == [200] * 4
        for url in urls:  # each process has served only 2 of its own: the shared window is full
            assert_limited(httpx.get(f"{url}{API}/workflows", headers=viewer, timeout=WAIT))


def test_an_api_whose_rate_limit_storage_does_not_answer_refuses_to_start(
    tmp_path: Path,
) -> None:
    root = write_project(tmp_path, "http_limits_nostore_flows")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "KLAW_HTTP__TOKENS": API_TOKENS,
        "KLAW_HTTP__RATE_LIMIT_STORAGE": f"redis://127.0.0.1:{port}",
    }
    result = klaw(root, "api", "--port", "0", extra_env=env)
    assert result.returncode == 2, str(result)
    assert f"redis://127.0.0.1:{port}" in result.out and "does not answer" in result.out
    assert "Traceback" not in result.out


def _listening(api: Background) -> str:
    line = api.first_line()
    assert line.startswith("Klaw API listening on "), line
    return line.removeprefix("Klaw API listening on ")
