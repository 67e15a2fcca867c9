"""``klaw mcp``: the project's typed commands as an MCP server for AI assistants (over stdio,
or streamable HTTP behind the API's bearer tokens)."""

from __future__ import annotations

import enum
import getpass
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.output import Format, emit_json
from klaw.errors import ConfigError

if TYPE_CHECKING:
    from klaw.api.http.auth import Role
    from klaw.mcp.server import KlawMcp
    from klaw.service.orchestrator import Orchestrator

DEFAULT_PORT = 8765


class Transport(enum.StrEnum):
    STDIO = "stdio"
    HTTP = "http"


@app.command("mcp")
def mcp(
    transport: Annotated[
        Transport,
        typer.Option(
            "--transport",
            "-t",
            help="stdio: one local assistant (it starts klaw mcp); http: streamable HTTP, "
            "bearer tokens with roles.",
        ),
    ] = Transport.STDIO,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (http; loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (http; 0: any free one).")
    ] = DEFAULT_PORT,
    role: Annotated[
        str,
        typer.Option(
            "--role", help="The local assistant's role (stdio): viewer sees no mutating tool."
        ),
    ] = "operator",
    output: OutputOpt = Format.TABLE,
) -> None:
    """Serve Klaw's commands as MCP tools, with the resources klaw://runs/{run_id}/logs and
    klaw://assets/{key}/preview and the prompts diagnose_failed_run and explain_workflow.

    stdio (the default) acts on the local project, or on --server / --url like other
    commands. http serves the local project at http://HOST:PORT/mcp; every request needs
    'Authorization: Bearer <token>' with a token of KLAW_HTTP__TOKENS or `klaw tokens create`,
    whose role decides the tools listed and callable. Tools in \\[settings.mcp] confirm
    (KLAW_MCP__CONFIRM) are confirmed by a person before each call.
    """
    try:
        import mcp as _sdk  # noqa: F401
    except ImportError:
        raise ConfigError(
            "klaw mcp needs the MCP Python SDK, which is not installed.",
            hint="Install Klaw's mcp extra: pip install 'klaw[mcp]'.",
        ) from None
    if transport is Transport.HTTP:
        _serve_http(host, port, output)
    else:
        _serve_stdio(role)


def _serve_stdio(role: str) -> None:
    import anyio

    from klaw.api.http.auth import Principal, Role
    from klaw.mcp.server import KlawMcp
    from klaw.observability import configure_logging
    from klaw.service.tokens import parse_role

    local = Principal(subject=f"local:{getpass.getuser()}", role=Role[parse_role(role).upper()])
    if STATE.server or STATE.url:
        from klaw.settings import load_settings

        settings = load_settings({})  # no project needed: KLAW_MCP__CONFIRM
        configure_logging(STATE.log_level or "info", settings.log.format)
        if STATE.url:  # the API says the token's role: the tools listed are those it allows
            granted = _api_role(STATE.url)
            local = Principal(local.subject, min(local.role, granted))
        server = KlawMcp(STATE.backend(), confirm=settings.mcp.confirm, local=local)
        anyio.run(server.serve_stdio)
        return
    orch = _orchestrator()
    from klaw.cli.serving import ServingHost

    serving = ServingHost(orch)
    try:
        serving.start()
        server = KlawMcp(STATE.backend(), confirm=orch.settings.mcp.confirm, local=local)
        anyio.run(server.serve_stdio)
    finally:
        serving.stop()


def _serve_http(host: str, port: int, output: Format) -> None:
    if STATE.server or STATE.url:
        raise ConfigError(
            "klaw mcp --transport http serves the local project; it cannot forward to "
            f"{STATE.server or STATE.url}.",
            hint="Run it where the project is, without --server / --url (KLAW_SERVER, KLAW_URL "
            "unset), or use --transport stdio to reach a server.",
        )
    import threading

    import uvicorn

    from klaw.cli.serving import ServingHost, StopSignals, api_authenticator, bound_port
    from klaw.mcp.http import PATH, http_app
    from klaw.mcp.server import KlawMcp

    orch = _orchestrator()
    with StopSignals() as stop:
        serving = ServingHost(orch)
        web: uvicorn.Server | None = None
        thread: threading.Thread | None = None
        try:
            serving.start()
            server: KlawMcp = KlawMcp(STATE.backend(), confirm=orch.settings.mcp.confirm)
            app_ = http_app(server, api_authenticator(orch), host=host)
            config = uvicorn.Config(app_, host=host, port=port, log_level="warning")
            web = uvicorn.Server(config)
            thread = threading.Thread(target=web.run, name="klaw-mcp-http", daemon=True)
            thread.start()
            where = f"[{host}]" if ":" in host else host
            url = f"http://{where}:{bound_port(web, thread)}{PATH}"
            if output is Format.JSON:
                emit_json({"listening": url, "project": orch.project.name})
            else:
                sys.stdout.write(f"Klaw MCP server listening on {url}\n")
            sys.stdout.flush()
            stop.wait()
        finally:
            if web is not None:
                web.should_exit = True
            if thread is not None:
                thread.join(timeout=10.0)
            serving.stop()
    sys.stderr.write("Klaw MCP server stopped.\n")


def _api_role(url: str) -> Role:
    """The role the Klaw API at ``url`` gives the token of KLAW_TOKEN (``GET /auth/me``); the
    API's refusal as the AuthError it names."""
    import httpx

    from klaw.api.http.auth import Role
    from klaw.api.http.client import api_url
    from klaw.cli.backend import TOKEN_ENV
    from klaw.errors import AuthError, ServerUnavailableError
    from klaw.settings import load_client_settings

    secret = load_client_settings().token
    headers = {"Authorization": f"Bearer {secret.get_secret_value()}"} if secret else {}
    base = api_url(url)
    try:
        answer = httpx.get(f"{base}/api/v1/auth/me", headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise ServerUnavailableError(
            f"No Klaw API answers at {base} ({exc}).",
            hint="Start it with `klaw api` (or `klaw dev`), or check --url / KLAW_URL.",
        ) from None
    if answer.status_code in (401, 403):
        raise AuthError(
            f"The Klaw API at {base} refused the token of {TOKEN_ENV}.",
            hint=f"Set {TOKEN_ENV} to one of the API's tokens (KLAW_HTTP__TOKENS or `klaw "
            "tokens create` where it runs).",
        )
    if answer.status_code != 200:
        raise ServerUnavailableError(
            f"The Klaw API at {base} answered GET /api/v1/auth/me with HTTP {answer.status_code}.",
            hint="Is this the URL of a Klaw API? Check the server's log.",
        )
    return Role[str(answer.json()["role"]).upper()]


def _orchestrator() -> Orchestrator:
    """The local project's Orchestrator; its MCP calls are audited at level info unless a
    level is chosen (--log-level, KLAW_LOG__LEVEL, [settings.log] level)."""
    from klaw.observability import configure_logging

    orch = STATE.orchestrator()
    settings = orch.settings
    if STATE.log_level is None and "level" not in settings.log.model_fields_set:
        configure_logging("info", settings.log.format)
    return orch
