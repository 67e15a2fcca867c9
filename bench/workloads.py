"""The workloads W0-W6 and T1 (in bench/tpch.py): each measures Klaw and its floor in the same
run and returns rows."""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import klaw
from bench import (
    floors,
    follow,
    lake,
    lifecycle,
    logs,
    metadata,
    serving,
    shapes,
    telemetry,
    tpch,
    ui,
    workflows,
)
from bench.report import Basis, Row, Target, Unit
from bench.timing import Case, interleaved

REPO = Path(__file__).resolve().parent.parent

PER_STAGE_TARGET = Target(100e-6, Basis.KLAW)


@dataclass(frozen=True, slots=True)
class Settings:
    """What every workload is given: a scratch folder, how many timed samples to take (``None``:
    each workload's own default) and the worker count Klaw and the thread-pool floors share."""

    scratch: Path
    repeat: int | None
    workers: int

    def times(self, default: int) -> int:
        return self.repeat if self.repeat is not None else default

    def home(self) -> Path:
        """A fresh, empty Klaw home."""
        return Path(tempfile.mkdtemp(prefix="home-", dir=self.scratch))


@dataclass(frozen=True, slots=True)
class Workload:
    key: str
    title: str
    run: Callable[[Settings], list[Row]]


def _env() -> dict[str, str]:
    """This environment without ``KLAW_*`` settings, which would change what is measured."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KLAW_")}


def _klaw_runs(wf: klaw.Workflow, settings: Settings, *, fresh: bool = True) -> Case:
    """A Klaw run of ``wf`` in this process, its metadata durably recorded in SQLite: in a fresh
    home each time (made outside the timing), or always in the same one (``fresh=False``, a
    project's second and later runs)."""
    homes: list[Path] = []

    def setup() -> None:
        if fresh or not homes:
            homes.append(settings.home())

    def run() -> None:
        record = klaw.run(wf, home=homes[-1], max_workers=settings.workers)
        if record.state.value != "succeeded":
            raise RuntimeError(f"{wf.name} ended {record.state.value}: {record.error}")

    return Case(run, setup)


# -- W0: `klaw run` of a one-stage workflow, whole process --------------------------------------

_PROJECT = """\
[project]
name = "bench"
modules = ["flows"]
"""

_STAGE_MODULE = """\
import klaw


@klaw.stage
def one() -> int:
    return 42


one_stage = klaw.workflow("one", [one])
"""

_ASSET_MODULE = """\
import klaw
import pyarrow as pa


@klaw.asset
def one() -> pa.Table:
    return pa.table({"x": [1, 2, 3]})


one_asset = klaw.workflow("one", [one])
"""


def _project(root: Path, module: str) -> Path:
    root.mkdir(parents=True)
    (root / "klaw.toml").write_text(_PROJECT)
    (root / "flows.py").write_text(module)
    return root


def _klaw_command() -> str:
    """The ``klaw`` script installed next to this interpreter (the venv's)."""
    script = Path(sys.executable).parent / "klaw"
    if not script.exists():
        found = shutil.which("klaw")
        if found is None:
            raise RuntimeError(f"no `klaw` command next to {sys.executable} or on PATH")
        return found
    return str(script)


def _cli_env(scratch: Path) -> dict[str, str]:
    """:func:`_env` as an installed ``klaw`` starts: with its bytecode cached (the warm-up run
    writes it, under the scratch folder rather than the source tree), even when this
    environment turns bytecode writing off (``PYTHONDONTWRITEBYTECODE``), which would compile
    every module of Klaw at each start."""
    env = _env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    return env


def _cli_run(project: Path, cpu: list[float] | None = None) -> Callable[[], None]:
    """One ``klaw run one`` process; its CPU time (user + sys) appended to ``cpu``."""
    command = [_klaw_command(), "--project", str(project), "run", "one"]
    env = _cli_env(project.parent)

    def run() -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` failed:\n{done.stdout}{done.stderr}")
        if cpu is not None:
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)

    return run


def cold_start(settings: Settings) -> list[Row]:
    """``klaw --project DIR run one`` as a new process, start to exit, in a project whose home
    exists (the warm-up run made it): a one-stage workflow, and a one-asset one (DuckLake)."""
    stage_project = _project(settings.scratch / "w0-stage", _STAGE_MODULE)
    asset_project = _project(settings.scratch / "w0-asset", _ASSET_MODULE)
    cpu: list[float] = []
    samples = interleaved(
        {
            "stage": Case(_cli_run(stage_project, cpu)),
            "asset": Case(_cli_run(asset_project)),
            "floor": Case(floors.empty_interpreter),
        },
        settings.times(7),
    )
    floor = samples["floor"].median
    return [
        Row(
            "W0",
            "`klaw run`, one stage (whole process)",
            Unit.SECONDS,
            samples["stage"].median,
            floor,
            "python -c pass",
            Target(0.3, Basis.KLAW),
        ),
        Row(
            "W0",
            "  same, CPU time (user + sys)",
            Unit.SECONDS,
            statistics.median(cpu[1:] or cpu),  # the warm-up's left out
        ),
        Row(
            "W0",
            "`klaw run`, one asset (opens DuckLake)",
            Unit.SECONDS,
            samples["asset"].median,
            floor,
            "python -c pass",
        ),
    ]


# -- W1: fan-out of 500 ------------------------------------------------------------------------

FANOUT_WIDTH = 500


def fan_out(settings: Settings) -> list[Row]:
    """Run wall time over the stage count. Also: the same in a reused home, and the marginal
    cost of a stage (the run minus a one-stage run, over the 501 other stages)."""
    width = FANOUT_WIDTH
    stages = width + 2
    wf = workflows.fanout(width)
    with ThreadPoolExecutor(settings.workers) as pool:
        samples = interleaved(
            {
                "klaw": _klaw_runs(wf, settings),
                "reused": _klaw_runs(wf, settings, fresh=False),
                "single": _klaw_runs(workflows.single(), settings),
                "loop": Case(lambda: floors.fanout_loop(width)),
                "pool": Case(lambda: floors.fanout_pool(pool, width)),
            },
            settings.times(15),
        )
    per = {name: s.median / stages for name, s in samples.items()}
    marginal = (samples["klaw"].median - samples["single"].median) / (stages - 1)
    label = f"fan-out 1+{width}+1, per stage"
    pool_label = f"ThreadPoolExecutor({settings.workers})"
    notes = {"run_s": samples["klaw"].median, "stages": stages}
    return [
        Row(
            "W1",
            label,
            Unit.PER_STAGE,
            per["klaw"],
            per["loop"],
            "plain loop",
            PER_STAGE_TARGET,
            notes,
        ),
        Row(
            "W1",
            label,
            Unit.PER_STAGE,
            per["klaw"],
            per["pool"],
            pool_label,
            PER_STAGE_TARGET,
            notes,
        ),
        Row(
            "W1",
            "  same, home reused",
            Unit.PER_STAGE,
            per["reused"],
            per["pool"],
            pool_label,
            notes={"run_s": samples["reused"].median},
        ),
        Row(
            "W1",
            "  marginal (minus a 1-stage run)",
            Unit.PER_STAGE,
            marginal,
            notes={"single_run_s": samples["single"].median},
        ),
    ]


# -- W2: chain of 200 --------------------------------------------------------------------------

CHAIN_LENGTH = 200


def chain(settings: Settings) -> list[Row]:
    """Run wall time over the stage count: every stage waits for the one before, so each pays
    the full round trip (runner -> worker -> runner -> metadata) with nothing to overlap."""
    length = CHAIN_LENGTH
    wf = workflows.chain(length)
    with ThreadPoolExecutor(settings.workers) as pool:
        samples = interleaved(
            {
                "klaw": _klaw_runs(wf, settings),
                "reused": _klaw_runs(wf, settings, fresh=False),
                "loop": Case(lambda: floors.chain_loop(length)),
                "pool": Case(lambda: floors.chain_pool(pool, length)),
            },
            settings.times(15),
        )
    per = {name: s.median / length for name, s in samples.items()}
    label = f"chain of {length}, per stage"
    pool_label = f"ThreadPoolExecutor({settings.workers})"
    notes = {"run_s": samples["klaw"].median, "stages": length}
    return [
        Row(
            "W2",
            label,
            Unit.PER_STAGE,
            per["klaw"],
            per["loop"],
            "plain loop",
            PER_STAGE_TARGET,
            notes,
        ),
        Row(
            "W2",
            label,
            Unit.PER_STAGE,
            per["klaw"],
            per["pool"],
            pool_label,
            PER_STAGE_TARGET,
            notes,
        ),
        Row(
            "W2",
            "  same, home reused",
            Unit.PER_STAGE,
            per["reused"],
            per["pool"],
            pool_label,
            notes={"run_s": samples["reused"].median},
        ),
    ]


# -- W3: 8 stages over 1M rows -----------------------------------------------------------------


def _child(module: str, *args: str) -> dict[str, Any]:
    """``python -m MODULE ARGS`` in a fresh process; its JSON answer."""
    command = [sys.executable, "-m", module, *args]
    done = subprocess.run(
        command, cwd=REPO, env=_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _pipeline(*args: str) -> dict[str, Any]:
    """``python -m bench.pipeline ARGS`` in a fresh process; its JSON answer."""
    return _child("bench.pipeline", *args)


def data_pipeline(settings: Settings) -> list[Row]:
    """Time: Klaw and the loop interleaved in one process. Memory: each in processes of its
    own (median of three), peak RSS of the whole process, and its growth during the pass."""
    workers = str(settings.workers)
    timed = _pipeline("time", "--repeat", str(settings.times(5)), "--workers", workers)
    klaw_s, loop_s = statistics.median(timed["klaw"]), statistics.median(timed["loop"])
    peaks: dict[str, list[int]] = {"klaw": [], "loop": []}
    growth: dict[str, list[int]] = {"klaw": [], "loop": []}
    for _ in range(min(3, settings.times(3))):
        for runner in ("klaw", "loop"):
            mem = _pipeline("memory", runner, "--workers", workers)
            peaks[runner].append(mem["peak_rss"])
            growth[runner].append(mem["peak_rss"] - mem["baseline_rss"])
    title = "8 stages, 1M rows"
    return [
        Row(
            "W3",
            f"{title}: time",
            Unit.SECONDS,
            klaw_s,
            loop_s,
            "functions in a loop",
            Target(1.2, Basis.RATIO),
        ),
        Row(
            "W3",
            f"{title}: peak RSS (whole process)",
            Unit.BYTES,
            statistics.median(peaks["klaw"]),
            statistics.median(peaks["loop"]),
            "functions in a loop",
            Target(1.1, Basis.RATIO),
        ),
        Row(
            "W3",
            "  peak RSS growth during the pass",
            Unit.BYTES,
            statistics.median(growth["klaw"]),
            statistics.median(growth["loop"]),
            "functions in a loop",
        ),
    ]


# -- W4: a 10,000-stage graph: load, validate, plan --------------------------------------------

LAYERS, WIDTH = 100, 100


def large_graph(settings: Settings) -> list[Row]:
    """Building 10,000 StageDefs with the decorator and a workflow ("load"), then
    ``klaw.plan`` (validate + plan), against the same DAG as a bare rustworkx graph."""
    spec = shapes.layered(LAYERS, WIDTH)
    parts: dict[str, list[float]] = {"load": [], "plan": []}

    def load_and_plan() -> None:
        start = time.perf_counter()
        wf = workflows.layered(spec)
        loaded = time.perf_counter()
        plan = klaw.plan(wf)
        planned = time.perf_counter()
        if len(plan.stages) != len(spec):
            raise RuntimeError("W4 plan lost stages")
        parts["load"].append(loaded - start)
        parts["plan"].append(planned - loaded)

    repeat = settings.times(5)
    samples = interleaved(
        {"klaw": Case(load_and_plan), "floor": Case(lambda: floors.rustworkx_plan(spec))},
        repeat,
    )
    load = statistics.median(parts["load"][-repeat:])  # the warm-up round is the first
    plan = statistics.median(parts["plan"][-repeat:])
    floor = samples["floor"].median
    label = f"{len(spec):,} stages, {spec.edges:,} edges"
    return [
        Row(
            "W4",
            f"{label}: load+validate+plan",
            Unit.SECONDS,
            samples["klaw"].median,
            floor,
            "rustworkx build+toposort",
            Target(1.0, Basis.KLAW, strict=True),
        ),
        Row("W4", "  load (decorators, workflow)", Unit.SECONDS, load),
        Row(
            "W4",
            "  validate+plan (klaw.plan)",
            Unit.SECONDS,
            plan,
            floor,
            "rustworkx build+toposort",
        ),
    ]


# -- W6: 100,000 no-op stages: time and memory per stage ----------------------------------------


def _wide(runner: str, settings: Settings) -> dict[str, Any]:
    """``python -m bench.wide RUNNER`` in a fresh process; its JSON answer."""
    return _child("bench.wide", runner, "--workers", str(settings.workers))


def wide(settings: Settings) -> list[Row]:
    """Klaw and a thread pool each run 100,000 no-op stages in processes of their own,
    alternating (median of three): wall time and peak RSS growth over the stage count."""
    from bench.wide import STAGES

    samples: dict[str, list[dict[str, Any]]] = {"klaw": [], "pool": []}
    for _ in range(settings.times(3)):
        for runner in ("klaw", "pool"):
            samples[runner].append(_wide(runner, settings))

    def median(runner: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[runner])

    def growth(runner: str) -> float:
        return statistics.median(s["peak_rss"] - s["baseline_rss"] for s in samples[runner])

    pool_label = f"ThreadPoolExecutor({settings.workers})"
    title = f"{STAGES:,} no-op stages"
    return [
        Row(
            "W6",
            f"{title}, per stage",
            Unit.PER_STAGE,
            median("klaw", "seconds") / STAGES,
            median("pool", "seconds") / STAGES,
            pool_label,
            notes={"run_s": median("klaw", "seconds")},
        ),
        Row(
            "W6",
            "  peak RSS growth, per stage",
            Unit.BYTES_PER_STAGE,
            growth("klaw") / STAGES,
            growth("pool") / STAGES,
            pool_label,
        ),
        Row(
            "W6",
            "  peak RSS (whole process)",
            Unit.BYTES,
            median("klaw", "peak_rss"),
            median("pool", "peak_rss"),
            pool_label,
        ),
    ]


def ray_rows(settings: Settings) -> list[Row]:
    """W1-W3 on Ray (one local Ray for all of them), next to the same tasks by hand."""
    from bench.ray_executor import per_workflow

    return per_workflow(settings.scratch, settings.times(5), None)


def flight_throughput(settings: Settings) -> list[Row]:
    """F1 (bench/flight.py): DoGet / DoPut of a 10M-row asset vs bare Flight."""
    from bench.flight import throughput

    return throughput(settings)


def flight_latency(settings: Settings) -> list[Row]:
    """F2 (bench/flight.py): command round trips over DoAction vs a bare echo."""
    from bench.flight import latency

    return latency(settings)


def http_api(settings: Settings) -> list[Row]:
    """H1 (bench/http.py): the HTTP API from a second process vs GetRun over Flight."""
    from bench.http import api

    return api(settings)


WORKLOADS: tuple[Workload, ...] = (
    Workload("W0", "klaw run cold start", cold_start),
    Workload("W1", "500-stage fan-out", fan_out),
    Workload("W2", "200-stage chain", chain),
    Workload("W3", "8-stage 1M-row pipeline", data_pipeline),
    Workload("W4", "10,000-stage graph plan", large_graph),
    Workload("W5", "POST /runs to the first stage, with a run worker", serving.post_to_first_stage),
    Workload("W6", "100,000 no-op stages: time and memory", wide),
    Workload("R", "W1-W3 on the Ray executor vs Ray by hand", ray_rows),
    Workload("T1", f"TPC-H {tpch.scale_text()} per engine", tpch.per_engine),
    Workload("F1", "Arrow Flight DoGet/DoPut of 10M rows vs bare Flight", flight_throughput),
    Workload("F2", "command round trips over Flight DoAction", flight_latency),
    Workload("H1", "HTTP API: GET/POST /runs and SSE fan-out, from a second process", http_api),
    Workload("M", "metadata write throughput (SQLite, Postgres)", metadata.write_throughput),
    Workload("A1", f"{lake.FANOUT} small assets in one run vs Parquet by hand", lake.fan_out),
    Workload("A2", "asset commit, list, show and read as history grows", lake.history),
    Workload("A3", "a 1,000,000-row asset commit vs Parquet by hand", lake.large),
    Workload("G1", "a page of a run's log at 10, 10,000 and 1,000,000 lines", logs.log_pages),
    Workload("V1", "pipeline versions, promotions, audit and git sync", lifecycle.lifecycle),
    Workload("L1", "event latency, commit → follower (SSE, Flight, CLI)", follow.latency),
    Workload("U", "the web UI in headless Chromium: graph, runs, logs, bundle", ui.web_ui),
    Workload("O1", "W1 and W2 with traces, sampled traces and metrics", telemetry.overhead),
)
