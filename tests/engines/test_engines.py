"""The engine contract: every SQL engine (DuckDB, DataFusion, Polars) runs the same suite on
real Arrow tables. Polars has no query parameters; its params are the one-row table
``params``, so the queries that use a param are written per engine."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from klaw.engines import Engine, EngineError, SqlError, SqlProblem, engine_names, get_engine

SQL_ENGINES = ["duckdb", "datafusion", "polars"]

# how a query reads the param `who` on each engine
PARAM = {"duckdb": "$who", "datafusion": "$who", "polars": "(SELECT who FROM params)"}

ORDERS = pa.table(
    {"id": [1, 2, 3, 4], "customer": [10, 10, 20, 30], "amount": [5.0, 7.0, 1.5, 2.0]}
)
CUSTOMERS = pa.table(
    {"customer": [10, 20, 30], "name": ["ann", "bob", "'; DROP TABLE customers; --"]}
)


@pytest.fixture(params=SQL_ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    return get_engine(str(request.param))


def test_every_engine_meets_the_protocol() -> None:
    for name in engine_names():
        engine = get_engine(name)
        assert isinstance(engine, Engine)
        assert engine.name == name
        assert get_engine(name) is engine  # one per process


def test_sql_runs_over_arrow_tables_by_name(engine: Engine) -> None:
    query = """
        SELECT c.name, sum(o.amount) AS total
        FROM orders o JOIN customers c ON o.customer = c.customer
        GROUP BY c.name ORDER BY c.name
    """
    result = engine.sql(query, {"orders": ORDERS, "customers": CUSTOMERS}, {})
    assert isinstance(result, pa.Table)
    assert result.column_names == ["name", "total"]
    names, sums = result.column("name").to_pylist(), result.column("total").to_pylist()
    totals = dict(zip(names, sums, strict=True))
    assert totals == {"ann": 12.0, "bob": 1.5, "'; DROP TABLE customers; --": 2.0}


def test_params_are_bound_as_values(engine: Engine) -> None:
    query = f"SELECT customer FROM customers WHERE name = {PARAM[engine.name]}"
    result = engine.sql(query, {"customers": CUSTOMERS}, {"who": "bob"})
    assert result.column("customer").to_pylist() == [20]


def test_a_param_holding_sql_is_only_a_value(engine: Engine) -> None:
    evil = "'; DROP TABLE customers; --"
    query = f"SELECT customer FROM customers WHERE name = {PARAM[engine.name]}"
    result = engine.sql(query, {"customers": CUSTOMERS}, {"who": evil})
    assert result.column("customer").to_pylist() == [30]  # matched as text, nothing dropped
    none = engine.sql(query, {"customers": CUSTOMERS}, {"who": "x' OR '1'='1"})
    assert none.num_rows == 0
    again = engine.sql("SELECT count(*) AS n FROM customers", {"customers": CUSTOMERS}, {})
    assert again.column("n").to_pylist() == [3]


def test_tables_read_ignores_ctes_and_finds_subqueries(engine: Engine) -> None:
    query = """
        WITH recent AS (SELECT * FROM orders WHERE id > 1),
             named AS (SELECT r.*, c.name FROM recent r JOIN customers c USING (customer))
        SELECT * FROM named
        WHERE customer IN (SELECT customer FROM vip)
    """
    assert engine.tables_read(query) == {"orders", "customers", "vip"}
    assert engine.tables_read("SELECT 1 AS one") == set()


def test_a_cte_shadows_only_inside_its_query(engine: Engine) -> None:
    query = """
        SELECT * FROM (WITH orders AS (SELECT 1 AS id) SELECT * FROM orders) AS a
        JOIN customers ON true
    """
    assert engine.tables_read(query) == {"customers"}
    outer = "SELECT * FROM (WITH x AS (SELECT 1 AS id) SELECT * FROM x) AS a, x"
    assert engine.tables_read(outer) == {"x"}  # the CTE x is not in scope out here


def test_sql_that_does_not_parse_is_a_syntax_error_with_its_line(engine: Engine) -> None:
    with pytest.raises(SqlError) as info:
        engine.tables_read("SELECT id\nFROM orders\nWHER id = 1 AND")
    assert info.value.problem is SqlProblem.SYNTAX
    assert info.value.line == 3
    with pytest.raises(SqlError) as info:
        engine.check("SELEC id FRM orders", {"orders": ORDERS.schema}, {})
    assert info.value.problem is SqlProblem.SYNTAX


def test_check_plans_and_returns_the_result_schema(engine: Engine) -> None:
    schema = engine.check(
        "SELECT customer, sum(amount) AS total FROM orders GROUP BY customer",
        {"orders": ORDERS.schema},
        {},
    )
    assert schema.names == ["customer", "total"]
    assert pa.types.is_floating(schema.field("total").type)


def test_check_names_a_table_nothing_gives_with_the_closest(engine: Engine) -> None:
    with pytest.raises(SqlError) as info:
        engine.check("SELECT * FROM ordrs", {"orders": ORDERS.schema}, {})
    assert info.value.problem is SqlProblem.TABLE
    assert info.value.name == "ordrs"
    assert "'ordrs'" in str(info.value) and "did you mean 'orders'" in str(info.value)


def test_check_names_an_unknown_column_with_the_closest(engine: Engine) -> None:
    with pytest.raises(SqlError) as info:
        engine.check("SELECT id, amout FROM orders", {"orders": ORDERS.schema}, {})
    assert info.value.problem is SqlProblem.COLUMN
    assert info.value.name == "amout"
    message = str(info.value)
    assert "did you mean 'amount'" in message
    assert "orders(id, customer, amount)" in message


def test_check_refuses_more_than_one_statement(engine: Engine) -> None:
    with pytest.raises(SqlError) as info:
        engine.check("SELECT 1; SELECT 2", {}, {})
    assert info.value.problem in (SqlProblem.STATEMENT, SqlProblem.SYNTAX)


@pytest.mark.parametrize("name", ["duckdb", "datafusion"])
def test_only_queries_run(name: str) -> None:
    with pytest.raises(SqlError) as info:
        get_engine(name).sql("INSERT INTO orders VALUES (9, 9, 9.0)", {"orders": ORDERS}, {})
    assert info.value.problem is SqlProblem.STATEMENT


@pytest.mark.parametrize("name", ["duckdb", "datafusion"])
def test_a_parameter_without_a_value_is_named(name: str) -> None:
    engine = get_engine(name)
    query = "SELECT * FROM orders WHERE amount > $min_amount"
    with pytest.raises(SqlError) as info:
        engine.check(query, {"orders": ORDERS.schema}, {"min_amuont": 1.0})
    assert info.value.problem is SqlProblem.PARAMETER
    assert info.value.name == "min_amount"
    assert engine.check(query, {"orders": ORDERS.schema}, {"min_amount": None}).names == [
        "id",
        "customer",
        "amount",
    ]


def test_a_table_with_another_schema_fails_at_run_time_naming_the_column(engine: Engine) -> None:
    renamed = ORDERS.rename_columns(["id", "customer", "value"])
    with pytest.raises(SqlError) as info:
        engine.sql("SELECT id, amount FROM orders", {"orders": renamed}, {})
    assert info.value.problem is SqlProblem.COLUMN
    assert "'amount'" in str(info.value) and "orders(id, customer, value)" in str(info.value)


def test_arrow_round_trip(engine: Engine) -> None:
    native = engine.from_arrow(ORDERS)
    back = engine.to_arrow(native)
    assert back.cast(ORDERS.schema).equals(ORDERS)
    assert engine.to_arrow(ORDERS) is ORDERS


def test_unknown_engine_lists_the_known_ones() -> None:
    with pytest.raises(EngineError) as info:
        get_engine("duck")
    message = str(info.value)
    assert "'duck'" in message and "did you mean 'duckdb'" in message
    assert "datafusion, duckdb, polars, python" in message


def test_the_python_engine_runs_no_sql() -> None:
    python = get_engine("python")
    for call in (
        lambda: python.sql("SELECT 1", {}, {}),
        lambda: python.tables_read("SELECT 1"),
        lambda: python.check("SELECT 1", {}, {}),
    ):
        with pytest.raises(EngineError, match="runs Python stages and no SQL"):
            call()
    assert python.to_arrow(ORDERS) is ORDERS
    with pytest.raises(EngineError, match="cannot turn int"):
        python.to_arrow(3)


def test_adapters_load_only_when_asked_for() -> None:
    code = (
        "import sys, klaw.engines as e\n"
        "heavy = {'duckdb', 'datafusion', 'polars'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "e.get_engine('datafusion')\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "['datafusion']"]
