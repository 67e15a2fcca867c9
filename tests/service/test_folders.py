"""Folder workflows (config.yaml + workflow.py / workflow.sql) next to Python workflows."""

from __future__ import annotations

from pathlib import Path

import pytest

import klaw
from klaw.authoring.config import config_schema
from klaw.errors import ConfigError
from klaw.service.orchestrator import Orchestrator, RunRequest
from klaw.states import RunState

PY_FLOW = """
import pyarrow as pa
import klaw


@klaw.asset
def events() -> pa.Table:
    return pa.table({"user": [1, 1, 2], "amount": [5.0, 7.0, 1.0]})


@klaw.asset(retries=3)
def per_user(events: pa.Table) -> pa.Table:
    return events.group_by("user").aggregate([("amount", "sum")])
"""

PY_MODULE = """
import pyarrow as pa
import klaw


@klaw.asset
def report(per_user: pa.Table) -> pa.Table:   # an asset of the folder workflow `usage`
    return per_user.filter(pa.compute.greater(per_user["amount_sum"], 5))


reporting = klaw.workflow("reporting", [report])
"""


def project(root: Path, files: dict[str, str]) -> Path:
    # a module name of its own per project: one test process imports many projects
    module = f"mods_{abs(hash(str(root)))}"
    files = {f"{module}.py" if k == "mods.py" else k: v for k, v in files.items()}
    files = {"klaw.toml": f'[project]\nname = "mixed"\nmodules = ["{module}"]\n', **files}
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def mixed(tmp_path: Path) -> Orchestrator:
    root = project(
        tmp_path,
        {
            "mods.py": PY_MODULE,
            "workflows/usage/config.yaml": "description: usage per user\nretries: 2\n"
            "timeout: 60\ntags: [daily]\nschedule: '0 3 * * *'\n",
            "workflows/usage/workflow.py": PY_FLOW,
        },
    )
    orch = Orchestrator.open(root)
    yield orch
    orch.close()


def test_folder_workflow_takes_defaults_from_config(mixed: Orchestrator) -> None:
    wf = mixed.workflow("usage")
    assert wf.schedule == "0 3 * * *" and wf.description == "usage per user"
    events, per_user = wf.stage("events"), wf.stage("per_user")
    assert events.retry.retries == 2 and per_user.retry.retries == 3  # its own wins
    assert events.timeout == 60 and "daily" in events.tags


def test_an_asset_of_one_workflow_feeds_another(mixed: Orchestrator) -> None:
    with pytest.raises(klaw.KlawError, match="'per_user' of workflow 'usage'.*no snapshot yet"):
        mixed.run(RunRequest(workflow="reporting"))
    assert mixed.run(RunRequest(workflow="usage")).state is RunState.SUCCEEDED
    result = mixed.run(RunRequest(workflow="reporting"))
    assert result.state is RunState.SUCCEEDED
    assert mixed.read_asset("report").to_pylist() == [{"user": 1, "amount_sum": 12.0}]


def test_folder_workflow_runs_on_the_process_executor(mixed: Orchestrator) -> None:
    result = mixed.run(RunRequest(workflow="usage", executor="process", max_workers=1))
    assert result.state is RunState.SUCCEEDED


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ("engine: [duckdb\n", r"config.yaml:\d+:\d+ is not valid YAML"),
        ("retries: 1\nretires: 2\n", r"config.yaml:2: unknown key 'retires'; allowed: "),
        ("retries: many\n", r"config.yaml:1: retries: .*integer"),
        ("engine: spark\n", r"config.yaml:1: engine is 'spark'; .*'duckdb'"),
        ("resources:\n  cpus: -1\n", r"config.yaml:2: resources.cpus"),
        ("- a\n- b\n", "must hold a mapping"),
        ("depends_on: [nowhere]\n", "depends_on nowhere"),
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path: Path, config: str, match: str) -> None:
    root = project(
        tmp_path,
        {
            "mods.py": "",
            "workflows/usage/config.yaml": config,
            "workflows/usage/workflow.py": PY_FLOW,
        },
    )
    with pytest.raises(ConfigError, match=match):
        Orchestrator.open(root).workflows  # noqa: B018


def test_both_or_neither_code_file(tmp_path: Path) -> None:
    files = {"mods.py": "", "workflows/a/config.yaml": "engine: duckdb\n"}
    with pytest.raises(ConfigError, match="neither workflow.py nor workflow.sql"):
        Orchestrator.open(project(tmp_path / "x", files)).workflows  # noqa: B018
    files |= {"workflows/a/workflow.py": PY_FLOW, "workflows/a/workflow.sql": "select 1"}
    with pytest.raises(ConfigError, match="both workflow.py and workflow.sql"):
        Orchestrator.open(project(tmp_path / "y", files)).workflows  # noqa: B018


def test_config_schema_is_published() -> None:
    schema = config_schema()
    assert schema["additionalProperties"] is False
    assert {"engine", "schedule", "retries", "timeout", "resources", "params"} <= set(
        schema["properties"]
    )


SQL_FLOW = """
-- name: totals
SELECT user_id, sum(amount) AS total
FROM payments               -- an asset of the Python workflow `billing`
WHERE amount >= $min_amount
GROUP BY user_id
ORDER BY user_id;

-- name: big_spenders
SELECT user_id FROM totals WHERE total > 10;
"""

BILLING = """
import pyarrow as pa
import klaw


@klaw.asset
def payments() -> pa.Table:
    return pa.table({"user_id": [1, 1, 2, 3], "amount": [5.0, 9.0, 2.0, 30.0]})


billing = klaw.workflow("billing", [payments])
"""


@pytest.mark.parametrize(
    ("engine", "executor"),
    [("duckdb", "thread"), ("datafusion", "thread"), ("duckdb", "process")],
)
def test_sql_folder_reads_a_python_asset(tmp_path: Path, engine: str, executor: str) -> None:
    root = project(
        tmp_path,
        {
            "mods.py": BILLING,
            "workflows/spend/config.yaml": f"engine: {engine}\nparams:\n  min_amount: 3.0\n"
            "depends_on: [billing]\n",
            "workflows/spend/workflow.sql": SQL_FLOW,
        },
    )
    orch = Orchestrator.open(root)
    try:
        assert orch.plan("spend").stages == ("totals", "big_spenders")  # deps from the SQL
        assert orch.run(RunRequest(workflow="billing")).state is RunState.SUCCEEDED
        request = RunRequest(workflow="spend", params={"min_amount": 6.0}, executor=executor)
        result = orch.run(request)
        assert result.state is RunState.SUCCEEDED
        assert orch.read_asset("totals").to_pylist() == [
            {"user_id": 1, "total": 9.0},
            {"user_id": 3, "total": 30.0},
        ]
        assert orch.read_asset("big_spenders").to_pylist() == [{"user_id": 3}]
    finally:
        orch.close()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (("FROM totals", "FROM totalz"), r"workflow.sql:10\).*'totalz'.*did you mean 'totals'"),
        (("SELECT user_id FROM", "SELECT user_idd FROM"), r"workflow.sql:\d+\).*'user_idd'"),
        (("GROUP BY user_id\n", "GROUP BY BY user_id\n"), r"workflow.sql:\d+\).*not parse"),
    ],
)
def test_sql_problems_are_found_before_anything_runs(
    tmp_path: Path, change: tuple[str, str], match: str
) -> None:
    root = project(
        tmp_path,
        {
            "mods.py": BILLING,
            "workflows/spend/config.yaml": "params:\n  min_amount: 3.0\n",
            "workflows/spend/workflow.sql": SQL_FLOW.replace(*change),
        },
    )
    orch = Orchestrator.open(root)
    try:
        orch.run(RunRequest(workflow="billing"))  # so the upstream schema is known
        problems = orch.validate(["spend"])["spend"]
        assert problems is not None
        assert __import__("re").search(match, str(problems)), str(problems)
        with pytest.raises(klaw.KlawError):
            orch.run(RunRequest(workflow="spend"))
        assert [r.workflow for r in orch.runs()] == ["billing"]  # nothing ran
    finally:
        orch.close()
