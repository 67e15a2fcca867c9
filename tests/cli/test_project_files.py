"""A project that cannot be loaded: no ``klaw.toml``, a broken one, a workflow module that does
not import. Each error names the file (and line) and says what to do; exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

from .driver import assert_error, klaw, write_project

GOOD = """
import klaw


@klaw.stage
def one():
    return 1


wf = klaw.workflow("wf", [one])
"""


def test_missing_klaw_toml_says_run_klaw_init(tmp_path: Path) -> None:
    result = klaw(tmp_path, "workflows", "list")
    assert_error(result, 2, "No klaw.toml found", str(tmp_path), "klaw init")


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "klaw.toml").write_text('[project]\nname = "x"\nbroken = = 1\n')
    result = klaw(tmp_path, "workflows", "list")
    assert_error(result, 2, str(tmp_path / "klaw.toml"), "not valid TOML", "line 3")


def test_unreadable_klaw_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "klaw.toml").mkdir()  # exists, cannot be read as a file (even by root)
    result = klaw(tmp_path, "workflows", "list")
    assert_error(result, 2, f"Cannot read {tmp_path / 'klaw.toml'}")


def test_klaw_toml_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "klaw.toml").write_bytes(b'[project]\nname = "caf\xe9"\nmodules = ["wf.m"]\n')
    result = klaw(tmp_path, "workflows", "list")
    assert_error(result, 2, str(tmp_path / "klaw.toml"))


def test_module_raising_at_import_names_the_file_and_line(tmp_path: Path) -> None:
    write_project(tmp_path, {"broken": 'import klaw\n\nx = 1\nraise RuntimeError("no db")\n'})
    result = klaw(tmp_path, "workflows", "list")
    module = tmp_path / "wf" / "broken.py"
    assert_error(result, 2, "'wf.broken'", f"{module}:4", "RuntimeError: no db", "--debug")


def test_module_with_a_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    write_project(tmp_path, {"good": GOOD, "typo": "import klaw\n\ndef f(:\n    pass\n"})
    result = klaw(tmp_path, "workflows", "list")
    assert_error(result, 2, "'wf.typo'", "syntax error", f"{tmp_path / 'wf' / 'typo.py'}:3")
