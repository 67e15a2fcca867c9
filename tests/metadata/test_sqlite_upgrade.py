"""A SQLite database written at every older schema version opens, upgrades and keeps its rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from klaw.errors import MetadataError
from klaw.metadata import migrations
from klaw.metadata.records import Batch, RunFilter, TokenRecord
from klaw.metadata.sqlite import SQLiteMetadataStore
from klaw.states import RunState

from .contract import event, make_run

OLDER = [m.version for m in migrations.MIGRATIONS if m.version < migrations.LATEST_VERSION]


def _old_database(path: Path, version: int) -> None:
    """A file as a Klaw at schema ``version`` left it, holding one finished run."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(migrations.CREATE_SCHEMA_VERSION)
    for migration in migrations.MIGRATIONS[:version]:
        for statement in migration.statements:
            conn.execute(migrations.sqlite_statement(statement))
        conn.execute(migrations.INSERT_VERSION, (migration.version, migration.description, 0.0))
    conn.execute(
        "INSERT INTO runs (run_id, workflow, state, created_at, started_at, ended_at, params, "
        "selection, parent_run_id, owner_host, owner_pid, error, stage_counts) "
        "VALUES ('old-run', 'etl', 'succeeded', 1.0, 1.5, 2.0, '{}', NULL, NULL, 'h', 1, NULL, "
        "'{}')"
    )
    conn.close()


@pytest.mark.parametrize("version", OLDER)
def test_an_older_database_is_refused_then_upgraded_with_its_rows(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "klaw.db"
    _old_database(path, version)
    refused = pytest.raises(MetadataError, match=f"at schema version {version}")
    with SQLiteMetadataStore(path) as store, refused:
        store.get_run("old-run")
    with SQLiteMetadataStore(path) as store:
        store.migrate()
        old = store.get_run("old-run")
        assert (old.workflow, old.state, old.ended_at) == ("etl", RunState.SUCCEEDED, 2.0)
        new = make_run()
        store.create_run(new)
        store.commit(Batch(events=[event(new.run_id, "stage")]))
        assert [e.seq for e in store.list_events(new.run_id)] == [1, 2]
        assert {r.run_id for r in store.list_runs(RunFilter())} == {"old-run", new.run_id}
        token = TokenRecord(token_id="t1", name="ci", role="viewer", secret_hash="x", created_at=0)
        store.create_token(token)
        assert store.find_token("t1") == token
    conn = sqlite3.connect(path)
    assert migrations.current_version(conn) == migrations.LATEST_VERSION
    conn.close()


def test_older_versions_exist_to_upgrade_from() -> None:
    assert list(range(1, migrations.LATEST_VERSION)) == OLDER
