"""Commands about the metadata database: upgrade, prune. They act on the database of the project
on this machine, so they refuse to run with ``--server`` / ``KLAW_SERVER``."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from klaw.cli.app import STATE, OutputOpt, db_app
from klaw.cli.backend import refuse_remote
from klaw.cli.output import Format, console, emit_json
from klaw.errors import ConfigError, MetadataError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``30d``, ``2w`` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(
            f"--older-than {text!r} is not a duration.", hint="Write for example 30d, 12h or 90m."
        )
    return float(match.group(1)) * _UNIT[match.group(2)]


@db_app.command("upgrade")
def upgrade(output: OutputOpt = Format.TABLE) -> None:
    """Create or upgrade the metadata schema (run before starting a new version)."""
    from klaw.service.wiring import open_metadata

    refuse_remote(STATE.server or STATE.url, "klaw db upgrade")
    orch = STATE.orchestrator()
    store = open_metadata(orch.settings, upgrade=False)
    try:
        store.migrate()
    finally:
        store.close()
    if output is Format.JSON:
        emit_json({"upgraded": True})
    else:
        console().print("metadata schema is up to date")


@db_app.command("prune")
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age of what to delete: 30d, 12h, 90m, ...")
    ],
    output: OutputOpt = Format.TABLE,
) -> None:
    """Delete events and metrics older than an age (runs, attempts and logs stay)."""
    refuse_remote(STATE.server or STATE.url, "klaw db prune")
    seconds = parse_duration(older_than)
    orch = STATE.orchestrator()
    store = orch.metadata
    pruner = getattr(store, "prune", None)
    if pruner is None:
        raise MetadataError(f"The metadata store {type(store).__name__} cannot prune.")
    gone = pruner(seconds)
    if output is Format.JSON:
        emit_json({"pruned": gone, "older_than_seconds": seconds})
    else:
        console().print(f"pruned {gone} (events and metrics older than {older_than})")
