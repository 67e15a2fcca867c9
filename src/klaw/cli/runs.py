"""Commands about runs: run, runs list, runs show, logs, cancel. Each goes through the backend:
the local project, or the server of ``--server``."""

from __future__ import annotations

from typing import Annotated

import typer

from klaw.cli.app import STATE, OutputOpt, app, runs_app
from klaw.cli.backend import ask
from klaw.cli.output import (
    Format,
    Lines,
    console,
    emit_json,
    seconds,
    size,
    styled,
    table,
    when,
)
from klaw.states import RunState


@app.command()
def run(
    workflow: Annotated[str, typer.Argument(help="Workflow name.")],
    select: Annotated[
        str | None, typer.Option("--select", "-s", help="Stages: name, +name, name+, tag:x.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="A param as key=value (repeatable).")
    ] = None,
    max_workers: Annotated[
        int | None, typer.Option("--max-workers", min=1, help="Stages run at once.")
    ] = None,
    executor: Annotated[
        str | None, typer.Option("--executor", help="thread (default), process or ray.")
    ] = None,
    fail_fast: Annotated[
        bool,
        typer.Option(
            "--fail-fast", help="At the first failure, stop running stages and skip the rest."
        ),
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Re-run what failed or never ran in this run."),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option(
            "--env", help="Run the version deployed in dev, qa, uat or prod (not the files)."
        ),
    ] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Run a workflow, with a live progress display.

    With --server the run goes on the server and is followed from here until it ends;
    Ctrl-C cancels it there."""
    from klaw.authoring.params import parse_assignments
    from klaw.protocol import AttemptsReply, ListAttempts, SubmitRun

    backend = STATE.backend()
    cmd = SubmitRun(
        workflow=workflow,
        selection=select,
        params=parse_assignments(param or []),
        executor=executor,
        max_workers=max_workers,
        fail_fast=fail_fast,
        resume=resume,
        environment=environment,
    )
    out = Lines()  # plain text, and no rich, unless stdout is a terminal
    live = output is Format.TABLE and out.terminal
    if live:
        from klaw.cli.progress import RunProgress

        display = RunProgress(out.rich)
        try:
            result = backend.submit(cmd, display)
        finally:
            display.stop()
    else:
        result = backend.submit(cmd)
    if output is Format.JSON:
        attempts = ask(backend, ListAttempts(run_id=result.run_id), AttemptsReply).attempts
        emit_json({"run": result, "attempts": attempts})
    else:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(result.stage_counts.items()))
        took = seconds((result.ended_at or 0) - (result.started_at or 0))
        out.print(f"run {result.run_id} {out.state(result.state.value)} in {took} ({counts})")
        if result.state is not RunState.SUCCEEDED:
            out.print(
                f"  logs: klaw logs {result.run_id}   details: klaw runs show {result.run_id}"
            )
            if result.state is RunState.FAILED:
                out.print(f"  resume: klaw run {out.text(workflow)} --resume {result.run_id}")
    if result.state is not RunState.SUCCEEDED:
        raise typer.Exit(1)


@runs_app.command("list")
def runs_list(
    workflow: Annotated[str | None, typer.Option("--workflow", "-w")] = None,
    state: Annotated[list[RunState] | None, typer.Option("--state")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 20,
    output: OutputOpt = Format.TABLE,
) -> None:
    """List runs, newest first."""
    from klaw.protocol import ListRuns, RunsReply

    cmd = ListRuns(workflow=workflow, states=tuple(state or ()), limit=limit)
    runs = ask(STATE.backend(), cmd, RunsReply).runs
    if output is Format.JSON:
        emit_json(runs)
        return
    table(
        "Runs",
        ["run", "workflow", "state", "created", "took", "stages"],
        [
            [
                r.run_id,
                r.workflow,
                styled(r.state.value),
                when(r.created_at),
                seconds((r.ended_at - r.started_at) if r.ended_at and r.started_at else None),
                ", ".join(f"{n} {s}" for s, n in sorted(r.stage_counts.items())) or "-",
            ]
            for r in runs
        ],
    )


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    output: OutputOpt = Format.TABLE,
) -> None:
    """Show one run: its state, params and every stage attempt."""
    from klaw.protocol import AttemptsReply, GetRun, ListAttempts, RunReply

    backend = STATE.backend()
    record = ask(backend, GetRun(run_id=run_id), RunReply).run
    found = ask(backend, ListAttempts(run_id=run_id), AttemptsReply).attempts
    attempts = sorted(found, key=lambda a: (a.queued_at or 0, a.attempt))
    if output is Format.JSON:
        emit_json({"run": record, "attempts": attempts})
        return
    out = console()
    out.print(
        f"[bold]run {record.run_id}[/bold]  workflow {record.workflow}  "
        f"{styled(record.state.value)}"
    )
    out.print(
        f"  created {when(record.created_at)}  started {when(record.started_at)}  "
        f"ended {when(record.ended_at)}"
    )
    if record.params:
        out.print(f"  params {record.params}")
    if record.selection:
        out.print(f"  selection {record.selection}")
    if record.parent_run_id:
        out.print(f"  resumed from {record.parent_run_id}")
    if record.version is not None or record.environment is not None:
        version = f"v{record.version}" if record.version is not None else "unversioned files"
        where = f" deployed in {record.environment}" if record.environment else ""
        out.print(f"  version {version}{where}", highlight=False)
    if record.error:
        out.print(f"  [red]{record.error}[/red]")
    table(
        None,
        [
            "stage",
            "attempt",
            "state",
            "took",
            "load",
            "commit",
            "rows",
            "size",
            "snapshot",
            "error",
        ],
        [
            [
                a.stage,
                "reused" if a.reused_from else (a.attempt or "-"),
                styled(a.state.value),
                seconds(a.duration),
                seconds(a.load_s),
                seconds(a.commit_s),
                a.rows if a.rows is not None else "-",
                size(a.bytes),
                (f"{a.asset_key}@{a.snapshot_id}" if a.snapshot_id is not None else "-"),
                (a.error or "")[:80],
            ]
            for a in attempts
        ],
    )


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage.")] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Print what a run's stages wrote to stdout, stderr and logging."""
    from klaw.protocol import LogsReply, ReadLogs

    lines = ask(STATE.backend(), ReadLogs(run_id=run_id, stage=stage), LogsReply).logs
    if output is Format.JSON:
        emit_json(lines)
        return
    import sys

    for rec in lines:
        prefix = f"{rec.stage}#{rec.attempt} {rec.stream}"
        level = f" {rec.level}" if rec.level and rec.stream == "log" else ""
        sys.stdout.write(f"{prefix}{level}: {rec.line}\n")
    if not lines:
        sys.stderr.write(
            f"run {run_id} has no captured output" + (f" for stage {stage}" if stage else "") + "\n"
        )


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for the run to stop.")] = 30.0,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Cancel a run: stop its running stages and record it cancelled."""
    from klaw.protocol import CancelRun, RunReply

    record = ask(STATE.backend(), CancelRun(run_id=run_id, wait=wait), RunReply).run
    if output is Format.JSON:
        emit_json(record)
        return
    out = Lines()
    out.print(f"run {record.run_id} is {out.state(record.state.value)}")
