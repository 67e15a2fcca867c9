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
    from klaw.cli import main
    sys.argv = ["klaw", *sys.argv[1:]]
    try:
        main()
    except SystemExit:
        pass
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
