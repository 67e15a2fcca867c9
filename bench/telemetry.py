"""O1: what telemetry costs a run: W1 and W2 with telemetry off (the floor), with traces sent
to a collector on loopback, with traces sampled at 10 %, and with metrics (``/metrics``'
Prometheus counters and OTLP), in µs per stage, all interleaved in one run.

The collector answers every OTLP/HTTP post with 200 and reads nothing: what is measured is
Klaw's side (spans made, batched and exported off the runner's thread)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import klaw
from bench import workflows
from bench.report import Row, Unit
from bench.timing import Case, interleaved

if TYPE_CHECKING:
    from bench.workloads import Settings

_MODES: dict[str, dict[str, str]] = {
    "off": {},
    "traces": {"KLAW_TELEMETRY__TRACES": "otlp-http"},
    "traces 10%": {"KLAW_TELEMETRY__TRACES": "otlp-http", "KLAW_TELEMETRY__SAMPLE_RATIO": "0.1"},
    "metrics": {"KLAW_TELEMETRY__METRICS": "otlp-http"},
}
_LABELS = {
    "traces": "traces to a collector",
    "traces 10%": "traces, 10 % sampled",
    "metrics": "metrics (/metrics + OTLP)",
}


@contextmanager
def _collector() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _switch(mode: str, endpoint: str) -> Callable[[], None]:
    """Set the environment of ``mode`` and configure this process for it (outside the timing:
    the run's own configure then finds nothing to change)."""
    from klaw import metrics, telemetry
    from klaw.settings import TelemetrySettings

    def setup() -> None:
        for name in {n for env in _MODES.values() for n in env}:
            os.environ.pop(name, None)
        os.environ.update(_MODES[mode])
        os.environ["KLAW_TELEMETRY__ENDPOINT"] = endpoint
        chosen = TelemetrySettings(
            traces="otlp-http" if mode.startswith("traces") else "none",
            sample_ratio=0.1 if mode == "traces 10%" else None,
            metrics="otlp-http" if mode == "metrics" else "none",
            endpoint=endpoint,
        )
        telemetry.configure(chosen)
        metrics.configure(chosen)
        if mode == "metrics":
            metrics.serve_in_process()
        else:
            metrics.reset()
            metrics.configure(chosen)

    return setup


def overhead(settings: Settings) -> list[Row]:
    from klaw import metrics, telemetry
    from klaw.settings import TelemetrySettings

    shapes = {
        "W1": (workflows.fanout(500), 502, "fan-out 1+500+1"),
        "W2": (workflows.chain(200), 200, "chain of 200"),
    }
    rows: list[Row] = []
    saved = {k: v for k, v in os.environ.items() if k.startswith("KLAW_TELEMETRY__")}
    try:
        with _collector() as endpoint:
            for key, (wf, stages, shape) in shapes.items():
                cases: dict[str, Case] = {}
                for mode in _MODES:
                    setup = _switch(mode, endpoint)

                    def run(wf: klaw.Workflow = wf, setup: Callable[[], None] = setup) -> None:
                        record = klaw.run(wf, home=settings.home(), max_workers=settings.workers)
                        if record.state.value != "succeeded":
                            raise RuntimeError(f"{wf.name} ended {record.state.value}")

                    cases[mode] = Case(run, setup)
                samples = interleaved(cases, settings.times(7))
                off = samples["off"].median / stages
                rows.append(Row("O1", f"{key} {shape}, telemetry off", Unit.PER_STAGE, off))
                for mode, label in _LABELS.items():
                    per = samples[mode].median / stages
                    rows.append(
                        Row(
                            "O1",
                            f"  {key}, {label}",
                            Unit.PER_STAGE,
                            per,
                            off,
                            "telemetry off",
                            notes={"added_us_per_stage": round((per - off) * 1e6, 1)},
                        )
                    )
    finally:
        for name in {n for env in _MODES.values() for n in env} | {"KLAW_TELEMETRY__ENDPOINT"}:
            os.environ.pop(name, None)
        os.environ.update(saved)
        metrics.reset()
        telemetry.configure(TelemetrySettings())
    return rows
