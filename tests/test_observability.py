"""Klaw's own logs: filtered by level before structlog is even imported, JSON on request."""

from __future__ import annotations

import json
import subprocess
import sys


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_quiet_level_never_imports_structlog() -> None:
    out = run(
        "import sys\n"
        "from klaw.observability import configure_logging, get_logger\n"
        "configure_logging('warning')\n"
        "get_logger('klaw.test').bind(run_id='r1').info('hidden')\n"
        "print('structlog' in sys.modules)\n"
    )
    assert out.stdout.strip() == "False"
    assert out.stderr == ""


def test_json_lines_carry_bound_ids() -> None:
    out = run(
        "from klaw.observability import configure_logging, get_logger\n"
        "configure_logging('info', 'json')\n"
        "get_logger('klaw.test').bind(run_id='r1').warning('stage failed', stage='s')\n"
    )
    record = json.loads(out.stderr.strip())
    assert record["event"] == "stage failed"
    assert (record["run_id"], record["stage"], record["level"]) == ("r1", "s", "warning")
