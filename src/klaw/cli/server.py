"""``klaw server``: the project's commands and assets over Arrow Flight, behind bearer tokens."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.output import Format, emit_json
from klaw.cli.serving import ServingHost, StopSignals


@app.command("server")
def server(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default 127.0.0.1; KLAW_FLIGHT__HOST)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port (default 8815; 0: any free; KLAW_FLIGHT__PORT)."
        ),
    ] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Serve the project over Arrow Flight until SIGINT or SIGTERM.

    Needs tokens: KLAW_FLIGHT__TOKENS (comma-separated) or KLAW_FLIGHT__TOKENS_FILE (one a
    line, re-read when it changes). Clients send one as 'authorization: Bearer <token>'. On
    start it takes over the runs a dead server left, and fires the project's cron schedules
    while it runs.
    """
    orch = STATE.orchestrator(server_host=host, server_port=port)
    settings = orch.settings
    with StopSignals() as stop:
        at = (settings.flight.host, settings.flight.port)
        serving = ServingHost(orch, flight=at, recover=True, triggers=True)
        try:
            serving.start()  # takes over the runs a dead server left; schedules fire
            assert serving.flight is not None
            recovered = serving.recovered
            if output is Format.JSON:
                emit_json(
                    {
                        "listening": serving.flight.location,
                        "host": settings.flight.host,
                        "port": serving.flight.port,
                        "project": orch.project.name,
                        "recovered": recovered,
                    }
                )
            else:
                sys.stdout.write(f"Klaw server listening on {serving.flight.location}\n")
                if recovered:
                    sys.stdout.write(f"Recovered runs: {', '.join(recovered)}\n")
            sys.stdout.flush()
            stop.wait()
        finally:
            serving.stop()
    sys.stderr.write("Klaw server stopped.\n")
