"""Projects and settings: klaw.toml, [tool.klaw], import errors that name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from klaw.errors import ConfigError, ProjectImportError
from klaw.service.project import find_project, load_workflows
from klaw.settings import load_settings

WORKFLOW = """
import klaw

@klaw.stage
def one() -> int:
    return 1

wf = klaw.workflow("{name}", [one])
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_klaw_toml_found_from_a_subfolder(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "klaw.toml": '[project]\nname = "p"\nmodules = ["flows_a"]\n'
            "[settings.executor]\nmax_workers = 3\n",
            "flows_a.py": WORKFLOW.format(name="a"),
            "sub/deeper/x.txt": "",
        },
    )
    project = find_project(tmp_path / "sub" / "deeper")
    assert project.root == tmp_path and project.name == "p"
    assert list(load_workflows(project)) == ["a"]
    assert load_settings(project.settings).executor.max_workers == 3


def test_pyproject_tool_klaw(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": '[tool.klaw]\nmodules = ["flows_b.py"]\n',
            "flows_b.py": WORKFLOW.format(name="b"),
        },
    )
    project = find_project(tmp_path)
    assert list(load_workflows(project)) == ["b"]


def test_missing_project_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No klaw.toml") as info:
        find_project(tmp_path)
    assert "klaw init" in (info.value.hint or "")


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"klaw.toml": '[project]\nname = = "x"\n'})
    with pytest.raises(ConfigError, match=r"klaw.toml is not valid TOML.*line 2"):
        find_project(tmp_path)


def test_unreadable_klaw_toml(tmp_path: Path) -> None:
    (tmp_path / "klaw.toml").mkdir()  # a folder where the file should be: cannot be read
    with pytest.raises(ConfigError, match="Cannot read"):
        find_project(tmp_path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[project]\n", "names no workflow modules"),
        ("[project]\nmodules = [1]\n", "must be a list"),
        ('[project]\nmodules = ["a"]\nmodulez = 1\n', "unknown key"),
    ],
)
def test_bad_project_tables(tmp_path: Path, text: str, match: str) -> None:
    write(tmp_path, {"klaw.toml": text})
    with pytest.raises(ConfigError, match=match):
        find_project(tmp_path)


def test_module_raising_at_import_names_file_and_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "klaw.toml": '[project]\nmodules = ["broken_mod"]\n',
            "broken_mod.py": "import klaw\n\nx = 1\nraise RuntimeError('no config')\n",
        },
    )
    with pytest.raises(ProjectImportError) as info:
        load_workflows(find_project(tmp_path))
    assert f"{tmp_path / 'broken_mod.py'}:4" in info.value.message
    assert "RuntimeError: no config" in info.value.message


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "klaw.toml": '[project]\nmodules = ["syntax_mod"]\n',
            "syntax_mod.py": "x = 1\ndef f(:\n",
        },
    )
    with pytest.raises(ProjectImportError, match=r"syntax_mod.py:2"):
        load_workflows(find_project(tmp_path))


def test_missing_module(tmp_path: Path) -> None:
    write(tmp_path, {"klaw.toml": '[project]\nmodules = ["not_there_mod"]\n'})
    with pytest.raises(ProjectImportError, match="was not found"):
        load_workflows(find_project(tmp_path))


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = {"executor": {"max_workers": 2}}
    assert load_settings(file).executor.max_workers == 2
    with pytest.raises(ConfigError, match="executor.max_workers"):
        load_settings({"executor": {"max_workers": 0}})
    monkeypatch.setenv("KLAW_EXECUTOR__MAX_WORKERS", "5")
    assert load_settings(file).executor.max_workers == 5  # env beats file
    assert load_settings(file, max_workers=7).executor.max_workers == 7  # flag beats env
    with pytest.raises(ConfigError, match="Unknown setting"):
        load_settings({"max_wokers": 1})
    with pytest.raises(ConfigError, match=r"executor.max_wokers: no such setting"):
        load_settings({"executor": {"max_wokers": 1}})


def test_s3_settings_fall_back_to_the_aws_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KLAW_LAKE__S3__KEY_ID",
        "KLAW_LAKE__S3__SECRET",
        "KLAW_LAKE__S3__REGION",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "aws-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = load_settings({"lake": {"s3": {"url_style": "vhost"}}})
    s3 = settings.lake.s3
    assert (s3.key_id, s3.region, s3.url_style) == (
        "aws-key",
        "eu-west-1",
        "vhost",
    )
    assert s3.secret is not None and "aws-secret" not in repr(settings)
    monkeypatch.setenv("KLAW_LAKE__S3__KEY_ID", "klaw-key")  # KLAW_LAKE__S3__* beat AWS_*
    assert load_settings({}).lake.s3.key_id == "klaw-key"
    assert load_settings({}, s3_key_id="flag-key").lake.s3.key_id == "flag-key"
    with pytest.raises(ConfigError, match="lake.s3.url_style"):
        load_settings({"lake": {"s3": {"url_style": "sideways"}}})
