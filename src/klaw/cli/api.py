"""``klaw api``: the project's typed commands over HTTP/JSON, behind bearer tokens with roles."""

from __future__ import annotations

import sys
import threading
from typing import Annotated

import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.output import Format, emit_json
from klaw.cli.serving import (
    StopSignals,
    api_authenticator,
    bound_port,
    report_load_errors,
    split_list,
)


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
    orch.check_lake()  # a lake in object storage is reachable before serving
    orch.isolate_user_code()  # runs and workflow imports happen in child processes, not here
    report_load_errors(orch)  # a module that fails at import is named; the rest are served
    settings = orch.settings
    authenticator = api_authenticator(orch)
    web = create_app(
        orch,
        authenticator,
        allowed_hosts=split_list(settings.api_allowed_hosts),
        cors_origins=split_list(settings.api_cors_origins),
    )
    config = uvicorn.Config(
        web,
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        timeout_graceful_shutdown=max(1, int(settings.stop_grace)),
    )
    server = uvicorn.Server(config)
    with StopSignals() as stop:
        # uvicorn off the main thread installs no signal handlers; the main thread waits here
        thread = threading.Thread(target=server.run, name="klaw-api", daemon=True)
        thread.start()
        try:
            bound = bound_port(server, thread)
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
