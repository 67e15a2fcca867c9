"""Metrics: Klaw's counters and histograms, scraped at ``/metrics`` and exported by OTLP.

One table of instruments (:data:`INSTRUMENTS`) and one hook per thing counted
(:func:`run_started`, :func:`attempt_ended`, :func:`command`, ...). With no sink on, a hook is
one attribute read and nothing of Prometheus or OpenTelemetry is imported. Two sinks:

- **Prometheus** (``/metrics`` on ``klaw api`` and ``klaw dev``): the serving process calls
  :func:`share` before it starts run workers; it and every process it starts (run workers,
  their stage processes) count in memory-mapped files of one directory, the client library's
  multiprocess mode. What a process that has ended counted is merged into one archive file per
  kind (:func:`sweep`, when a run worker ends and before each scrape), so the directory holds
  one file per live process plus the archives: a scrape costs the same after 10,000 runs as
  after 10. A process that serves ``/metrics`` in-process only (tests) counts in memory.
- **OTLP** (``[settings.telemetry] metrics = "otlp-http" | "otlp-grpc" | "console"``): the
  OpenTelemetry SDK's periodic reader, in every process that counts, off the caller's thread.

Names follow Prometheus (``klaw_`` prefix, ``_seconds`` and ``_total`` suffixes) on
``/metrics`` and OpenTelemetry (``klaw.run.started``, unit ``s``) over OTLP.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast

if TYPE_CHECKING:
    from klaw.settings import TelemetrySettings

ENV: Final = "PROMETHEUS_MULTIPROC_DIR"  # the client library's own variable
PREFIX: Final = "klaw_"

SLOW: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
FAST: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One metric: its Prometheus name (without ``klaw_`` and ``_total``), its OpenTelemetry
    name, kind, unit, help text and label names (histograms: their bucket bounds)."""

    name: str
    otel: str
    kind: Literal["counter", "histogram"]
    unit: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


RUNS_STARTED: Final = Instrument(
    "runs_started", "klaw.run.started", "counter", "{run}", "Runs started.", ("workflow",)
)
RUNS_ENDED: Final = Instrument(
    "runs_ended",
    "klaw.run.ended",
    "counter",
    "{run}",
    "Runs ended, by their final state.",
    ("workflow", "state"),
)
ATTEMPTS_ENDED: Final = Instrument(
    "attempts_ended",
    "klaw.attempt.ended",
    "counter",
    "{attempt}",
    "Stage attempts ended, by state (retrying: the attempt failed and the stage is retried).",
    ("workflow", "state"),
)
STAGE_DURATION: Final = Instrument(
    "stage_duration_seconds",
    "klaw.attempt.duration",
    "histogram",
    "s",
    "Time from a stage attempt's start to its end.",
    ("workflow",),
    SLOW,
)
QUEUE_WAIT: Final = Instrument(
    "stage_queue_wait_seconds",
    "klaw.attempt.queue_wait",
    "histogram",
    "s",
    "Time a stage attempt waited between queued (its inputs ready) and started.",
    ("workflow",),
    SLOW,
)
ROWS_WRITTEN: Final = Instrument(
    "asset_rows_written",
    "klaw.asset.rows_written",
    "counter",
    "{row}",
    "Rows committed to an asset's snapshots.",
    ("asset",),
)
BYTES_WRITTEN: Final = Instrument(
    "asset_bytes_written",
    "klaw.asset.bytes_written",
    "counter",
    "By",
    "Bytes committed to an asset's snapshots.",
    ("asset",),
)
COMMANDS: Final = Instrument(
    "commands",
    "klaw.command.handled",
    "counter",
    "{command}",
    "Typed commands handled (HTTP and Flight), by type and outcome (ok, or the error class).",
    ("command", "outcome"),
)
COMMAND_DURATION: Final = Instrument(
    "command_duration_seconds",
    "klaw.command.duration",
    "histogram",
    "s",
    "Time to handle a typed command.",
    ("command",),
    FAST,
)
LEASE_EXPIRIES: Final = Instrument(
    "lease_expiries",
    "klaw.lease.expired",
    "counter",
    "{lease}",
    "Stage attempts given up because their worker stopped renewing the lease.",
)
TRIGGER_LAG: Final = Instrument(
    "trigger_lag_seconds",
    "klaw.trigger.lag",
    "histogram",
    "s",
    "Time from a schedule's tick to its run being started.",
    ("schedule",),
    SLOW,
)
STORE_WRITE: Final = Instrument(
    "metadata_write_seconds",
    "klaw.metadata.write.duration",
    "histogram",
    "s",
    "Time to commit one batch of records to the metadata store.",
    (),
    FAST,
)
INSTRUMENTS: Final = (
    RUNS_STARTED,
    RUNS_ENDED,
    ATTEMPTS_ENDED,
    STAGE_DURATION,
    QUEUE_WAIT,
    ROWS_WRITTEN,
    BYTES_WRITTEN,
    COMMANDS,
    COMMAND_DURATION,
    LEASE_EXPIRIES,
    TRIGGER_LAG,
    STORE_WRITE,
)


class _Active:
    """This process's sinks (none: metrics are off, and every hook returns at once)."""

    __slots__ = ("configured", "otel", "prometheus", "sinks")

    def __init__(self) -> None:
        self.prometheus: _Prometheus | None = None
        self.otel: _Otel | None = None
        self.sinks: tuple[_Sink, ...] = ()
        self.configured: tuple[Any, ...] | None = None

    def rebuild(self) -> None:
        self.sinks = tuple(s for s in (self.prometheus, self.otel) if s is not None)


ACTIVE: Final = _Active()
_lock = threading.Lock()  # configuring; merging and reading the shared directory


# -- hooks -----------------------------------------------------------------------------------


def run_started(workflow: str) -> None:
    for sink in ACTIVE.sinks:
        sink.add(RUNS_STARTED, 1, (workflow,))


def run_ended(workflow: str, state: str) -> None:
    for sink in ACTIVE.sinks:
        sink.add(RUNS_ENDED, 1, (workflow, state))


def attempt_ended(
    workflow: str, state: str, duration: float | None, queue_wait: float | None
) -> None:
    """An attempt reached ``state`` (a terminal state or ``retrying``); ``duration`` from its
    start (None: it never started), ``queue_wait`` from queued to started."""
    for sink in ACTIVE.sinks:
        sink.add(ATTEMPTS_ENDED, 1, (workflow, state))
        if duration is not None:
            sink.observe(STAGE_DURATION, max(0.0, duration), (workflow,))
        if queue_wait is not None:
            sink.observe(QUEUE_WAIT, max(0.0, queue_wait), (workflow,))


def asset_written(asset: str, rows: int | None, size: int | None) -> None:
    for sink in ACTIVE.sinks:
        if rows:
            sink.add(ROWS_WRITTEN, rows, (asset,))
        if size:
            sink.add(BYTES_WRITTEN, size, (asset,))


def command(name: str, outcome: str, seconds: float) -> None:
    for sink in ACTIVE.sinks:
        sink.add(COMMANDS, 1, (name, outcome))
        sink.observe(COMMAND_DURATION, seconds, (name,))


def leases_expired(count: int) -> None:
    for sink in ACTIVE.sinks:
        sink.add(LEASE_EXPIRIES, count, ())


def trigger_lag(schedule: str, seconds: float) -> None:
    for sink in ACTIVE.sinks:
        sink.observe(TRIGGER_LAG, max(0.0, seconds), (schedule,))


def store_write(seconds: float) -> None:
    for sink in ACTIVE.sinks:
        sink.observe(STORE_WRITE, seconds, ())


@contextmanager
def timed_command(name: str) -> Iterator[None]:
    """Count the command handled in the block, with its outcome (the error's class name when
    it raises) and its duration."""
    if not ACTIVE.sinks:
        yield
        return
    start = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except BaseException as exc:
        outcome = type(exc).__name__
        raise
    finally:
        command(name, outcome, time.perf_counter() - start)


# -- configuration ---------------------------------------------------------------------------


def share(home: Path) -> Path:
    """This process serves ``/metrics`` for itself and the processes it starts: count in
    files under ``home/metrics/<pid>`` (set in the environment those processes inherit).
    Directories of serving processes that have ended are removed. Call before starting any
    process whose counts should be seen."""
    root = home / "metrics"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.is_dir() and old.name.isdigit() and not _alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    directory = root / str(os.getpid())
    shutil.rmtree(directory, ignore_errors=True)  # a reused pid's leftovers
    directory.mkdir()
    os.environ[ENV] = str(directory)
    with _lock:
        if ACTIVE.prometheus is not None and ACTIVE.prometheus.directory != directory:
            ACTIVE.prometheus = None  # counted before sharing: start again in the files
        ACTIVE.prometheus = ACTIVE.prometheus or _Prometheus(directory)
        ACTIVE.rebuild()
    return directory


def unshare() -> None:
    """The serving process stopped: stop counting in the shared directory and remove it."""
    with _lock:
        prom = ACTIVE.prometheus
        if prom is None or prom.directory is None:
            return
        from prometheus_client import values

        values.ValueClass = values.MutexValue
        ACTIVE.prometheus = None
        ACTIVE.rebuild()
        if os.environ.get(ENV) == str(prom.directory):
            del os.environ[ENV]
        shutil.rmtree(prom.directory, ignore_errors=True)


def serve_in_process() -> None:
    """This process serves ``/metrics`` (the HTTP app was created): count, in the shared
    directory when :func:`share` or the parent process set one, else in memory."""
    with _lock:
        if ACTIVE.prometheus is None:
            ACTIVE.prometheus = _Prometheus(_shared())
            ACTIVE.rebuild()


def configure(settings: TelemetrySettings) -> None:
    """Set this process's sinks from ``settings`` (once; the same settings again do nothing):
    OTLP as configured, and Prometheus files when this process was started by one that
    serves ``/metrics``."""
    key = (settings.metrics, settings.endpoint, settings.service_name, settings.metrics_interval)
    with _lock:
        directory = _shared()
        if directory is not None and ACTIVE.prometheus is None:
            ACTIVE.prometheus = _Prometheus(directory)
        if key != ACTIVE.configured:
            if ACTIVE.otel is not None:
                ACTIVE.otel.shutdown()
                ACTIVE.otel = None
            if settings.metrics != "none":
                ACTIVE.otel = _Otel(settings)
            ACTIVE.configured = key
        ACTIVE.rebuild()


def reset() -> None:
    """Turn every sink off and forget the configuration (tests that count from zero)."""
    unshare()
    with _lock:
        if ACTIVE.otel is not None:
            ACTIVE.otel.shutdown()
        ACTIVE.prometheus = ACTIVE.otel = None
        ACTIVE.configured = None
        ACTIVE.rebuild()


def flush(timeout_ms: int = 5000) -> None:
    """Export what the OTLP reader holds now (before a worker process exits: it runs no
    ``atexit``); Prometheus files need nothing."""
    if ACTIVE.otel is not None:
        ACTIVE.otel.flush(timeout_ms)


def exposition() -> tuple[bytes, str]:
    """The Prometheus text of every process counting into this one's directory (or of this
    process alone), and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    prom = ACTIVE.prometheus
    if prom is None:
        return b"", CONTENT_TYPE_LATEST
    if prom.directory is None:
        return generate_latest(prom.registry), CONTENT_TYPE_LATEST
    from prometheus_client import CollectorRegistry, multiprocess

    collector: Any = multiprocess.MultiProcessCollector  # untyped

    with _lock:
        _sweep(prom.directory)
        registry = CollectorRegistry()
        collector(registry, path=str(prom.directory))
        return generate_latest(registry), CONTENT_TYPE_LATEST


def sweep() -> None:
    """Merge what ended processes counted into the archives (a run worker has ended)."""
    prom = ACTIVE.prometheus
    if prom is not None and prom.directory is not None:
        with _lock:
            _sweep(prom.directory)


def _shared() -> Path | None:
    """The directory the serving process shares (None: none, or it is gone)."""
    value = os.environ.get(ENV)
    return Path(value) if value and os.path.isdir(value) else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _sweep(directory: Path) -> None:
    """Fold the files of ended processes into ``<kind>_archive.db`` (sum per series; written
    aside and renamed over, then the ended files go)."""
    from prometheus_client import mmap_dict

    mmaped: Any = mmap_dict.MmapedDict  # the library's file format, untyped
    ended: dict[str, list[Path]] = {}
    for path in directory.glob("*.db"):
        kind, _, pid = path.stem.rpartition("_")
        if pid.isdigit() and not _alive(int(pid)):
            ended.setdefault(kind, []).append(path)
    for kind, paths in ended.items():
        if kind.startswith("gauge"):  # Klaw keeps no gauges in files; a stray one just goes
            for path in paths:
                path.unlink(missing_ok=True)
            continue
        archive = directory / f"{kind}_archive.db"
        totals: dict[str, float] = {}
        for path in [archive, *paths] if archive.exists() else paths:
            for key, value, _ts, _pos in mmaped.read_all_values_from_file(str(path)):
                totals[key] = totals.get(key, 0.0) + value
        aside = directory / f"{kind}_archive.merging"  # not *.db: a scrape never reads it
        aside.unlink(missing_ok=True)
        merged = mmaped(str(aside))
        try:
            for key, value in totals.items():
                merged.write_value(key, value, 0.0)
        finally:
            merged.close()
        os.replace(aside, archive)
        for path in paths:
            path.unlink(missing_ok=True)


# -- sinks -----------------------------------------------------------------------------------


class _Sink(Protocol):
    def add(self, inst: Instrument, value: float, labels: tuple[str, ...]) -> None: ...

    def observe(self, inst: Instrument, value: float, labels: tuple[str, ...]) -> None: ...


class _Prometheus:
    """prometheus_client metrics in a registry of their own; in files of ``directory`` (the
    multiprocess mode) when one is given."""

    def __init__(self, directory: Path | None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, values

        self.directory = directory
        if directory is not None:
            # the library picks its value class when first imported; this process may have
            # imported it before the directory was known
            values.ValueClass = cast(Any, values.MultiProcessValue)()
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Any] = {}
        for inst in INSTRUMENTS:
            name = PREFIX + inst.name
            if inst.kind == "counter":
                metric: Any = Counter(name, inst.help, inst.labels, registry=self.registry)
            else:
                metric = Histogram(
                    name, inst.help, inst.labels, registry=self.registry, buckets=inst.buckets
                )
            self._metrics[inst.name] = metric
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def _child(self, inst: Instrument, labels: tuple[str, ...]) -> Any:
        key = (inst.name, labels)
        child = self._children.get(key)
        if child is None:
            metric = self._metrics[inst.name]
            child = metric.labels(*labels) if labels else metric
            self._children[key] = child
        return child

    def add(self, inst: Instrument, value: float, labels: tuple[str, ...]) -> None:
        self._child(inst, labels).inc(value)

    def observe(self, inst: Instrument, value: float, labels: tuple[str, ...]) -> None:
        self._child(inst, labels).observe(value)


class _Otel:
    """An OpenTelemetry MeterProvider whose periodic reader exports by OTLP (or to stdout)."""

    def __init__(self, settings: TelemetrySettings) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        from klaw import telemetry

        exporter: Any
        if settings.metrics == "console":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            exporter = ConsoleMetricExporter()
        else:
            exporter = telemetry.otlp_exporter(settings.metrics, "metrics", settings.endpoint)
        interval = (
            settings.metrics_interval * 1000 if settings.metrics_interval is not None else None
        )  # None: OTEL_METRIC_EXPORT_INTERVAL, else the SDK's 60 s
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval)
        self.provider = MeterProvider(
            metric_readers=[reader], resource=telemetry.resource(settings)
        )
        meter = self.provider.get_meter("klaw")
        self._attrs: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}
        self._instruments: dict[str, Any] = {}
        for inst in INSTRUMENTS:
            if inst.kind == "counter":
                made: Any = meter.create_counter(inst.otel, inst.unit, inst.help)
            else:
                made = meter.create_histogram(
                    inst.otel,
                    inst.unit,
                    inst.help,
                    explicit_bucket_boundaries_advisory=inst.buckets,
                )
            self._instruments[inst.name] = made

    def _attributes(self, inst: Instrument, labels: tuple[str, ...]) -> dict[str, str]:
        key = (inst.name, labels)
        found = self._attrs.get(key)
        if found is None:
            found = self._attrs[key] = dict(zip(inst.labels, labels, strict=True))
        return found

    def add(self, inst: Instrument, value: float, labels: tuple[str, ...]) -> None:
        self._instruments[inst.name].add(value, self._attributes(inst, labels))

    def observe(self, inst: Instrument, value: float, labels: tuple[str, ...]) -> None:
        self._instruments[inst.name].record(value, self._attributes(inst, labels))

    def flush(self, timeout_ms: int) -> None:
        self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        self.provider.shutdown()
