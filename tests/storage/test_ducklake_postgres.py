"""DuckLakeAssetStore with its catalog in Postgres: the shared contract, where the catalog's
tables go, how a bad catalog URL is reported, and a project run end to end on it. Every test
gets a schema of its own (see conftest.py), dropped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
from psycopg import conninfo

import klaw
from klaw.errors import GraphError, StorageError
from klaw.service.orchestrator import RunRequest
from klaw.states import RunState
from klaw.storage import location
from klaw.storage.ducklake import DuckLakeAssetStore

from .contract import AssetStoreContract, commit, ints


class TestDuckLakeOnPostgres(AssetStoreContract):
    @pytest.fixture
    def store(self, postgres_catalog: str, tmp_path: Path) -> Iterator[DuckLakeAssetStore]:
        store = DuckLakeAssetStore(postgres_catalog, tmp_path / "lake")
        yield store
        store.close()

    @pytest.fixture
    def reopen(
        self, postgres_catalog: str, tmp_path: Path
    ) -> Iterator[Callable[[], DuckLakeAssetStore]]:
        opened: list[DuckLakeAssetStore] = []

        def again() -> DuckLakeAssetStore:
            opened.append(DuckLakeAssetStore(postgres_catalog, tmp_path / "lake"))
            return opened[-1]

        yield again
        for store in opened:  # closed before the schema is dropped
            store.close()


def _tables(url: str, schema: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as con:
        rows = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
        ).fetchall()
    return {str(row[0]) for row in rows}


def _schema_of(catalog: str) -> str:
    return catalog.rsplit("%3D", 1)[1]


def test_the_catalog_tables_go_to_the_schema_of_the_search_path(
    postgres_server: str, postgres_catalog: str, tmp_path: Path
) -> None:
    schema = _schema_of(postgres_catalog)
    public_before = _tables(postgres_server, "public")
    with DuckLakeAssetStore(postgres_catalog, tmp_path / "lake") as store:
        first = commit(store, "orders", ints(3))
    assert {"ducklake_snapshot", "ducklake_data_file"} <= _tables(postgres_server, schema)
    assert _tables(postgres_server, "public") == public_before
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"SET search_path = {schema}")
        rows = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshot").fetchall()
    assert rows == [(first,)]
    assert len(list((tmp_path / "lake").rglob("*.parquet"))) == 1


def test_the_keyword_form_and_a_schema_ducklake_creates(
    postgres_server: str, postgres_catalog: str, tmp_path: Path
) -> None:
    """``postgres:dbname=... options='-c search_path=...'``; the schema need not exist yet."""
    schema = _schema_of(postgres_catalog) + "_new"
    keywords = conninfo.make_conninfo(postgres_server, options=f"-c search_path={schema}")
    try:
        with DuckLakeAssetStore(f"postgres:{keywords}", tmp_path / "lake") as store:
            snapshot = commit(store, "orders", ints(2))
            assert store.read("orders", snapshot).equals(ints(2))
        assert "ducklake_snapshot" in _tables(postgres_server, schema)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_the_postgres_extension_comes_from_its_package(
    postgres_catalog: str, tmp_path: Path
) -> None:
    with DuckLakeAssetStore(postgres_catalog, tmp_path / "lake") as store:
        commit(store, "orders", ints(1))
        loaded = dict(
            store._connection()
            .execute(
                "SELECT extension_name, install_mode FROM duckdb_extensions()"
                " WHERE extension_name IN ('ducklake', 'postgres_scanner') AND loaded"
            )
            .fetchall()
        )
    assert loaded == {"ducklake": "NOT_INSTALLED", "postgres_scanner": "NOT_INSTALLED"}


@pytest.mark.parametrize(
    ("catalog", "shown"),
    [
        (
            "postgresql://klaw:s3cret@127.0.0.1:1/nowhere",
            "postgresql://klaw:***@127.0.0.1:1/nowhere",
        ),
        (
            "postgres:dbname=nowhere host=127.0.0.1 port=1 user=klaw password=s3cret",
            "postgres:dbname=nowhere host=127.0.0.1 port=1 user=klaw password=***",
        ),
    ],
)
def test_an_unreachable_catalog_names_the_url_without_its_password(
    catalog: str, shown: str, tmp_path: Path
) -> None:
    store = DuckLakeAssetStore(catalog, tmp_path / "lake")
    assert "s3cret" not in repr(store) and shown in repr(store)
    with pytest.raises(StorageError) as info:
        store.assets()
    message = str(info.value)
    assert f"could not open the DuckLake catalog {shown!r}: cannot connect to Postgres" in message
    assert "Connection refused" in message
    assert "KLAW_LAKE__CATALOG" in message
    assert "s3cret" not in message
    with pytest.raises(StorageError):  # still refused, not half-open
        commit(store, "orders", ints(1))
    store.close()


def test_a_missing_database_says_to_create_it(postgres_server: str, tmp_path: Path) -> None:
    parts = conninfo.conninfo_to_dict(postgres_server)
    parts["dbname"] = "klaw_no_such_database"
    url = "postgres:" + conninfo.make_conninfo(**{k: str(v) for k, v in parts.items()})
    with pytest.raises(StorageError) as info:
        DuckLakeAssetStore(url, tmp_path / "lake").assets()
    message = str(info.value)
    assert 'database "klaw_no_such_database" does not exist' in message
    assert "CREATE DATABASE" in message


def test_catalog_strings() -> None:
    url = location.catalog_target("postgresql://k:pw@db:5432/lake?options=-csearch_path%3DLake")
    assert url.attach == (
        "ducklake:postgres:postgresql://k:pw@db:5432/lake"
        "?options=-csearch_path%3DLake&connect_timeout=10"
    )
    assert (url.extension, url.schema) == ("postgres_scanner", "lake")
    assert url.options == ("METADATA_SCHEMA 'lake'",)
    keywords = location.catalog_target(
        "postgres:dbname=klaw host=db connect_timeout=3 options='-c search_path=\"Mixed\",x'"
    )
    assert keywords.attach.endswith("connect_timeout=3 options='-c search_path=\"Mixed\",x'")
    assert keywords.schema == "Mixed"
    plain = location.catalog_target("postgres://db/klaw")
    assert (plain.schema, plain.attach) == (
        "public",
        "ducklake:postgres:postgres://db/klaw?connect_timeout=10",
    )
    sqlite = location.catalog_target("sqlite:relative/lake.sqlite")
    assert sqlite.attach == f"ducklake:sqlite:{Path('relative/lake.sqlite').resolve()}"
    assert (sqlite.extension, sqlite.schema) == ("sqlite_scanner", "main")


def test_redaction() -> None:
    assert location.redact("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"
    assert location.redact('at "postgresql://u:x@h/db": no') == 'at "postgresql://u:***@h/db": no'
    assert location.redact("host=h password='a b' user=u") == "host=h password=*** user=u"
    assert location.redact("postgresql://u@h/db?password=x&a=1") == (
        "postgresql://u@h/db?password=***&a=1"
    )
    assert location.redact("/home/me/.klaw/lake.sqlite") == "/home/me/.klaw/lake.sqlite"


# -- a project on a Postgres catalog -----------------------------------------------------------


@klaw.asset
def payments() -> pa.Table:
    return pa.table({"day": ["d1", "d1", "d2"], "value": [1.0, 2.0, 4.0]})


loads = klaw.workflow("loads", [payments])
daily = klaw.workflow(
    "daily",
    [klaw.sql("SELECT day, sum(value) AS total FROM payments GROUP BY day", name="daily_total")],
)
wrong = klaw.workflow(
    "wrong", [klaw.sql("SELECT day, sum(amount) AS total FROM payments GROUP BY day", name="bad")]
)


def test_a_project_runs_on_a_postgres_catalog(postgres_catalog: str, tmp_path: Path) -> None:
    """Runs commit and read through the Postgres catalog; SQL reading a stored asset is checked
    against its stored schema before anything runs."""
    orch = klaw.open_orchestrator(
        loads, daily, wrong, home=tmp_path / "home", lake_catalog=postgres_catalog
    )
    try:
        first = orch.run(RunRequest(workflow="loads"))
        assert first.state is RunState.SUCCEEDED, first.error
        second = orch.run(RunRequest(workflow="daily"))
        assert second.state is RunState.SUCCEEDED, second.error
        assert sorted(orch.read_asset("daily_total").to_pylist(), key=lambda r: r["day"]) == [
            {"day": "d1", "total": 3.0},
            {"day": "d2", "total": 4.0},
        ]
        assert [a.key for a in orch.assets()] == ["daily_total", "payments"]
        with pytest.raises(GraphError, match="amount"):
            orch.run(RunRequest(workflow="wrong"))
    finally:
        orch.close()
    assert not (tmp_path / "home" / "lake.sqlite").exists()
