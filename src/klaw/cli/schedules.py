"""Commands about cron schedules: schedules list, pause, resume. Each goes through the backend:
the local project, or the server of ``--server``. A schedule is named after its workflow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.backend import ask
from klaw.cli.output import Format, console, emit_json, styled, table, when

if TYPE_CHECKING:
    from klaw.protocol import ScheduleInfo

schedules_app = typer.Typer(
    help="Cron schedules: list them, pause and resume them.", no_args_is_help=True
)
app.add_typer(schedules_app, name="schedules")

NameArg = Annotated[str, typer.Argument(help="Schedule name (the name of its workflow).")]


@schedules_app.command("list")
def schedules_list(output: OutputOpt = Format.TABLE) -> None:
    """List the project's schedules: cron, time zone, catch-up, state, next and last tick."""
    from klaw.protocol import ListSchedules, SchedulesReply

    found = ask(STATE.backend(), ListSchedules(), SchedulesReply).schedules
    if output is Format.JSON:
        emit_json(found)
        return
    if not found:
        console().print(
            "no schedules: give a workflow one with klaw.workflow(..., schedule='0 3 * * *') "
            "or `schedule:` in its config.yaml",
            highlight=False,
        )
        return
    table(
        "Schedules",
        ["schedule", "cron", "timezone", "catch-up", "state", "next tick", "last tick", "last run"],
        [
            [
                s.name,
                s.cron,
                s.timezone,
                s.catch_up,
                f"paused since {when(s.paused_at)}" if s.paused else "active",
                _local(s.next_tick, s.timezone),
                _local(s.last_tick, s.timezone),
                _last_run(s),
            ]
            for s in found
        ],
    )


@schedules_app.command("pause")
def schedules_pause(name: NameArg, output: OutputOpt = Format.TABLE) -> None:
    """Pause a schedule: no tick fires until it is resumed."""
    from klaw.protocol import PauseSchedule, ScheduleReply

    info = ask(STATE.backend(), PauseSchedule(name=name), ScheduleReply).schedule
    if output is Format.JSON:
        emit_json(info)
        return
    console().print(
        f"schedule {info.name} is paused; no tick fires until `klaw schedules resume {info.name}`",
        highlight=False,
    )


@schedules_app.command("resume")
def schedules_resume(name: NameArg, output: OutputOpt = Format.TABLE) -> None:
    """Resume a paused schedule; the ticks of the pause are skipped, whatever its catch-up."""
    from klaw.protocol import ResumeSchedule, ScheduleReply

    info = ask(STATE.backend(), ResumeSchedule(name=name), ScheduleReply).schedule
    if output is Format.JSON:
        emit_json(info)
        return
    console().print(
        f"schedule {info.name} is active; next tick {_local(info.next_tick, info.timezone)}",
        highlight=False,
    )


def _local(key: str | None, timezone: str) -> str:
    """A tick key as wall time in the schedule's zone, with the UTC instant."""
    if key is None:
        return "-"
    from zoneinfo import ZoneInfo

    from klaw.authoring.cron import parse_tick_key

    tick = parse_tick_key(key)
    local = tick.astimezone(ZoneInfo(timezone))
    return f"{local:%Y-%m-%d %H:%M %Z} ({tick:%H:%M}Z)"


def _last_run(info: ScheduleInfo) -> str:
    if info.last_run_id is not None:
        state = info.last_run_state.value if info.last_run_state is not None else "?"
        return f"{info.last_run_id} {styled(state)}"
    if info.last_error is not None:
        from rich.markup import escape

        return f"[red]no run: {escape(info.last_error)}[/red]"
    return "-"
