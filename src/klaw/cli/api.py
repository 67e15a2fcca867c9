"""``klaw api``: the project's typed commands over HTTP/JSON, behind bearer tokens with roles."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.output import Format, emit_json
from klaw.cli.serving import ServingHost, StopSignals


@app.command("api")
def api(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default 127.0.0.1; KLAW_HTTP__HOST)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port (default 8080; 0: any free; KLAW_HTTP__PORT)."
        ),
    ] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Serve the project's HTTP API (/api/v1, /openapi.json) until SIGINT or SIGTERM.

    Accepts the tokens of KLAW_HTTP__TOKENS="role:token,role:token" (roles: viewer, operator,
    approver, admin), those made with `klaw tokens create`, and JWTs of KLAW_HTTP__OIDC__ISSUER; it
    refuses to start with none of them. Clients send one as 'Authorization: Bearer <token>'.
    """
    orch = STATE.orchestrator(api_host=host, api_port=port)
    settings = orch.settings
    with StopSignals() as stop:
        serving = ServingHost(orch, http=(settings.http.host, settings.http.port))
        try:
            serving.start()
            assert serving.http_url is not None
            if output is Format.JSON:
                emit_json(
                    {
                        "listening": serving.http_url,
                        "ui": f"{serving.http_url}/login",
                        "host": settings.http.host,
                        "port": int(serving.http_url.rsplit(":", 1)[1]),
                        "project": orch.project.name,
                    }
                )
            else:
                sys.stdout.write(f"Klaw API listening on {serving.http_url}\n")
                sys.stdout.write(f"  Web UI: {serving.http_url}/login   (sign in with a token)\n")
            sys.stdout.flush()
            stop.wait()
        finally:
            serving.stop()
    sys.stderr.write("Klaw API stopped.\n")
