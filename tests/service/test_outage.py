"""Postgres stopped for 10 s in the middle of a run: the run waits for it, loses nothing and
finishes. The test starts a private Postgres cluster (initdb on a free port) so that stopping
it disturbs nothing else."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from klaw.metadata.postgres import PostgresMetadataStore
from klaw.service.orchestrator import Orchestrator, RunRequest
from klaw.states import RunState, StageState

BIN = Path("/usr/lib/postgresql")
FLOWS = """
import time
from pathlib import Path

import pyarrow as pa

import klaw

ROOT = Path(__file__).resolve().parent


@klaw.asset
def a() -> pa.Table:
    return pa.table({"x": [1, 2, 3]})


@klaw.asset
def b(a: pa.Table) -> pa.Table:
    (ROOT / "b-started").touch()
    while not (ROOT / "go").exists():
        time.sleep(0.02)
    print("b done")
    return a


@klaw.asset
def c(b: pa.Table) -> pa.Table:
    print("c done")
    return b


flow = klaw.workflow("flow", [a, b, c])
"""
WAIT = 120.0


def _pg_bin() -> Path | None:
    found = sorted(BIN.glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class Cluster:
    def __init__(self, bin_dir: Path, base: Path) -> None:
        self.bin, self.base = bin_dir, base
        self.data = base / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=WAIT)

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.base / "log")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w",
                  "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bin_dir = _pg_bin()
    if bin_dir is None or (shutil.which("runuser") is None and os.geteuid() == 0):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    base = Path(tempfile.mkdtemp(prefix="klaw-pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(base, entry.pw_uid, entry.pw_gid)
    found = Cluster(bin_dir, base)
    found.init()
    found.start()
    try:
        yield found
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            found.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_a_run_waits_out_a_postgres_outage(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "klaw.toml").write_text(
        '[project]\nname = "outage"\nmodules = ["outage_flows.py"]\n'
    )
    (tmp_path / "outage_flows.py").write_text(FLOWS)
    with PostgresMetadataStore(cluster.url) as store:
        store.migrate()
    orch = Orchestrator.open(tmp_path, metadata_url=cluster.url)
    try:
        run = orch.start(RunRequest(workflow="flow"))
        deadline = time.monotonic() + WAIT
        while not (tmp_path / "b-started").exists():
            assert time.monotonic() < deadline, "stage b did not start"
            time.sleep(0.02)
        cluster.stop()
        (tmp_path / "go").touch()  # b ends, and c runs, while the database is away
        time.sleep(10)
        cluster.start()
        assert orch.wait(run.run_id, timeout=WAIT)
        final = orch.get_run(run.run_id)
        assert final.state is RunState.SUCCEEDED, final.error
        assert [(a.stage, a.attempt, a.state) for a in orch.attempts(run.run_id)] == [
            ("a", 1, StageState.SUCCEEDED),
            ("b", 1, StageState.SUCCEEDED),
            ("c", 1, StageState.SUCCEEDED),
        ]
        events = orch.events(run.run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))  # nothing lost
        assert events[-1].kind == "run_finished"
        assert [g.line for g in orch.logs(run.run_id)] == ["b done", "c done"]
    finally:
        orch.shutdown(wait=WAIT)
        orch.close()
