"""The command tree loads lazily: ``klaw run`` imports only the module of its command, while
``klaw --help`` still lists every command."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.cli.driver import env

# Which klaw.cli modules a `klaw ARGS` process imported, printed on exit.
_PROBE = textwrap.dedent(
    """
    import sys
    from contextlib import suppress
    from klaw.cli import main
    sys.argv = ["klaw", *sys.argv[1:]]
    try:
        with suppress(SystemExit):
            main()
    finally:
        loaded = sorted(m for m in sys.modules if m.startswith("klaw.cli."))
        sys.__stderr__.write("MODULES " + " ".join(loaded) + "\\n")
    """
)

_COMMAND_MODULES = ("api", "dev", "server", "tokens", "schedules", "definitions", "assets", "db")


def _klaw(cwd: Path, *args: str) -> tuple[str, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES"))
    return done.stdout, set(line.split()[1:])


def test_run_imports_only_its_command_module(tmp_path: Path) -> None:
    (tmp_path / "klaw.toml").write_text('[project]\nname = "p"\nmodules = ["flows"]\n')
    (tmp_path / "flows.py").write_text(
        "import klaw\n\n@klaw.stage\ndef one() -> int:\n    return 1\n\n"
        'wf = klaw.workflow("one", [one])\n'
    )
    out, loaded = _klaw(tmp_path, "--project", str(tmp_path), "run", "one")
    assert "succeeded" in out
    assert "klaw.cli.runs" in loaded
    assert not loaded & {f"klaw.cli.{m}" for m in _COMMAND_MODULES}, loaded


def test_help_still_lists_every_command(tmp_path: Path) -> None:
    out, loaded = _klaw(tmp_path, "--help")
    assert {f"klaw.cli.{m}" for m in _COMMAND_MODULES} <= loaded
    commands = (
        "init validate plan schema workflows run runs logs cancel assets db dev api server "
        "schedules tokens"
    )
    listed = {
        line.split()[1] for line in out.splitlines() if line.startswith("│ ") and line[2] != " "
    }
    for name in commands.split():
        assert name in listed, (name, out)


# Libraries a `klaw run` of a workflow without assets has no use for: the lake (DuckDB,
# Arrow, Polars), the terminal display (rich: output is not a terminal here), the HTTP API,
# Ray; and the plugin lookup of pydantic (a scan of every installed distribution).
_NOT_FOR_A_PLAIN_RUN = (
    "duckdb",
    "pyarrow",
    "polars",
    "rich",
    "fastapi",
    "ray",
    "ctypes",
    "opentelemetry",
    "openlineage",
)


def _imported(
    cwd: Path, *args: str, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    probe = textwrap.dedent(
        """
        import sys
        from klaw.cli import main
        sys.argv = ["klaw", *sys.argv[1:]]
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.__stderr__.write(f"EXIT {code}\\n")
            plugins = sys.modules.get("pydantic.plugin._loader")
            scanned = plugins is not None and plugins._plugins is not None
            names = {m.split(".")[0] for m in sys.modules}
            sys.__stderr__.write("LOADED " + " ".join(sorted(names)) + "\\n")
            sys.__stderr__.write(f"PLUGINS_SCANNED {scanned}\\n")
            import gc
            sys.__stderr__.write(f"FROZEN {gc.get_freeze_count()}\\n")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *args],
        cwd=cwd,
        env=env(extra_env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED"))
    code = next(x for x in done.stderr.splitlines() if x.startswith("EXIT"))
    done.returncode = int(code.split()[1] or 0)
    scanned = next(x for x in done.stderr.splitlines() if x.startswith("PLUGINS_SCANNED"))
    frozen = next(x for x in done.stderr.splitlines() if x.startswith("FROZEN"))
    marks = {"<plugin scan>"} if "True" in scanned else set()
    if frozen != "FROZEN 0":  # main() left everything to exit without final collections
        marks.add("<frozen for exit>")
    return done, set(line.split()[1:]) | marks


def test_a_plain_run_imports_no_heavy_library(tmp_path: Path) -> None:
    (tmp_path / "klaw.toml").write_text('[project]\nname = "p"\nmodules = ["flows"]\n')
    (tmp_path / "flows.py").write_text(
        "import klaw\n\n@klaw.stage\ndef one() -> int:\n    return 1\n\n"
        'wf = klaw.workflow("one", [one])\n'
    )
    for args in (("run", "one"), ("run", "one", "--output", "json")):
        done, loaded = _imported(tmp_path, "--project", str(tmp_path), *args)
        assert done.returncode == 0, done.stderr
        assert "succeeded" in done.stdout, done.stdout
        assert "klaw" in loaded and "typer" in loaded  # the probe saw the run's imports
        assert "<frozen for exit>" in loaded
        assert not loaded & {*_NOT_FOR_A_PLAIN_RUN, "<plugin scan>"}, sorted(
            loaded & {*_NOT_FOR_A_PLAIN_RUN, "<plugin scan>"}
        )


def test_a_failed_run_reports_without_rich(tmp_path: Path) -> None:
    (tmp_path / "klaw.toml").write_text('[project]\nname = "p"\nmodules = ["flows"]\n')
    (tmp_path / "flows.py").write_text(
        "import klaw\n\n@klaw.stage\ndef one() -> int:\n    return 1\n\n"
        'wf = klaw.workflow("one", [one])\n'
    )
    done, loaded = _imported(tmp_path, "--project", str(tmp_path), "run", "nope")
    assert done.returncode != 0
    assert "error: No workflow named 'nope'" in done.stderr
    assert "hint: `klaw workflows list` shows them." in done.stderr
    assert "rich" not in loaded


def test_a_terminal_still_gets_the_live_display(tmp_path: Path) -> None:
    (tmp_path / "klaw.toml").write_text('[project]\nname = "p"\nmodules = ["flows"]\n')
    (tmp_path / "flows.py").write_text(
        "import klaw\n\n@klaw.stage\ndef one() -> int:\n    return 1\n\n"
        'wf = klaw.workflow("one", [one])\n'
    )
    done, loaded = _imported(
        tmp_path, "--project", str(tmp_path), "run", "one", extra_env={"TTY_COMPATIBLE": "1"}
    )
    assert done.returncode == 0, done.stderr
    assert "rich" in loaded
    assert "1 stage(s)" in done.stdout and "succeeded" in done.stdout, done.stdout
