"""``klaw schedules list|pause|resume`` on a real project, and schedule definitions that are
wrong (in Python and in config.yaml): named with the workflow, file and line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .driver import COMMAND_TIMEOUT, assert_error, env, klaw, line_of, write_project

FLOWS = """
import klaw


@klaw.stage
def noop() -> int:
    return 1


nightly = klaw.workflow(
    "nightly", [noop], schedule="0 3 * * *", timezone="Europe/Paris", catch_up="all"
)
adhoc = klaw.workflow("adhoc", [noop])
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = write_project(tmp_path, {"flows": FLOWS})
    folder = root / "workflows" / "usage"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("engine: python\nschedule: '*/15 * * * *'\n")
    (folder / "workflow.py").write_text(
        "import klaw\n\n\n@klaw.stage\ndef count():\n    return 2\n"
    )
    return root


def test_list_pause_and_resume(project: Path) -> None:
    listed = klaw(project, "schedules", "list")
    assert listed.returncode == 0, str(listed)
    for text in ("nightly", "0 3 * * *", "Europe/Paris", "all", "usage", "*/15 * * * *", "active"):
        assert text in listed.stdout
    assert "adhoc" not in listed.stdout
    assert "03:00 CE" in listed.stdout  # the next tick, as wall time in Paris (CET or CEST)

    rows = {s["name"]: s for s in klaw(project, "schedules", "list", "-o", "json").json()}
    assert list(rows) == ["nightly", "usage"]
    assert rows["nightly"]["paused"] is False and rows["nightly"]["next_tick"].endswith("Z")

    paused = klaw(project, "schedules", "pause", "nightly")
    assert paused.returncode == 0, str(paused)
    assert "schedule nightly is paused" in paused.out
    assert "klaw schedules resume nightly" in paused.out
    rows = {s["name"]: s for s in klaw(project, "schedules", "list", "-o", "json").json()}
    assert rows["nightly"]["paused"] is True and rows["nightly"]["next_tick"] is None
    assert rows["usage"]["paused"] is False
    assert "paused since" in klaw(project, "schedules", "list").stdout

    resumed = klaw(project, "schedules", "resume", "nightly", "-o", "json")
    assert resumed.returncode == 0, str(resumed)
    info = resumed.json()
    assert info["name"] == "nightly" and info["paused"] is False and info["next_tick"]


FIRE_ONE_TICK = """
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from klaw.service.orchestrator import Orchestrator
from klaw.triggers import TriggerService

orchestrator = Orchestrator.open(Path(sys.argv[1]))
service = TriggerService(orchestrator)
service.sync(datetime(2026, 5, 1, 5, 50, tzinfo=UTC))
fired = service.run_due(datetime(2026, 5, 1, 6, 0, 5, tzinfo=UTC))
for tick in fired:
    assert tick.run_id is not None and orchestrator.wait(tick.run_id, timeout=60), tick
orchestrator.close()
print(json.dumps([[tick.schedule, tick.key, tick.run_id] for tick in fired]))
"""


def test_list_shows_the_last_tick_and_its_run(project: Path) -> None:
    # A trigger service in another process fires usage's 06:00 tick (nightly is 03:00 Paris).
    done = subprocess.run(
        [sys.executable, "-c", FIRE_ONE_TICK, str(project)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [[schedule, tick, run_id]] = json.loads(done.stdout)
    assert (schedule, tick) == ("usage", "2026-05-01T06:00:00Z")
    rows = {s["name"]: s for s in klaw(project, "schedules", "list", "-o", "json").json()}
    usage = rows["usage"]
    assert (usage["last_tick"], usage["last_run_id"], usage["last_run_state"]) == (
        "2026-05-01T06:00:00Z",
        run_id,
        "succeeded",
    )
    table = klaw(project, "schedules", "list")
    assert f"{run_id} succeeded" in table.out


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("pause", "nightlly"), ["No schedule named 'nightlly'", "did you mean 'nightly'?"]),
        (("resume", "zzz"), ["No schedule named 'zzz'", "schedules: nightly, usage"]),
        (("pause", "adhoc"), ["Workflow 'adhoc'", "has no schedule"]),
    ],
)
def test_unknown_schedule_is_named(
    project: Path, args: tuple[str, ...], needles: list[str]
) -> None:
    assert_error(klaw(project, "schedules", *args), 2, *needles)


def test_a_project_without_schedules_says_how_to_add_one(tmp_path: Path) -> None:
    root = write_project(tmp_path, {"flows": "import klaw\n"})
    listed = klaw(root, "schedules", "list")
    assert listed.returncode == 0, str(listed)
    assert "no schedules" in listed.out and "schedule='0 3 * * *'" in listed.out
    assert klaw(root, "schedules", "list", "-o", "json").json() == []


def test_bad_schedule_in_config_yaml_names_file_line_and_workflow(project: Path) -> None:
    config = project / "workflows" / "usage" / "config.yaml"
    config.write_text("engine: python\nschedule: '*/15 * * *'\ntimezone: Europe/Pariss\n")
    for args in (("schedules", "list"), ("validate",)):
        assert_error(
            klaw(project, *args),
            2,
            f"{config}:2: schedule: schedule for workflow 'usage': cron expression "
            "'*/15 * * *' has 4 field(s)",
            f"{config}:3: timezone: schedule for workflow 'usage': unknown time zone "
            "'Europe/Pariss'",
            "did you mean 'Europe/Paris'",
        )
    config.write_text("engine: python\nschedule: '0 3 * * *'\ncatch_up: sometimes\n")
    assert_error(
        klaw(project, "schedules", "list"),
        2,
        f"{config}:3: catch_up is 'sometimes'",
        "'none', 'latest' or 'all'",
    )


BAD_PYTHON = """
import klaw


@klaw.stage
def a():
    return 1


wf = klaw.workflow("daily", [a], OPTIONS)
"""


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        ('schedule="0 25 * * *"', ["invalid cron expression '0 25 * * *'"]),
        ('schedule="0 3 * * *", timezone="Paris"', ["unknown time zone 'Paris'", "Europe/Paris"]),
        ('schedule="0 3 * * *", catch_up="often"', ["unknown catch-up policy 'often'"]),
        ('timezone="Europe/Paris"', ["sets timezone='Europe/Paris' but has no schedule"]),
    ],
)
def test_bad_schedule_in_python_names_workflow_file_and_line(
    tmp_path: Path, options: str, needles: list[str]
) -> None:
    source = BAD_PYTHON.replace("OPTIONS", options)
    root = write_project(tmp_path, {"flows": source})
    path = root / "wf" / "flows.py"
    assert_error(
        klaw(root, "schedules", "list"),
        2,
        f"{path}:{line_of(path, 'klaw.workflow(')}",
        "'daily'",
        *needles,
    )


def test_config_schema_publishes_the_schedule_keys(tmp_path: Path) -> None:
    schema = klaw(tmp_path, "schema", "--config").json()
    keys = schema["properties"]
    assert keys["timezone"]["default"] == "UTC"
    assert keys["catch_up"]["enum"] == ["none", "latest", "all"]
    assert keys["catch_up"]["default"] == "latest"
    assert "Cron expression" in keys["schedule"]["description"]
