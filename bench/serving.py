"""W5: from ``POST /runs`` to the run's first stage starting, under a serving orchestrator
that runs each run in a worker process of its own (``klaw server`` / ``api`` / ``dev``).

A project of one one-stage workflow is written to a scratch folder and served over HTTP
(uvicorn in a thread of the bench process, as ``klaw api`` does; L1's server). Each sample
POSTs a run with httpx, then waits for it to end; the latency is the first attempt's recorded
``started_at`` minus the wall clock just before the POST. The floor, in the same run, is the
same with ``run_isolation = "thread"``: the run prepared and run on a thread of the serving
process, as before run workers.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.follow import TOKEN
from bench.follow import _serving as serving
from bench.report import Basis, Row, Target, Unit

if TYPE_CHECKING:
    from bench.workloads import Settings

WAIT = 60.0
TARGET = Target(0.3, Basis.KLAW, strict=True)

FLOWS = """
import klaw


@klaw.stage
def first() -> int:
    return 1


started = klaw.workflow("started", [first])
"""


def _project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "klaw.toml").write_text('[project]\nname = "w5"\nmodules = ["w5_flows.py"]\n')
    (root / "w5_flows.py").write_text(FLOWS)
    return root


def _latencies(root: Path, isolation: str, samples: int) -> list[float]:
    import httpx

    from klaw.service.orchestrator import Orchestrator

    orch = Orchestrator.open(root, home=str(root / f".klaw-{isolation}"), run_isolation=isolation)
    orch.isolate_user_code()
    found: list[float] = []
    try:
        with (
            serving(orch) as (url, _),
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client,
        ):
            for _ in range(samples + 1):  # the first warms the imports up; not kept
                posted = time.time()
                answer = client.post("/api/v1/runs", json={"workflow": "started"}, timeout=WAIT)
                answer.raise_for_status()
                run_id = answer.json()["run"]["run_id"]
                orch.wait(run_id, timeout=WAIT)
                attempts = orch.attempts(run_id)
                assert attempts and attempts[0].started_at is not None, attempts
                found.append(attempts[0].started_at - posted)
    finally:
        orch.shutdown(wait=10.0)
        orch.close()
    return found[1:]


def _p(samples: list[float], percentile: int) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(percentile / 100 * (len(ordered) - 1)))]


def post_to_first_stage(settings: Settings) -> list[Row]:
    root = _project(settings.scratch / "w5")
    samples = settings.times(50)
    worker = _latencies(root, "process", samples)
    thread = _latencies(root, "thread", samples)
    rows = []
    for name, pick in (("p50", statistics.median), ("p99", lambda s: _p(s, 99))):
        rows.append(
            Row(
                "W5",
                f"POST /runs -> first stage, run worker ({name})",
                Unit.SECONDS,
                pick(worker),
                pick(thread),
                "on a server thread",
                TARGET,
                {"samples": len(worker)},
            )
        )
    return rows
