"""A small real project served over Flight on 127.0.0.1 (a free port), for the API tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyarrow import flight

from klaw.api.flight import Client, RunningServer, TokenSet, serve
from klaw.service.orchestrator import Orchestrator

TOKEN = "token-one-8c1f0b"
OTHER_TOKEN = "token-two-5d2e9a"

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
    print("summing")
    return sum(numbers.column("x").to_pylist())


pipe = klaw.workflow("pipe", [numbers, total], description="two stages")
"""


def write_project(root: Path, module: str) -> Path:
    """A project in ``root`` whose one module (``<module>.py``, unique per test module: the
    import system caches modules by name) defines the workflow ``pipe``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "klaw.toml").write_text(f'[project]\nname = "apiproj"\nmodules = ["{module}.py"]\n')
    (root / f"{module}.py").write_text(FLOWS)
    return root


@dataclass
class Served:
    orchestrator: Orchestrator
    server: RunningServer

    def client(self, token: str | None = TOKEN) -> Client:
        return Client(self.server.location, token=token, timeout=60.0)

    def raw(self) -> flight.FlightClient:
        """A plain pyarrow Flight client (no Klaw code on the client side)."""
        return flight.connect(self.server.location)


def auth(token: str | None = TOKEN) -> flight.FlightCallOptions:
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    return flight.FlightCallOptions(timeout=60.0, headers=headers)


@contextmanager
def serving(
    root: Path, module: str, tokens: TokenSet | list[str] | None = None, **options: int
) -> Iterator[Served]:
    """The project of :func:`write_project` served until the block ends."""
    orchestrator = Orchestrator.open(write_project(root, module))
    try:
        server = serve(orchestrator, host="127.0.0.1", port=0, tokens=tokens or [TOKEN], **options)
        try:
            yield Served(orchestrator, server)
        finally:
            orchestrator.shutdown(wait=30.0)
            server.stop()
    finally:
        orchestrator.close()
