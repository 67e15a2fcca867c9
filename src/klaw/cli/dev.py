"""``klaw dev``: everything a project needs on a laptop, in one process, on loopback.

The Flight server (as ``klaw server``), the HTTP API (as ``klaw api``), the trigger service
and run recovery, over the embedded default. With no tokens configured it makes a development
token for both. Workflow definitions are reloaded when the project's files change.
"""

from __future__ import annotations

import secrets
import sys
from typing import TYPE_CHECKING, Annotated, Final

import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.output import Format, emit_json
from klaw.cli.serving import ServingHost, StopSignals

if TYPE_CHECKING:
    from klaw.service.orchestrator import Orchestrator

LOOPBACK: Final = "127.0.0.1"


@app.command("dev")
def dev(
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="Flight port (default 8815; 0: any free)."),
    ] = None,
    api_port: Annotated[
        int | None,
        typer.Option(
            "--api-port", min=0, max=65535, help="HTTP API port (default 8080; 0: any free)."
        ),
    ] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Serve the project on 127.0.0.1 for development until Ctrl-C or SIGTERM.

    Starts the Flight server, the HTTP API, the cron triggers and run recovery. With no
    tokens configured (KLAW_FLIGHT__TOKENS, KLAW_FLIGHT__TOKENS_FILE, KLAW_HTTP__TOKENS) it
    makes a development token, accepted by both with the admin role, and prints it. Workflow
    definitions reload when the project's .py, .sql or .yaml files change; runs in progress
    keep theirs.
    """
    token = _dev_token()
    flags: dict[str, object] = {
        "server_host": LOOPBACK,
        "server_port": port,
        "api_host": LOOPBACK,
        "api_port": api_port,
    }
    if token is not None:
        flags.update(tokens=token, api_tokens=f"admin:{token}")
    orch = STATE.orchestrator(**flags)
    settings = orch.settings
    with StopSignals() as stop:
        serving = ServingHost(
            orch,
            flight=(LOOPBACK, settings.flight.port),
            http=(LOOPBACK, settings.http.port),
            recover=True,
            triggers=True,
            reload=True,
        )
        try:
            serving.start()
            assert serving.flight is not None and serving.http_url is not None
            flight = serving.flight.location
            login = _login_link(serving, token)
            _announce(output, flight, serving.http_url, login, token, orch, serving.recovered)
            stop.wait()
        finally:
            serving.stop()
    sys.stderr.write("Klaw dev stopped.\n")


def _dev_token() -> str | None:
    """A fresh token when the project configures none for Flight nor HTTP; else None."""
    from klaw.service.project import find_project
    from klaw.settings import load_settings

    configured = load_settings(find_project(STATE.project).settings)
    if configured.flight.tokens or configured.flight.tokens_file or configured.http.tokens:
        return None
    return secrets.token_urlsafe(32)


def _login_link(serving: ServingHost, token: str | None) -> str:
    """The web UI's address: with the development token, a one-time login link (the token
    itself never goes in a URL, which would stay in the browser's history)."""
    assert serving.http_url is not None
    if token is None or serving.logins is None:
        return f"{serving.http_url}/login"
    return f"{serving.http_url}/login?code={serving.logins.issue(token)}"


def _announce(
    output: Format,
    flight: str,
    api: str,
    web: str,
    token: str | None,
    orch: Orchestrator,
    recovered: list[str],
) -> None:
    if output is Format.JSON:
        emit_json(
            {
                "flight": flight,
                "api": api,
                "ui": web,
                "token": token,
                "project": orch.project.name,
                "recovered": recovered,
            }
        )
    else:
        lines = [
            f"Klaw dev serving {orch.project.name}",
            f"  Flight: {flight}   (klaw --server {flight} ...)",
            f"  API:    {api}   (klaw --url {api} ...)",
            f"  Web UI: {web}   ({'a one-time sign-in link' if token else 'sign in with a token'})",
        ]
        if token is not None:
            lines.append(f"  Token:  {token}   (development only: export KLAW_TOKEN=...)")
        else:
            lines.append("  Token:  the configured ones (KLAW_FLIGHT__TOKENS / KLAW_HTTP__TOKENS)")
        if recovered:
            lines.append(f"  Recovered runs: {', '.join(recovered)}")
        sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
