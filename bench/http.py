"""H1: Klaw's HTTP API (``klaw api``: the FastAPI app under uvicorn), driven from a second
process on loopback, next to the same command over Arrow Flight in the same run.

The bench process serves one orchestrator twice: the HTTP app (``create_app``, as ``klaw api``
builds it, under uvicorn in a thread) and Flight (``serve``). A second process (``python -m
bench.http``, httpx and ``klaw.Client``) times, one call at a time on a kept-alive connection:

- ``GET /api/v1/runs/{id}`` and ``GetRun`` over Flight, interleaved (the floor);
- ``POST /api/v1/runs`` of a one-stage workflow without an Idempotency-Key (the workflow allows
  one active run, so each run is waited for, outside the timing, before the next submit);
- SSE fan-out: 100 subscribers open ``GET /api/v1/runs/{id}/stream`` of one finished run with
  many log lines at once; messages delivered to all of them per second of wall time.

The rate limits are raised out of the way (they are not what is measured).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import klaw
from bench.report import Row, Unit

TOKEN = "bench-http-token-7c1e9a"
GETS = 1000  # GET /runs/{id} and Flight GetRun calls each
SUBMITS = 100  # POST /runs calls
SUBSCRIBERS = 100  # SSE streams of one run, opened at once
LOG_LINES = 2000  # lines the streamed run wrote
WAIT = 120.0


@klaw.stage
def one() -> int:
    return 1


@klaw.stage
def chatty() -> int:
    for i in range(LOG_LINES):
        print(f"line {i}")
    return LOG_LINES


ONE_STAGE = klaw.workflow("http_bench_one", [one])
CHATTY = klaw.workflow("http_bench_chatty", [chatty])


def api(settings: Any) -> list[Row]:
    """Serve HTTP and Flight in this process; measure from a second one."""
    import uvicorn

    from klaw.api.flight import serve
    from klaw.api.http import StaticTokenAuthenticator, create_app
    from klaw.api.http.limits import Limits
    from klaw.service.orchestrator import RunRequest

    orch = klaw.open_orchestrator(
        ONE_STAGE, CHATTY, home=settings.home(), max_workers=settings.workers
    )
    limits = Limits(rate=1e9, burst=10**9)
    app = create_app(
        orch,
        StaticTokenAuthenticator.parse(f"admin:{TOKEN}"),
        allowed_hosts=["127.0.0.1"],
        cors_origins=[],
        limits=limits,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    flight = serve(orch, tokens=[TOKEN])
    try:
        deadline = time.monotonic() + WAIT
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise RuntimeError("H1: uvicorn did not start")
        port = server.servers[0].sockets[0].getsockname()[1]
        done = orch.run(RunRequest(workflow=ONE_STAGE.name))
        streamed = orch.run(RunRequest(workflow=CHATTY.name))
        argv = [f"http://127.0.0.1:{port}", flight.location, done.run_id, streamed.run_id]
        out = subprocess.run(
            [sys.executable, "-m", "bench.http", *argv],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"H1 driver failed: {out.stderr[-2000:]}")
        times: dict[str, Any] = json.loads(out.stdout)
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT)
        flight.stop()
        orch.shutdown()
        orch.close()
    return _rows(times)


def _rows(times: dict[str, Any]) -> list[Row]:
    rows = []
    for what, label in (("get", "GET /runs/{id}"), ("submit", "POST /runs, one stage")):
        mean = statistics.fmean(times[what])
        rows.append(
            Row(
                "H1",
                f"{label}: mean, {1 / mean:,.0f} req/s",
                Unit.SECONDS,
                mean,
                statistics.fmean(times["flight"]) if what == "get" else None,
                "GetRun over Flight" if what == "get" else "",
                notes={"requests_per_second": 1 / mean},
            )
        )
        for pct in (50, 99):
            floor = _p(times["flight"], pct) if what == "get" else None
            rows.append(
                Row(
                    "H1",
                    f"  {label}: p{pct}",
                    Unit.SECONDS,
                    _p(times[what], pct),
                    floor,
                    "GetRun over Flight" if floor is not None else "",
                )
            )
    sse = times["sse"]
    per_second = sse["messages"] / sse["seconds"]
    rows.append(
        Row(
            "H1",
            f"SSE fan-out, {SUBSCRIBERS} subscribers: {per_second:,.0f} msgs/s (per msg)",
            Unit.SECONDS,
            sse["seconds"] / sse["messages"],
            notes={"messages_per_second": per_second, **sse},
        )
    )
    rows.append(
        Row("H1", f"  SSE: all {SUBSCRIBERS} streams read whole", Unit.SECONDS, sse["seconds"])
    )
    return rows


def _p(samples: list[float], percentile: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[percentile - 1]


# -- the second process --------------------------------------------------------------------------
def drive(url: str, location: str, run_id: str, streamed: str) -> dict[str, Any]:
    """The timings, taken from this process: seconds per call, and the SSE fan-out."""
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    times: dict[str, Any] = {"get": [], "flight": [], "submit": []}
    with httpx.Client(base_url=url, headers=headers, timeout=WAIT) as http:
        with klaw.Client(location, TOKEN, timeout=WAIT) as flight:
            for i in range(GETS + 50):  # interleaved; the first 50 warm up
                t0 = time.perf_counter()
                http.get(f"/api/v1/runs/{run_id}").raise_for_status()
                t1 = time.perf_counter()
                flight.get_run(run_id)
                t2 = time.perf_counter()
                if i >= 50:
                    times["get"].append(t1 - t0)
                    times["flight"].append(t2 - t1)
        for _ in range(SUBMITS):
            t0 = time.perf_counter()
            created = http.post("/api/v1/runs", json={"workflow": ONE_STAGE.name})
            times["submit"].append(time.perf_counter() - t0)
            created.raise_for_status()
            _wait_done(http, created.json()["run"]["run_id"])
    times["sse"] = _fan_out(url, headers, streamed)
    return times


def _wait_done(http: Any, run_id: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if http.get(f"/api/v1/runs/{run_id}").json()["run"]["state"] in _ENDED:
            return
        time.sleep(0.002)
    raise RuntimeError(f"H1: run {run_id} did not end within {WAIT} s")


_ENDED = frozenset({"succeeded", "failed", "cancelled"})


def _fan_out(url: str, headers: dict[str, str], run_id: str) -> dict[str, float]:
    import httpx

    limits = httpx.Limits(max_connections=SUBSCRIBERS, max_keepalive_connections=SUBSCRIBERS)
    start = threading.Barrier(SUBSCRIBERS)
    with httpx.Client(base_url=url, headers=headers, timeout=WAIT, limits=limits) as http:

        def subscribe(_: int) -> int:
            start.wait(timeout=WAIT)
            count = 0
            with http.stream("GET", f"/api/v1/runs/{run_id}/stream") as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    count += line.startswith("data:")
            return count

        t0 = time.perf_counter()
        with ThreadPoolExecutor(SUBSCRIBERS) as pool:
            counts = list(pool.map(subscribe, range(SUBSCRIBERS)))
        seconds = time.perf_counter() - t0
    if min(counts) != max(counts) or counts[0] < LOG_LINES:
        raise RuntimeError(f"H1: subscribers got different streams: {min(counts)}-{max(counts)}")
    return {"messages": float(sum(counts)), "per_stream": float(counts[0]), "seconds": seconds}


if __name__ == "__main__":
    print(json.dumps(drive(*sys.argv[1:5])))
