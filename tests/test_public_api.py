"""The public API is what ``klaw/__init__.py`` re-exports, nothing else; importing it stays
light (no engine, no database, no server)."""

from __future__ import annotations

import os
import subprocess
import sys

import klaw


def test_all_lists_exactly_the_public_names() -> None:
    import types

    public = {
        n
        for n, v in vars(klaw).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    lazy = set(klaw._LAZY)  # imported on first use, so not in vars(klaw) yet
    assert public | lazy == set(klaw.__all__)
    assert all(getattr(klaw, name) is not None for name in lazy)


def test_import_klaw_loads_no_heavy_library() -> None:
    code = (
        "import sys, klaw\n"
        "heavy = {'polars', 'pyarrow', 'duckdb', 'pydantic_settings', 'typer', 'rustworkx'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_settings_are_built_without_a_pydantic_plugin_scan() -> None:
    """Klaw's settings model skips pydantic's plugin lookup (an entry-point scan of every
    installed distribution), leaves PYDANTIC_DISABLE_PLUGINS as it found it, and the models
    made after it still get plugins looked up."""
    code = (
        "import os, sys\n"
        "from klaw.settings import load_settings\n"
        "load_settings({})\n"
        "loader = sys.modules['pydantic.plugin._loader']\n"
        "print(loader._plugins is None, 'PYDANTIC_DISABLE_PLUGINS' in os.environ)\n"
        "import pydantic\n"
        "class Later(pydantic.BaseModel):\n"
        "    x: int = 1\n"
        "print(loader._plugins is not None)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["True", "False", "True"], out.stdout
