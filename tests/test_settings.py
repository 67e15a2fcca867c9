"""Settings: nested groups from flags, the environment and klaw.toml; the flat names of the
previous release still read, each with a warning naming its new spelling."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from klaw.errors import ConfigError
from klaw.service.project import find_project
from klaw.settings import (
    LEGACY,
    KlawSettings,
    SettingDeprecationWarning,
    env_name,
    load_settings,
)
from tests.cli.driver import klaw, write_project

DOCS = Path(__file__).parents[1] / "docs" / "settings.md"
ONE_STAGE = """
import klaw

@klaw.stage
def hello() -> int:
    return 1

wf = klaw.Workflow("hello", [hello])
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No stray settings, nothing remembered: each test's loads read and warn afresh."""
    import os

    import klaw.settings as module

    for name in list(os.environ):
        if name.startswith(("KLAW_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setattr(module, "_loaded", {})
    monkeypatch.setattr(module, "_warned", set())


_WARNED: list[str] = []  # the warnings of the last _load


def _load(file: dict[str, object] | None = None, **flags: object) -> KlawSettings:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = load_settings(file or {}, **flags)
    _WARNED[:] = [str(w.message) for w in caught if w.category is SettingDeprecationWarning]
    return settings


def _warned() -> list[str]:
    return list(_WARNED)


def test_groups_from_toml_env_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "klaw.toml").write_text(
        '[project]\nname = "p"\nmodules = ["wf"]\n'
        "[settings.executor]\nkind = 'process'\nmax_workers = 3\n"
        "[settings.http]\nallowed_hosts = ['a.example', 'b.example']\n"
        "[settings.http.oidc]\nissuer = 'https://id.example'\n"
    )
    file = find_project(tmp_path).settings
    settings = _load(file)
    assert settings.executor.kind == "process" and settings.executor.max_workers == 3
    assert settings.http.allowed_hosts == ["a.example", "b.example"]
    assert settings.http.oidc.issuer == "https://id.example"
    assert _warned() == []

    monkeypatch.setenv("KLAW_EXECUTOR__MAX_WORKERS", "5")
    monkeypatch.setenv("KLAW_HTTP__ALLOWED_HOSTS", "c.example, d.example")
    monkeypatch.setenv("KLAW_HTTP__OIDC__AUDIENCE", "klaw")
    settings = _load(file, max_workers=7)
    assert settings.executor.max_workers == 7  # flag > env > file
    assert settings.executor.kind == "process"  # the rest of the file's group stays
    assert settings.http.allowed_hosts == ["c.example", "d.example"]  # comma-separated in env
    assert settings.http.oidc.audience == "klaw" and settings.http.oidc.issuer
    assert _warned() == []


def test_token_lists_stay_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLAW_FLIGHT__TOKENS", "one-token,two-token")
    monkeypatch.setenv("KLAW_HTTP__TOKENS", "admin:three-token")
    settings = _load()
    assert [t.get_secret_value() for t in settings.flight.tokens] == ["one-token", "two-token"]
    assert [t.get_secret_value() for t in settings.http.tokens] == ["admin:three-token"]
    shown = repr(settings) + str(settings.model_dump())
    assert "one-token" not in shown and "three-token" not in shown


def test_postgres_is_decided_once() -> None:
    assert not _load().metadata.postgres
    assert _load(metadata={"url": "postgresql://db/klaw"}).metadata.postgres
    assert not _load(metadata={"url": "sqlite:///x.db"}).metadata.postgres


@pytest.mark.parametrize(
    ("old", "value", "path", "expected"),
    [
        ("KLAW_LAKE_CATALOG", "/c/lake.sqlite", ("lake", "catalog"), "/c/lake.sqlite"),
        ("KLAW_EXECUTOR", "process", ("executor", "kind"), "process"),
        ("KLAW_MAX_WORKERS", "4", ("executor", "max_workers"), 4),
        ("KLAW_SERVER_PORT", "9999", ("flight", "port"), 9999),
        ("KLAW_API_CORS_ORIGINS", "https://a,https://b", ("http", "cors_origins"), None),
        ("KLAW_OIDC_ROLE_CLAIM", "groups", ("http", "oidc", "role_claim"), "groups"),
        ("KLAW_S3_REGION", "eu-west-1", ("lake", "s3", "region"), "eu-west-1"),
        ("KLAW_LOG_FORMAT", "json", ("log", "format"), "json"),
    ],
)
def test_old_environment_names_still_read_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    old: str,
    value: str,
    path: tuple[str, ...],
    expected: object,
) -> None:
    monkeypatch.setenv(old, value)
    found: object = _load()
    for part in path:
        found = getattr(found, part)
    assert found == (expected if expected is not None else value.split(","))
    assert _warned() == [
        f"{old} is deprecated and will stop working in the next release: use {env_name(path)}."
    ]


def test_the_new_name_wins_over_the_old(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLAW_LAKE_DATA", "/old")
    monkeypatch.setenv("KLAW_LAKE__DATA", "/new")
    assert _load().lake.data == "/new"
    monkeypatch.setenv("KLAW_EXECUTOR", "ray")
    monkeypatch.setenv("KLAW_EXECUTOR__KIND", "process")
    assert _load().executor.kind == "process"


def test_old_toml_keys_still_read_with_a_warning() -> None:
    settings = _load({"max_workers": 2, "executor": {"stop_grace": 1.0}})
    assert settings.executor.max_workers == 2 and settings.executor.stop_grace == 1.0
    assert _warned() == [
        "max_workers under [settings] is deprecated and will stop working in the next release: "
        "use max_workers under [settings.executor]."
    ]
    # the group's own table wins over the flat name
    both = _load({"lake_catalog": "/old.sqlite", "lake": {"catalog": "/new.sqlite"}})
    assert both.lake.catalog == "/new.sqlite"


def test_every_old_name_has_a_home() -> None:
    for old, path in LEGACY.items():
        model: object = KlawSettings
        for part in path[:-1]:
            model = model.model_fields[part].annotation  # type: ignore[attr-defined]
        assert path[-1] in model.model_fields, old  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("file", "env", "needles"),
    [
        ({"executor": {"max_wokers": 1}}, {}, ["executor.max_wokers: no such setting"]),
        ({}, {"KLAW_EXECUTOR__KIND": "rocket"}, ["executor.kind", "KLAW_EXECUTOR__KIND"]),
        ({}, {"KLAW_HTTP__PORT": "eighty"}, ["http.port", "KLAW_HTTP__PORT"]),
        ({"lake": {"s3": {"url_style": "sideways"}}}, {}, ["lake.s3.url_style"]),
        ({"nonsense": 1}, {}, ["Unknown setting 'nonsense' in the project file's [settings]"]),
    ],
)
def test_bad_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch,
    file: dict[str, object],
    env: dict[str, str],
    needles: list[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        _load(file)
    for needle in needles:
        assert needle in caught.value.message


def test_the_cli_shows_one_line_per_old_name(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"hello": ONE_STAGE})
    ran = klaw(project, "validate", extra_env={"KLAW_LOG_LEVEL": "error"})
    assert ran.returncode == 0, ran
    assert (
        "warning: KLAW_LOG_LEVEL is deprecated and will stop working in the next release: "
        "use KLAW_LOG__LEVEL." in ran.stderr
    )
    assert "Traceback" not in ran.stderr and "settings.py" not in ran.stderr


def test_the_settings_reference_lists_every_setting() -> None:
    text = DOCS.read_text()
    documented = set(re.findall(r"`(KLAW_[A-Z0-9_]+)`", text))

    def names(model: type, path: tuple[str, ...]) -> list[str]:
        found = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            inner = field.annotation
            if isinstance(inner, type) and hasattr(inner, "model_fields"):
                found += names(inner, (*path, name))
            else:
                found.append(env_name((*path, name)))
        return found

    missing = sorted(set(names(KlawSettings, ())) - documented)
    assert not missing, f"docs/settings.md does not list {missing}"
