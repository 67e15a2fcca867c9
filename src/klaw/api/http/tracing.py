"""A span per HTTP request (OpenTelemetry's HTTP server conventions), child of the caller's
``traceparent``; installed only when traces are on. The span is current while the route runs,
so a run launched by ``POST /runs`` is a child of the request that launched it."""

from __future__ import annotations

from typing import Any

from klaw import telemetry

Scope = dict[str, Any]


class TracingMiddleware:
    """Pure ASGI (no body buffering): streams such as SSE pass through untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or telemetry.ACTIVE.tracer is None:
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers", ())
            if k in (b"traceparent", b"tracestate")
        }
        method = scope.get("method", "GET")
        attributes = {
            "http.request.method": method,
            "url.path": scope.get("path", ""),
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version"),
        }
        from opentelemetry.trace import SpanKind, Status, StatusCode

        tracer = telemetry.ACTIVE.tracer
        with tracer.start_as_current_span(
            f"{method} {scope.get('path', '')}",
            context=telemetry.parent(headers),
            kind=SpanKind.SERVER,
            attributes={k: v for k, v in attributes.items() if v is not None},
        ) as span:

            async def sending(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, sending)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", None)
                if path:  # the route template, not the path with its ids
                    span.set_attribute("http.route", path)
                    span.update_name(f"{method} {path}")
