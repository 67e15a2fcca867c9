"""A real OTLP/HTTP receiver on loopback: decodes the protobuf the exporters post
(``opentelemetry-proto``) and keeps the spans (``/v1/traces``) and metric points
(``/v1/metrics``) and log records (``/v1/logs``), for tests to look at."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    status: int
    attributes: dict[str, Any]
    service: str


@dataclass
class Point:
    """One data point of a metric: a sum's value, or a histogram's count and sum."""

    metric: str
    unit: str
    attributes: dict[str, Any]
    value: float
    count: int = 0
    service: str = ""


@dataclass
class Log:
    body: str
    severity: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass
class Received:
    url: str
    spans: list[Span] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    logs: list[Log] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def metric(self, name: str) -> list[Point]:
        with self.lock:
            return [p for p in self.points if p.metric == name]

    def named(self, prefix: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.name.startswith(prefix)]


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _points(request: Any) -> list[Point]:
    points = []
    for resource in request.resource_metrics:
        service = str(
            {a.key: _value(a.value) for a in resource.resource.attributes}.get("service.name")
        )
        for scope in resource.scope_metrics:
            for m in scope.metrics:
                kind = m.WhichOneof("data")
                for p in getattr(m, kind).data_points:
                    attrs = {a.key: _value(a.value) for a in p.attributes}
                    if kind == "histogram":
                        point = Point(m.name, m.unit, attrs, p.sum, p.count, service)
                    else:
                        value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                        point = Point(m.name, m.unit, attrs, float(value), service=service)
                    points.append(point)
    return points


@contextmanager
def otlp_receiver() -> Iterator[Received]:
    """An OTLP/HTTP endpoint on 127.0.0.1 (a free port), stopped afterwards."""
    received: Received

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.endswith("/v1/logs"):
                request = ExportLogsServiceRequest.FromString(body)
                logs = [
                    Log(
                        r.body.string_value,
                        r.severity_text,
                        r.trace_id.hex(),
                        r.span_id.hex(),
                        {a.key: _value(a.value) for a in r.attributes},
                    )
                    for resource in request.resource_logs
                    for scope in resource.scope_logs
                    for r in scope.log_records
                ]
                with received.lock:
                    received.logs.extend(logs)
                self._answer(ExportLogsServiceResponse().SerializeToString())
                return
            if self.path.endswith("/v1/metrics"):
                with received.lock:
                    received.points.extend(_points(ExportMetricsServiceRequest.FromString(body)))
                self._answer(ExportMetricsServiceResponse().SerializeToString())
                return
            request = ExportTraceServiceRequest.FromString(body)
            spans = []
            for resource in request.resource_spans:
                attrs = {a.key: _value(a.value) for a in resource.resource.attributes}
                for scope in resource.scope_spans:
                    for s in scope.spans:
                        spans.append(
                            Span(
                                name=s.name,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_id=s.parent_span_id.hex(),
                                kind=s.kind,
                                status=s.status.code,
                                attributes={a.key: _value(a.value) for a in s.attributes},
                                service=str(attrs.get("service.name")),
                            )
                        )
            with received.lock:
                received.spans.extend(spans)
            self._answer(ExportTraceServiceResponse().SerializeToString())

        def _answer(self, answer: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received = Received(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
