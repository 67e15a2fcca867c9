"""``klaw server``: the project's commands and assets over Arrow Flight, behind bearer tokens."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.output import Format, emit_json
from klaw.cli.serving import StopSignals, report_load_errors


@app.command("server")
def server(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default 127.0.0.1; KLAW_SERVER_HOST)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port (default 8815; 0: any free; KLAW_SERVER_PORT)."
        ),
    ] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Serve the project over Arrow Flight until SIGINT or SIGTERM.

    Needs tokens: KLAW_TOKENS (comma-separated) or KLAW_TOKENS_FILE (one a line, re-read
    when it changes). Clients send one as 'authorization: Bearer <token>'. On start it takes
    over the runs a dead server left, and fires the project's cron schedules while it runs.
    """
    from klaw.api.flight.auth import TokenSet
    from klaw.api.flight.server import serve
    from klaw.triggers import TriggerService

    orch = STATE.orchestrator(server_host=host, server_port=port)
    orch.check_lake()  # a lake in object storage is reachable before serving
    orch.isolate_user_code()  # runs and workflow imports happen in child processes, not here
    report_load_errors(orch)  # a module that fails at import is named; the rest are served
    settings = orch.settings
    tokens = TokenSet.from_settings(settings, orch.project.root)
    with StopSignals() as stop:
        running = serve(orch, host=settings.server_host, port=settings.server_port, tokens=tokens)
        triggers = TriggerService(orch)
        try:
            recovered = [run.run_id for run in orch.recover()]  # runs a dead server left
            triggers.start()  # the project's cron schedules fire while the server runs
            if output is Format.JSON:
                emit_json(
                    {
                        "listening": running.location,
                        "host": settings.server_host,
                        "port": running.port,
                        "project": orch.project.name,
                        "recovered": recovered,
                    }
                )
            else:
                sys.stdout.write(f"Klaw server listening on {running.location}\n")
                if recovered:
                    sys.stdout.write(f"Recovered runs: {', '.join(recovered)}\n")
            sys.stdout.flush()
            stop.wait()
        finally:
            triggers.stop()
            orch.shutdown(wait=settings.stop_grace)  # cancel the runs it drives, let them end
            running.stop()
            orch.shutdown(wait=settings.stop_grace)  # any started while it was stopping
    sys.stderr.write("Klaw server stopped.\n")
