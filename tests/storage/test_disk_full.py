"""A lake whose disk fills during a commit: the stage fails with an error naming the lake's
path, no partial file or snapshot is left, the earlier snapshot still reads, and the metadata
still answers. The disk is a 3 MiB tmpfs mounted for the test (it skips, saying so, where this
process may not mount one)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.driver import klaw

FLOWS = """
import numpy as np
import pyarrow as pa
from pydantic import BaseModel

import klaw


class Size(BaseModel):
    n: int = 3


@klaw.asset
def big(params: Size) -> pa.Table:
    return pa.table({"x": np.random.default_rng(0).integers(0, 2**62, params.n)})


fills = klaw.workflow("fills", [big])
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount command here to make a small disk")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"this process may not mount a small tmpfs: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_commit_and_loses_nothing(tmp_path: Path, small_disk: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "klaw.toml").write_text('[project]\nname = "full"\nmodules = ["flows.py"]\n')
    (root / "flows.py").write_text(FLOWS)
    lake = small_disk / "lake"
    env = {"KLAW_LAKE__DATA": str(lake)}

    first = klaw(root, "run", "fills", "-o", "json", extra_env=env)
    assert first.returncode == 0, first
    full = klaw(root, "run", "fills", "--param", "n=2000000", "-o", "json", extra_env=env)
    assert full.returncode == 1, full
    shown = klaw(root, "runs", "show", full.json()["run"]["run_id"], "-o", "json", extra_env=env)
    assert shown.returncode == 0, shown  # the metadata still answers
    error = " ".join(a["error"] or "" for a in shown.json()["attempts"])
    assert "No space left on device" in error and str(lake) in error, error
    assert "free space" in error
    leftovers = [p for p in lake.rglob("*.parquet") if p.stat().st_size > 1024]
    assert leftovers == [], leftovers  # the partial file is gone

    asset = klaw(root, "assets", "show", "big", "-o", "json", extra_env=env)
    assert asset.returncode == 0, asset
    assert asset.json()["snapshot"] == 1  # the failed commit made no snapshot
    assert len(asset.json()["preview"]) == 3  # and the first still reads
    listed = klaw(root, "runs", "list", "-o", "json", extra_env=env)
    assert [r["state"] for r in listed.json()] == ["failed", "succeeded"]
