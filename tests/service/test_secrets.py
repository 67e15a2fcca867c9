"""Where secret values come from (environment, secrets directory, backend), looked up afresh
for every run: first runs, resumes, scheduled runs and recovered runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

import klaw
from klaw.errors import ConfigError, SecretNotFoundError
from klaw.ids import new_run_id
from klaw.metadata.records import RunRecord
from klaw.service.orchestrator import Orchestrator, RunRequest
from klaw.service.recovery import continuing
from klaw.service.secrets import SecretResolver, env_name, load_backend
from klaw.settings import load_settings
from klaw.states import RunState
from klaw.triggers import TriggerService

WAIT = 60.0
SEEN: list[str] = []  # what the stage below was given, in this process (thread executor)
FAIL: list[bool] = []  # the stage fails while this holds something


class Backend:
    """A secret backend as a user would write one (a vault client, say)."""

    values: ClassVar[dict[str, str]] = {"from_backend": "backend-value", "everywhere": "backend"}

    def get(self, name: str) -> str | None:
        return self.values.get(name)


class Broken:
    def get(self, name: str) -> str | None:
        raise RuntimeError("vault unreachable, token=do-not-leak")


backend_object = Backend()


def make_backend() -> Backend:
    return Backend()


class Db(BaseModel):
    db_password: klaw.Secret = klaw.Secret("db_pw")


@klaw.stage
def connect(params: Db) -> None:
    SEEN.append(params.db_password.get_secret_value())
    if FAIL:
        raise RuntimeError("connection refused")


nightly = klaw.workflow("nightly", [connect], schedule="0 3 * * *", max_active_runs=10)


@pytest.fixture
def orch(tmp_path: Path) -> Iterator[Orchestrator]:
    SEEN.clear()
    FAIL.clear()
    o = klaw.open_orchestrator(nightly, home=tmp_path / "home")
    yield o
    o.shutdown(wait=WAIT)
    o.close()


def resolver(tmp_path: Path, env: dict[str, str], **settings: Any) -> SecretResolver:
    home = tmp_path / "home"
    return SecretResolver(load_settings({}, home=home, **settings), tmp_path, environ=env)


def test_env_name_rule() -> None:
    assert env_name("warehouse_password") == "KLAW_SECRET_WAREHOUSE_PASSWORD"
    assert env_name("db.pw-1") == "KLAW_SECRET_DB_PW_1"


def test_lookup_order_env_then_directory_then_backend(tmp_path: Path) -> None:
    spec = f"{__name__}:backend_object"
    secrets = tmp_path / "home" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "everywhere").write_text("file\n")
    (secrets / "in_file").write_text("line one\nline two\n")
    r = resolver(tmp_path, {"KLAW_SECRET_EVERYWHERE": "env"}, secrets_backend=spec)
    assert r.lookup("everywhere") == "env"
    assert r.lookup("in_file") == "line one\nline two"  # one trailing newline dropped
    assert r.lookup("from_backend") == "backend-value"
    assert r.lookup("nowhere") is None
    assert r.places("nowhere") == [
        "environment variable KLAW_SECRET_NOWHERE",
        f"file {secrets / 'nowhere'}",
        f"backend {spec}",
    ]
    del r.__dict__["backend"]
    r.directory = tmp_path / "elsewhere"  # the file is read on each lookup, never cached
    assert r.lookup("everywhere") == "env"
    assert r.lookup("in_file") is None


def test_a_configured_directory_relative_to_the_project(tmp_path: Path) -> None:
    (tmp_path / "run-secrets").mkdir()
    (tmp_path / "run-secrets" / "token").write_text("abc")
    r = resolver(tmp_path, {}, secrets_dir=Path("run-secrets"))
    assert r.lookup("token") == "abc"


@pytest.mark.parametrize("attr", ["backend_object", "Backend", "make_backend"])
def test_a_backend_is_an_object_a_class_or_a_factory(attr: str) -> None:
    assert load_backend(f"{__name__}:{attr}").get("from_backend") == "backend-value"


@pytest.mark.parametrize(
    "spec", ["no_colon", "klaw_no_such_module:x", f"{__name__}:missing", f"{__name__}:SEEN"]
)
def test_a_bad_backend_setting_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_backend(spec)
    assert "secrets_backend" in err.value.message and spec in err.value.message
    assert err.value.hint is not None


def test_a_failing_backend_is_named_without_its_message(tmp_path: Path) -> None:
    r = resolver(tmp_path, {}, secrets_backend=f"{__name__}:Broken")
    with pytest.raises(ConfigError) as err:
        r.lookup("db_pw")
    assert "'db_pw'" in err.value.message and "Broken" in err.value.message
    assert "do-not-leak" not in str(err.value)


def test_resume_resolves_again(orch: Orchestrator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLAW_SECRET_DB_PW", "first")
    FAIL.append(True)
    failed = orch.run(RunRequest(workflow="nightly"))
    assert failed.state is RunState.FAILED
    assert failed.params == {"db_password": "secret:db_pw"}
    FAIL.clear()
    monkeypatch.setenv("KLAW_SECRET_DB_PW", "rotated")
    resumed = orch.run(RunRequest(workflow="nightly", resume=failed.run_id))
    assert resumed.state is RunState.SUCCEEDED
    assert SEEN == ["first", "rotated"]


def test_every_scheduled_run_resolves_the_secret(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = TriggerService(orch)
    service.sync(datetime(2026, 5, 1, 0, 0, tzinfo=UTC))

    monkeypatch.setenv("KLAW_SECRET_DB_PW", "monday")
    [first] = service.run_due(datetime(2026, 5, 1, 3, 0, 1, tzinfo=UTC))
    assert first.error is None and first.run_id is not None
    assert orch.wait(first.run_id, timeout=WAIT)

    monkeypatch.setenv("KLAW_SECRET_DB_PW", "tuesday")  # rotated between two ticks
    [second] = service.run_due(datetime(2026, 5, 2, 3, 0, 1, tzinfo=UTC))
    assert second.run_id is not None
    assert orch.wait(second.run_id, timeout=WAIT)
    assert SEEN == ["monday", "tuesday"]
    for run_id in (first.run_id, second.run_id):
        record = orch.get_run(run_id)
        assert record.state is RunState.SUCCEEDED
        assert record.params == {"db_password": "secret:db_pw"}

    monkeypatch.delenv("KLAW_SECRET_DB_PW")  # gone: the tick records why it started no run
    [third] = service.run_due(datetime(2026, 5, 3, 3, 0, 1, tzinfo=UTC))
    assert third.run_id is None
    assert third.error is not None
    assert third.error.startswith("SecretNotFoundError:")
    assert "'db_pw'" in third.error and "KLAW_SECRET_DB_PW" in third.error
    assert SEEN == ["monday", "tuesday"]


def test_a_recovered_run_resolves_its_secrets(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = RunRecord(
        run_id=new_run_id(),
        workflow="nightly",
        state=RunState.RUNNING,
        created_at=time.time(),
        params={"db_password": "secret:db_pw"},
    )
    with pytest.raises(SecretNotFoundError):
        continuing(orch, record)
    monkeypatch.setenv("KLAW_SECRET_DB_PW", "recovered")
    runner = continuing(orch, record)
    (params,) = runner.options.params.values()
    assert params.db_password.get_secret_value() == "recovered"
