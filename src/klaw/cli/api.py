"""``klaw api``: the project's typed commands over HTTP/JSON, behind bearer tokens with roles."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Annotated, Final

import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.output import Format, emit_json
from klaw.cli.server import _StopSignals
from klaw.errors import ConfigError

if TYPE_CHECKING:
    from klaw.api.http import Authenticator
    from klaw.api.http.tokens import ChainAuthenticator
    from klaw.service.orchestrator import Orchestrator

STARTUP_WAIT: Final = 60.0  # seconds uvicorn may take to bind


@app.command("api")
def api(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default 127.0.0.1; KLAW_API_HOST)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port (default 8080; 0: any free; KLAW_API_PORT)."
        ),
    ] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Serve the project's HTTP API (/api/v1, /openapi.json) until SIGINT or SIGTERM.

    Accepts the tokens of KLAW_API_TOKENS="role:token,role:token" (roles: viewer, operator,
    approver, admin), those made with `klaw tokens create`, and JWTs of KLAW_OIDC_ISSUER; it
    refuses to start with none of them. Clients send one as 'Authorization: Bearer <token>'.
    """
    import uvicorn

    from klaw.api.http import create_app

    orch = STATE.orchestrator(api_host=host, api_port=port)
    settings = orch.settings
    authenticator = _authenticator(orch)
    web = create_app(
        orch,
        authenticator,
        allowed_hosts=_split(settings.api_allowed_hosts),
        cors_origins=_split(settings.api_cors_origins),
    )
    config = uvicorn.Config(
        web,
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        timeout_graceful_shutdown=max(1, int(settings.stop_grace)),
    )
    server = uvicorn.Server(config)
    with _StopSignals() as stop:
        # uvicorn off the main thread installs no signal handlers; the main thread waits here
        thread = threading.Thread(target=server.run, name="klaw-api", daemon=True)
        thread.start()
        try:
            bound = _bound_port(server, thread)
            location = f"http://{settings.api_host}:{bound}"
            if output is Format.JSON:
                emit_json(
                    {
                        "listening": location,
                        "host": settings.api_host,
                        "port": bound,
                        "project": orch.project.name,
                    }
                )
            else:
                sys.stdout.write(f"Klaw API listening on {location}\n")
            sys.stdout.flush()
            stop.wait()
        finally:
            server.should_exit = True
            thread.join(timeout=settings.stop_grace + 5.0)
            orch.shutdown(wait=settings.stop_grace)  # cancel the runs it started, let them end
    sys.stderr.write("Klaw API stopped.\n")


def _authenticator(orch: Orchestrator) -> ChainAuthenticator:
    """Static tokens (KLAW_API_TOKENS), then stored tokens, then OIDC JWTs (when configured).
    ConfigError when no way in exists: no static token, no live stored token, no issuer."""
    from klaw.api.http import StaticTokenAuthenticator
    from klaw.api.http.tokens import ChainAuthenticator, StoredTokenAuthenticator
    from klaw.service.tokens import has_live_token

    settings = orch.settings
    static = StaticTokenAuthenticator.parse(
        settings.api_tokens.get_secret_value() if settings.api_tokens else ""
    )
    chain: list[Authenticator] = [static] if len(static) else []
    chain.append(StoredTokenAuthenticator(orch.metadata))
    if settings.oidc_issuer:
        from klaw.api.http.oidc import JwtAuthenticator

        jwt_auth = JwtAuthenticator.from_settings(settings)
        if jwt_auth is not None:
            chain.append(jwt_auth)
    elif not len(static) and not has_live_token(orch.metadata):
        raise ConfigError(
            "No API tokens: KLAW_API_TOKENS is not set and the metadata database holds no live "
            "token; the API would refuse every call.",
            hint="Make a token with `klaw tokens create --role admin --name NAME`, or set "
            "KLAW_API_TOKENS=admin:<token>[,viewer:<token>...] (or KLAW_OIDC_ISSUER and "
            "KLAW_OIDC_AUDIENCE to accept JWTs).",
        )
    return ChainAuthenticator(chain)


def _bound_port(server: object, thread: threading.Thread) -> int:
    """The port uvicorn listens on, once it does; ConfigError when it could not start."""
    import uvicorn

    assert isinstance(server, uvicorn.Server)
    deadline = time.monotonic() + STARTUP_WAIT
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise ConfigError(
            f"The HTTP API could not listen on {server.config.host}:{server.config.port}.",
            hint="Is the port in use? Pick another with --port (0: any free one).",
        )
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return port


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
