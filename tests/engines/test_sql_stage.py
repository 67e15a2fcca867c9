"""SQL stages: defined with klaw_sql, dependencies from the tables the SQL reads, params bound,
pickled to process workers, checked before anything runs, and run end to end by the real
runner on both local executors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import BaseModel

import klaw
from klaw.authoring.sql import (
    SqlQuery,
    SqlSchemaError,
    check_sql_stage,
    check_sql_stages,
    check_sql_workflow,
    klaw_sql,
    load_sql_file,
)
from klaw.authoring.stage import InputType, StageKind
from klaw.errors import DefinitionError, NonRetryableError
from klaw.states import RunState
from tests.engines import workflows as wf

ORDERS = pa.schema([("day", pa.string()), ("customer", pa.int64()), ("amount", pa.float64())])


class Threshold(BaseModel):
    min_amount: float


def test_inputs_are_the_tables_the_sql_reads() -> None:
    stage = klaw_sql(
        "WITH big AS (SELECT * FROM orders WHERE amount > 5)\n"
        "SELECT * FROM big JOIN customers USING (customer)",
        name="big_orders",
        deps=["audit"],
    )
    assert [(i.param, i.upstream, i.type) for i in stage.inputs] == [
        ("customers", "customers", InputType.ARROW),
        ("orders", "orders", InputType.ARROW),
    ]
    assert stage.upstream == ("customers", "orders", "audit")
    assert stage.kind is StageKind.ASSET and stage.asset_key == "big_orders"
    assert stage.params_arg is None
    assert isinstance(stage.fn, SqlQuery)


def test_options_are_those_of_the_decorators() -> None:
    stage = klaw_sql(
        "SELECT * FROM orders WHERE amount > $min_amount",
        name="kept",
        kind="stage",
        engine="datafusion",
        params_model=Threshold,
        retries=3,
        timeout=9.0,
        tags=["marts"],
        source="sql/kept.sql",
        line=4,
    )
    assert stage.kind is StageKind.STAGE and stage.asset_key is None
    assert (stage.params_arg, stage.params_model) == ("params", Threshold)
    assert stage.retry.retries == 3 and stage.timeout == 9.0 and stage.tags == {"marts"}
    assert stage.location == "sql/kept.sql:4"


def test_the_stage_can_be_called_directly() -> None:
    table = pa.table({"day": ["a", "b"], "customer": [1, 2], "amount": [1.0, 9.0]})
    result = wf.revenue(orders=table, params=wf.SalesParams(min_amount=5, label="big"))
    assert result.to_pylist() == [{"day": "b", "revenue": 9.0, "label": "big"}]


def test_an_sql_stage_pickles_by_value_and_still_runs() -> None:
    copy = pickle.loads(pickle.dumps(wf.revenue))
    assert copy == wf.revenue and copy is not wf.revenue
    table = pa.table({"day": ["a"], "customer": [1], "amount": [2.0]})
    assert copy(orders=table, params=wf.SalesParams()).num_rows == 1
    assert pickle.loads(pickle.dumps(wf.orders)) is wf.orders  # Python stages: by reference


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "is not valid"),
        ({"name": "x", "engine": "duck"}, "did you mean 'duckdb'"),
        ({"name": "x", "engine": "python"}, "runs Python stages and no SQL"),
        ({"name": "x", "kind": "view"}, "use 'asset' or 'stage'"),
        ({"name": "x", "kind": "stage", "key": "k"}, "only for assets"),
        ({"name": "x", "timeout": 0}, "use > 0"),
        ({"name": "x", "params_model": dict}, "pydantic BaseModel"),
    ],
)
def test_definition_errors_name_the_stage(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        klaw_sql("SELECT * FROM orders", **kwargs)  # type: ignore[arg-type]


def test_a_table_called_params_is_refused() -> None:
    with pytest.raises(DefinitionError, match="table named 'params'"):
        klaw_sql("SELECT * FROM params", name="x")


def test_sql_that_does_not_parse_is_reported_by_the_check_with_file_and_line() -> None:
    stage = klaw_sql(
        "SELECT day\nFROM orders\nWHER amount > 1", name="broken", source="w.sql", line=7
    )
    assert stage.inputs == ()  # defined anyway, so validation can report every problem
    (problem,) = check_sql_stage(stage, {"orders": ORDERS, "broken": None})
    assert problem.startswith("SQL stage 'broken' (w.sql:9): SQL does not parse")
    with pytest.raises(SqlSchemaError, match=r"'broken' \(w.sql:9\)"):
        stage()


def test_check_names_a_table_nothing_produces() -> None:
    stage = klaw_sql("SELECT *\nFROM ordres", name="copy", source="w.sql", line=3)
    (problem,) = check_sql_stage(stage, {"orders": ORDERS, "copy": None})
    assert problem == (
        "SQL stage 'copy' (w.sql:4) reads table 'ordres', which no stage of the workflow "
        "produces; did you mean 'orders'?"
    )


def test_check_names_an_unknown_column_and_the_closest() -> None:
    stage = klaw_sql(
        "SELECT day,\n  sum(amout) AS total\nFROM orders GROUP BY day",
        name="totals",
        engine="datafusion",
        source="w.sql",
        line=20,
    )
    (problem,) = check_sql_stage(stage, {"orders": ORDERS})
    assert problem.startswith("SQL stage 'totals' (w.sql:21): column 'amout' does not exist")
    assert "did you mean 'amount'" in problem and "orders(day, customer, amount)" in problem


def test_check_names_a_parameter_the_params_do_not_have() -> None:
    stage = klaw_sql(
        "SELECT * FROM orders WHERE amount > $min_amout", name="f", params_model=Threshold
    )
    (problem,) = check_sql_stage(stage, {"orders": ORDERS})
    assert "$min_amout has no value" in problem and "did you mean 'min_amount'" in problem


def test_a_statement_over_an_unknown_schema_is_reported_unchecked_with_why() -> None:
    @klaw.asset
    def orders() -> pa.Table:
        return pa.table({"amount": [1.0]})

    copy = klaw_sql("SELECT amout FROM orders", name="copy", source="w.sql", line=2)
    again = klaw_sql("SELECT * FROM copy", name="again", source="w.sql", line=5)
    checks = check_sql_workflow([orders, copy, again])
    assert checks.problems == [] and checks.schemas == {}
    assert checks.unchecked == [
        "SQL stage 'copy' (w.sql:2) is unchecked: asset 'orders' has no snapshot yet and its "
        "producer's schema is not known (stage 'orders' is Python). It is checked when it runs; "
        "run the producer once for `klaw validate` to check it against the snapshot.",
        "SQL stage 'again' (w.sql:5) is unchecked: SQL stage 'copy', which it reads, could not "
        "be checked either. It is checked when it runs; run the producer once for `klaw "
        "validate` to check it against the snapshot.",
    ]
    known = check_sql_workflow([orders, copy, again], {"orders": pa.schema([("amount", "f8")])})
    (problem,) = known.problems  # with the snapshot's schema, the misspelling is found
    assert "'amout'" in problem and known.unchecked == []


def test_check_passes_good_sql_and_skips_unknown_schemas() -> None:
    assert check_sql_stage(wf.revenue, {"orders": ORDERS}) == []
    assert check_sql_stage(wf.revenue, {"orders": None}) == []  # not known before running
    assert check_sql_stage(wf.orders, {}) == []  # a Python stage has nothing to check


def test_schemas_flow_from_sql_stage_to_sql_stage() -> None:
    wrong = klaw_sql("SELECT day, revnue FROM revenue", name="wrong", engine="polars")
    problems = check_sql_stages([wf.orders, wf.revenue, wrong], {"orders": ORDERS})
    assert len(problems) == 1
    assert "'wrong'" in problems[0] and "did you mean 'revenue'" in problems[0]
    assert check_sql_stages(wf.sales.stages, {"orders": ORDERS}) == []


@pytest.fixture(params=["thread", "process"])
def executor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_sql_stages_run_end_to_end(tmp_path: Path, executor: str) -> None:
    home = tmp_path / "h"
    result = klaw.run(wf.sales, home=home, executor=executor, params={"min_amount": 6.0})
    assert result.state is RunState.SUCCEEDED, result.error
    orch = klaw.open_orchestrator(wf.sales, home=home)
    try:
        assert orch.read_asset("revenue").to_pylist() == [
            {"day": "d1", "revenue": 10.0, "label": "all"},
            {"day": "d2", "revenue": 7.0, "label": "all"},
        ]
        assert orch.read_asset("by_customer").to_pylist() == [
            {"name": "ann", "spent": 17.0},
            {"name": "bob", "spent": 5.0},
            {"name": "cid", "spent": 1.0},
        ]
        assert orch.read_asset("summary").to_pylist() == [{"top_days": 2, "customers": 3}]
    finally:
        orch.close()


def test_an_upstream_with_another_schema_fails_the_stage_naming_the_column(
    tmp_path: Path, executor: str
) -> None:
    home = tmp_path / "h"
    result = klaw.run(wf.mismatch, home=home, executor=executor)
    assert result.state is RunState.FAILED
    orch = klaw.open_orchestrator(wf.mismatch, home=home)
    try:
        attempts = [a for a in orch.attempts(result.run_id) if a.stage == "daily_payments"]
    finally:
        orch.close()
    assert len(attempts) == 1  # not retried: the SQL cannot fit this table
    error = attempts[0].error or ""
    assert "SQL stage 'daily_payments' (payments.sql:11)" in error
    assert "column 'amount' does not exist" in error and "payments(day, value)" in error
    assert issubclass(SqlSchemaError, NonRetryableError)


def test_a_workflow_sql_file_runs(tmp_path: Path, executor: str) -> None:
    path = tmp_path / "workflow.sql"
    path.write_text(
        "-- sales, the SQL part\n"
        "-- name: big_orders\n"
        "SELECT * FROM orders WHERE amount >= 5;\n"
        "\n"
        "-- name: per_day\n"
        "SELECT day, count(*) AS n FROM big_orders GROUP BY day ORDER BY day;\n"
    )
    stages = load_sql_file(path)
    assert [(s.name, s.location) for s in stages] == [
        ("big_orders", f"{path}:3"),
        ("per_day", f"{path}:6"),
    ]
    workflow = klaw.workflow("from_file", [wf.orders, *stages])
    result = klaw.run(workflow, home=tmp_path / "h", executor=executor)
    assert result.state is RunState.SUCCEEDED, result.error
    orch = klaw.open_orchestrator(workflow, home=tmp_path / "h")
    try:
        assert orch.read_asset("per_day").to_pylist() == [
            {"day": "d1", "n": 2},
            {"day": "d2", "n": 1},
        ]
    finally:
        orch.close()
