"""``klaw api`` as a real process: it serves /health and the API, exits 0 on SIGTERM and
SIGINT, and refuses to start (exit 2) without KLAW_API_TOKENS."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ...cli.driver import KLAW, WAIT, env, flat, klaw
from .live import TOKENS, write_project

API_TOKENS = ",".join(f"{role.label}:{token}" for role, token in TOKENS.items())


class ApiProcess:
    """``klaw api ARGS`` in its own session, stopped (and if need be killed) by the test."""

    def __init__(self, cwd: Path, *args: str, extra_env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(KLAW), "api", *args],
            cwd=cwd,
            env={**env(), **extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def first_line(self) -> str:
        """The first line it prints (bounded wait)."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                if selector.select(timeout=0.1):
                    return self.proc.stdout.readline().strip()
                if self.proc.poll() is not None:
                    break
        out, err = self.proc.communicate(timeout=WAIT) if self.proc.poll() is not None else ("", "")
        raise AssertionError(f"klaw api printed nothing (exit {self.proc.poll()}):\n{out}{err}")

    def stop(self, sig: int) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=WAIT)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate(timeout=WAIT)


@contextlib.contextmanager
def klaw_api(cwd: Path, *args: str, **extra_env: str) -> Iterator[ApiProcess]:
    process = ApiProcess(cwd, "--port", "0", *args, extra_env=extra_env)
    try:
        yield process
    finally:
        process.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_and_exits_0_on_a_signal(tmp_path: Path, sig: int) -> None:
    root = write_project(tmp_path, f"http_cli_flows_{sig}")
    with klaw_api(root, KLAW_API_TOKENS=API_TOKENS) as api:
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
    with klaw_api(root, "-o", "json", KLAW_API_TOKENS=API_TOKENS) as api:
        started = json.loads(api.first_line())
        assert started["host"] == "127.0.0.1"
        assert started["project"] == "httpproj"
        assert started["listening"] == f"http://127.0.0.1:{started['port']}"
        with httpx.Client(base_url=started["listening"], timeout=WAIT) as client:
            assert client.get("/ready").json() == {"status": "ready"}
        code, _, err = api.stop(signal.SIGTERM)
        assert code == 0, err


def test_refuses_to_start_without_tokens(tmp_path: Path) -> None:
    root = write_project(tmp_path, "http_cli_notoken_flows")
    result = klaw(root, "api", "--port", "0")
    assert result.returncode == 2, result
    assert "KLAW_API_TOKENS" in result.out
    assert "Traceback" not in result.out
    bad = klaw(root, "api", "--port", "0", extra_env={"KLAW_API_TOKENS": "boss:abc"})
    assert bad.returncode == 2, bad
    assert "boss" in flat(bad.out)
