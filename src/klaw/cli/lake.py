"""Commands about the asset lake: compact. They act on the lake of the project on this machine
(its catalog may be a shared Postgres one), so they refuse to run with ``--server`` / ``--url``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from klaw.cli.app import STATE, OutputOpt, lake_app
from klaw.cli.backend import refuse_remote
from klaw.cli.output import Format, console, emit_json
from klaw.durations import parse_duration


@lake_app.command("compact")
def compact(
    retain: Annotated[
        str | None,
        typer.Option(
            "--retain",
            help="Expire snapshots older than this (30d, 12h, ...); each asset's latest stays."
            " Without it no snapshot is expired.",
        ),
    ] = None,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            help="Delete files unused for at least this long (readers may still scan newer ones).",
        ),
    ] = "1h",
    output: OutputOpt = Format.TABLE,
) -> None:
    """Merge the lake's small files, expire old snapshots and delete the files nothing uses.

    Safe while runs commit: every step is a transaction of its own, and an interrupted
    compaction is finished by running it again."""
    refuse_remote(STATE.server or STATE.url, "klaw lake compact")
    keep = None if retain is None else parse_duration(retain, flag="--retain", allow_zero=True)
    unused = parse_duration(grace, flag="--grace", allow_zero=True)
    orch = STATE.orchestrator()
    if not orch.lake_stored:
        report = None
    else:
        report = orch.lake().compact(
            retain=None if keep is None else dt.timedelta(seconds=keep),
            grace=dt.timedelta(seconds=unused),
        )
    if output is Format.JSON:
        from klaw.storage.store import CompactReport

        emit_json(report or CompactReport())
        return
    if report is None:
        console().print("the lake is empty: nothing to compact")
        return
    console().print(
        f"merged {report.files_merged} files into {report.files_written}"
        f" ({report.tables_merged} tables), expired {report.snapshots_expired} snapshots,"
        f" deleted {report.files_deleted} unused and {report.orphans_deleted} orphaned files"
    )
