"""L1: event latency, from a commit to a follower holding the event, on SQLite and Postgres.

One orchestrator serves the HTTP API (uvicorn in a thread) and Arrow Flight in the bench
process. For each follower, a run is recorded ``running`` and a writer thread commits
``EVENTS`` events to it through the orchestrator's metadata store (as the runner does), one at
a time, ``GAP`` apart (random, seeded, so that no poll interval lines up with them). The
follower sees each event through a public interface, on loopback:

- SSE: ``GET /api/v1/runs/{id}/stream`` read with httpx;
- Flight follow: ``klaw.Client.follow``;
- CLI ``--wait``: what ``klaw run --server`` does after submitting (the Flight backend's follow
  loop).

Latency is the follower's clock when the event arrives minus the writer's just before
``commit`` (one process: one clock), so it includes the commit itself (its median is a row of
its own). Medians and p90 of all events. Floors, in the same run: on Postgres a bare psycopg
``NOTIFY`` (autocommit) to a ``LISTEN``ing connection in another thread; on SQLite a bare
``sqlite3`` commit of one row and a ``threading.Event`` set for a thread that waits on it and
then reads the row.

Postgres runs in a schema of its own in ``KLAW_BENCH_POSTGRES_URL`` (the M workload's), dropped
afterwards; skipped with a note when unreachable.
"""

from __future__ import annotations

import json
import random
import select
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import klaw
from bench.metadata import POSTGRES_URL, _postgres_schema
from bench.report import Row, Unit

if TYPE_CHECKING:
    from bench.workloads import Settings
    from klaw.service.orchestrator import Orchestrator

EVENTS = 40  # events per follower and database
GAP = (0.02, 0.12)  # seconds between two events, uniformly drawn
TOKEN = "bench-follow-token-3f9a2c"
WAIT = 60.0


@klaw.stage
def idle() -> int:
    return 0


FLOW = klaw.workflow("follow_bench", [idle])


ELSEWHERE = """
import json, sys
from klaw.metadata.sqlite import SQLiteMetadataStore
from bench.follow import write

store = SQLiteMetadataStore(sys.argv[1])
started, commits = {}, []
write(store, sys.argv[2], int(sys.argv[3]), started, commits)
print(json.dumps({"started": started, "commits": commits}))
"""


class Writer:
    """Commits ``EVENTS`` events to a run, ``GAP`` apart, then ends the run; remembers when
    each commit started (``time.monotonic``: one clock for every process here), by event seq.
    With ``elsewhere``, the writer is another process (a SQLite file only)."""

    def __init__(self, orch: Orchestrator, run_id: str, seed: int, elsewhere: bool) -> None:
        self.orch, self.run_id, self.seed = orch, run_id, seed
        self.started: dict[int, float] = {}
        self.commits: list[float] = []  # how long each commit took
        self._thread = threading.Thread(
            target=self._elsewhere if elsewhere else self._here, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(WAIT)

    def _here(self) -> None:
        write(self.orch.metadata, self.run_id, self.seed, self.started, self.commits)

    def _elsewhere(self) -> None:
        import subprocess
        import sys

        path = str(self.orch.settings.metadata_path)
        argv = [sys.executable, "-c", ELSEWHERE, path, self.run_id, str(self.seed)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, check=True)
        found = json.loads(out.stdout)
        self.started = {int(k): v for k, v in found["started"].items()}
        self.commits = found["commits"]


def write(
    store: Any, run_id: str, seed: int, started: dict[int, float], commits: list[float]
) -> None:
    """The writer's work (in this process or another)."""
    from klaw.metadata.records import Batch, EventRecord
    from klaw.states import RunState

    pick = random.Random(seed)
    time.sleep(0.3)  # the follower has connected
    for _ in range(EVENTS):
        time.sleep(pick.uniform(*GAP))
        event = EventRecord(run_id=run_id, kind="bench", ts=time.time())
        began = time.monotonic()
        store.commit(Batch(events=[event]))
        commits.append(time.monotonic() - began)
        started[event.seq] = began
    run = store.get_run(run_id)
    run.state, run.ended_at = RunState.SUCCEEDED, time.time()
    end = EventRecord(run_id=run_id, kind="run_finished", ts=time.time())
    store.commit(Batch(runs=[run], events=[end]))


def _new_run(orch: Orchestrator) -> str:
    import os
    import socket

    from klaw.ids import new_run_id
    from klaw.metadata.records import RunRecord
    from klaw.states import RunState

    run = RunRecord(
        run_id=new_run_id(),
        workflow=FLOW.name,
        state=RunState.RUNNING,
        created_at=time.time(),
        owner_host=socket.gethostname(),
        owner_pid=os.getpid(),
    )
    orch.metadata.create_run(run)
    return run.run_id


def _latencies(
    orch: Orchestrator,
    follow: Callable[[str, Callable[[int], None]], None],
    seed: int,
    elsewhere: bool = False,
) -> tuple[list[float], list[float]]:
    """Follow a fresh run while a writer commits to it; each bench event's latency, and how
    long each commit took."""
    run_id = _new_run(orch)
    seen: dict[int, float] = {}

    def arrived(seq: int) -> None:
        seen.setdefault(seq, time.monotonic())

    writer = Writer(orch, run_id, seed, elsewhere)
    writer.start()
    follow(run_id, arrived)
    writer.join()
    found = [seen[seq] - started for seq, started in writer.started.items() if seq in seen]
    return found, writer.commits


def _sse(url: str) -> Callable[[str, Callable[[int], None]], None]:
    import httpx

    def follow(run_id: str, arrived: Callable[[int], None]) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with (
            httpx.Client(base_url=url, headers=headers, timeout=WAIT) as client,
            client.stream("GET", f"/api/v1/runs/{run_id}/stream") as response,
        ):
            for line in response.iter_lines():
                if line.startswith("id: ") and ":" not in line[4:]:
                    arrived(int(line[4:]))

    return follow


def _flight(location: str) -> Callable[[str, Callable[[int], None]], None]:
    def follow(run_id: str, arrived: Callable[[int], None]) -> None:
        with klaw.Client(location, token=TOKEN) as client:
            for event in client.follow(run_id):
                arrived(event.seq)

    return follow


def _cli(location: str) -> Callable[[str, Callable[[int], None]], None]:
    from klaw.cli.backend import RemoteBackend

    class Watcher:
        def __init__(self, arrived: Callable[[int], None]) -> None:
            self.arrived = arrived

        def start(self, run: Any, stages: int) -> None: ...

        def events(self, events: list[Any]) -> None:
            for event in events:
                self.arrived(event.seq)

    def follow(run_id: str, arrived: Callable[[int], None]) -> None:
        backend = RemoteBackend(location, TOKEN)
        try:
            run = backend._connected().execute(_get_run(run_id)).run  # type: ignore[attr-defined]
            backend._follow(run, Watcher(arrived))
        finally:
            backend.close()

    return follow


def _get_run(run_id: str) -> Any:
    from klaw.protocol import GetRun

    return GetRun(run_id=run_id)


@contextmanager
def _serving(orch: Orchestrator) -> Iterator[tuple[str, str]]:
    """Serve ``orch`` over HTTP and Flight; their addresses."""
    import uvicorn

    from klaw.api.flight import serve
    from klaw.api.http import StaticTokenAuthenticator, create_app
    from klaw.api.http.limits import Limits

    app = create_app(
        orch,
        StaticTokenAuthenticator.parse(f"admin:{TOKEN}"),
        allowed_hosts=["127.0.0.1"],
        cors_origins=[],
        limits=Limits(rate=1e9, burst=10**9),
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    flight = serve(orch, tokens=[TOKEN])
    try:
        deadline = time.monotonic() + WAIT
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", flight.location
    finally:
        server.should_exit = True
        thread.join(WAIT)
        flight.stop()


def _measure(orch: Orchestrator, db: str, floor: list[float], floor_label: str) -> list[Row]:
    rows: list[Row] = []
    with _serving(orch) as (http_url, location):
        followers = (
            ("SSE", _sse(http_url)),
            ("Flight follow", _flight(location)),
            ("CLI --wait (Flight)", _cli(location)),
        )
        commits: list[float] = []
        for seed, (label, follow) in enumerate(followers):
            found, took = _latencies(orch, follow, seed)
            commits += took
            for name, pick in (("median", statistics.median), ("p90", _p90)):
                rows.append(
                    Row(
                        "L1",
                        f"{db}: {label}, {name}" if name == "median" else f"  {name}",
                        Unit.SECONDS,
                        pick(found),
                        pick(floor),
                        floor_label,
                        notes={"events": len(found), "samples": found},
                    )
                )
        rows.append(
            Row("L1", f"{db}: the writer's commit alone, median", Unit.SECONDS, _median(commits))
        )
        if db == "SQLite":  # a writer in another process: found by the bounded poll
            found, _ = _latencies(orch, _flight(location), 7, elsewhere=True)
            label = "SQLite, writer in another process: Flight follow, median"
            rows.append(Row("L1", label, Unit.SECONDS, statistics.median(found)))
            rows.append(Row("L1", "  p90", Unit.SECONDS, _p90(found)))
    return rows


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


# -- floors ----------------------------------------------------------------------------------


def _sqlite_floor(path: Path, seed: int) -> list[float]:
    """A bare sqlite3 commit, then a threading.Event wakes a reader that reads the row."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS floor (seq INTEGER PRIMARY KEY)")
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    wake, started, seen = threading.Event(), [0.0], []

    def read() -> None:
        for seq in range(1, EVENTS + 1):
            wake.wait(WAIT)
            wake.clear()
            reader.execute("SELECT seq FROM floor WHERE seq = ?", (seq,)).fetchone()
            seen.append(time.monotonic() - started[0])

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    pick = random.Random(seed)
    for seq in range(1, EVENTS + 1):
        time.sleep(pick.uniform(*GAP))
        started[0] = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO floor (seq) VALUES (?)", (seq,))
        conn.execute("COMMIT")
        wake.set()
        while wake.is_set() and thread.is_alive():  # one at a time: the reader caught up
            time.sleep(0.001)
    thread.join(WAIT)
    conn.close()
    reader.close()
    return seen


def _postgres_floor(url: str, seed: int) -> list[float]:
    """A bare psycopg NOTIFY (autocommit) to a connection LISTENing in another thread."""
    import psycopg

    listener = psycopg.connect(url, autocommit=True)
    listener.execute("LISTEN klaw_bench_floor")
    notifier = psycopg.connect(url, autocommit=True)
    started: dict[str, float] = {}
    seen: list[float] = []

    def listen() -> None:
        while len(seen) < EVENTS:
            select.select([listener.fileno()], [], [], WAIT)
            for note in listener.notifies(timeout=0):
                seen.append(time.monotonic() - started[note.payload])

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    pick = random.Random(seed)
    for seq in range(EVENTS):
        time.sleep(pick.uniform(*GAP))
        started[str(seq)] = time.monotonic()
        notifier.execute("SELECT pg_notify('klaw_bench_floor', %s)", (str(seq),))
    thread.join(WAIT)
    listener.close()
    notifier.close()
    return seen


# -- the workload ----------------------------------------------------------------------------


def latency(settings: Settings) -> list[Row]:
    """L1 on SQLite, then on Postgres (skipped when out of reach)."""
    rows: list[Row] = []
    home = settings.home()
    floor = _sqlite_floor(home / "floor.db", 99)
    orch = klaw.open_orchestrator(FLOW, home=home)
    try:
        rows += _measure(orch, "SQLite", floor, "sqlite3 commit + Event")
    finally:
        orch.close()
    with _postgres_schema(POSTGRES_URL) as url:
        if url is None:
            return rows
        from klaw.metadata.postgres import PostgresMetadataStore

        store = PostgresMetadataStore(url)
        store.migrate()
        store.close()
        floor = _postgres_floor(url, 99)
        orch = klaw.open_orchestrator(FLOW, home=settings.home(), metadata_url=url)
        try:
            rows += _measure(orch, "Postgres", floor, "psycopg NOTIFY → LISTEN")
        finally:
            orch.close()
    return rows


def main() -> None:
    """``python -m bench.follow``: L1 alone, as JSON (medians and p90s)."""
    import tempfile

    from bench.workloads import Settings

    scratch = Path(tempfile.mkdtemp(prefix="klaw-bench-follow-"))
    found = latency(Settings(scratch=scratch, repeat=None, workers=4))
    print(json.dumps([{"label": r.label, "klaw": r.klaw, "floor": r.floor} for r in found]))


if __name__ == "__main__":
    main()
