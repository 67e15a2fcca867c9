"""The public API is what ``klaw/__init__.py`` re-exports, nothing else; importing it stays
light (no engine, no database, no server)."""

from __future__ import annotations

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
