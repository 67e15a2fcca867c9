"""``klaw api``: the project's typed commands over HTTP/JSON, behind bearer tokens with roles."""

from __future__ import annotations

import sys
import threading
import time
from typing import Annotated, Final

import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.output import Format, emit_json
from klaw.cli.server import _StopSignals
from klaw.errors import ConfigError

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

    Needs KLAW_API_TOKENS="role:token,role:token" (roles: viewer, operator, approver, admin);
    clients send one as 'Authorization: Bearer <token>'.
    """
    import uvicorn

    from klaw.api.http import StaticTokenAuthenticator, create_app

    orch = STATE.orchestrator(api_host=host, api_port=port)
    settings = orch.settings
    authenticator = StaticTokenAuthenticator.from_settings(settings)
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
