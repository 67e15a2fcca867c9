"""Where the storage tests keep their lakes: a SQLite catalog in a temporary folder, or a
Postgres catalog in a schema of its own, dropped with everything in it afterwards.

Set ``KLAW_TEST_POSTGRES_URL`` to test against another server; the Postgres tests skip only
when the server cannot be reached.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

POSTGRES_URL = os.environ.get("KLAW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True, slots=True)
class Lake:
    """A place for a lake: its catalog (a SQLite file or a Postgres URL) and data folder."""

    catalog: str
    data: Path
    kind: str


@pytest.fixture(scope="session")
def postgres_server() -> str:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(
            f"Postgres is not reachable at {POSTGRES_URL} (set KLAW_TEST_POSTGRES_URL): {exc}"
        )
    return POSTGRES_URL


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_catalog(postgres_server: str) -> Iterator[str]:
    """A Postgres catalog URL whose DuckLake tables go to a fresh schema, dropped afterwards
    (every store on it must be closed by then: an open one holds locks the drop waits for)."""
    schema = f"klaw_lake_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield with_schema(postgres_server, schema)
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute("SET lock_timeout = '20s'")
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgres"])
def lake_place(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    """Each test using it runs twice: on a SQLite catalog and on a Postgres one."""
    if request.param == "postgres":
        catalog: str = request.getfixturevalue("postgres_catalog")
    else:
        catalog = str(tmp_path / "lake.sqlite")
    return Lake(catalog, tmp_path / "lake", request.param)
