"""Commands about definitions: init, workflows list, validate, plan, schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from klaw.cli.app import STATE, OutputOpt, app, workflows_app
from klaw.cli.output import Format, console, emit_json, table
from klaw.errors import GraphError


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

    written, workflow = scaffold(directory, name, template)
    out = console()
    for path in written:
        out.print(f"  created {path}")
    out.print(f"\nNext: cd {directory} && klaw run {workflow}")


@workflows_app.command("list")
def workflows_list(output: OutputOpt = Format.TABLE) -> None:
    """List the project's workflows."""
    orch = STATE.orchestrator()
    rows = []
    for name, wf in sorted(orch.workflows.items()):
        assets = sum(1 for s in wf.stages if s.asset_key)
        rows.append(
            {
                "name": name,
                "stages": len(wf.stages),
                "assets": assets,
                "schedule": wf.schedule,
                "module": wf.source,
                "description": wf.description,
            }
        )
    if output is Format.JSON:
        emit_json(rows)
        return
    table(
        f"Workflows of {orch.project.name}",
        ["name", "stages", "assets", "schedule", "module"],
        [[r["name"], r["stages"], r["assets"], r["schedule"] or "-", r["module"]] for r in rows],
    )


@app.command()
def validate(
    workflows: Annotated[list[str] | None, typer.Argument(help="Workflows (default: all).")] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Check workflows for cycles, unknown dependencies, duplicate names and bad params."""
    orch = STATE.orchestrator()
    results = orch.validate(workflows)
    bad = {n: e for n, e in results.items() if e is not None}
    if output is Format.JSON:
        emit_json(
            [
                {
                    "workflow": n,
                    "ok": e is None,
                    "problems": (e.problems if isinstance(e, GraphError) else [e.message])
                    if e
                    else [],
                }
                for n, e in results.items()
            ]
        )
    else:
        out = console()
        for name, error in results.items():
            if error is None:
                out.print(f"[green]ok[/green]      {name}")
            else:
                out.print(f"[red]invalid[/red] {name}: {error}", highlight=False)
    if bad:
        raise typer.Exit(2)


@app.command()
def plan(
    workflow: Annotated[str, typer.Argument(help="Workflow name.")],
    select: Annotated[str | None, typer.Option("--select", "-s", help="Stages to run.")] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Show what a run would do, in what order, without running anything."""
    orch = STATE.orchestrator()
    the_plan = orch.plan(workflow, select)
    stages = the_plan.graph.stages
    rows: list[dict[str, Any]] = []
    for level, names in enumerate(the_plan.levels):
        for name in names:
            s = stages[name]
            rows.append(
                {
                    "level": level,
                    "stage": name,
                    "kind": s.kind.value,
                    "upstream": list(the_plan.upstream[name]),
                    "reads_latest": list(the_plan.external.get(name, ())),
                    "retries": s.retry.retries,
                    "timeout": s.timeout,
                    "tags": sorted(s.tags),
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
    """Print the JSON Schema of a workflow's params (or of config.yaml with --config)."""
    if config:
        from klaw.authoring.config import config_schema

        emit_json(config_schema())
        return
    if workflow is None:
        from klaw.errors import SelectionError

        raise SelectionError("Name a workflow, or pass --config.", hint="klaw schema WORKFLOW")
    from klaw.authoring.params import params_schema

    orch = STATE.orchestrator()
    emit_json(params_schema(orch.workflow(workflow)))
