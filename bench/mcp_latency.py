"""Latency of ``klaw mcp``: p50/p99 of get_run and submit_run (wait=true, a two-stage
workflow), through the MCP SDK's own client, over stdio and over streamable HTTP.

python -m bench.mcp_latency [--calls N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx2
from mcp.client.streamable_http import streamable_http_client

from mcp import Client, StdioServerParameters

KLAW = Path(sys.executable).parent / "klaw"
TOKEN = "bench-mcp-operator-token"
WORKFLOWS = """
import pyarrow as pa

import klaw


@klaw.asset
def orders() -> pa.Table:
    return pa.table({"day": ["d1", "d2"], "amount": [1.0, 2.0]})


@klaw.asset
def totals(orders: pa.Table) -> pa.Table:
    return pa.table({"rows": [orders.num_rows]})


shop = klaw.workflow("shop", [orders, totals])
"""


def project(root: Path) -> Path:
    (root / "klaw.toml").write_text('[project]\nname = "bench"\nmodules = ["wf.shop"]\n')
    (root / "wf").mkdir()
    (root / "wf" / "__init__.py").write_text("")
    (root / "wf" / "shop.py").write_text(textwrap.dedent(WORKFLOWS))
    return root


def environment() -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("KLAW_")}
    values["KLAW_HTTP__TOKENS"] = f"operator:{TOKEN}"
    values["KLAW_LOG__LEVEL"] = "warning"
    return values


async def measure(client: Client, calls: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"submit_run": [], "get_run": []}
    run_id = ""
    for _ in range(calls):
        start = time.perf_counter()
        done = await client.call_tool("submit_run", {"workflow": "shop", "wait": True})
        timings["submit_run"].append(time.perf_counter() - start)
        assert not done.is_error and done.structured_content is not None, done
        run_id = done.structured_content["run"]["run_id"]
    for _ in range(calls * 5):
        start = time.perf_counter()
        found = await client.call_tool("get_run", {"run_id": run_id})
        timings["get_run"].append(time.perf_counter() - start)
        assert not found.is_error, found
    return timings


def stdio(root: Path, calls: int) -> dict[str, list[float]]:
    params = StdioServerParameters(
        command=str(KLAW), args=["mcp"], cwd=str(root), env=environment()
    )

    async def main() -> dict[str, list[float]]:
        async with Client(params) as client:
            return await measure(client, calls)

    return anyio.run(main)


def http(root: Path, calls: int) -> dict[str, list[float]]:
    args = [str(KLAW), "mcp", "--transport", "http", "--port", "0", "-o", "json"]
    server = subprocess.Popen(args, cwd=root, env=environment(), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["listening"]

        async def main() -> dict[str, list[float]]:
            auth = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
            async with Client(streamable_http_client(url, http_client=auth)) as client:
                return await measure(client, calls)

        return anyio.run(main)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q * 100) - 1]


def report(transport: str, timings: dict[str, list[float]]) -> None:
    for tool, values in timings.items():
        p50, p99 = quantile(values, 0.50) * 1e3, quantile(values, 0.99) * 1e3
        print(f"{transport:<6} {tool:<11} n={len(values):<4} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mcp_latency")
    parser.add_argument("--calls", type=int, default=20, help="submit_run calls (get_run: x5)")
    calls = parser.parse_args(argv).calls
    runs: list[tuple[str, Callable[[Path, int], dict[str, list[float]]]]] = [
        ("stdio", stdio),
        ("http", http),
    ]
    for transport, bench in runs:
        with tempfile.TemporaryDirectory(prefix=f"klaw-mcp-{transport}-") as folder:
            report(transport, bench(project(Path(folder)), calls))


if __name__ == "__main__":
    main()
