"""Metrics: ``/metrics`` scraped from a real ``klaw dev`` (runs executed by its run workers,
counted in shared files and merged when a worker ends), OTLP metrics to a real receiver on
loopback, and the instruments of an in-process run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import klaw
from klaw import metrics
from klaw.states import RunState
from tests.cli.driver import Dev, wait_for, write_project
from tests.telemetry.receiver import Point, otlp_receiver
from tests.telemetry.test_traces import Flaky, traced

WORKFLOW = """
import pyarrow as pa
import klaw

@klaw.asset
def first() -> pa.Table:
    return pa.table({"x": [1, 2]})

@klaw.stage
def second(first: pa.Table) -> int:
    return first.num_rows

wf = klaw.workflow("counted", [first, second])
"""


@pytest.fixture(autouse=True)
def _metrics_off_afterwards() -> Iterator[None]:
    Flaky.calls = 0
    metrics.reset()
    yield
    metrics.reset()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def _run(client: httpx.Client) -> None:
    answer = client.post("/api/v1/runs", json={"workflow": "counted"})
    assert answer.status_code in (200, 201, 202), answer.text
    run_id = answer.json()["run"]["run_id"]

    def ended() -> str | None:
        state = client.get(f"/api/v1/runs/{run_id}").json()["run"]["state"]
        return state if state in ("succeeded", "failed", "cancelled") else None

    assert wait_for("the run to end", ended) == "succeeded"


@pytest.mark.slow
def test_metrics_of_runs_in_workers_are_scraped_by_a_viewer_and_exported_by_otlp(
    tmp_path: Path,
) -> None:
    project = write_project(tmp_path, {"counted": textwrap.dedent(WORKFLOW)})
    with otlp_receiver() as receiver:
        dev = Dev(
            project,
            {
                "KLAW_TELEMETRY__METRICS": "otlp-http",
                "KLAW_TELEMETRY__ENDPOINT": receiver.url,
                "KLAW_TELEMETRY__METRICS_INTERVAL": "0.2",
            },
        )
        try:
            with dev.api() as client:
                made = client.post("/api/v1/tokens", json={"name": "scraper", "role": "viewer"})
                assert made.status_code in (200, 201), made.text
                viewer = made.json()["secret"]
                base = dev.info["api"]
                anonymous = httpx.get(f"{base}/metrics", timeout=30)
                assert anonymous.status_code == 401, anonymous.text

                def scrape() -> dict[Any, float]:
                    answer = httpx.get(
                        f"{base}/metrics", headers={"Authorization": f"Bearer {viewer}"}, timeout=30
                    )
                    assert answer.status_code == 200, answer.text
                    assert answer.headers["content-type"].startswith("text/plain")
                    return samples(answer.text)

                _run(client)
                scrape()
                shared = next((project / ".klaw" / "metrics").iterdir())
                after_one = sorted(p.name for p in shared.glob("*.db"))
                for _ in range(2):
                    _run(client)
                found = scrape()
                after_three = sorted(p.name for p in shared.glob("*.db"))

            def exported() -> list[Point] | None:  # one point from each run's worker
                points = receiver.metric("klaw.run.ended")
                return points if len(points) >= 3 else None

            otlp = wait_for("the run workers' OTLP metrics", exported)
        finally:
            dev.terminate()
    # the three runs ran in three worker processes: their counts are all there
    assert value(found, "klaw_runs_started_total", workflow="counted") == 3
    assert value(found, "klaw_runs_ended_total", workflow="counted", state="succeeded") == 3
    assert value(found, "klaw_attempts_ended_total", workflow="counted", state="succeeded") == 6
    assert value(found, "klaw_stage_duration_seconds_count", workflow="counted") == 6
    assert value(found, "klaw_stage_queue_wait_seconds_count", workflow="counted") == 6
    assert value(found, "klaw_asset_rows_written_total", asset="first") == 6
    assert value(found, "klaw_commands_total", command="SubmitRun", outcome="ok") == 3
    assert value(found, "klaw_command_duration_seconds_count", command="SubmitRun") == 3
    assert value(found, "klaw_metadata_write_seconds_count") > 0
    # ended workers' files are merged into the archives: the files do not grow with runs
    assert after_three == after_one
    assert "counter_archive.db" in after_three and "histogram_archive.db" in after_three
    assert {p.attributes["workflow"] for p in otlp} == {"counted"}
    assert sum(p.value for p in otlp if p.attributes["state"] == "succeeded") >= 3


def test_an_in_process_run_counts_its_attempts_assets_and_writes(tmp_path: Path) -> None:
    metrics.serve_in_process()
    run = klaw.run(traced, home=tmp_path / "home")
    assert run.state is RunState.SUCCEEDED
    found = samples(metrics.exposition()[0].decode())
    assert value(found, "klaw_runs_ended_total", workflow="traced", state="succeeded") == 1
    # doubled fails once and is retried: one attempt ends retrying, two succeed with raw
    assert value(found, "klaw_attempts_ended_total", workflow="traced", state="retrying") == 1
    assert value(found, "klaw_attempts_ended_total", workflow="traced", state="succeeded") == 2
    assert value(found, "klaw_stage_duration_seconds_count", workflow="traced") == 3
    assert value(found, "klaw_asset_rows_written_total", asset="raw") == 3
    assert value(found, "klaw_asset_bytes_written_total", asset="raw") > 0
    assert value(found, "klaw_metadata_write_seconds_count") > 0


def test_otlp_metrics_of_an_in_process_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with otlp_receiver() as receiver:
        monkeypatch.setenv("KLAW_TELEMETRY__METRICS", "otlp-http")
        monkeypatch.setenv("KLAW_TELEMETRY__ENDPOINT", receiver.url)
        run = klaw.run(traced, home=tmp_path / "home")
        assert run.state is RunState.SUCCEEDED
        metrics.flush()
        (started,) = receiver.metric("klaw.run.started")
        durations = receiver.metric("klaw.attempt.duration")
        metrics.reset()  # the exporter stops while its receiver is there
    assert started.value == 1 and started.attributes == {"workflow": "traced"}
    assert durations[0].unit == "s" and sum(p.count for p in durations) == 3


COUNTING = """
import sys
from pathlib import Path
from klaw import metrics
from klaw.settings import TelemetrySettings

metrics.configure(TelemetrySettings())
for _ in range(int(sys.argv[1])):
    metrics.run_ended("wf", "succeeded")
metrics.store_write(0.002)
"""


def test_what_ended_processes_counted_is_merged_and_kept(tmp_path: Path) -> None:
    shared = metrics.share(tmp_path)
    for times in (2, 5):
        subprocess.run(
            [sys.executable, "-c", COUNTING, str(times)],
            check=True,
            env={**os.environ, metrics.ENV: str(shared)},
        )
    pids = {p.stem.rpartition("_")[2] for p in shared.glob("*.db")}
    assert len(pids - {str(os.getpid())}) == 2  # one set of files per ended process
    metrics.run_ended("wf", "succeeded")  # and this process's own
    found = samples(metrics.exposition()[0].decode())  # merges before it reads
    assert value(found, "klaw_runs_ended_total", workflow="wf", state="succeeded") == 8
    assert value(found, "klaw_metadata_write_seconds_count") == 2
    left = {p.name for p in shared.glob("*.db")}
    assert all(name.endswith(f"_{os.getpid()}.db") or "archive" in name for name in left), left
    metrics.sweep()  # nothing more to merge: the totals stay
    again = samples(metrics.exposition()[0].decode())
    assert value(again, "klaw_runs_ended_total", workflow="wf", state="succeeded") == 8
