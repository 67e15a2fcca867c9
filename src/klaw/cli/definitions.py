"""Commands about definitions: init, workflows list, validate, plan, schema.

``workflows list``, ``validate`` and ``plan`` go through the backend (local or ``--server``);
``init`` and ``schema`` act on this machine's files and project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from klaw.cli.app import STATE, OutputOpt, app, workflows_app
from klaw.cli.backend import ask, local_only
from klaw.cli.output import Format, console, emit_json, table


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to create the project.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
    template: Annotated[
        str, typer.Option(help="python: a Python workflow; sql: a folder workflow in SQL.")
    ] = "python",
) -> None:
    """Create a working project: klaw.toml, an example workflow and a test."""
    from klaw.cli.scaffold import scaffold

    local_only(STATE.server or STATE.url, "klaw init")

    written, workflow = scaffold(directory, name, template)
    out = console()
    for path in written:
        out.print(f"  created {path}")
    out.print(f"\nNext: cd {directory} && klaw run {workflow}")


@workflows_app.command("list")
def workflows_list(output: OutputOpt = Format.TABLE) -> None:
    """List the project's workflows."""
    from klaw.protocol import ListWorkflows, Ping, PongReply, WorkflowsReply

    backend = STATE.backend()
    infos = ask(backend, ListWorkflows(), WorkflowsReply).workflows
    rows = [
        {
            "name": wf.name,
            "stages": len(wf.stages),
            "assets": len(wf.assets),
            "schedule": wf.schedule,
            "module": wf.source,
            "description": wf.description,
        }
        for wf in infos
    ]
    if output is Format.JSON:
        emit_json(rows)
        return
    project = ask(backend, Ping(), PongReply).project
    table(
        f"Workflows of {project}",
        ["name", "stages", "assets", "schedule", "module"],
        [[r["name"], r["stages"], r["assets"], r["schedule"] or "-", r["module"]] for r in rows],
    )


@app.command()
def validate(
    workflows: Annotated[list[str] | None, typer.Argument(help="Workflows (default: all).")] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Check workflows for cycles, unknown dependencies, duplicate names, bad params and SQL
    that does not fit its upstream schemas (SQL that cannot be checked yet is a warning)."""
    from klaw.protocol import ValidateReply, ValidateWorkflows

    cmd = ValidateWorkflows(workflows=tuple(workflows or ()))
    results = ask(STATE.backend(), cmd, ValidateReply).results
    if output is Format.JSON:
        emit_json(
            [
                {
                    "workflow": r.workflow,
                    "ok": r.ok,
                    "problems": list(r.problems),
                    "unchecked": list(r.unchecked),
                }
                for r in results
            ]
        )
    else:
        out = console()
        for r in results:
            if r.error is None and r.unchecked:  # valid, but some SQL could not be checked
                out.print(f"[yellow]ok, SQL unchecked[/yellow] {r.workflow}")
                for why in r.unchecked:
                    out.print(f"  [yellow]warning[/yellow]: {why}", highlight=False, soft_wrap=True)
            elif r.error is None:
                out.print(f"[green]ok[/green]      {r.workflow}")
            else:
                hint = f"\n  hint: {r.error.hint}" if r.error.hint else ""
                out.print(
                    f"[red]invalid[/red] {r.workflow}: {r.error.message}{hint}", highlight=False
                )
    if any(not r.ok for r in results):
        raise typer.Exit(2)


@app.command()
def plan(
    workflow: Annotated[str, typer.Argument(help="Workflow name.")],
    select: Annotated[str | None, typer.Option("--select", "-s", help="Stages to run.")] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Show what a run would do, in what order, without running anything."""
    from klaw.protocol import PlannedStage, PlanReply, PlanWorkflow

    the_plan = ask(STATE.backend(), PlanWorkflow(workflow=workflow, selection=select), PlanReply)
    rows: list[dict[str, Any]] = []
    for level, names in enumerate(the_plan.levels):
        for name in names:
            s = the_plan.details.get(name) or PlannedStage(kind="-")
            rows.append(
                {
                    "level": level,
                    "stage": name,
                    "kind": s.kind,
                    "upstream": list(the_plan.upstream.get(name, ())),
                    "reads_latest": list(the_plan.external.get(name, ())),
                    "retries": s.retries,
                    "timeout": s.timeout,
                    "tags": list(s.tags),
                }
            )
    if output is Format.JSON:
        emit_json({"workflow": workflow, "selection": select, "stages": rows})
        return
    table(
        f"Plan of {workflow}: {len(rows)} stage(s), {len(the_plan.levels)} level(s)",
        ["level", "stage", "kind", "after", "retries", "timeout"],
        [
            [
                r["level"],
                r["stage"],
                r["kind"],
                ", ".join(r["upstream"] + [f"{x} (latest)" for x in r["reads_latest"]]) or "-",
                r["retries"],
                r["timeout"] or "-",
            ]
            for r in rows
        ],
    )


@app.command()
def schema(
    workflow: Annotated[str | None, typer.Argument(help="Workflow name.")] = None,
    config: Annotated[
        bool, typer.Option("--config", help="The JSON Schema of a folder's config.yaml.")
    ] = False,
) -> None:
    """Print the JSON Schema of a workflow's params (or of config.yaml with --config).

    Reads the project on this machine, even with --server."""
    if config:
        from klaw.authoring.config import config_schema

        emit_json(config_schema())
        return
    if workflow is None:
        from klaw.errors import SelectionError

        raise SelectionError("Name a workflow, or pass --config.", hint="klaw schema WORKFLOW")
    from klaw.authoring.params import params_schema

    local_only(STATE.server or STATE.url, "klaw schema")
    orch = STATE.orchestrator()
    emit_json(params_schema(orch.workflow(workflow)))
