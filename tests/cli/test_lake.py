"""`klaw lake compact` on a project: it merges, expires with a retention and keeps each
asset's latest snapshot; bad input is refused; an empty project has nothing to compact."""

from __future__ import annotations

from pathlib import Path

from .driver import assert_error, klaw


def test_compact_keeps_each_assets_latest_snapshot(tmp_path: Path) -> None:
    klaw(tmp_path, "init", ".")
    for _ in range(3):
        assert klaw(tmp_path, "run", "example").returncode == 0
    before = klaw(tmp_path, "assets", "list", "-o", "json").json()
    assert before and all(a["snapshots"] == 3 for a in before)

    kept = klaw(tmp_path, "lake", "compact", "-o", "json")  # no retention: nothing expires
    assert kept.returncode == 0, str(kept)
    assert kept.json()["snapshots_expired"] == 0
    assert klaw(tmp_path, "assets", "list", "-o", "json").json() == before

    done = klaw(tmp_path, "lake", "compact", "--retain", "0s", "--grace", "0s", "-o", "json")
    assert done.returncode == 0, str(done)
    assert done.json()["snapshots_expired"] > 0 and done.json()["files_deleted"] > 0
    after = klaw(tmp_path, "assets", "list", "-o", "json").json()
    assert [(a["key"], a["latest_snapshot"], a["snapshots"]) for a in after] == [
        (a["key"], a["latest_snapshot"], 1) for a in before
    ]
    for asset in after:  # the latest snapshot still reads, by id too
        shown = klaw(
            tmp_path,
            "assets",
            "show",
            asset["key"],
            "--snapshot",
            str(asset["latest_snapshot"]),
            "-o",
            "json",
        )
        assert shown.returncode == 0, str(shown)
        assert shown.json()["rows"] == asset["rows"]
    assert klaw(tmp_path, "run", "example").returncode == 0  # and the lake takes commits


def test_compact_refuses_bad_input_and_remote_use(tmp_path: Path) -> None:
    klaw(tmp_path, "init", ".")
    empty = klaw(tmp_path, "lake", "compact")
    assert empty.returncode == 0 and "nothing to compact" in empty.stdout
    assert_error(klaw(tmp_path, "lake", "compact", "--retain", "soon"), 2, "--retain 'soon'")
    assert_error(
        klaw(tmp_path, "--server", "grpc://127.0.0.1:1", "lake", "compact"), 2, "klaw lake compact"
    )
