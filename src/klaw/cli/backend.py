"""Where the CLI's typed commands go: the local project, or a Klaw server.

Every ``klaw`` command that acts on a project builds a typed command
(:mod:`klaw.protocol`) and hands it to a backend; the CLI itself only renders replies.

- :class:`LocalBackend`: a :class:`~klaw.service.dispatcher.Dispatcher` over the project's
  Orchestrator, opened on first use. ``klaw run`` runs in this process and is fed its events as
  they are written (no polling).
- :class:`RemoteBackend`: the Arrow Flight client of a ``klaw server``, chosen by ``--server URL``
  or ``KLAW_SERVER``. The token comes from the ``KLAW_TOKEN`` environment variable only (never a
  flag, so it stays out of shell history). ``klaw run`` submits the run and follows its events
  (long polls: the server answers as soon as events are committed).
- :class:`HttpBackend`: the same over a Klaw HTTP API (``klaw api``, ``klaw dev``), chosen by
  ``--url URL`` or ``KLAW_URL``, token from ``KLAW_TOKEN``. Asset rows have no HTTP route yet.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol, TypeVar, cast

from klaw.errors import AuthError, ConfigError, KlawError, UnexpectedReplyError

if TYPE_CHECKING:
    import pyarrow as pa

    from klaw.api.flight.client import Client
    from klaw.api.http.client import HttpClient
    from klaw.metadata.records import EventRecord, RunRecord
    from klaw.protocol import Command, Reply, SubmitRun
    from klaw.service.dispatcher import Dispatcher
    from klaw.service.orchestrator import Orchestrator

R = TypeVar("R")

SERVER_ENV: Final = "KLAW_SERVER"
URL_ENV: Final = "KLAW_URL"
TOKEN_ENV: Final = "KLAW_TOKEN"
FOLLOW_WAIT: Final = 1.0  # seconds the server may hold one ListEvents (a long poll) while
# following a remote run: events come as they are committed; Ctrl-C is seen within this


class RunWatcher(Protocol):
    """What follows a run as it goes (``klaw run``'s live display)."""

    def start(self, run: RunRecord, stages: int) -> None: ...

    def events(self, events: list[EventRecord]) -> None: ...


class Backend(Protocol):
    """Executes typed commands; raises the :class:`KlawError` a failure names."""

    def execute(self, cmd: Command) -> Reply: ...

    def submit(self, cmd: SubmitRun, watcher: RunWatcher | None = None) -> RunRecord:
        """Run ``cmd`` to its end, telling ``watcher`` how it goes; the final run record."""
        ...

    def read_asset(self, key: str, snapshot: int | None, limit: int) -> pa.Table:
        """The first ``limit`` rows of a snapshot. Data is not a command (commands carry
        references): locally the asset store reads it, remotely Flight ``DoGet`` streams it."""
        ...

    def close(self) -> None: ...


def ask(backend: Backend, cmd: Command, expected: type[R]) -> R:
    """The reply to ``cmd``, checked to be an ``expected``."""
    return expect(cmd, backend.execute(cmd), expected)


def expect(cmd: Command, reply: Reply, expected: type[R]) -> R:
    from klaw.protocol import ErrorReply

    if isinstance(reply, expected):
        return reply
    if isinstance(reply, ErrorReply):
        raise KlawError(reply.message, hint=reply.hint)
    raise UnexpectedReplyError(
        f"{type(cmd).__name__} was answered with {type(reply).__name__}, not {expected.__name__}.",
        hint="Are this klaw and the server the same Klaw version?",
    )


def open_backend(
    server: str | None, orchestrator: Callable[[], Orchestrator], url: str | None = None
) -> Backend:
    """The Flight backend when a server is given, the HTTP one when an API URL is, else the
    local one. Both at once is a ConfigError."""
    one_remote(server, url)
    if not (server or url):
        return LocalBackend(orchestrator)
    from klaw.settings import load_client_settings

    secret = load_client_settings().token
    token = secret.get_secret_value() if secret is not None else None
    if server:
        return RemoteBackend(server, token or None)
    return HttpBackend(url or "", token or None)


def one_remote(server: str | None, url: str | None) -> None:
    """Refuse (ConfigError) a Flight server and an HTTP API named together."""
    if server and url:
        raise ConfigError(
            f"Both a Klaw server ({server}, --server / {SERVER_ENV}) and a Klaw API ({url}, "
            f"--url / {URL_ENV}) are given; klaw can send commands to only one.",
            hint=f"Pass only one of --server and --url (and unset {SERVER_ENV} or {URL_ENV}).",
        )


def local_only(server: str | None, command: str) -> None:
    """Say (on stderr) that ``command`` acts here even though a server is named."""
    if server:
        from klaw.cli.output import error_console

        error_console().print(
            f"[dim]note:[/dim] {command} acts on this machine; the server {server} "
            f"(--server / {SERVER_ENV} or --url / {URL_ENV}) is not used.",
            highlight=False,
        )


def refuse_remote(server: str | None, command: str) -> None:
    """``command`` changes a local database: refuse it when a server is named."""
    if server:
        raise ConfigError(
            f"{command} acts on a local metadata database and cannot be sent to the server "
            f"{server} (--server / {SERVER_ENV} or --url / {URL_ENV}).",
            hint=f"Run it where the server runs, without --server and with {SERVER_ENV} unset "
            f"(and without --url, {URL_ENV} unset).",
        )


class LocalBackend:
    """Commands executed in this process by a Dispatcher over the project's Orchestrator."""

    def __init__(self, orchestrator: Callable[[], Orchestrator]) -> None:
        self._open = orchestrator  # called on first use: commands that fail early stay fast
        self._dispatcher: Dispatcher | None = None

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            from klaw.service.dispatcher import Dispatcher

            self._dispatcher = Dispatcher(self._open())
        return self._dispatcher

    def execute(self, cmd: Command) -> Reply:
        return self.dispatcher.execute(cmd)

    def execute_as(self, cmd: Command, subject: str, role: str) -> Reply:
        """``cmd`` sent by ``subject`` with ``role`` (an MCP server's authenticated caller):
        lifecycle changes are made and audited as them, not as the local user."""
        from klaw.service.lifecycle import Caller

        return self.dispatcher.execute(cmd, caller=Caller(subject, role))

    def submit(self, cmd: SubmitRun, watcher: RunWatcher | None = None) -> RunRecord:
        """Run here, to the end; ``watcher`` hears of each durable write as it happens."""
        import msgspec

        from klaw.protocol import RunReply

        cmd = msgspec.structs.replace(cmd, wait=True)
        if watcher is None:
            reply = self.dispatcher.execute(cmd)
        else:
            reply = self.dispatcher.execute(
                cmd,
                on_start=lambda run, plan: watcher.start(run, len(plan.stages)),
                on_events=watcher.events,
            )
        return expect(cmd, reply, RunReply).run

    def read_asset(self, key: str, snapshot: int | None, limit: int) -> pa.Table:
        return self.dispatcher.orchestrator.read_asset(key, snapshot, limit)

    def close(self) -> None:
        """Nothing of its own to close: the CLI closes the Orchestrator it opened."""


class _Client(Protocol):
    """What a remote backend needs of its client (Flight ``Client``, ``HttpClient``)."""

    @property
    def url(self) -> str: ...

    def execute(self, cmd: Command) -> Reply: ...

    def close(self) -> None: ...


class FollowingBackend(abc.ABC):
    """A backend on another machine: ``klaw run`` submits the run and follows its events.
    Subclasses say how to connect (``_connect``) and how to read asset rows."""

    PEER: str = "server"  # what the other side is called in messages
    TOKENS: str = ""  # where the other side's tokens come from, for the hint

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self._token = token
        self._seen: dict[str, int] = {}  # run id -> last event seq followed (none replayed)
        self._client: _Client | None = None

    @abc.abstractmethod
    def _connect(self) -> _Client:
        """A client for ``self.url`` with ``self._token`` (made on first use)."""

    @abc.abstractmethod
    def read_asset(self, key: str, snapshot: int | None, limit: int) -> pa.Table:
        """The first ``limit`` rows of a snapshot."""

    def _connected(self) -> _Client:
        if self._client is None:
            self._client = self._connect()
        return self._client

    @property
    def where(self) -> str:
        """The address commands go to, as said to people."""
        return self._connected().url

    def execute(self, cmd: Command) -> Reply:
        """Send ``cmd``; its reply (an error is raised as the KlawError it names)."""
        try:
            return self._connected().execute(cmd)
        except AuthError as exc:
            raise self._auth_error(exc) from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _auth_error(self, exc: AuthError) -> AuthError:
        """The other side's refusal, with what to do about it from the command line."""
        if self._token is None:
            hint = (
                f"Set {TOKEN_ENV} to one of the {self.PEER}'s tokens (klaw reads it from the "
                "environment only, never from a flag)."
            )
        else:
            hint = (
                f"The token in {TOKEN_ENV} is not one the {self.PEER} accepts; set {TOKEN_ENV} "
                f"to one of its tokens ({self.TOKENS} where it runs)."
            )
        return AuthError(exc.message, hint=hint)

    def submit(self, cmd: SubmitRun, watcher: RunWatcher | None = None) -> RunRecord:
        """Start the run on the server, then follow its events until it ends. Ctrl-C asks the
        server to cancel it (the server owns the run) and keeps following until it has
        stopped; a second Ctrl-C stops following at once."""
        import msgspec

        from klaw.protocol import PlanReply, PlanWorkflow, RunReply

        run = ask(self, msgspec.structs.replace(cmd, wait=False), RunReply).run
        if watcher is not None:
            plan = ask(
                self, PlanWorkflow(workflow=run.workflow, selection=run.selection), PlanReply
            )
            watcher.start(run, len(plan.stages))
        try:
            return self._follow(run, watcher)
        except KeyboardInterrupt:
            self._cancel(run)
            return self._follow(run, watcher)

    def _follow(self, run: RunRecord, watcher: RunWatcher | None) -> RunRecord:
        from klaw.protocol import EventsReply, long_poll

        after = self._seen.get(run.run_id, 0)
        while True:  # each ListEvents waits on the other side until there are events
            reply = ask(self, long_poll(run.run_id, after, FOLLOW_WAIT), EventsReply)
            if reply.events:
                after = self._seen[run.run_id] = reply.events[-1].seq
                if watcher is not None:
                    watcher.events(reply.events)
            if reply.run.state.terminal:  # the run was read first: its last events are in
                return reply.run

    def _cancel(self, run: RunRecord) -> None:
        from klaw.cli.output import error_console
        from klaw.protocol import CancelRun, RunReply

        error_console().print(
            f"cancelling run {run.run_id} on {self.where} (Ctrl-C again to stop following)",
            highlight=False,
        )
        ask(self, CancelRun(run_id=run.run_id, wait=0.0), RunReply)


class RemoteBackend(FollowingBackend):
    """Commands sent to a ``klaw server`` over Arrow Flight."""

    TOKENS = "KLAW_FLIGHT__TOKENS or KLAW_FLIGHT__TOKENS_FILE"

    def _connect(self) -> Client:
        from klaw.api.flight.client import Client

        return Client(self.url, self._token)

    def read_asset(self, key: str, snapshot: int | None, limit: int) -> pa.Table:
        client = cast("Client", self._connected())  # made by _connect above
        return client.read_asset(key, snapshot).slice(0, limit)


class HttpBackend(FollowingBackend):
    """Commands sent to a Klaw HTTP API (``klaw api``, ``klaw dev``)."""

    PEER = "API"
    TOKENS = "KLAW_HTTP__TOKENS or `klaw tokens create`"

    def _connect(self) -> HttpClient:
        from klaw.api.http.client import HttpClient

        return HttpClient(self.url, self._token)

    def read_asset(self, key: str, snapshot: int | None, limit: int) -> pa.Table:
        """A preview over HTTP (``PreviewRows``: at most 1,000 rows, values as JSON gives
        them); whole snapshots travel over Arrow Flight (``--server``)."""
        import pyarrow as pa

        from klaw.protocol import PreviewRows, RowsReply

        cmd = PreviewRows(key=key, snapshot=snapshot, limit=min(limit, 1_000))
        reply = ask(self, cmd, RowsReply)
        if reply.rows:
            return pa.Table.from_pylist(reply.rows)
        return pa.table({name: pa.array([], pa.null()) for name in reply.schema})
