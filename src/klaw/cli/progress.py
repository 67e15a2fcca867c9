"""The live display of ``klaw run``: a progress bar over the plan's stages, the stages running
now, and a line for each stage that fails. Fed by the runner after each durable write (a local
run) or by the events a server returns (a run followed with ``--server``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from klaw.states import StageState

if TYPE_CHECKING:
    from klaw.metadata.records import EventRecord, RunRecord

_DONE = {s.value for s in StageState if s.terminal}


class RunProgress:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.live: Live | None = None
        self.task: Any = None
        self.running: dict[str, int] = {}
        self.states: dict[str, str] = {}

    def start(self, run: RunRecord, stages: int) -> None:
        self.console.print(
            f"run [bold]{run.run_id}[/bold] of [bold]{run.workflow}[/bold]: {stages} stage(s)"
        )
        self.task = self.progress.add_task(run.workflow, total=stages)
        self.live = Live(
            self._render(), console=self.console, refresh_per_second=8, transient=False
        )
        self.live.start()

    def events(self, events: list[EventRecord]) -> None:
        for event in events:
            if event.kind != "stage" or event.stage is None or event.state is None:
                continue
            self.states[event.stage] = event.state
            if event.state == StageState.RUNNING.value:
                self.running[event.stage] = event.attempt or 1
            else:
                self.running.pop(event.stage, None)
            if event.state in ("failed", "timed_out", "retrying"):
                error = event.data.get("error", "")
                self.console.print(
                    f"  [red]{event.state}[/red] {event.stage} (attempt {event.attempt}): "
                    f"{escape(str(error))}"
                )
        done = sum(1 for s in self.states.values() if s in _DONE)
        self.progress.update(self.task, completed=done)
        if self.live is not None:
            self.live.update(self._render())

    def _render(self) -> Group:
        names = sorted(self.running)
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        line = Text(f"running: {shown}" if names else "", style="cyan")
        return Group(self.progress, line)

    def stop(self) -> None:
        if self.live is not None:
            self.running.clear()
            self.live.update(self._render())
            self.live.stop()
