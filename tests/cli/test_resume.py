"""``klaw run WF --resume RUN``: what failed runs again; what succeeded is reused, not re-run."""

from __future__ import annotations

from pathlib import Path

from .driver import attempts_by_stage, klaw, run_id_of, write_project

TWO_STAGES = """
from pathlib import Path

import pyarrow as pa

import klaw

ROOT = Path(__file__).resolve().parent.parent


def count(name):
    counter = ROOT / f"{name}.count"
    counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))


@klaw.asset
def a():
    count("a")
    return pa.table({"x": [1, 2, 3]})


@klaw.asset
def b(a):
    count("b")
    if (ROOT / "fail.marker").exists():
        raise RuntimeError("b fails while fail.marker exists")
    return a


two = klaw.workflow("two", [a, b])
"""


def test_resume_reruns_the_failed_stage_and_reuses_the_snapshot(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"two": TWO_STAGES})
    (project / "fail.marker").touch()
    first = klaw(project, "run", "two", "-o", "json")
    assert first.returncode == 1, str(first)
    failed = first.json()
    assert failed["run"]["state"] == "failed"
    before = attempts_by_stage(failed)
    assert [x["state"] for x in before["a"]] == ["succeeded"]
    assert [x["state"] for x in before["b"]] == ["failed"]
    snapshot = before["a"][0]["snapshot_id"]
    assert isinstance(snapshot, int)

    (project / "fail.marker").unlink()
    resumed = klaw(project, "run", "two", "--resume", failed["run"]["run_id"])
    assert resumed.returncode == 0, str(resumed)
    run_id = run_id_of(resumed)
    assert run_id != failed["run"]["run_id"]

    show = klaw(project, "runs", "show", run_id, "-o", "json").json()
    assert show["run"]["state"] == "succeeded"
    assert show["run"]["parent_run_id"] == failed["run"]["run_id"]
    after = attempts_by_stage(show)
    (a,) = after["a"]
    assert (a["attempt"], a["state"], a["snapshot_id"]) == (0, "succeeded", snapshot)
    assert a["reused_from"] == failed["run"]["run_id"]
    (b,) = after["b"]
    assert (b["attempt"], b["state"]) == (1, "succeeded")
    assert isinstance(b["snapshot_id"], int)
    assert (project / "a.count").read_text() == "1"  # a ran once, in the first run
    assert (project / "b.count").read_text() == "2"  # b ran in both
