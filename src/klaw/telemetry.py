"""Telemetry: OpenTelemetry traces and OpenLineage events, configured once per process.

Off by default, and then nothing of OpenTelemetry or OpenLineage is imported: every hook in
the hot paths is one attribute read (``ACTIVE.tracer``, ``ACTIVE.lineage``). Configured by
``[settings.telemetry]`` (``KLAW_TELEMETRY__*``) and the standard ``OTEL_*`` variables, which
the SDK reads itself (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``,
``OTEL_TRACES_SAMPLER``, ``OTEL_RESOURCE_ATTRIBUTES``, ...).

What is traced: each run (``run WORKFLOW``), each stage attempt (``stage NAME``, a child of its
run; a retry is an attempt of its own), each snapshot commit (``commit ASSET``), and each HTTP
request (``METHOD ROUTE``). A run launched over HTTP is a child of the request that launched it,
also when it runs in a worker process: the context travels as W3C ``traceparent`` text.

Spans are exported in batches off the caller's thread; a collector that cannot be reached
drops spans (the SDK's bounded queue) and never slows or fails a run. Lineage events go through
a bounded queue to a thread of their own; what does not fit is dropped and counted
(:func:`dropped`).
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from klaw.settings import TelemetrySettings


class _Active:
    """This process's exporters (set by :func:`configure`; both None: telemetry is off)."""

    __slots__ = (
        "configured",
        "lineage",
        "log_provider",
        "logger",
        "provider",
        "settings",
        "tracer",
    )

    def __init__(self) -> None:
        self.tracer: Tracer | None = None  # traces are exported
        self.lineage: Lineage | None = None  # lineage events are sent
        self.provider: Any = None  # the TracerProvider behind the tracer
        self.configured: tuple[Any, ...] | None = None
        self.settings: TelemetrySettings | None = None  # as configured
        self.logger: Any = None  # an OpenTelemetry Logger: log records are exported
        self.log_provider: Any = None

    @property
    def on(self) -> bool:
        return self.tracer is not None or self.lineage is not None or self.logger is not None


ACTIVE = _Active()
_lock = threading.Lock()
PRODUCER = "https://github.com/klaw-data/klaw"
_NAMESPACE_IDS = uuid.UUID("6f1c1f0e-8d7a-4c1b-9a51-6b2d0c3e7a10")  # attempt -> lineage run id


def configure(settings: TelemetrySettings) -> None:
    """Set this process's exporters from ``settings`` (once; the same settings again do
    nothing, other settings replace the earlier ones)."""
    key = (
        settings.traces,
        settings.endpoint,
        settings.service_name,
        settings.sample_ratio,
        settings.lineage,
        settings.lineage_url,
        settings.lineage_file,
        settings.lineage_namespace,
        settings.logs,
    )
    active = ACTIVE
    with _lock:
        if key == active.configured:
            return
        if active.provider is not None:
            active.provider.shutdown()
            active.tracer = active.provider = None
        if settings.traces != "none":
            active.provider = _provider(settings)
            active.tracer = active.provider.get_tracer("klaw")
        if active.lineage is not None:
            active.lineage.close()
        active.lineage = Lineage(settings) if settings.lineage != "none" else None
        if active.log_provider is not None:
            active.log_provider.shutdown()
            active.logger = active.log_provider = None
        if settings.logs != "none":
            active.log_provider = _log_provider(settings)
            active.logger = active.log_provider.get_logger("klaw")
        active.configured = key
        active.settings = settings


def exported() -> dict[str, Any] | None:
    """This process's telemetry settings as plain data, for the processes that run its stages
    (process and Ray workers) to export the same way; None when telemetry is off."""
    settings = ACTIVE.settings
    return settings.model_dump(mode="json") if settings is not None and ACTIVE.on else None


def adopt(settings: Mapping[str, Any]) -> None:
    """Configure this process like the one that sent ``settings`` (:func:`exported`), unless
    it is configured already: a stage process or Ray worker tracing the attempts it runs."""
    if ACTIVE.configured is None:
        from klaw.settings import TelemetrySettings

        configure(TelemetrySettings.model_validate(dict(settings)))


def _provider(settings: TelemetrySettings) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    sampler = (
        ParentBased(TraceIdRatioBased(settings.sample_ratio))
        if settings.sample_ratio is not None
        else None  # the SDK's default, or OTEL_TRACES_SAMPLER
    )
    provider = TracerProvider(resource=resource(settings), sampler=sampler)
    if settings.traces == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        exporter = otlp_exporter(settings.traces, "traces", settings.endpoint)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    atexit.register(provider.shutdown)  # the last batch leaves before the process does
    return provider


def _log_provider(settings: TelemetrySettings) -> Any:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor

    provider = LoggerProvider(resource=resource(settings))
    if settings.logs == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

        provider.add_log_record_processor(SimpleLogRecordProcessor(ConsoleLogRecordExporter()))
    else:
        exporter = otlp_exporter(settings.logs, "logs", settings.endpoint)
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    atexit.register(provider.shutdown)
    return provider


# signal: the OTLP exporter's gRPC module, HTTP module and class
_OTLP = {
    "traces": ("grpc.trace_exporter", "http.trace_exporter", "OTLPSpanExporter"),
    "metrics": ("grpc.metric_exporter", "http.metric_exporter", "OTLPMetricExporter"),
    "logs": ("grpc._log_exporter", "http._log_exporter", "OTLPLogExporter"),
}


def otlp_exporter(protocol: str, signal: str, endpoint: str | None) -> Any:
    """The OTLP exporter of ``signal`` (traces, metrics, logs) over ``protocol``
    (``otlp-grpc`` or ``otlp-http``) to ``endpoint`` (an HTTP endpoint gets the signal's path,
    ``/v1/<signal>``; unset: the SDK's ``OTEL_EXPORTER_OTLP_*`` variables, else its default)."""
    import importlib

    grpc, http, name = _OTLP[signal]
    module = grpc if protocol == "otlp-grpc" else http
    exporter = getattr(importlib.import_module(f"opentelemetry.exporter.otlp.proto.{module}"), name)
    if endpoint and protocol == "otlp-http" and not endpoint.endswith(f"/v1/{signal}"):
        endpoint = endpoint.rstrip("/") + f"/v1/{signal}"
    return exporter(endpoint=endpoint) if endpoint else exporter()


def resource(settings: TelemetrySettings) -> Any:
    """The OpenTelemetry resource of this process: ``service.name`` from the settings, else
    ``OTEL_SERVICE_NAME``, else klaw (and ``OTEL_RESOURCE_ATTRIBUTES``)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    name = settings.service_name or os.environ.get("OTEL_SERVICE_NAME") or "klaw"
    return Resource.create({SERVICE_NAME: name})


_SEVERITY = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}  # OTel numbers


def log(level: str, body: str, attributes: Mapping[str, Any], when: float | None = None) -> None:
    """Export one log record (Klaw's own, or a line a stage printed) when logs are exported:
    in the current span's context, else in the one its ``trace_id`` / ``span_id`` name."""
    logger = ACTIVE.logger
    if logger is None:
        return
    from opentelemetry._logs import SeverityNumber

    attrs = {
        k: v if isinstance(v, str | int | float | bool) else str(v)
        for k, v in attributes.items()
        if v is not None
    }
    trace_id, span_id = attrs.pop("trace_id", None), attrs.pop("span_id", None)
    context = None
    if isinstance(trace_id, str) and isinstance(span_id, str):
        context = _context_of(trace_id, span_id)
    level = level.lower()
    severity = _SEVERITY.get(level, 9)
    logger.emit(
        timestamp=int((when if when is not None else time.time()) * 1e9),
        context=context,
        severity_number=SeverityNumber(severity),
        severity_text=level.upper(),
        body=body,
        attributes=attrs,
    )


def _context_of(trace_id: str, span_id: str) -> Any:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    if trace.get_current_span().get_span_context().is_valid:
        return None  # the current span's own
    span = NonRecordingSpan(
        SpanContext(int(trace_id, 16), int(span_id, 16), False, TraceFlags(TraceFlags.SAMPLED))
    )
    return trace.set_span_in_context(span)


def flush(timeout_ms: int = 5000) -> None:
    """Export what is buffered now (spans, log records and lineage events); for tests and
    before exit."""
    if ACTIVE.provider is not None:
        ACTIVE.provider.force_flush(timeout_ms)
    if ACTIVE.log_provider is not None:
        ACTIVE.log_provider.force_flush(timeout_ms)
    if ACTIVE.lineage is not None:
        ACTIVE.lineage.drain(timeout_ms / 1000)


# -- context ---------------------------------------------------------------------------------


def carrier(span: Span | None = None) -> dict[str, str]:
    """The current trace context (or ``span``'s) as W3C headers; empty when traces are off
    or nothing is being traced."""
    if ACTIVE.tracer is None:
        return {}
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    headers: dict[str, str] = {}
    context = trace.set_span_in_context(span) if span is not None else None
    TraceContextTextMapPropagator().inject(headers, context=context)
    return headers


def parent(headers: Mapping[str, str] | None) -> Any:
    """The context a ``traceparent`` header names (None: the current one)."""
    if ACTIVE.tracer is None or not headers:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(dict(headers))


@contextmanager
def attached(headers: Mapping[str, str] | None) -> Iterator[None]:
    """Make the context of ``headers`` current while the block runs."""
    context = parent(headers)
    if context is None:
        yield
        return
    from opentelemetry import context as otel_context

    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def start(
    name: str, attributes: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> Span | None:
    """A span, child of ``headers``' context (or the current one); None when traces are off.
    End it with :func:`end`."""
    tracer = ACTIVE.tracer
    if tracer is None:
        return None
    clean = {k: v for k, v in attributes.items() if v is not None}
    return tracer.start_span(name, context=parent(headers), attributes=clean)


def end(
    span: Span | None, error: str | None = None, attributes: Mapping[str, Any] | None = None
) -> None:
    """End ``span``, marked failed with ``error`` when given."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    for key, value in (attributes or {}).items():
        if value is not None:
            span.set_attribute(key, value)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


@contextmanager
def span(
    name: str, attributes: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> Iterator[Span | None]:
    """A span around the block, current inside it: a child of ``headers``' context, or of the
    current span. An exception marks it failed and goes on."""
    tracer = ACTIVE.tracer
    if tracer is None:
        yield None
        return
    clean = {k: v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, context=parent(headers), attributes=clean) as current:
        yield current


def ids() -> tuple[str, str] | None:
    """The current trace and span ids (hex), for log records; None outside a span."""
    if ACTIVE.tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


# -- lineage ---------------------------------------------------------------------------------


class Lineage:
    """OpenLineage run events of stage attempts, sent by the ``openlineage-python`` client
    from a thread of their own through a bounded queue."""

    def __init__(self, settings: TelemetrySettings, limit: int = 10_000) -> None:
        from openlineage.client import OpenLineageClient

        self.namespace = settings.lineage_namespace
        self._client = OpenLineageClient(transport=_transport(settings))
        self._queue: queue.Queue[Any] = queue.Queue(limit)
        self.dropped = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._send, name="klaw-lineage", daemon=True)
        self._thread.start()

    def emit(
        self,
        state: str,
        workflow: str,
        run_id: str,
        stage: str,
        attempt: int,
        time: float,
        *,
        inputs: Sequence[tuple[str, int | None]] = (),
        output: tuple[str | None, int | None] | None = None,
        schema: list[tuple[str, str]] | None = None,
        rows: int | None = None,
        size: int | None = None,
        sql: str | None = None,
        error: str | None = None,
        sql_tables: Mapping[str, tuple[str, list[str] | None]] | None = None,
        engine: str | None = None,
    ) -> None:
        """Queue a START, COMPLETE or FAIL event of one attempt (dropped, and counted, when
        the queue is full). An SQL stage's ``sql_tables`` (the asset and, when known, the
        columns of each table its statement names) give the output's column lineage."""
        item = (state, workflow, run_id, stage, attempt, time, inputs, output, schema)
        try:
            self._queue.put_nowait((*item, rows, size, sql, error, sql_tables, engine))
        except queue.Full:
            self.dropped += 1

    def _event(self, item: tuple[Any, ...]) -> Any:
        from datetime import UTC, datetime

        from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent
        from openlineage.client.event_v2 import RunState as State
        from openlineage.client.facet_v2 import (
            error_message_run,
            output_statistics_output_dataset,
            parent_run,
            schema_dataset,
            sql_job,
        )

        (state, workflow, run_id, stage, attempt, ts, inputs, output, schema, rows, size, sql,
         error, sql_tables, engine) = item  # fmt: skip
        run_facets: dict[str, Any] = {
            "parent": parent_run.ParentRunFacet(
                run=parent_run.Run(runId=str(lineage_run_id(run_id))),
                job=parent_run.Job(namespace=self.namespace, name=workflow),
            )
        }
        if error is not None:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error, programmingLanguage="python"
            )
        job_facets: dict[str, Any] = {}
        if sql:
            job_facets["sql"] = sql_job.SQLJobFacet(query=sql)
        outputs = []
        if output is not None:
            facets: dict[str, Any] = {}
            if schema:
                facets["schema"] = schema_dataset.SchemaDatasetFacet(
                    fields=[
                        schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in schema
                    ]
                )
                if sql and sql_tables is not None:
                    columns = self._columns(sql, engine, sql_tables, [n for n, _ in schema])
                    if columns is not None:
                        facets["columnLineage"] = columns
            stats: dict[str, Any] = {}
            if rows is not None:
                stats["outputStatistics"] = (
                    output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                        rowCount=rows, size=size
                    )
                )
            outputs.append(
                OutputDataset(
                    namespace=self.namespace,
                    name=output[0],
                    facets=facets,
                    outputFacets=stats,
                )
            )
        return RunEvent(
            eventType=State[state],
            eventTime=datetime.fromtimestamp(ts, UTC).isoformat(),
            run=Run(runId=str(lineage_run_id(run_id, stage, attempt)), facets=run_facets),
            job=Job(namespace=self.namespace, name=f"{workflow}.{stage}", facets=job_facets),
            inputs=[InputDataset(namespace=self.namespace, name=key) for key, _ in inputs],
            outputs=outputs,
            producer=PRODUCER,
        )

    def _columns(
        self,
        sql: str,
        engine: str | None,
        tables: Mapping[str, tuple[str, list[str] | None]],
        outputs: list[str],
    ) -> Any:
        """The ``columnLineage`` facet of an SQL stage's output: for each output column, the
        input columns it is made from (parsed by sqlglot), or None when it cannot be told."""
        from openlineage.client.facet_v2 import column_lineage_dataset as cl

        found = column_lineage(sql, engine, tables, outputs)
        if not found:
            return None
        fields = {}
        for column, sources in found.items():
            fields[column] = cl.Fields(
                inputFields=[
                    cl.InputField(
                        namespace=self.namespace,
                        name=key,
                        field=field,
                        transformations=[cl.Transformation(type="DIRECT", subtype=subtype)],
                    )
                    for key, field, subtype in sources
                ]
            )
        return cl.ColumnLineageDatasetFacet(fields=fields)

    def _send(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if isinstance(item, threading.Event):
                    item.set()
                    continue
                self._client.emit(self._event(item))
            except Exception:  # a lineage server that is down must not stop anything
                self.failed += 1
            finally:
                self._queue.task_done()

    def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until what is queued now has been sent."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return
        done.wait(timeout)

    def close(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            self.dropped += 1


_DIALECTS = {"duckdb": "duckdb", "datafusion": "postgres", "polars": "duckdb"}


def column_lineage(
    sql: str,
    engine: str | None,
    tables: Mapping[str, tuple[str, list[str] | None]],
    outputs: Sequence[str],
) -> dict[str, list[tuple[str, str, str]]]:
    """For each of ``outputs`` (the columns an SQL statement returned), the ``(asset, column,
    subtype)`` of each input column it comes from: subtype ``IDENTITY`` when the column is
    passed through, ``TRANSFORMATION`` when it is computed from it (an aggregate, an
    expression). ``tables`` names each table of the statement's asset and, when known, its
    columns. Empty when sqlglot is not installed or cannot follow the statement."""
    try:
        from sqlglot import exp
        from sqlglot.errors import SqlglotError
        from sqlglot.lineage import lineage
    except ImportError:
        return {}
    dialect = _DIALECTS.get(engine or "duckdb")
    schema = {name: dict.fromkeys(cols, "TEXT") for name, (_, cols) in tables.items() if cols}
    found: dict[str, list[tuple[str, str, str]]] = {}
    for column in outputs:
        try:
            node = lineage(column, sql, schema=schema, dialect=dialect)
        except (SqlglotError, KeyError, ValueError):
            continue
        passed = isinstance(node.expression.unalias(), exp.Column)
        sources: list[tuple[str, str, str]] = []
        for leaf in node.walk():
            if leaf.downstream or not isinstance(leaf.source, exp.Table):
                continue
            table = tables.get(leaf.source.name)
            if table is None:
                continue
            field = leaf.name.rsplit(".", 1)[-1]
            identity = passed and field == column
            sources.append((table[0], field, "IDENTITY" if identity else "TRANSFORMATION"))
        if sources:
            found[column] = sorted(set(sources))
    return found


def lineage_run_id(run_id: str, stage: str | None = None, attempt: int | None = None) -> uuid.UUID:
    """The OpenLineage run id (a UUID, as the spec asks) of a Klaw run or of one attempt:
    the same Klaw ids always give the same UUID."""
    name = run_id if stage is None else f"{run_id}/{stage}/{attempt}"
    return uuid.uuid5(_NAMESPACE_IDS, name)


def dropped() -> int:
    """Lineage events dropped so far (the queue was full, or sending failed)."""
    lineage = ACTIVE.lineage
    return 0 if lineage is None else lineage.dropped + lineage.failed


def _transport(settings: TelemetrySettings) -> Any:
    kind = settings.lineage
    if kind == "console":
        from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport

        return ConsoleTransport(ConsoleConfig())
    if kind == "file":
        from openlineage.client.transport.file import FileConfig, FileTransport

        from klaw.errors import ConfigError

        if not settings.lineage_file:
            raise ConfigError(
                "KLAW_TELEMETRY__LINEAGE=file needs a file to write.",
                hint="Set KLAW_TELEMETRY__LINEAGE_FILE (lineage_file under [settings.telemetry]).",
            )
        return FileTransport(FileConfig(log_file_path=settings.lineage_file, append=True))
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    from klaw.errors import ConfigError

    if not settings.lineage_url:
        raise ConfigError(
            "KLAW_TELEMETRY__LINEAGE=http needs the lineage server's URL.",
            hint="Set KLAW_TELEMETRY__LINEAGE_URL, e.g. http://marquez:5000 (Marquez).",
        )
    config = HttpConfig(url=settings.lineage_url, timeout=5.0, retry={"total": 0})
    return HttpTransport(config)
