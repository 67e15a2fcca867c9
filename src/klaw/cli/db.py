"""Commands about the metadata database: upgrade, prune. ``upgrade`` acts on the database of the
project on this machine (it refuses ``--server`` / ``--url``); ``prune`` is a typed command
(``PruneMetadata``), here or on a server (over HTTP it needs the admin role)."""

from __future__ import annotations

from typing import Annotated

import typer

from klaw.cli.app import STATE, OutputOpt, db_app
from klaw.cli.backend import ask, refuse_remote
from klaw.cli.output import Format, console, emit_json
from klaw.durations import parse_duration


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
        str, typer.Option("--older-than", help="Age of what to delete: 30d, 12h, 1.5h, 90m, ...")
    ],
    output: OutputOpt = Format.TABLE,
) -> None:
    """Delete events and metrics older than an age (runs, attempts and logs stay), and the
    Idempotency-Keys of POST /runs that have expired."""
    from klaw.protocol import PruneMetadata, PruneReply

    seconds = parse_duration(older_than, flag="--older-than", allow_zero=True)
    done = ask(STATE.backend(), PruneMetadata(older_than=seconds), PruneReply)
    gone, keys = done.pruned, done.expired_keys
    if output is Format.JSON:
        emit_json({"pruned": gone, "older_than_seconds": seconds, "expired_keys": keys})
    else:
        console().print(
            f"pruned {gone} (events and metrics older than {older_than}) and {keys} expired "
            "Idempotency-Keys"
        )
