"""Commands about assets: list, show. Each goes through the backend: the local project, or the
server of ``--server`` (rows are read with Flight ``DoGet`` there)."""

from __future__ import annotations

from typing import Annotated

import typer

from klaw.cli.app import STATE, OutputOpt, assets_app
from klaw.cli.backend import ask
from klaw.cli.output import Format, console, emit_json, table, when


@assets_app.command("list")
def assets_list(output: OutputOpt = Format.TABLE) -> None:
    """List every asset in the lake with its latest snapshot."""
    from klaw.protocol import AssetsReply, ListAssets

    infos = ask(STATE.backend(), ListAssets(), AssetsReply).assets
    if output is Format.JSON:
        emit_json(infos)
        return
    table(
        "Assets",
        ["key", "latest snapshot", "snapshots", "rows", "columns", "updated"],
        [
            [a.key, a.latest_snapshot, a.snapshots, a.rows, len(a.schema), when(a.updated_at)]
            for a in infos
        ],
    )


@assets_app.command("show")
def assets_show(
    key: Annotated[str, typer.Argument(help="Asset key.")],
    snapshot: Annotated[
        int | None, typer.Option("--snapshot", help="A past snapshot (default: latest).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Rows to show.")] = 10,
    history: Annotated[
        int, typer.Option("--history", min=0, help="Snapshots to list, newest first (0: all).")
    ] = 20,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Show an asset: its latest snapshots, schema and the first rows of one snapshot."""
    from klaw.protocol import ListSnapshots, SnapshotsReply

    backend = STATE.backend()
    wanted = ListSnapshots(key=key, limit=history or None)
    snaps = ask(backend, wanted, SnapshotsReply).snapshots
    head = backend.read_asset(key, snapshot, limit)
    chosen = snapshot if snapshot is not None else (snaps[-1].snapshot if snaps else None)
    total = next((s.rows for s in snaps if s.snapshot == chosen), head.num_rows)
    if output is Format.JSON:
        emit_json(
            {
                "key": key,
                "snapshot": chosen,
                "rows": total,
                "schema": {f.name: str(f.type) for f in head.schema},
                "snapshots": snaps,
                "preview": head.to_pylist(),
            }
        )
        return
    table(
        f"Snapshots of {key}",
        ["snapshot", "committed", "rows", "run", "stage", "attempt"],
        [
            [
                s.snapshot,
                when(s.committed_at),
                s.rows,
                s.run_id or "-",
                s.stage or "-",
                s.attempt if s.attempt is not None else "-",
            ]
            for s in snaps
        ],
    )
    console().print(f"schema: {', '.join(f'{f.name} {f.type}' for f in head.schema)}")
    table(
        f"{key}@{chosen}: first {head.num_rows} of {total} rows",
        [f.name for f in head.schema],
        [[row[f.name] for f in head.schema] for row in head.to_pylist()],
    )
