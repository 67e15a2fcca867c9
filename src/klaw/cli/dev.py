"""``klaw dev``: everything a project needs on a laptop, in one process, on loopback.

The Flight server (as ``klaw server``), the HTTP API (as ``klaw api``), the trigger service
and run recovery, over the embedded default. With no tokens configured it makes a development
token for both. Workflow definitions are reloaded when the project's files change.
"""

from __future__ import annotations

import importlib
import secrets
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

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
from klaw.errors import KlawError

if TYPE_CHECKING:
    from types import ModuleType

    from klaw.service.orchestrator import Orchestrator

LOOPBACK: Final = "127.0.0.1"
WATCHED: Final = (".py", ".sql", ".yaml", ".yml")  # files whose change reloads definitions


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
    tokens configured (KLAW_TOKENS, KLAW_TOKENS_FILE, KLAW_API_TOKENS) it makes a development
    token, accepted by both with the admin role, and prints it. Workflow definitions reload
    when the project's .py, .sql or .yaml files change; runs in progress keep theirs.
    """
    import uvicorn

    from klaw.api.flight.auth import TokenSet
    from klaw.api.flight.server import serve
    from klaw.api.http import create_app
    from klaw.triggers import TriggerService

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
    orch.check_lake()  # a lake in object storage is reachable before serving
    orch.isolate_user_code()  # runs and workflow imports happen in child processes, not here
    report_load_errors(orch)  # a module that fails at import is named; the rest are served
    settings = orch.settings
    web = create_app(
        orch,
        api_authenticator(orch),
        allowed_hosts=split_list(settings.api_allowed_hosts),
        cors_origins=split_list(settings.api_cors_origins),
    )
    server = uvicorn.Server(
        uvicorn.Config(
            web,
            host=LOOPBACK,
            port=settings.api_port,
            log_level="warning",
            timeout_graceful_shutdown=max(1, int(settings.stop_grace)),
        )
    )
    tokens = TokenSet.from_settings(settings, orch.project.root)
    with StopSignals() as stop:
        flight = serve(orch, host=LOOPBACK, port=settings.server_port, tokens=tokens)
        thread = threading.Thread(target=server.run, name="klaw-dev-api", daemon=True)
        triggers = TriggerService(orch)
        watcher = Reloader(orch)
        try:
            thread.start()
            api_url = f"http://{LOOPBACK}:{bound_port(server, thread)}"
            recovered = [run.run_id for run in orch.recover()]
            triggers.start()
            watcher.start()
            _announce(output, flight.location, api_url, token, orch, recovered)
            stop.wait()
        finally:
            watcher.stop()
            triggers.stop()
            server.should_exit = True
            orch.shutdown(wait=settings.stop_grace)  # cancel the runs it drives, let them end
            flight.stop()
            thread.join(timeout=settings.stop_grace + 5.0)
            orch.shutdown(wait=settings.stop_grace)  # any started while it was stopping
    sys.stderr.write("Klaw dev stopped.\n")


def _dev_token() -> str | None:
    """A fresh token when the project configures none for Flight nor HTTP; else None."""
    from klaw.service.project import find_project
    from klaw.settings import load_settings

    configured = load_settings(find_project(STATE.project).settings)
    if configured.tokens or configured.tokens_file or configured.api_tokens:
        return None
    return secrets.token_urlsafe(32)


def _announce(
    output: Format,
    flight: str,
    api: str,
    token: str | None,
    orch: Orchestrator,
    recovered: list[str],
) -> None:
    if output is Format.JSON:
        emit_json(
            {
                "flight": flight,
                "api": api,
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
        ]
        if token is not None:
            lines.append(f"  Token:  {token}   (development only: export KLAW_TOKEN=...)")
        else:
            lines.append("  Token:  the configured ones (KLAW_TOKENS / KLAW_API_TOKENS)")
        if recovered:
            lines.append(f"  Recovered runs: {', '.join(recovered)}")
        sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


class Reloader:
    """Reloads the Orchestrator's workflow definitions when the project's files change. New
    requests see the new definitions; runs in progress keep the plans they started with. A
    change that does not import is reported on stderr and the old definitions stay."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="klaw-dev-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    def _watch(self) -> None:
        import watchfiles

        root = self.orch.project.root
        home = str(self.orch.settings.home)

        def wanted(change: watchfiles.Change, path: str) -> bool:
            return (
                path.endswith(WATCHED)
                and not path.startswith(home)
                and "__pycache__" not in path
                and "/." not in path[len(str(root)) :]
            )

        for _changes in watchfiles.watch(root, watch_filter=wanted, stop_event=self._stop):
            self.reload()

    def reload(self) -> None:
        try:
            found = reload_workflows(self.orch)
        except KlawError as exc:
            hint = f"\nhint: {exc.hint}" if exc.hint else ""
            sys.stderr.write(
                f"error: reloading workflows failed; the previous definitions stay.\n"
                f"error: {exc.message}{hint}\n"
            )
        else:
            sys.stderr.write(f"Reloaded workflows: {', '.join(sorted(found)) or 'none'}\n")
        sys.stderr.flush()


def reload_workflows(orch: Orchestrator) -> list[str]:
    """Load the project's modules afresh and swap the new definitions into ``orch`` (its
    cached graphs go with the old ones); the workflow names. On an error, the definitions it
    had stay, and the error is raised."""
    from klaw.service.project import load_workflows

    mine = _project_modules(orch)
    for name in mine:
        del sys.modules[name]
    importlib.invalidate_caches()
    if orch.definitions is not None:  # loaded afresh by a new definitions process
        return orch.reload_definitions()
    try:
        found = load_workflows(orch.project)
    except BaseException:
        for name in _project_modules(orch):
            del sys.modules[name]
        sys.modules.update(mine)
        raise
    orch.replace_workflows(found)
    return sorted(found)


def _project_modules(orch: Orchestrator) -> dict[str, ModuleType]:
    """The imported modules of the project's own files (named in klaw.toml, or inside
    those packages), by name."""
    root = orch.project.root.resolve()
    tops = {Path(m).stem if m.endswith(".py") else m.split(".")[0] for m in orch.project.modules}
    found = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in tops:
            continue
        file = getattr(module, "__file__", None)
        if file is not None and Path(file).resolve().is_relative_to(root):
            found[name] = module
    return found
