"""Klaw's Arrow Flight server: one Orchestrator, its commands and its assets, behind bearer tokens.

- ``DoAction`` type ``command``: the body is a MessagePack command, the one result a MessagePack
  reply (:mod:`klaw.protocol`), through the same Dispatcher as every other interface.
- ``DoGet``: the ticket names an asset snapshot (:mod:`klaw.api.flight.tickets`); its rows stream
  as record batches, read from the lake as they are sent (or from memory when recently read).
- ``DoPut``: descriptor path ``[key]``; the uploaded stream becomes one new snapshot of the
  asset, tagged run ``upload``, stage ``do_put``; the PutResult's metadata is a
  :class:`PutReceipt`.
- ``ListFlights`` / ``GetFlightInfo`` / ``GetSchema``: assets, with schema, rows, bytes and a
  ticket for the snapshot described.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import pyarrow as pa
from pyarrow import flight

from klaw import telemetry
from klaw.api.flight.auth import BearerAuth, TokenSet
from klaw.api.flight.cache import SnapshotCache
from klaw.api.flight.status import guarded, internal, to_flight
from klaw.api.flight.tickets import (
    AssetTicket,
    FlightMeta,
    PutReceipt,
    decode_ticket,
    descriptor_path,
    encode_meta,
    encode_receipt,
    encode_ticket,
)
from klaw.errors import AssetNotFoundError, KlawError, TicketError, UnknownActionError
from klaw.metadata.records import RunFilter
from klaw.observability import get_logger
from klaw.protocol import COMMANDS, decode
from klaw.service.dispatcher import Dispatcher
from klaw.service.lifecycle import Caller

if TYPE_CHECKING:
    from klaw.service.orchestrator import Orchestrator
    from klaw.storage.store import AssetInfo

_log: Final = get_logger(__name__)

COMMAND_ACTION: Final = "command"
ACTIONS: Final = {
    COMMAND_ACTION: "Run one Klaw command. Body: a MessagePack command, a map whose 'type' names "
    f"it ({', '.join(COMMANDS)}); result: one MessagePack reply (see klaw.protocol).",
}
UPLOAD_RUN: Final = "upload"  # the run and stage tags of snapshots committed by DoPut
UPLOAD_STAGE: Final = "do_put"
BATCH_BYTES: Final = 4 * 1024 * 1024  # about this much per streamed record batch
_MIN_BATCH_ROWS, _MAX_BATCH_ROWS = 4096, 1_048_576
_VARIABLE_WIDTH: Final = 32  # bytes a row of a string or nested column is guessed to take


@dataclass(frozen=True, slots=True)
class _Located:
    """A snapshot a ticket or descriptor names, found."""

    key: str
    snapshot: int
    schema: pa.Schema


@runtime_checkable
class AssetStreamer(Protocol):
    """An asset store that can hand out a snapshot as a stream (DuckLake can)."""

    def stream(
        self, key: str, snapshot: int | None = None, *, batch_rows: int = ...
    ) -> pa.RecordBatchReader: ...


class _TraceContext(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Keeps a call's W3C trace headers for its handler (installed when traces are on)."""

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> _Headers | None:
        found = {k: str(headers[k][0]) for k in ("traceparent", "tracestate") if headers.get(k)}
        return _Headers(found) if found else None


class _Headers(flight.ServerMiddleware):  # type: ignore[misc]
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__()
        self.headers = headers


class KlawFlightServer(flight.FlightServerBase):  # type: ignore[misc]
    """Serves one Orchestrator. Listening starts in the constructor; use :func:`serve`."""

    def __init__(
        self, orchestrator: Orchestrator, location: str, tokens: TokenSet, cache_bytes: int
    ) -> None:
        self.orchestrator = orchestrator
        self.dispatcher = Dispatcher(orchestrator)
        self.cache = SnapshotCache(cache_bytes)
        middleware: dict[str, Any] = {"auth": BearerAuth(tokens)}
        if telemetry.ACTIVE.tracer is not None:
            middleware["trace"] = _TraceContext()
        super().__init__(location, middleware=middleware)

    # -- commands ------------------------------------------------------------------------------
    def list_actions(self, context: Any) -> list[flight.ActionType]:
        return [flight.ActionType(name, text) for name, text in ACTIONS.items()]

    def do_action(self, context: Any, action: Any) -> Iterator[flight.Result]:
        with guarded("DoAction"):
            if action.type != COMMAND_ACTION:
                raise UnknownActionError(
                    f"Unknown action type {action.type!r}; this server knows: "
                    f"{', '.join(ACTIONS)}.",
                    hint="Send commands as action type 'command' (ListActions describes it).",
                )
            body = action.body.to_pybytes() if action.body is not None else b""
            if telemetry.ACTIVE.tracer is None:
                reply = self.dispatcher.handle(body, _caller(context))
            else:
                reply = self._traced(context, body)
        return iter([flight.Result(reply)])

    def _traced(self, context: Any, body: bytes) -> bytes:
        """The command inside a span (``rpc.*`` conventions), child of the caller's
        ``traceparent``; current while it runs, so a run it starts is its child."""
        found = context.get_middleware("trace")
        try:
            name = type(decode(body)).__name__
        except Exception:  # the dispatcher answers it with the decoding error
            name = "undecodable"
        attributes = {
            "rpc.system": "apache_arrow_flight",
            "rpc.service": "klaw",
            "rpc.method": name,
        }
        headers = found.headers if found is not None else None
        with telemetry.span(f"klaw.command {name}", attributes, headers):
            return self.dispatcher.handle(body, _caller(context))

    # -- reading -------------------------------------------------------------------------------
    def do_get(self, context: Any, ticket: Any) -> Any:
        with guarded("DoGet"):
            wanted = decode_ticket(ticket.ticket)
            span = self._span(context, "DoGet", wanted.key) if telemetry.ACTIVE.tracer else None
            try:
                key, snapshot = self._resolve(wanted)
                if span is not None:
                    span.set_attribute("klaw.snapshot", snapshot)
                cached = self.cache.get(key, snapshot)  # only snapshots that exist get in
                if cached is not None:
                    telemetry.end(span, attributes={"klaw.cached": True})
                    return flight.RecordBatchStream(cached)
                found = self._locate(AssetTicket(key=key, snapshot=snapshot))
                reader = self._reader(found)
            except KlawError as exc:
                telemetry.end(span, exc.message)
                raise
            return flight.GeneratorStream(reader.schema, self._streamed(found, reader, span))

    def _streamed(
        self, found: _Located, reader: pa.RecordBatchReader, span: Any = None
    ) -> Iterator[Any]:
        """The snapshot's batches as they are read (and kept in the cache); the DoGet's span,
        if any, ends when the last has gone."""
        error = None
        try:
            with guarded("DoGet"):
                yield from self.cache.keep(found.key, found.snapshot, reader.schema, reader)
        except Exception as exc:
            error = str(exc)
            raise
        finally:
            telemetry.end(span, error)

    def _span(self, context: Any, method: str, key: str) -> Any:
        """A span of a data call (``rpc.*`` conventions), child of the caller's
        ``traceparent``; ended by the caller."""
        found = context.get_middleware("trace")
        attributes = {
            "rpc.system": "apache_arrow_flight",
            "rpc.service": "klaw",
            "rpc.method": method,
            "klaw.asset": key,
        }
        return telemetry.start(
            f"klaw.{method} {key}", attributes, found.headers if found is not None else None
        )

    def _reader(self, found: _Located) -> pa.RecordBatchReader:
        rows = batch_rows(found.schema)
        lake = self.orchestrator.lake()
        if isinstance(lake, AssetStreamer):
            return lake.stream(found.key, found.snapshot, batch_rows=rows)
        table = lake.read(found.key, found.snapshot)
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(rows))

    def _locate(self, wanted: AssetTicket) -> _Located:
        """The snapshot a ticket names (the latest when it names none) and its schema. Cheap:
        it reads no statistics of older snapshots. Raises naming the asset (and the closest
        keys), or the snapshot (and the ones there are)."""
        key, snapshot = self._resolve(wanted)
        schema = self.orchestrator.read_asset(key, snapshot, 0).schema  # checks it exists
        return _Located(key, snapshot, schema)

    def _resolve(self, wanted: AssetTicket) -> tuple[str, int]:
        """The key and snapshot id a ticket names: the latest's id when it names none."""
        if wanted.snapshot is None:
            latest = self._latest(wanted.key)
            return latest.key, latest.latest_snapshot
        return wanted.key, wanted.snapshot

    def _latest(self, key: str) -> AssetInfo:
        info = self.orchestrator.asset(key) if self.orchestrator.lake_stored else None
        if info is not None:
            return info
        self.orchestrator.read_asset(key, None, 0)  # an unknown key: names the closest ones
        raise AssetNotFoundError(
            f"asset {key!r} has no snapshot Klaw recorded",
            hint="Commit one (a workflow run, or DoPut) before reading it.",
        )

    # -- writing -------------------------------------------------------------------------------
    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        with guarded("DoPut"):
            wanted = self._described(descriptor)
            if wanted.snapshot is not None:
                raise TicketError(
                    f"DoPut makes a new snapshot of asset {wanted.key!r}; its descriptor path is "
                    f"[key], without a snapshot id (got {wanted.snapshot}).",
                    hint=f"Use FlightDescriptor.for_path({wanted.key!r}).",
                )
            if telemetry.ACTIVE.tracer is None:
                table = reader.read_all()
                snapshot = self.orchestrator.lake().commit(
                    wanted.key, table, run_id=UPLOAD_RUN, stage=UPLOAD_STAGE, attempt=1
                )
            else:
                table, snapshot = self._traced_put(context, wanted.key, reader)
            _log.info("asset uploaded", key=wanted.key, snapshot=snapshot, rows=table.num_rows)
            receipt = PutReceipt(key=wanted.key, snapshot=snapshot, rows=table.num_rows)
            writer.write(pa.py_buffer(encode_receipt(receipt)))

    def _traced_put(self, context: Any, key: str, reader: Any) -> tuple[pa.Table, int]:
        span = self._span(context, "DoPut", key)
        try:
            table = reader.read_all()
            snapshot = self.orchestrator.lake().commit(
                key, table, run_id=UPLOAD_RUN, stage=UPLOAD_STAGE, attempt=1
            )
        except Exception as exc:
            telemetry.end(span, str(exc))
            raise
        telemetry.end(span, None, {"klaw.snapshot": snapshot, "klaw.rows": table.num_rows})
        return table, snapshot

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        with guarded("DoExchange"):
            raise UnknownActionError(
                "Klaw's server does not offer DoExchange.",
                hint="Read an asset with DoGet, write one with DoPut, send commands with "
                "DoAction 'command'.",
            )

    # -- describing ----------------------------------------------------------------------------
    def list_flights(self, context: Any, criteria: bytes) -> Iterator[flight.FlightInfo]:
        with guarded("ListFlights"):
            prefix = bytes(criteria or b"").decode(errors="replace").lower()
            infos = [
                self._flight_info(
                    FlightMeta(
                        key=a.key,
                        snapshot=a.latest_snapshot,
                        committed_at=a.updated_at,
                        snapshots=a.snapshots,
                    ),
                    a.rows,
                    flight.FlightDescriptor.for_path(a.key),
                )
                for a in self._assets()
                if a.key.lower().startswith(prefix)
            ]
        return iter(infos)

    def get_flight_info(self, context: Any, descriptor: Any) -> flight.FlightInfo:
        with guarded("GetFlightInfo"):
            wanted = self._described(descriptor)
            if wanted.snapshot is None:
                latest = self._latest(wanted.key)
                meta = FlightMeta(
                    key=latest.key,
                    snapshot=latest.latest_snapshot,
                    committed_at=latest.updated_at,
                    snapshots=latest.snapshots,
                )
                return self._flight_info(meta, latest.rows, descriptor)
            found = self._locate(wanted)  # checks the snapshot exists
            info = self.orchestrator.snapshot(found.key, found.snapshot)
            asset = self.orchestrator.asset(found.key)
            meta = FlightMeta(
                key=info.key,
                snapshot=info.snapshot,
                committed_at=info.committed_at,
                snapshots=asset.snapshots if asset is not None else 1,
            )
            return self._flight_info(meta, info.rows, descriptor, found.schema)

    def get_schema(self, context: Any, descriptor: Any) -> flight.SchemaResult:
        # pyarrow (26.0) sends any exception GetSchema raises with its Python traceback (its
        # _get_schema lacks the FlightError translation of the other methods): raise here,
        # one frame deep, with Klaw's whole message. GetFlightInfo carries the schema too.
        try:
            return flight.SchemaResult(self._locate(self._described(descriptor)).schema)
        except KlawError as exc:
            error = to_flight(exc)
        except Exception as exc:
            error = internal(exc, "GetSchema")
        raise error

    def _assets(self) -> list[AssetInfo]:
        if not self.orchestrator.lake_stored:  # nothing stored yet
            return []
        return self.orchestrator.assets()

    def _flight_info(
        self, meta: FlightMeta, rows: int, descriptor: Any, schema: pa.Schema | None = None
    ) -> flight.FlightInfo:
        if schema is None:
            schema = self.orchestrator.read_asset(meta.key, meta.snapshot, 0).schema
        endpoint = flight.FlightEndpoint(encode_ticket(meta.key, meta.snapshot), [])
        size = self.cache.size(meta.key, meta.snapshot)
        return flight.FlightInfo(
            schema,
            descriptor,
            [endpoint],
            rows,
            size if size is not None else fixed_width_bytes(schema, rows),
            app_metadata=encode_meta(meta),
        )

    @staticmethod
    def _described(descriptor: Any) -> AssetTicket:
        if descriptor.descriptor_type != flight.DescriptorType.PATH:
            raise TicketError(
                "Klaw describes assets by path descriptors, not commands.",
                hint="Use FlightDescriptor.for_path(key) or for_path(key, str(snapshot)).",
            )
        return descriptor_path(descriptor.path)


def _caller(context: Any) -> Caller:
    """Who sent a command: every accepted Flight token may do everything (admin)."""
    found = context.get_middleware("auth")
    return Caller(getattr(found, "subject", "flight"), "admin")


def batch_rows(schema: pa.Schema) -> int:
    """Rows per streamed batch, so that a batch is about :data:`BATCH_BYTES`."""
    width = 0.0
    for field in schema:
        try:
            width += field.type.bit_width / 8
        except ValueError:  # variable width (strings, lists...): a guess
            width += _VARIABLE_WIDTH
    rows = int(BATCH_BYTES / max(width, 1.0))
    return max(_MIN_BATCH_ROWS, min(_MAX_BATCH_ROWS, rows))


def fixed_width_bytes(schema: pa.Schema, rows: int) -> int:
    """The Arrow bytes of ``rows`` rows when every column is fixed-width; -1 (unknown)
    otherwise. Exact figures replace this once a snapshot has been streamed."""
    bits = 0
    for field in schema:
        try:
            bits += field.type.bit_width
        except ValueError:
            return -1
    return (bits * rows + 7) // 8


class RunningServer:
    """A Klaw Flight server that is listening. Stop it with :meth:`stop` (or a ``with``)."""

    def __init__(self, server: KlawFlightServer, host: str) -> None:
        self.server = server
        self.host = host
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server.port)

    @property
    def location(self) -> str:
        """``grpc://HOST:PORT``, what :class:`klaw.Client` is given."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"grpc://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"RunningServer({self.location!r})"

    def stop(self) -> None:
        """Stop listening; calls in flight finish first. Runs the orchestrator drives are left
        alone (``orchestrator.shutdown()`` cancels them)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.server.shutdown()

    def wait(self) -> None:
        """Block until the server is stopped (from another thread)."""
        self.server.wait()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(
    orchestrator: Orchestrator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tokens: TokenSet | Iterable[str],
    cache_bytes: int | None = None,
) -> RunningServer:
    """Serve ``orchestrator`` over Flight on ``host:port`` (port 0: a free one) to callers with
    one of ``tokens``. Opens the metadata store and loads the workflows first, so a store on an
    old schema or a project that does not import is refused here, before anything listens.
    ``cache_bytes``: memory for recently read snapshots (default: the ``server_cache_mb``
    setting; 0: none)."""
    accepted = tokens if isinstance(tokens, TokenSet) else TokenSet(tokens)
    # Flight hands DoPut buffers aligned as they arrived; DuckDB's Arrow scan (Acero) then
    # warns once per batch. Copying just the misaligned buffers is correct everywhere.
    os.environ.setdefault("ACERO_ALIGNMENT_HANDLING", "reallocate")
    orchestrator.metadata.list_runs(RunFilter(limit=1))
    orchestrator.workflow_names()  # load now: import errors surface at start
    budget = orchestrator.settings.flight.cache_mb * 2**20 if cache_bytes is None else cache_bytes
    where = f"[{host}]" if ":" in host else host
    server = KlawFlightServer(orchestrator, f"grpc://{where}:{port}", accepted, budget)
    running = RunningServer(server, host)
    _log.info("flight server listening", location=running.location, tokens=repr(accepted))
    return running
