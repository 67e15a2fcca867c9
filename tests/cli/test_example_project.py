"""``klaw init`` and the scaffolded project, end to end: run it, inspect runs and assets, travel
back to an older snapshot, and the bad inputs that need a project with runs to be seen."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .driver import Result, assert_error, attempts_by_stage, klaw, run_id_of

STAGES = ["raw_orders", "orders", "daily_revenue"]
# daily_revenue of the scaffolded data, with every order (min_amount=0) and with min_amount=20
ALL_ORDERS = [{"day": "2026-01-01", "revenue": 35.5}, {"day": "2026-01-02", "revenue": 47.25}]
AT_LEAST_20 = [{"day": "2026-01-01", "revenue": 25.5}, {"day": "2026-01-02", "revenue": 40.0}]


@dataclass
class Example:
    root: Path  # where `klaw init proj` ran
    project: Path
    init: Result
    first: Result  # klaw run example
    second: Result  # klaw run example --param min_amount=20 -o json
    cache: dict[tuple[str, ...], Result] = field(default_factory=dict)

    def klaw(self, *args: str) -> Result:
        """A read-only command, run once per module."""
        if args not in self.cache:
            self.cache[args] = klaw(self.project, *args)
        return self.cache[args]

    @property
    def first_id(self) -> str:
        return run_id_of(self.first)

    @property
    def second_id(self) -> str:
        return str(self.second.json()["run"]["run_id"])

    def first_show(self) -> dict[str, Any]:
        show = self.klaw("runs", "show", self.first_id, "-o", "json")
        assert show.returncode == 0, str(show)
        return dict(show.json())


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Example:
    root = tmp_path_factory.mktemp("cli-example")
    init = klaw(root, "init", "proj", "--name", "shop")
    project = root / "proj"
    first = klaw(project, "run", "example")
    second = klaw(project, "run", "example", "--param", "min_amount=20", "-o", "json")
    return Example(root, project, init, first, second)


# -- init and a first run -------------------------------------------------------------------


def test_init_scaffolds_a_project(example: Example) -> None:
    assert example.init.returncode == 0, str(example.init)
    project = example.project
    for path in ("klaw.toml", "workflows/example.py", "tests/test_example.py"):
        assert (project / path).is_file(), path
        assert path.split("/")[-1] in example.init.out
    assert 'name = "shop"' in (project / "klaw.toml").read_text()
    assert "klaw run example" in example.init.out
    assert (project / ".klaw").is_dir()  # state lives in the project


def test_init_refuses_a_folder_with_klaw_toml(tmp_path: Path) -> None:
    mine = '[project]\nname = "mine"\nmodules = ["mine"]\n'
    (tmp_path / "klaw.toml").write_text(mine)
    result = klaw(tmp_path, "init", ".")
    assert_error(result, 2, str(tmp_path / "klaw.toml"), "does not overwrite")
    assert (tmp_path / "klaw.toml").read_text() == mine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["klaw.toml"]


def test_run_example_succeeds(example: Example) -> None:
    first = example.first
    assert first.returncode == 0, str(first)
    assert f"run {example.first_id} succeeded" in first.out
    assert "3 succeeded" in first.out
    assert "Traceback" not in first.stderr
    assert example.second.returncode == 0, str(example.second)
    assert example.second.json()["run"]["state"] == "succeeded"


def test_runs_list_has_both_runs(example: Example) -> None:
    listed = example.klaw("runs", "list", "-o", "json")
    assert listed.returncode == 0, str(listed)
    runs = {r["run_id"]: r for r in listed.json()}
    assert set(runs) == {example.first_id, example.second_id}
    first, second = runs[example.first_id], runs[example.second_id]
    assert first["workflow"] == "example"
    assert first["state"] == "succeeded"
    assert first["stage_counts"] == {"succeeded": 3}
    assert first["params"] == {"min_amount": 0.0}
    assert second["params"] == {"min_amount": 20.0}
    assert [r["run_id"] for r in listed.json()] == [example.second_id, example.first_id]


def test_runs_show_lists_three_succeeded_attempts_with_snapshots(example: Example) -> None:
    show = example.first_show()
    assert show["run"]["run_id"] == example.first_id
    assert show["run"]["state"] == "succeeded"
    by_stage = attempts_by_stage(show)
    assert sorted(by_stage) == sorted(STAGES)
    for stage in STAGES:
        (attempt,) = by_stage[stage]
        assert attempt["attempt"] == 1
        assert attempt["state"] == "succeeded"
        assert attempt["asset_key"] == stage
        assert isinstance(attempt["snapshot_id"], int)
        assert attempt["commit_s"] > 0  # storing its snapshot, timed apart from the function
    assert by_stage["raw_orders"][0]["load_s"] is None  # it has no inputs
    assert by_stage["orders"][0]["load_s"] >= 0
    snapshots = [by_stage[s][0]["snapshot_id"] for s in STAGES]
    assert len(set(snapshots)) == 3


def test_assets_list_shows_three_assets(example: Example) -> None:
    listed = example.klaw("assets", "list", "-o", "json")
    assert listed.returncode == 0, str(listed)
    assets = {a["key"]: a for a in listed.json()}
    assert sorted(assets) == sorted(STAGES)
    assert all(a["snapshots"] == 2 for a in assets.values())  # one per run
    assert assets["daily_revenue"]["rows"] == 2


def test_assets_show_has_schema_and_one_preview_row(example: Example) -> None:
    shown = example.klaw("assets", "show", "daily_revenue", "--limit", "1", "-o", "json")
    assert shown.returncode == 0, str(shown)
    data = shown.json()
    assert data["key"] == "daily_revenue"
    assert data["schema"] == {"day": "string", "revenue": "double"}
    assert data["rows"] == 2
    assert data["preview"] == AT_LEAST_20[:1]  # the latest snapshot: the second run's
    latest = attempts_by_stage(example.second.json())["daily_revenue"][0]["snapshot_id"]
    assert data["snapshot"] == latest
    assert [s["snapshot"] for s in data["snapshots"]][-1] == latest


def test_assets_show_of_an_older_snapshot_travels_back(example: Example) -> None:
    old = attempts_by_stage(example.first_show())["daily_revenue"][0]["snapshot_id"]
    shown = example.klaw("assets", "show", "daily_revenue", "--snapshot", str(old), "-o", "json")
    assert shown.returncode == 0, str(shown)
    data = shown.json()
    assert data["snapshot"] == old
    assert data["preview"] == ALL_ORDERS
    assert data["rows"] == 2
    latest = attempts_by_stage(example.second.json())["daily_revenue"][0]["snapshot_id"]
    assert old != latest


def test_plan_orders_the_stages(example: Example) -> None:
    planned = example.klaw("plan", "example", "-o", "json")
    assert planned.returncode == 0, str(planned)
    stages = planned.json()["stages"]
    assert [s["stage"] for s in stages] == STAGES
    assert [s["level"] for s in stages] == [0, 1, 2]
    assert [s["upstream"] for s in stages] == [[], ["raw_orders"], ["orders"]]
    assert {s["kind"] for s in stages} == {"asset"}


def test_schema_is_a_json_schema_with_min_amount(example: Example) -> None:
    # from the parent folder, naming the project with --project
    result = klaw(example.root, "--project", "proj", "schema", "example")
    assert result.returncode == 0, str(result)
    schema = result.json()
    assert "json-schema.org" in schema["$schema"]
    assert schema["type"] == "object"
    assert schema["properties"]["min_amount"]["type"] == "number"
    assert schema["properties"]["min_amount"]["default"] == 0.0


def test_workflows_list(example: Example) -> None:
    listed = example.klaw("workflows", "list", "-o", "json")
    assert listed.returncode == 0, str(listed)
    (workflow,) = listed.json()
    assert workflow["name"] == "example"
    assert workflow["stages"] == 3
    assert workflow["assets"] == 3
    assert workflow["module"] == "workflows.example"


def test_validate_ok(example: Example) -> None:
    result = example.klaw("validate")
    assert result.returncode == 0, str(result)
    assert "ok example" in result.out


# -- bad input against a project with runs and assets -----------------------------------------


def test_param_failing_validation_names_the_field_and_records_no_run(example: Example) -> None:
    result = klaw(example.project, "run", "example", "--param", "min_amount=abc")
    assert_error(result, 2, "min_amount", "'abc'", "klaw schema example")
    listed = klaw(example.project, "runs", "list", "-o", "json")
    assert {r["run_id"] for r in listed.json()} == {example.first_id, example.second_id}


def test_unknown_param_suggests_the_close_one(example: Example) -> None:
    result = klaw(example.project, "run", "example", "--param", "min_amont=3")
    assert_error(result, 2, "'min_amont'", "did you mean min_amount")


def test_select_matching_nothing_names_close_stages(example: Example) -> None:
    result = klaw(example.project, "run", "example", "--select", "orderz")
    assert_error(result, 2, "'orderz'", "matches no stage", "orders")


def test_unknown_workflow_names_close_ones(example: Example) -> None:
    result = klaw(example.project, "run", "exampel")
    assert_error(result, 2, "'exampel'", "did you mean example")


@pytest.mark.parametrize(
    "command", [("runs", "show"), ("logs",), ("cancel",)], ids=["runs-show", "logs", "cancel"]
)
def test_unknown_run_id(example: Example, command: tuple[str, ...]) -> None:
    result = klaw(example.project, *command, "nosuchrun")
    assert_error(result, 2, "'nosuchrun'", "no run")


def test_assets_show_unknown_key_names_the_closest(example: Example) -> None:
    result = klaw(example.project, "assets", "show", "daily_revenu")
    assert_error(result, 2, "'daily_revenu'", "'daily_revenue'")


def test_assets_show_unknown_snapshot_lists_the_snapshots(example: Example) -> None:
    result = klaw(example.project, "assets", "show", "daily_revenue", "--snapshot", "999")
    old = attempts_by_stage(example.first_show())["daily_revenue"][0]["snapshot_id"]
    new = attempts_by_stage(example.second.json())["daily_revenue"][0]["snapshot_id"]
    assert_error(result, 2, "'daily_revenue'", "999", f"{old}, {new}")
