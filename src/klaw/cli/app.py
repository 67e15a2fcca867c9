"""The Typer application: global options, error handling, command groups."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from klaw.cli.output import Format
from klaw.errors import KlawError

if TYPE_CHECKING:
    from klaw.cli.backend import Backend
    from klaw.service.orchestrator import Orchestrator

app = typer.Typer(
    name="klaw",
    help="Klaw: define, run and inspect data workflows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
runs_app = typer.Typer(help="Look at runs.", no_args_is_help=True)
assets_app = typer.Typer(help="Look at assets and their snapshots.", no_args_is_help=True)
workflows_app = typer.Typer(help="Look at the project's workflows.", no_args_is_help=True)
db_app = typer.Typer(help="The metadata database: upgrade, prune.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(assets_app, name="assets")
app.add_typer(workflows_app, name="workflows")
lake_app = typer.Typer(help="The asset lake: compact.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(lake_app, name="lake")


@dataclass
class CliState:
    project: Path | None = None
    debug: bool = False
    log_level: str | None = None
    server: str | None = None  # --server / KLAW_SERVER: send commands to this Klaw server
    url: str | None = None  # --url / KLAW_URL: send commands to this Klaw HTTP API
    _orchestrator: Orchestrator | None = field(default=None, repr=False)
    _backend: Backend | None = field(default=None, repr=False)

    def orchestrator(self, **flags: Any) -> Orchestrator:
        if self._orchestrator is None:
            from klaw.service.orchestrator import Orchestrator

            self._orchestrator = Orchestrator.open(self.project, log_level=self.log_level, **flags)
        return self._orchestrator

    def backend(self) -> Backend:
        """Where typed commands go: the local project, the server of ``--server`` or the API
        of ``--url``."""
        if self._backend is None:
            from klaw.cli.backend import open_backend

            self._backend = open_backend(self.server, self.orchestrator, self.url)
        return self._backend


STATE = CliState()

OutputOpt = Annotated[
    Format, typer.Option("--output", "-o", help="table for people, json for programs.")
]


@app.callback()
def _global(
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            "-p",
            help="Project folder (default: search upward).",
            envvar="KLAW_PROJECT",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="Level of Klaw's own logs (stderr).")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Send commands to this Klaw server (grpc://host:port); token from KLAW_TOKEN.",
            envvar="KLAW_SERVER",
            show_envvar=True,
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Send commands to this Klaw HTTP API (http://host:port); token from KLAW_TOKEN.",
            envvar="KLAW_URL",
            show_envvar=True,
        ),
    ] = None,
) -> None:
    STATE.project, STATE.debug, STATE.log_level = project, debug, log_level
    STATE.server = server or None
    STATE.url = url or None
    from klaw.cli.backend import one_remote

    one_remote(STATE.server, STATE.url)


# The module that defines each command (or command group). Only the module of the command
# being run is imported: Typer then builds just that part of the tree. Without a known command
# (``klaw``, ``klaw --help``, a typo), every module is imported so that all are listed.
COMMAND_MODULES: dict[str, str] = {
    "init": "definitions",
    "validate": "definitions",
    "plan": "definitions",
    "schema": "definitions",
    "workflows": "definitions",
    "run": "runs",
    "runs": "runs",
    "logs": "runs",
    "cancel": "runs",
    "assets": "assets",
    "db": "db",
    "lake": "lake",
    "dev": "dev",
    "api": "api",
    "server": "server",
    "schedules": "schedules",
    "tokens": "tokens",
    "versions": "lifecycle",
    "promote": "lifecycle",
    "demote": "lifecycle",
    "retire": "lifecycle",
    "approvals": "lifecycle",
    "audit": "lifecycle",
    "git": "lifecycle",
    "mcp": "mcp",
}
_VALUED = frozenset({"--project", "-p", "--log-level", "--server", "--url"})  # take a value


def command_name(argv: list[str]) -> str | None:
    """The command ``argv`` (without the program name) invokes, past the global options."""
    args = iter(argv)
    for arg in args:
        if arg == "--":
            return next(args, None)
        if arg.startswith("-"):
            if arg in _VALUED:
                next(args, None)
            continue
        return arg
    return None


def register_commands(argv: list[str]) -> None:
    """Import the command modules ``argv`` needs (all of them when it names no command)."""
    import importlib

    module = COMMAND_MODULES.get(command_name(argv) or "")
    for name in [module] if module else sorted(set(COMMAND_MODULES.values())):
        importlib.import_module(f"klaw.cli.{name}")


def run_app() -> None:
    register_commands(sys.argv[1:])
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)  # returns the code of `raise typer.Exit(n)`
        if isinstance(code, int) and code:
            sys.exit(code)
    except KlawError as exc:
        _report(exc)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("Aborted.\n")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    except Exception as exc:
        usage_error = _click_exception()
        if usage_error is not None and isinstance(exc, usage_error):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    finally:
        if STATE._backend is not None:
            STATE._backend.close()
        if STATE._orchestrator is not None:
            STATE._orchestrator.close()


_show_python_warning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A deprecated setting is the user's to fix: one line naming it, no source location."""
    if category.__name__ == "SettingDeprecationWarning":
        sys.stderr.write(f"warning: {message}\n")
        return
    _show_python_warning(message, category, filename, lineno, file, line)


def _click_exception() -> type[Any] | None:
    """Click's usage-error class (typer may ship its own copy of click)."""
    try:
        from typer._click.exceptions import ClickException

        return ClickException
    except ImportError:
        try:
            from click import ClickException as Plain

            return Plain
        except ImportError:
            return None


def _report(exc: KlawError) -> None:
    """The error and its hint on stderr (coloured on a terminal, plain text otherwise)."""
    from klaw.cli.output import Lines

    err = Lines(stderr=True)
    if STATE.debug:
        import traceback

        err.print(err.text("".join(traceback.format_exception(exc)).rstrip("\n")))
    err.print(f"{err.styled('error:', 'bold red')} {err.text(exc.message)}")
    if exc.hint:
        err.print(f"{err.styled('hint:', 'dim')} {err.text(exc.hint)}")
