"""A real uvicorn server on 127.0.0.1 (a free port) serving a tiny project, for the HTTP tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from klaw.api.http import Authenticator, Role, StaticTokenAuthenticator, create_app
from klaw.api.http.limits import Limits
from klaw.api.http.login import LoginCodes
from klaw.service.orchestrator import Orchestrator

WAIT = 60.0  # bounded waits: the suite shares the machine

TOKENS = {
    Role.VIEWER: "viewer-token-1a2b",
    Role.OPERATOR: "operator-token-3c4d",
    Role.APPROVER: "approver-token-5e6f",
    Role.ADMIN: "admin-token-7a8b",
}

FLOWS = """
import pyarrow as pa
from pydantic import BaseModel

import klaw


class Size(BaseModel):
    n: int = 3


@klaw.asset
def numbers(params: Size) -> pa.Table:
    print("making numbers")
    return pa.table({"x": list(range(1, params.n + 1))})


@klaw.stage
def total(numbers: pa.Table) -> int:
    return sum(numbers.column("x").to_pylist())


@klaw.stage
def boom() -> int:
    raise ValueError("boom on purpose")


pipe = klaw.workflow("pipe", [numbers, total], description="two stages", schedule="0 3 * * *")
broken = klaw.workflow("broken", [boom])
"""


def write_project(root: Path, module: str, flows: str = FLOWS) -> Path:
    """A project in ``root`` whose module ``<module>.py`` is ``flows`` (by default: ``pipe``
    and ``broken``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "klaw.toml").write_text(f'[project]\nname = "httpproj"\nmodules = ["{module}.py"]\n')
    (root / f"{module}.py").write_text(flows)
    return root


def static_tokens() -> StaticTokenAuthenticator:
    return StaticTokenAuthenticator.parse(",".join(f"{r.label}:{t}" for r, t in TOKENS.items()))


@dataclass
class Live:
    app: FastAPI
    url: str
    orchestrator: Orchestrator

    def client(self, role: Role | None = None, token: str | None = None) -> httpx.Client:
        """A client sending the token of ``role`` (or ``token``; neither: no token)."""
        token = TOKENS[role] if role is not None else token
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=WAIT)

    def wait_done(self, run_id: str) -> dict[str, Any]:
        """The run once it has ended (bounded wait)."""
        with self.client(Role.VIEWER) as client:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()["run"]
                if run["state"] in {"succeeded", "failed", "cancelled"}:
                    return run
                time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not end within {WAIT} s")


@contextmanager
def serving(
    root: Path,
    module: str,
    authenticator: Authenticator | None = None,
    flows: str = FLOWS,
    limits: Limits | None = None,
    logins: LoginCodes | None = None,
) -> Iterator[Live]:
    """The project of :func:`write_project` served by uvicorn until the block ends (with
    ``limits``, else the ones of the settings)."""
    orchestrator = Orchestrator.open(write_project(root, module, flows))
    app = create_app(
        orchestrator,
        authenticator or static_tokens(),
        allowed_hosts=["127.0.0.1"],
        cors_origins=[],
        limits=limits,
        logins=logins,
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Live(app, f"http://127.0.0.1:{port}", orchestrator)
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT)
        orchestrator.shutdown(wait=30.0)
        orchestrator.close()
