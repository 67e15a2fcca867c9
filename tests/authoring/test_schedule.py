"""A workflow's schedule as it is written: ``klaw.workflow(schedule=, timezone=, catch_up=)`` and
the same keys in ``config.yaml``, checked where they are written and naming the workflow."""

from __future__ import annotations

from pathlib import Path

import pytest

import klaw
from klaw.authoring.config import config_schema, load_config
from klaw.authoring.schedule import CatchUp
from klaw.errors import ConfigError, DefinitionError


@klaw.stage
def noop() -> int:
    return 1


def test_defaults_and_normalised_values() -> None:
    plain = klaw.workflow("plain", [noop])
    assert (plain.schedule, plain.timezone, plain.catch_up) == (None, "UTC", "latest")
    nightly = klaw.workflow(
        "nightly", [noop], schedule=" 0  3 * * * ", timezone="Europe/Paris", catch_up="ALL"
    )
    assert (nightly.schedule, nightly.timezone, nightly.catch_up) == (
        "0 3 * * *",
        "Europe/Paris",
        "all",
    )
    assert klaw.workflow("h", [noop], schedule="@Hourly", catch_up=CatchUp.NONE).catch_up == "none"
    assert klaw.workflow("d", [noop], schedule="0 3 * * *").catch_up == "latest"


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ({"schedule": "0 3 * *"}, "has 4 field(s)"),
        ({"schedule": "0 24 * * *"}, "invalid cron expression '0 24 * * *'"),
        ({"schedule": "0 3 * * *", "timezone": "Berlin"}, "unknown time zone 'Berlin'"),
        ({"schedule": "0 3 * * *", "catch_up": "sometimes"}, "catch-up policy 'sometimes'"),
        ({"catch_up": "all"}, "sets catch_up='all' but has no schedule"),
        ({"timezone": "Asia/Tokyo"}, "sets timezone='Asia/Tokyo' but has no schedule"),
    ],
)
def test_bad_schedules_are_definition_errors_naming_the_workflow(
    options: dict[str, str], shown: str
) -> None:
    with pytest.raises(DefinitionError) as info:
        klaw.workflow("revenue", [noop], **options)  # type: ignore[arg-type]
    assert "'revenue'" in info.value.message
    assert shown in info.value.message


def test_a_bad_time_zone_suggests_the_close_one() -> None:
    with pytest.raises(DefinitionError) as info:
        klaw.workflow("revenue", [noop], schedule="0 3 * * *", timezone="Berlin")
    assert "did you mean 'Europe/Berlin'" in (info.value.hint or "")


def write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "usage"
    folder.mkdir(exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(text)
    return path


def test_config_yaml_keys_and_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "schedule: '*/15  * * * *'\ntimezone: Asia/Tokyo\n"))
    assert (config.schedule, config.timezone, config.catch_up) == (
        "*/15 * * * *",
        "Asia/Tokyo",
        "latest",
    )
    assert load_config(write(tmp_path, "engine: python\n")).timezone == "UTC"


def test_config_yaml_errors_give_file_line_and_workflow(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "engine: python\nschedule: '61 * * * *'\ntimezone: Mars/Base\ncatch_up: often\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = info.value.message
    assert f"{path}:2: schedule: schedule for workflow 'usage': invalid cron expression" in message
    assert f"{path}:3: timezone: schedule for workflow 'usage': unknown time zone" in message
    assert f"{path}:4: catch_up is 'often'" in message


def test_config_schema_has_the_schedule_keys() -> None:
    properties = config_schema()["properties"]
    assert {"schedule", "timezone", "catch_up"} <= set(properties)
    assert properties["catch_up"]["enum"] == [c.value for c in CatchUp]
