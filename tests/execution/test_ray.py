"""The Ray executor end to end: the workflow fixtures of ``workflows.py`` on one local Ray, with
the same states, snapshots, contents and logs as on the local executors (test_runner.py), plus
what only Ray has: unsatisfiable resources, cluster addresses, dying workers, object refs."""

from __future__ import annotations

import os
import queue
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pytest
import ray  # a missing Ray is an install error here, not a skip

import klaw
from klaw import failpoints
from klaw.authoring.params import resolve_params
from klaw.authoring.secrets import bind
from klaw.errors import ConfigError
from klaw.execution.lease import LeaseKeeper
from klaw.execution.ray import RayExecutor
from klaw.execution.runner import Runner, RunOptions
from klaw.execution.task import InputRef, Task
from klaw.execution.values import ValueStore
from klaw.graph.build import build_graph
from klaw.graph.plan import make_plan
from klaw.ids import AssetRef, new_run_id
from klaw.metadata.records import RunRecord
from klaw.metadata.sqlite import SQLiteMetadataStore
from klaw.service.orchestrator import RunRequest
from klaw.service.wiring import LakeFactory, MetadataFactory
from klaw.settings import KlawSettings
from klaw.states import RunState, StageState
from klaw.storage.objects import ObjectStore
from tests.execution import workflows as wf
from tests.s3 import KEY_ID, REGION, SECRET, MotoS3

pytestmark = pytest.mark.slow  # starts a local Ray cluster


# -- fixtures only Ray needs (module level: Ray workers import them by name) --------------------
@klaw.asset(retries=klaw.RetryPolicy(retries=1, delay=0.01))
def crashy(params: wf.Scratch) -> pa.Table:
    """Kills its own worker process the first time it runs."""
    counter = Path(params.scratch) / "crashy.count"
    before = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(before + 1))
    if before == 0:
        os._exit(1)
    return pa.table({"ok": [1]})


crashing = klaw.workflow("crashing", [crashy])


@klaw.asset
def stoppable(params: wf.Scratch) -> pa.Table:
    """Writes its worker's pid; the first attempt waits for a go file before it returns."""
    scratch = Path(params.scratch)
    first = not (scratch / "stoppable.pid").exists()
    if first:
        (scratch / "stoppable.pid").write_text(str(os.getpid()))
        while not (scratch / "go").exists():
            time.sleep(0.02)
    return pa.table({"first": [first]})


stopping = klaw.workflow("stopping", [stoppable])


@klaw.stage(retries=2, resources=klaw.Resources(cpus=4096))
def greedy() -> int:
    return 1


too_big = klaw.workflow("too_big", [greedy])


# -- harness ------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray for the module, started (and stopped) the way the executor starts one;
    every executor below finds it running and leaves it up."""
    home = tmp_path_factory.mktemp("ray")
    starter = RayExecutor(LakeFactory(str(home / "lake.sqlite"), str(home / "lake")))
    # Ray's workers take this process's environment when Ray starts: reads of the
    # `slow_source` snapshot as a stage input are slow in them (and only those reads)
    before = os.environ.get("KLAW_FAILPOINTS")
    os.environ["KLAW_FAILPOINTS"] = "read_input:slow_source=sleep(1500)"
    try:
        starter.open(lambda _: None, ValueStore())
    finally:
        if before is None:
            del os.environ["KLAW_FAILPOINTS"]
        else:
            os.environ["KLAW_FAILPOINTS"] = before
        failpoints._armed.clear()
    assert ray.is_initialized()
    yield
    starter.close()
    assert not ray.is_initialized()


class Harness:
    """A metadata store and a lake in a temporary home, and runs built on a Ray executor."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True)
        self.metadata = SQLiteMetadataStore(home / "klaw.db")
        self.metadata.migrate()
        self.lake = LakeFactory(str(home / "lake.sqlite"), str(home / "lake"))

    def runner(
        self,
        workflow: klaw.Workflow,
        params: dict[str, Any] | None = None,
        *,
        on_events: Callable[[list[Any]], None] | None = None,
        max_workers: int = 2,
        fail_fast: bool = False,
        lease_ttl: float | None = None,
        secrets: dict[str, str] | None = None,
        selection: str | None = None,
        external: dict[str, AssetRef] | None = None,
    ) -> Runner:
        record = RunRecord(
            run_id=new_run_id(),
            workflow=workflow.name,
            state=RunState.QUEUED,
            created_at=time.time(),
            params=dict(params or {}),
        )
        self.metadata.create_run(record)
        options = RunOptions(
            fail_fast=fail_fast,
            stop_grace=2.0,
            params={
                model: bind(instance, secrets or {})
                for model, instance in resolve_params(workflow, params or {}).items()
            },
            on_events=on_events,
            lease_ttl=lease_ttl,
            external=external or {},
        )
        leases = None
        if lease_ttl is not None:  # workers renew leases in this harness's database
            settings = KlawSettings(metadata={"url": f"sqlite:///{self.metadata.path}"})
            leases = LeaseKeeper(MetadataFactory(settings), lease_ttl)
        executor = RayExecutor(self.lake, max_workers, leases=leases)
        plan = make_plan(build_graph(workflow), selection)
        return Runner(plan, record, executor=executor, metadata=self.metadata, options=options)

    def run(self, workflow: klaw.Workflow, params: dict[str, Any] | None = None) -> RunRecord:
        return self.runner(workflow, params).execute()

    def states(self, run_id: str) -> dict[str, str]:
        attempts = sorted(self.metadata.list_attempts(run_id), key=lambda a: a.attempt)
        return {a.stage: a.state.value for a in attempts}

    def logs(self, run_id: str, stage: str | None = None) -> list[Any]:
        return self.metadata.read_logs(run_id, stage=stage)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "home")
    yield harness
    harness.metadata.close()
    harness.lake.close()


def _gone(pid: int) -> bool:
    """The process ended (or is a zombie waiting for its parent), within a few seconds."""
    for _ in range(100):
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie":
            return True
        time.sleep(0.1)
    return False


# -- the workflow fixtures, as on the local executors -------------------------------------------
def test_linear_workflow_stores_assets_and_hands_types(h: Harness) -> None:
    result = h.run(wf.linear)
    assert result.state is RunState.SUCCEEDED
    assert h.states(result.run_id) == dict.fromkeys(
        ["numbers", "doubled", "total", "summary"], "succeeded"
    )
    lake = h.lake()
    assert lake.read("summary").to_pylist() == [{"total": 90}]
    assert lake.read("doubled").column_names == ["n", "group", "n2"]
    assert {a.key: a.snapshots for a in lake.assets()} == {"numbers": 1, "doubled": 1, "summary": 1}
    for attempt in h.metadata.list_attempts(result.run_id):
        if attempt.asset_key:
            snaps = lake.snapshots(attempt.asset_key)
            assert [(s.run_id, s.stage, s.attempt) for s in snaps] == [
                (result.run_id, attempt.stage, 1)
            ]
            assert attempt.snapshot_id == snaps[0].snapshot


def test_ray_workers_commit_to_a_lake_in_object_storage(
    h: Harness, moto_s3: MotoS3, s3_bucket: str
) -> None:
    config = ObjectStore.configure(
        endpoint=moto_s3.endpoint, region=REGION, key_id=KEY_ID, secret=SECRET
    )
    h.lake = LakeFactory(h.lake.catalog, f"s3://{s3_bucket}/lake", config)
    result = h.run(wf.linear)
    assert result.state is RunState.SUCCEEDED
    assert h.lake().read("summary").to_pylist() == [{"total": 90}]
    assert [k for k in moto_s3.keys(s3_bucket, "lake/") if k.endswith(".parquet")]


def test_fan_out_and_in(h: Harness) -> None:
    result = h.run(wf.fanout)
    assert result.state is RunState.SUCCEEDED
    assert result.stage_counts == {"succeeded": 22}


def test_failure_keeps_succeeded_snapshots_and_skips_downstream(h: Harness) -> None:
    result = h.run(wf.failing)
    assert result.state is RunState.FAILED
    assert "bad" in (result.error or "")
    assert h.states(result.run_id) == {
        "good": "succeeded",
        "bad": "failed",
        "after_bad": "upstream_failed",
        "independent": "succeeded",
    }
    assert {a.key for a in h.lake().assets()} == {"good", "independent"}
    logs = "\n".join(rec.line for rec in h.logs(result.run_id, "bad"))
    assert "about to fail" in logs
    assert 'raise ValueError("bad input in row 3")' in logs
    assert "klaw/execution" not in logs


def test_fail_fast_skips_what_has_not_started(h: Harness) -> None:
    result = h.runner(wf.failing, max_workers=1, fail_fast=True).execute()
    assert result.state is RunState.FAILED
    final = h.states(result.run_id)
    assert final["bad"] == "failed"
    assert final["after_bad"] == "upstream_failed"
    assert final["independent"] in {"skipped", "succeeded", "cancelled"}


def test_retries_until_success(h: Harness, tmp_path: Path) -> None:
    result = h.run(wf.retrying, {"scratch": str(tmp_path), "fail_times": 2})
    assert result.state is RunState.SUCCEEDED
    attempts = sorted(h.metadata.list_attempts(result.run_id), key=lambda a: a.attempt)
    assert [(a.attempt, a.state) for a in attempts] == [
        (1, StageState.RETRYING),
        (2, StageState.RETRYING),
        (3, StageState.SUCCEEDED),
    ]
    assert attempts[0].error == "ConnectionError: transient"
    assert (tmp_path / "flaky.count").read_text() == "3"  # Ray itself retried nothing
    assert len(h.lake().snapshots("flaky")) == 1


def test_retries_run_out(h: Harness, tmp_path: Path) -> None:
    result = h.run(wf.retrying, {"scratch": str(tmp_path), "fail_times": 5})
    assert result.state is RunState.FAILED
    assert [a.state for a in h.metadata.list_attempts(result.run_id)][-1] is StageState.FAILED
    assert (tmp_path / "flaky.count").read_text() == "3"


def test_non_retryable_error_is_not_retried(h: Harness, tmp_path: Path) -> None:
    result = h.run(wf.non_retryable, {"scratch": str(tmp_path)})
    assert result.state is RunState.FAILED
    assert (tmp_path / "fatal.count").read_text() == "1"


def test_timeout_stops_the_stage_and_kills_its_worker(h: Harness, tmp_path: Path) -> None:
    result = h.run(wf.timeout, {"scratch": str(tmp_path)})
    assert result.state is RunState.FAILED
    (attempt,) = h.metadata.list_attempts(result.run_id)
    assert attempt.state is StageState.TIMED_OUT
    assert attempt.error == "timed out after 0.3 s"
    assert _gone(int((tmp_path / "sleepy.pid").read_text()))


def test_timeout_does_not_count_reading_inputs(h: Harness) -> None:
    assert h.runner(wf.slow_input, selection="slow_source").execute().state is RunState.SUCCEEDED
    (snapshot,) = h.lake().snapshots("slow_source")
    external = {"slow_source": AssetRef("slow_source", snapshot.snapshot)}
    # the worker sleeps 1.5 s reading `slow_source` (see local_ray); `quick` has timeout=0.5
    result = h.runner(wf.slow_input, selection="quick", external=external).execute()
    assert result.state is RunState.SUCCEEDED, result.error
    assert h.states(result.run_id) == {"quick": "succeeded"}
    timings = {
        m.name: m.value for m in h.metadata.list_metrics(result.run_id) if m.stage == "quick"
    }
    assert timings["load_s"] >= 1.5
    assert timings["commit_s"] > 0


def test_cancel_stops_in_flight_work(h: Harness, tmp_path: Path) -> None:
    running = threading.Event()

    def on_events(events: list[Any]) -> None:
        if any(e.stage == "long" and e.state == "running" for e in events):
            running.set()

    runner = h.runner(wf.cancellable, {"scratch": str(tmp_path)}, on_events=on_events)

    def cancel_when_running() -> None:
        assert running.wait(timeout=60)
        for _ in range(600):  # the stage itself has begun in its worker
            if (tmp_path / "long.pid").exists():
                break
            time.sleep(0.05)
        runner.cancel()

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    result = runner.execute()
    canceller.join(timeout=60)
    assert result.state is RunState.CANCELLED
    assert h.states(result.run_id) == {"long": "cancelled", "after_long": "cancelled"}
    assert h.metadata.get_run(result.run_id).state is RunState.CANCELLED
    assert _gone(int((tmp_path / "long.pid").read_text()))


def test_asset_that_is_not_tabular_fails_without_retry(h: Harness) -> None:
    result = h.run(wf.wrong_output)
    assert result.state is RunState.FAILED
    (attempt,) = h.metadata.list_attempts(result.run_id)
    assert attempt.state is StageState.FAILED
    assert "returned dict, which is not tabular" in (attempt.error or "")


def test_stdout_stderr_and_logging_are_captured(h: Harness) -> None:
    result = h.run(wf.noisy)
    assert result.state is RunState.SUCCEEDED
    lines = {(rec.stream, rec.line) for rec in h.logs(result.run_id)}
    assert ("stdout", "to stdout") in lines
    assert ("stderr", "to stderr") in lines
    assert ("log", "chatty: to logging") in lines


# -- what only Ray has --------------------------------------------------------------------------
def test_unsatisfiable_resources_fail_at_once_without_retry(h: Harness) -> None:
    started = time.monotonic()
    result = h.run(too_big)
    assert time.monotonic() - started < 30  # not left pending
    assert result.state is RunState.FAILED
    (attempt,) = h.metadata.list_attempts(result.run_id)
    assert attempt.state is StageState.FAILED
    error = attempt.error or ""
    assert "'greedy' asks for cpus=4096" in error
    assert "no node of the Ray cluster" in error
    assert re.search(r"nodes: CPU=\d+, GPU=0, memory=", error)  # what the cluster has


def test_unreachable_address_is_a_config_error(h: Harness) -> None:
    executor = RayExecutor(h.lake, address="127.0.0.1:1")
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1:1") as info:
        executor.open(lambda _: None, ValueStore())
    assert time.monotonic() - started < 10
    assert "KLAW_EXECUTOR__RAY_ADDRESS" in str(info.value)


def test_a_reachable_address_joins_without_stopping_the_cluster(h: Harness) -> None:
    address = ray.get_runtime_context().gcs_address  # the module's Ray, already joined
    executor = RayExecutor(h.lake, address=address)
    executor.open(lambda _: None, ValueStore())
    assert executor.capacity >= 1
    executor.close()
    assert ray.is_initialized()


def test_a_worker_that_dies_is_retried(h: Harness, tmp_path: Path) -> None:
    result = h.run(crashing, {"scratch": str(tmp_path)})
    assert result.state is RunState.SUCCEEDED
    attempts = sorted(h.metadata.list_attempts(result.run_id), key=lambda a: a.attempt)
    assert [a.state for a in attempts] == [StageState.RETRYING, StageState.SUCCEEDED]
    assert "Ray worker died" in (attempts[0].error or "")
    assert "'crashy'" in (attempts[0].error or "")
    assert (tmp_path / "crashy.count").read_text() == "2"
    assert h.lake().read("crashy").to_pylist() == [{"ok": 1}]


def test_values_stay_in_the_object_store(h: Harness) -> None:
    """The value store holds object refs; a downstream task gets its input from Ray."""
    outcomes: queue.SimpleQueue[Any] = queue.SimpleQueue()
    values = ValueStore()
    executor = RayExecutor(h.lake, 2)
    executor.open(outcomes.put, values)
    try:
        executor.submit(Task("run", wf.root, 1, "t1", (), keep_value=True))
        first = outcomes.get(timeout=60)
        assert first.ok
        assert first.value is None  # nothing came back through the control plane
        assert isinstance(values.get("root"), ray.ObjectRef)
        leaf = wf.LEAVES[0]
        executor.submit(Task("run", leaf, 1, "t2", (InputRef("root", "root", "any"),)))
        second = outcomes.get(timeout=60)
        assert second.ok
        assert isinstance(values.get(leaf.name), ray.ObjectRef)
        assert ray.get(values.get(leaf.name)) == 2
    finally:
        executor.close()
    assert ray.is_initialized()  # an executor leaves a Ray it did not start running


def test_workers_import_stages_from_the_drivers_path(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workflow module only the driver's ``sys.path`` knows (not Ray's working directory)."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "klaw_ray_elsewhere.py").write_text(
        "import pyarrow as pa\nimport klaw\n\n\n"
        "@klaw.asset\ndef far() -> pa.Table:\n    return pa.table({'x': [7]})\n\n\n"
        "flow = klaw.workflow('elsewhere', [far])\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    import klaw_ray_elsewhere  # type: ignore[import-not-found]

    result = h.run(klaw_ray_elsewhere.flow)
    assert result.state is RunState.SUCCEEDED, h.metadata.list_attempts(result.run_id)
    assert h.lake().read("far").to_pylist() == [{"x": 7}]


def test_the_orchestrator_runs_on_ray_by_name(h: Harness, tmp_path: Path) -> None:
    orch = klaw.open_orchestrator(wf.linear, home=tmp_path / "via-orchestrator")
    try:
        result = orch.run(RunRequest(workflow="linear", executor="ray", max_workers=2))
        assert result.state is RunState.SUCCEEDED
        assert orch.read_asset("summary").to_pylist() == [{"total": 90}]
    finally:
        orch.close()


def test_a_ray_worker_stopped_past_its_lease_is_fenced(h: Harness, tmp_path: Path) -> None:
    """SIGSTOP the Ray worker running an attempt: its lease runs out, a new attempt runs on
    another worker, and when the stopped one is woken nothing it produced is kept."""
    runner = h.runner(stopping, {"scratch": str(tmp_path)}, lease_ttl=3.0)
    done: queue.SimpleQueue[RunRecord] = queue.SimpleQueue()
    thread = threading.Thread(target=lambda: done.put(runner.execute()), daemon=True)
    thread.start()
    pid_file = tmp_path / "stoppable.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the stage did not start"
        time.sleep(0.02)
    worker = int(pid_file.read_text())
    os.kill(worker, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 60
        while StageState.FAILED not in {
            a.state for a in h.metadata.list_attempts(runner.run.run_id)
        }:
            assert time.monotonic() < deadline, "the lease did not expire"
            time.sleep(0.05)
        (tmp_path / "go").touch()
    finally:
        os.kill(worker, signal.SIGCONT)
    run = done.get(timeout=120)
    assert run.state is RunState.SUCCEEDED
    attempts = {a.attempt: a for a in h.metadata.list_attempts(run.run_id)}
    assert attempts[1].state is StageState.FAILED and "lease expired" in (attempts[1].error or "")
    assert attempts[2].state is StageState.SUCCEEDED
    assert [s.attempt for s in h.lake().snapshots("stoppable")] == [2]
    assert h.lake().read("stoppable").to_pylist() == [{"first": False}]


def test_secrets_are_masked_by_the_ray_worker(h: Harness) -> None:
    value, key = "vault-s3cr3t-value", "api-k3y-value"
    runner = h.runner(wf.secretive, {"api_key": key}, secrets={"vault_pw": value})
    run = runner.execute()
    assert run.state is RunState.FAILED
    lines = [(r.stream, r.line) for r in h.logs(run.run_id)]
    assert ("stdout", "password *** key ***") in lines
    assert ("log", "leaky: logged *** and ***") in lines
    (attempt,) = h.metadata.list_attempts(run.run_id)
    assert attempt.error == "NonRetryableError: refused *** / ***"
    assert not any(value in line or key in line for _, line in lines)
    assert value not in (attempt.traceback or "") and key not in (attempt.traceback or "")
