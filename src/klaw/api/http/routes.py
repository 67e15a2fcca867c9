"""The routes of ``/api/v1``: each builds one typed command and returns its reply as JSON.

No route has logic of its own: the :class:`~klaw.service.dispatcher.Dispatcher` executes the
command, and a KlawError it raises becomes a problem+json response
(:mod:`klaw.api.http.problems`). Who may call which route is decided in one place:
:data:`ROLES` (the minimum role of each route, by route name), checked by the one dependency
:func:`guard` builds for the whole router.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final, TypeVar, cast

import msgspec
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from klaw import metrics
from klaw.api.http import events
from klaw.api.http.auth import Authenticator, Principal, Role, authorize
from klaw.api.http.derived import body_schema
from klaw.api.http.derived import handler as derived_handler
from klaw.api.http.idempotency import HEADER, IdempotencyKeys, submit_once
from klaw.api.http.limits import Limits, Throttle, ThrottledAuthenticator
from klaw.api.http.schemas import RunBody
from klaw.errors import InvalidCommandError, KlawError
from klaw.protocol import (
    Command,
    GetRun,
    ListEvents,
    ListRuns,
    Reply,
    RunReply,
    SubmitRun,
    table,
)
from klaw.service.dispatcher import Dispatcher
from klaw.service.lifecycle import Caller

PREFIX: Final = "/api/v1"

# The minimum role of every route under /api/v1, by route name: the command table's
# (klaw.protocol.table). A route missing here is refused by create_app, so none can be added
# without saying who may call it.
ROLES: Final[dict[str, Role]] = {name: Role.parse(role) for name, role in table.roles().items()}
# The routes under /api/v1 that take no bearer token (their request is its own credential).
PUBLIC: Final = frozenset({"exchange_login_code", "auth_config", "exchange_oidc_code"})

_bearer: Final = HTTPBearer(auto_error=False, description="A token of KLAW_HTTP__TOKENS.")
C = TypeVar("C", bound=msgspec.Struct)
F = TypeVar("F", bound=Callable[..., Any])


def guard(
    authenticator: Authenticator, throttle: Throttle | None = None, role: Role | None = None
) -> Any:
    """The dependency every /api/v1 route runs: the bearer token's principal, when its role is
    at least ``role``, else the route's in :data:`ROLES` (a route not in it needs admin),
    and, with a ``throttle``, when neither the principal nor the client's failed tokens are
    over its rate limits."""

    def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        name = getattr(request.scope.get("route"), "name", "")
        token = credentials.credentials if credentials is not None else None
        checker = authenticator
        if throttle is not None:
            client = request.client.host if request.client is not None else ""
            checker = ThrottledAuthenticator(authenticator, throttle, client)
        return authorize(checker, token, role or ROLES.get(name, Role.ADMIN))

    return Depends(principal)


def command(cls: type[C], **fields: Any) -> C:
    """The command ``cls`` of ``fields``, checked like one decoded off the wire."""
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v is not None}, cls)
    except msgspec.ValidationError as exc:
        raise InvalidCommandError(
            f"Invalid {cls.__name__} command: {exc}.",
            command=cls.__name__,
            hint=f"See the fields of klaw.protocol.{cls.__name__}.",
        ) from None


def reply(value: Reply, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(value), status, headers, media_type="application/json")


def api_router(
    dispatcher: Dispatcher,
    authenticator: Authenticator,
    *,
    throttle: Throttle | None = None,
    keys: IdempotencyKeys | None = None,
) -> APIRouter:
    """The /api/v1 routes on ``dispatcher``, guarded by ``authenticator`` (and ``throttle``);
    ``keys`` keeps the Idempotency-Keys of ``POST /runs`` (none: in the orchestrator's metadata
    store, with the default TTL)."""
    checked = guard(authenticator, throttle)
    router = APIRouter(prefix=PREFIX, dependencies=[checked])

    def endpoint(cmd: type[msgspec.Struct], *, derived: bool = False) -> Callable[[F], F]:
        """Register a route's handler at the method, path, name and status of ``cmd`` in the
        command table (tagged with the path's first segment)."""
        http = table.HTTP[cmd]
        assert http is not None, cmd

        def register(fn: F) -> F:
            tag = http.path.strip("/").split("/")[0]
            router.add_api_route(
                http.path,
                fn,
                methods=[http.method],
                name=http.name,
                status_code=http.status,
                tags=[tag],
                openapi_extra=body_schema(cmd, http) if derived and http.body else None,
            )
            return fn

        return register

    if keys is None:
        keys = IdempotencyKeys(dispatcher.orchestrator.metadata, Limits().idempotency_ttl)
    idempotency = keys
    run = dispatcher.execute

    @endpoint(SubmitRun)
    def submit_run(
        body: RunBody,
        who: Principal = checked,  # the guard's principal (run once: FastAPI caches it)
        key: Annotated[
            str | None,
            Header(alias=HEADER, description="Repeats with this key get the same run."),
        ] = None,
    ) -> Response:
        """Start a run in the background; the reply is the run as created (201), or, for a
        repeat of an Idempotency-Key, the run that key made as it stands (200)."""
        fields = body.model_dump()

        def submit() -> RunReply:
            created = run(command(SubmitRun, **fields, wait=False))
            assert isinstance(created, RunReply)
            return created

        def get(run_id: str) -> RunReply:
            found = run(command(GetRun, run_id=run_id))
            assert isinstance(found, RunReply)
            return found

        if key is None:
            created = submit()
            return reply(created, 201, _location(created))
        found, made = submit_once(idempotency, who.subject, key, fields, submit, get)
        return reply(found, 201 if made else 200, _location(found))

    @router.post("/runs/{run_id}/resume", name="resume_run", status_code=201, tags=["runs"])
    def resume_run(run_id: str) -> Response:
        """Start a new run that re-runs what failed or never ran in this one."""
        parent = run(command(GetRun, run_id=run_id))
        assert isinstance(parent, RunReply)
        cmd = command(SubmitRun, workflow=parent.run.workflow, resume=run_id, wait=False)
        created = run(cmd)
        return reply(created, 201, _location(created))

    @endpoint(ListEvents)
    async def list_events(
        run_id: str,
        after: Annotated[int, Query(ge=0, description="The last seq seen.")] = 0,
        wait: Annotated[
            float,
            Query(ge=0, description="Seconds to wait for an event when there is none yet."),
        ] = 0.0,
    ) -> Response:
        """The run's events after ``after`` (a cursor), and the run as it stands. With
        ``wait``, a long poll: the answer comes once there are events or the run has ended
        (``wait`` seconds at most, 30 at the very most; then it may be empty)."""
        cmd = command(ListEvents, run_id=run_id, after_seq=after, wait=wait)
        return reply(await events.in_waiting_thread(run, cmd))

    @router.get(
        "/runs/{run_id}/stream",
        name="stream_run",
        tags=["runs"],
        response_class=StreamingResponse,
        responses={200: {"content": {events.MEDIA_TYPE: {}}}},
    )
    def stream_run(
        run_id: str,
        after: Annotated[int | None, Query(ge=0, description="The last seq seen.")] = None,
        last_event_id: Annotated[
            str | None, Header(alias="Last-Event-ID", description="Resume after this id.")
        ] = None,
    ) -> StreamingResponse:
        """The run's events and log lines as Server-Sent Events, until the run has ended."""
        cursor = events.Cursor.parse(last_event_id, after)
        first = events.first_events(dispatcher, run_id, cursor)
        messages = events.stream(dispatcher, run_id, cursor, first)
        return StreamingResponse(messages, media_type=events.MEDIA_TYPE, headers=events.HEADERS)

    # every other command of the table: its handler derived from its Struct (paths ending in
    # a {key:path} segment last, so /assets/{key}/rows is not read as the key "x/rows")
    served = {r.name for r in router.routes if isinstance(r, APIRoute)}
    derived = [
        (cls, http)
        for cls, http in table.HTTP.items()
        if http is not None and http.serve and http.name not in served
    ]
    derived.sort(key=lambda entry: entry[1].path.endswith(":path}"))
    for cls, http in derived:

        def respond(
            fields: dict[str, Any],
            who: Principal,
            cls: type[msgspec.Struct] = cls,
            http: Any = http,
        ) -> Response:
            found = run(cast(Command, command(cls, **fields)), caller=caller(who))
            made = getattr(found, "created", True)  # the same content made no new version
            return reply(found, http.status if made else 200, dict(http.headers) or None)

        endpoint(cls, derived=True)(derived_handler(cls, http, respond, checked))

    return router


def caller(who: Principal) -> Caller:
    """The lifecycle's caller for an authenticated principal."""
    return Caller(who.subject, who.role.label)


def _location(created: Reply) -> dict[str, str]:
    assert isinstance(created, RunReply)
    return {"Location": f"{PREFIX}/runs/{created.run.run_id}"}


def metrics_router(authenticator: Authenticator, throttle: Throttle | None = None) -> APIRouter:
    """``/metrics``: Klaw's metrics in the Prometheus text format, for any token of at least
    the viewer role (a scraper's ``authorization`` credentials)."""
    router = APIRouter(tags=["probes"])

    @router.get(
        "/metrics",
        name="metrics",
        dependencies=[guard(authenticator, throttle, Role.VIEWER)],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    def scrape() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return router


def probe_router(dispatcher: Dispatcher) -> APIRouter:
    """``/health`` (the process answers) and ``/ready`` (the metadata store answers): no auth,
    and nothing in the body but the status."""
    router = APIRouter(tags=["probes"])

    @router.get("/health", name="health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", name="ready")
    def ready() -> Response:
        try:
            dispatcher.execute(command(ListRuns, limit=1))
        except KlawError as exc:
            from klaw.api.http.problems import problem

            return problem(503, type(exc).__name__, "Not ready: the metadata store fails.")
        return Response(b'{"status":"ready"}', media_type="application/json")

    return router
