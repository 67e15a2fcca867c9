"""``klaw.Client``: a Klaw server's commands and assets from Python, over Arrow Flight.

>>> with klaw.Client("grpc://127.0.0.1:8815", token="...") as client:  # doctest: +SKIP
...     run = client.submit("revenue", params={"min_amount": 5})
...     final = client.wait(run.run_id)
...     table = client.read_asset("daily_revenue")

The address defaults to ``KLAW_SERVER`` (else ``grpc://127.0.0.1:8815``), the token to
``KLAW_TOKEN``. An error the server reports is raised here as the KlawError subclass it names,
message and hint kept; an unreachable server is a :class:`ServerUnavailableError`, a refused
token an :class:`AuthError`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final, TypeVar

import pyarrow as pa
from pyarrow import flight

from klaw import telemetry
from klaw.api.flight.status import reply_of
from klaw.api.flight.tickets import decode_receipt, encode_ticket
from klaw.errors import AuthError, ConfigError, RemoteError, ServerUnavailableError
from klaw.metadata.records import EventRecord, LogRecord, RunRecord
from klaw.protocol import (
    MAX_EVENTS_WAIT,
    AssetsReply,
    AttemptsReply,
    AttemptView,
    CancelRun,
    Command,
    ErrorReply,
    EventsReply,
    GetRun,
    ListAssets,
    ListAttempts,
    ListEvents,
    ListRuns,
    ListSnapshots,
    ListWorkflows,
    LogsReply,
    Ping,
    PlanReply,
    PlanWorkflow,
    PongReply,
    ReadLogs,
    Reply,
    RunReply,
    RunsReply,
    SnapshotsReply,
    SubmitRun,
    ValidateReply,
    ValidateWorkflows,
    ValidationResult,
    WorkflowInfo,
    WorkflowsReply,
    decode_reply,
    encode,
    from_reply,
    long_poll,
)
from klaw.states import RunState
from klaw.storage.store import AssetInfo, SnapshotInfo
from klaw.tabular import describe, is_tabular, to_arrow

DEFAULT_URL: Final = "grpc://127.0.0.1:8815"
FOLLOW_WAIT: Final = 1.0  # seconds the server may hold one ListEvents while following
AFTER_ALL: Final = 2**62  # a seq after every event: only the run's end answers such a wait
_BATCH_BYTES: Final = 4 * 1024 * 1024  # about this much per uploaded record batch
_START_HINT: Final = (
    "Start one in the project with `klaw server` (it needs KLAW_FLIGHT__TOKENS or "
    "KLAW_FLIGHT__TOKENS_FILE), "
    "or point KLAW_SERVER at a running one."
)

R = TypeVar("R", bound=Reply)


def server_url(url: str) -> str:
    """``host:port`` as ``grpc://host:port``; a URL with a scheme as it is."""
    url = url.strip()
    return url if "://" in url else f"grpc://{url}"


class Client:
    """A connection to one Klaw server. Nothing is sent until the first call."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | None = 30.0,
        stream_timeout: float | None = None,
    ) -> None:
        """``timeout``: seconds a command or a description may take (None: no limit);
        ``stream_timeout``: the same for reading and writing asset data (default: no limit).
        A command that waits (``SubmitRun(wait=True)``, ``CancelRun``) gets its own wait on
        top."""
        self.url = server_url(url or os.environ.get("KLAW_SERVER") or DEFAULT_URL)
        self._token = token if token is not None else os.environ.get("KLAW_TOKEN")
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        try:
            self._conn = flight.connect(self.url)
        except (pa.ArrowException, ValueError) as exc:
            raise ConfigError(
                f"{self.url!r} is not a Klaw server address: {exc}.",
                hint="Use grpc://HOST:PORT (KLAW_SERVER), e.g. grpc://127.0.0.1:8815.",
            ) from None

    def __repr__(self) -> str:  # never the token
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    # -- commands ------------------------------------------------------------------------------
    def execute(self, cmd: Command) -> Reply:
        """Send one command; its reply. An ErrorReply is raised as the error it names."""
        options = self._options(_command_timeout(cmd, self.timeout))
        action = flight.Action("command", encode(cmd))
        with self._remote(type(cmd).__name__):
            results = list(self._conn.do_action(action, options))
        if not results:
            raise RemoteError(
                f"The server at {self.url} sent no reply to {type(cmd).__name__}.",
                hint="Check the server's log.",
            )
        reply = decode_reply(results[0].body.to_pybytes())
        if isinstance(reply, ErrorReply):
            raise from_reply(reply)
        return reply

    def ping(self) -> PongReply:
        return self._ask(Ping(), PongReply)

    def submit(
        self,
        workflow: str,
        *,
        params: Mapping[str, Any] | None = None,
        selection: str | None = None,
        wait: bool = False,
        executor: str | None = None,
        max_workers: int | None = None,
        fail_fast: bool = False,
        resume: str | None = None,
    ) -> RunRecord:
        """Start a run on the server: the run as created (``queued``); with ``wait``, the run
        once it has ended. Follow it with :meth:`events`, :meth:`follow` or :meth:`wait`."""
        cmd = SubmitRun(
            workflow=workflow,
            selection=selection,
            params=dict(params or {}),
            executor=executor,
            max_workers=max_workers,
            fail_fast=fail_fast,
            resume=resume,
            wait=wait,
        )
        return self._ask(cmd, RunReply).run

    def get_run(self, run_id: str) -> RunRecord:
        return self._ask(GetRun(run_id=run_id), RunReply).run

    def runs(
        self,
        workflow: str | None = None,
        *,
        states: tuple[RunState, ...] = (),
        limit: int = 50,
        before: str | None = None,
    ) -> list[RunRecord]:
        cmd = ListRuns(workflow=workflow, states=states, limit=limit, before=before)
        return self._ask(cmd, RunsReply).runs

    def attempts(self, run_id: str) -> list[AttemptView]:
        return self._ask(ListAttempts(run_id=run_id), AttemptsReply).attempts

    def cancel(self, run_id: str, *, wait: float = 30.0) -> RunRecord:
        return self._ask(CancelRun(run_id=run_id, wait=wait), RunReply).run

    def events(self, run_id: str, after_seq: int = 0, *, wait: float = 0.0) -> EventsReply:
        """The run's events after ``after_seq``, and the run as it stands after them. With
        ``wait``, the server answers once there are some (or the run has ended), waiting
        ``wait`` seconds at most: an empty reply then means nothing happened meanwhile."""
        if wait > 0:
            return self._ask(long_poll(run_id, after_seq, wait), EventsReply)
        return self._ask(ListEvents(run_id=run_id, after_seq=after_seq), EventsReply)

    def follow(
        self, run_id: str, *, after_seq: int = 0, wait: float = FOLLOW_WAIT
    ) -> Iterator[EventRecord]:
        """Every event of the run after ``after_seq``, as they happen, until the run ends.
        Each request waits on the server for the next events (``wait`` seconds at most, then
        it asks again), so an event arrives as soon as it is committed."""
        while True:
            page = self.events(run_id, after_seq, wait=wait)
            yield from page.events
            if page.events:
                after_seq = page.events[-1].seq
            if page.run.state.terminal:  # the run was read first: its events are all there
                return

    def wait(
        self, run_id: str, *, timeout: float | None = None, wait: float = FOLLOW_WAIT
    ) -> RunRecord:
        """The run once it has ended (``timeout`` seconds at most: then a RemoteError). The
        server holds each request until the run ends (``wait`` seconds at most)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = wait if deadline is None else min(wait, deadline - time.monotonic())
            run = self.events(run_id, AFTER_ALL, wait=max(left, 0.0)).run
            if run.state.terminal:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise RemoteError(
                    f"Run {run_id} is still {run.state.value} after {timeout:g} s.",
                    hint="Wait longer, or cancel it with Client.cancel.",
                )

    def logs(self, run_id: str, stage: str | None = None) -> list[LogRecord]:
        return self._ask(ReadLogs(run_id=run_id, stage=stage), LogsReply).logs

    def workflows(self) -> list[WorkflowInfo]:
        return self._ask(ListWorkflows(), WorkflowsReply).workflows

    def plan(self, workflow: str, selection: str | None = None) -> PlanReply:
        return self._ask(PlanWorkflow(workflow=workflow, selection=selection), PlanReply)

    def validate(self, *workflows: str) -> list[ValidationResult]:
        return self._ask(ValidateWorkflows(workflows=workflows), ValidateReply).results

    def assets(self) -> list[AssetInfo]:
        return self._ask(ListAssets(), AssetsReply).assets

    def snapshots(self, key: str) -> list[SnapshotInfo]:
        return self._ask(ListSnapshots(key=key), SnapshotsReply).snapshots

    # -- data ----------------------------------------------------------------------------------
    def read_asset(self, key: str, snapshot: int | None = None) -> pa.Table:
        """The rows of a snapshot of an asset (the latest when ``snapshot`` is None)."""
        ticket = flight.Ticket(encode_ticket(key, snapshot))
        with self._remote("DoGet"):
            return self._conn.do_get(ticket, self._options(self.stream_timeout)).read_all()

    def write_asset(self, key: str, table: Any) -> int:
        """Store ``table`` (a pyarrow Table or RecordBatchReader, a Polars or pandas
        DataFrame...) as a new snapshot of asset ``key``; the snapshot's id."""
        if isinstance(table, pa.RecordBatchReader):
            batches: Any = table
            schema = table.schema
        elif is_tabular(table):
            arrow = to_arrow(table)
            per_row = max(1, arrow.nbytes // max(1, arrow.num_rows))
            batches = arrow.to_batches(max_chunksize=max(1024, _BATCH_BYTES // per_row))
            schema = arrow.schema
        else:
            raise ConfigError(
                f"Cannot store a {describe(table)} as asset {key!r}.",
                hint="Pass a pyarrow Table or RecordBatchReader, or a Polars/pandas DataFrame.",
            )
        descriptor = flight.FlightDescriptor.for_path(key)
        with self._remote("DoPut"):
            writer, answers = self._conn.do_put(
                descriptor, schema, self._options(self.stream_timeout)
            )
            with writer:
                for batch in batches:
                    writer.write_batch(batch)
                writer.done_writing()
                answer = answers.read()
        if answer is None:
            raise RemoteError(
                f"The server at {self.url} stored asset {key!r} but sent no receipt.",
                hint="Check its snapshots with Client.snapshots.",
            )
        return decode_receipt(answer.to_pybytes()).snapshot

    def flights(self, prefix: str = "") -> list[flight.FlightInfo]:
        """A FlightInfo of the latest snapshot of every asset (whose key starts with
        ``prefix``): schema, rows, bytes, and the endpoint whose ticket reads it."""
        with self._remote("ListFlights"):
            return list(self._conn.list_flights(prefix.encode(), self._options(self.timeout)))

    def flight_info(self, key: str, snapshot: int | None = None) -> flight.FlightInfo:
        parts = [key] if snapshot is None else [key, str(snapshot)]
        descriptor = flight.FlightDescriptor.for_path(*parts)
        with self._remote("GetFlightInfo"):
            return self._conn.get_flight_info(descriptor, self._options(self.timeout))

    # -- plumbing ------------------------------------------------------------------------------
    def _ask(self, cmd: Command, kind: type[R]) -> R:
        reply = self.execute(cmd)
        if not isinstance(reply, kind):
            raise RemoteError(
                f"The server answered {type(cmd).__name__} with {type(reply).__name__}, "
                f"not {kind.__name__}.",
                hint="Use a client of the same Klaw version as the server.",
            )
        return reply

    def _options(self, timeout: float | None) -> flight.FlightCallOptions:
        headers = []
        if self._token:
            headers.append((b"authorization", b"Bearer " + self._token.encode()))
        for name, value in telemetry.carrier().items():  # the caller's span, when traced
            headers.append((name.encode(), value.encode()))
        return flight.FlightCallOptions(timeout=timeout, headers=headers)

    @contextlib.contextmanager
    def _remote(self, what: str) -> Iterator[None]:
        """Flight errors as Klaw errors that name the server and say what to do."""
        try:
            yield
        except flight.FlightUnauthenticatedError as exc:
            reply = reply_of(exc)
            if reply is not None:
                raise from_reply(reply) from None
            given = (
                "the token sent is not one it accepts"
                if self._token
                else "no token was sent (KLAW_TOKEN is not set)"
            )
            raise AuthError(
                f"The Klaw server at {self.url} refused {what}: {given}.",
                hint="Set KLAW_TOKEN (or Client(token=...)) to one of the server's tokens "
                "(KLAW_FLIGHT__TOKENS or KLAW_FLIGHT__TOKENS_FILE where it runs).",
            ) from None
        except flight.FlightUnavailableError as exc:
            raise ServerUnavailableError(
                f"No Klaw server answers at {self.url} ({_reason(exc)}).", hint=_START_HINT
            ) from None
        except flight.FlightTimedOutError:
            raise RemoteError(
                f"{what} on the Klaw server at {self.url} did not answer in time.",
                hint="Raise the client's timeout, or check that the server is not stuck.",
            ) from None
        except flight.FlightError as exc:
            reply = reply_of(exc)
            if reply is not None:
                raise from_reply(reply) from None
            raise RemoteError(
                f"{what} failed on the Klaw server at {self.url}: {_reason(exc)}.",
                hint="Check the server's log.",
            ) from None


def _command_timeout(cmd: Command, timeout: float | None) -> float | None:
    if isinstance(cmd, SubmitRun) and cmd.wait:
        return None  # as long as the run takes
    if isinstance(cmd, CancelRun) and timeout is not None:
        return timeout + cmd.wait
    if isinstance(cmd, ListEvents) and timeout is not None:
        return timeout + min(cmd.wait, MAX_EVENTS_WAIT)
    return timeout


def _reason(exc: BaseException) -> str:
    """The server's sentence out of a Flight error's text (without gRPC's debug context)."""
    text = str(exc).split(". Detail:", 1)[0].split(". gRPC client debug context", 1)[0]
    text = text.split("with message: ", 1)[-1]
    return text.split("last error: ", 1)[-1].strip().rstrip(".")
