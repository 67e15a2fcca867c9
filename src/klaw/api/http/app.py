"""The FastAPI application: the routes of :mod:`klaw.api.http.routes` on one Orchestrator,
behind host checks, CORS, body limits, bearer auth and rate limits, with errors as
problem+json."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.middleware.trustedhost import TrustedHostMiddleware

from klaw import metrics, telemetry
from klaw.api.http import idempotency, problems
from klaw.api.http.auth import Authenticator
from klaw.api.http.idempotency import IdempotencyKeys
from klaw.api.http.limits import Limits, Throttle
from klaw.api.http.limits import install as install_limits
from klaw.api.http.login import LoginCodes, OidcClient, login_router
from klaw.api.http.routes import PREFIX, PUBLIC, ROLES, api_router, metrics_router, probe_router
from klaw.api.http.ui import ui_router
from klaw.service.dispatcher import Dispatcher
from klaw.service.orchestrator import Orchestrator


def create_app(
    orchestrator: Orchestrator,
    authenticator: Authenticator,
    *,
    allowed_hosts: Sequence[str],
    cors_origins: Sequence[str],
    limits: Limits | None = None,
    logins: LoginCodes | None = None,
    web_ui: bool = True,
) -> FastAPI:
    """The HTTP API of ``orchestrator``. ``allowed_hosts``: the Host headers it answers
    (``"*"``: any); ``cors_origins``: the browser origins that may call it (none: no CORS);
    ``limits``: rate and size limits (default: from the orchestrator's settings); ``logins``:
    the one-time login codes it exchanges (none: it has none); ``web_ui``: serve the web UI
    at every path outside the API."""
    from klaw import __version__

    limits = limits if limits is not None else Limits.from_settings(orchestrator.settings)
    dispatcher = Dispatcher(orchestrator)
    throttle = Throttle(limits)
    api = api_router(
        dispatcher,
        authenticator,
        throttle=throttle,
        keys=IdempotencyKeys(orchestrator.metadata, limits.idempotency_ttl),
    )
    oidc = OidcClient.from_settings(orchestrator.settings)
    login = login_router(logins or LoginCodes(), authenticator, throttle, oidc)
    # the routers' routes go in as they are (flat: every route is in app.routes)
    metrics.serve_in_process()
    scrape = metrics_router(authenticator, throttle)
    routes = [*probe_router(dispatcher).routes, *scrape.routes, *api.routes, *login.routes]
    app = FastAPI(
        title="Klaw",
        version=__version__,
        description="Klaw's HTTP API: the typed commands, behind bearer tokens with roles.",
        routes=routes,
    )
    unlisted = [
        r.name
        for r in app.routes
        if isinstance(r, APIRoute)
        and r.path.startswith(PREFIX)
        and r.name not in ROLES
        and r.name not in PUBLIC
    ]
    if unlisted:
        raise ValueError(f"Routes without a minimum role in ROLES: {', '.join(unlisted)}.")
    if web_ui:  # after the API's documents: its pages answer the paths left
        app.router.routes.extend(ui_router().routes)
    problems.install(app)
    idempotency.install(app)
    install_limits(app, limits)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts) or ["*"])
    if telemetry.ACTIVE.tracer is not None:  # outermost: the span covers every other layer
        from klaw.api.http.tracing import TracingMiddleware

        app.add_middleware(TracingMiddleware)
    return app
