"""The trigger service: each due tick fires exactly once and starts a real run; catch-up after
downtime, pauses and daylight saving changes, with an injected clock (no sleeping); the loop on
its thread; and two services in two processes sharing one Postgres.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pydantic import BaseModel

import klaw
from klaw.authoring.workflow import Workflow
from klaw.metadata.postgres import PostgresMetadataStore
from klaw.metadata.records import RunFilter, ScheduleRecord
from klaw.service import schedules
from klaw.service.orchestrator import Orchestrator
from klaw.states import RunState
from klaw.triggers import FiredTick, TriggerService, tick_key

H = timedelta(hours=1)
WAIT = 60.0  # bound of every wait for a run or the loop; generous on a busy machine


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@klaw.stage
def noop() -> int:
    return 1


def scheduled(name: str, cron: str, **options: Any) -> Workflow:
    """A one-stage no-op workflow with a schedule; runs of it may overlap (ticks are cheap)."""
    options.setdefault("max_active_runs", 100)
    return klaw.workflow(name, [noop], schedule=cron, **options)


OpenOrchestrator = Callable[..., Orchestrator]


@pytest.fixture
def orchestrator(tmp_path: Path) -> Iterator[OpenOrchestrator]:
    """Opens an embedded orchestrator (SQLite) over the workflows given; all closed after.
    Orchestrators opened with the same ``home`` share the database, each with a connection."""
    opened: list[Orchestrator] = []

    def open_(*workflows: Workflow, home: str = "home") -> Orchestrator:
        orch = klaw.open_orchestrator(*workflows, home=tmp_path / home)
        opened.append(orch)
        return orch

    yield open_
    for orch in opened:
        orch.shutdown(wait=WAIT)
        orch.close()


class Clock:
    """A clock for a TriggerService that reads whatever time the test sets."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()


def step(service: TriggerService, now: datetime | None = None) -> list[FiredTick]:
    """One step of the service at ``now`` (default: its clock); waits for the runs it started
    to end."""
    fired = service.run_due(now)
    for tick in fired:
        if tick.run_id is not None:
            assert service.orchestrator.wait(tick.run_id, timeout=WAIT), tick
    return fired


def keys(fired: list[FiredTick]) -> list[str]:
    return [tick.key for tick in fired]


def stored(orch: Orchestrator, name: str) -> ScheduleRecord:
    [record] = [r for r in orch.metadata.list_schedules() if r.name == name]
    return record


# -- firing ----------------------------------------------------------------------------------


def test_each_due_tick_fires_once_and_its_run_runs_to_the_end(
    orchestrator: OpenOrchestrator,
) -> None:
    orch = orchestrator(scheduled("hourly", "0 * * * *"))
    service = TriggerService(orch)
    service.sync(utc(2026, 5, 1, 0, 0, 30))

    [fired] = step(service, utc(2026, 5, 1, 1))
    assert (fired.schedule, fired.key, fired.error) == ("hourly", "2026-05-01T01:00:00Z", None)
    assert fired.run_id is not None
    run = orch.get_run(fired.run_id)
    assert (run.workflow, run.state, run.stage_counts) == (
        "hourly",
        RunState.SUCCEEDED,
        {"succeeded": 1},
    )

    # The same instant again, later in the hour, and from a second service: nothing more.
    assert step(service, utc(2026, 5, 1, 1)) == []
    assert step(service, utc(2026, 5, 1, 1, 59, 59)) == []
    assert step(TriggerService(orch), utc(2026, 5, 1, 1, 30)) == []
    record = stored(orch, "hourly")
    assert (record.last_tick, record.last_run_id, record.last_error) == (
        "2026-05-01T01:00:00Z",
        fired.run_id,
        None,
    )
    assert [r.run_id for r in orch.runs()] == [fired.run_id]

    assert keys(step(service, utc(2026, 5, 1, 2, 0, 1))) == ["2026-05-01T02:00:00Z"]
    assert len(orch.runs()) == 2


def test_every_due_schedule_fires_in_one_step(orchestrator: OpenOrchestrator) -> None:
    orch = orchestrator(
        scheduled("hourly", "0 * * * *"),
        scheduled("quarterly", "*/15 * * * *"),
        scheduled("nightly", "0 3 * * *"),
    )
    service = TriggerService(orch)
    service.sync(utc(2026, 5, 1, 0, 50))
    fired = step(service, utc(2026, 5, 1, 1))
    assert [(t.schedule, t.key) for t in fired] == [
        ("hourly", "2026-05-01T01:00:00Z"),
        ("quarterly", "2026-05-01T01:00:00Z"),
    ]
    assert {orch.get_run(t.run_id or "").workflow for t in fired} == {"hourly", "quarterly"}


def test_a_new_schedule_does_not_fire_ticks_from_before_it_existed(
    orchestrator: OpenOrchestrator,
) -> None:
    orch = orchestrator(scheduled("hourly", "0 * * * *", catch_up="all"))
    service = TriggerService(orch)
    assert step(service, utc(2026, 5, 1, 5, 30)) == []  # the first step syncs: the floor is now
    assert keys(step(service, utc(2026, 5, 1, 6))) == ["2026-05-01T06:00:00Z"]


@pytest.mark.parametrize(
    ("policy", "back_at", "expected"),
    [
        ("none", utc(2026, 5, 1, 5, 30), []),
        ("none", utc(2026, 5, 1, 5, 0, 30), ["05:00"]),  # within the 60 s grace
        ("latest", utc(2026, 5, 1, 5, 30), ["05:00"]),
        ("all", utc(2026, 5, 1, 5, 30), ["02:00", "03:00", "04:00", "05:00"]),
    ],
)
def test_catch_up_after_downtime(
    orchestrator: OpenOrchestrator, policy: str, back_at: datetime, expected: list[str]
) -> None:
    orch = orchestrator(scheduled("hourly", "0 * * * *", catch_up=policy))
    clock = Clock(utc(2026, 5, 1, 0, 30))
    service = TriggerService(orch, clock=clock)
    service.sync()
    clock.now = utc(2026, 5, 1, 1)
    assert keys(step(service)) == ["2026-05-01T01:00:00Z"]
    # The service is down from 01:00 to back_at; a new one (a restart) starts from the store.
    clock.now = back_at
    restarted = TriggerService(orch, clock=clock)
    fired = step(restarted)
    assert keys(fired) == [f"2026-05-01T{hm}:00Z" for hm in expected]
    assert all(t.error is None and t.run_id is not None for t in fired)
    assert len(orch.runs(RunFilter(limit=100))) == 1 + len(expected)
    # Afterwards every policy carries on at the next tick.
    clock.now = utc(2026, 5, 1, 6)
    assert keys(step(restarted)) == ["2026-05-01T06:00:00Z"]


# -- pause -----------------------------------------------------------------------------------


def test_paused_schedule_fires_nothing_and_does_not_catch_up_its_pause(
    orchestrator: OpenOrchestrator,
) -> None:
    orch = orchestrator(scheduled("hourly", "0 * * * *", catch_up="all"))
    service = TriggerService(orch)
    service.sync(utc(2026, 5, 1, 0, 30))
    assert keys(step(service, utc(2026, 5, 1, 1))) == ["2026-05-01T01:00:00Z"]

    info = schedules.set_paused(orch, "hourly", True, now=utc(2026, 5, 1, 1, 10).timestamp())
    assert info.paused and info.next_tick is None
    for hour in (2, 3):
        assert step(service, utc(2026, 5, 1, hour)) == []
    assert stored(orch, "hourly").last_tick == "2026-05-01T01:00:00Z"  # nothing was claimed

    schedules.set_paused(orch, "hourly", False, now=utc(2026, 5, 1, 3, 30).timestamp())
    assert step(service, utc(2026, 5, 1, 3, 30)) == []  # 02:00 and 03:00 stay skipped
    assert keys(step(service, utc(2026, 5, 1, 4))) == ["2026-05-01T04:00:00Z"]
    assert len(orch.runs()) == 2


def test_a_pause_made_elsewhere_is_seen_at_the_next_step(orchestrator: OpenOrchestrator) -> None:
    workflows = [scheduled("hourly", "0 * * * *")]
    orch = orchestrator(*workflows)
    other = orchestrator(*workflows)  # as another process sees it: its own store connection
    service = TriggerService(orch)
    service.sync(utc(2026, 5, 1, 0, 30))
    schedules.set_paused(other, "hourly", True, now=utc(2026, 5, 1, 0, 45).timestamp())
    assert step(service, utc(2026, 5, 1, 1)) == []


# -- refused starts --------------------------------------------------------------------------

release = threading.Event()


@klaw.stage
def blocks() -> int:
    release.wait(WAIT)
    return 1


class NeedsDay(BaseModel):
    day: str


@klaw.stage
def needs_params(params: NeedsDay) -> str:
    return params.day


def test_a_refused_start_is_recorded_on_its_tick_and_the_service_goes_on(
    orchestrator: OpenOrchestrator,
) -> None:
    release.clear()
    orch = orchestrator(
        klaw.workflow("busy", [blocks], schedule="0 * * * *", catch_up="all"),  # one run at once
        klaw.workflow("bad_params", [needs_params], schedule="0 * * * *"),
        scheduled("fine", "0 * * * *"),
    )
    service = TriggerService(orch)
    service.sync(utc(2026, 5, 1, 0, 30))
    try:
        fired = service.run_due(utc(2026, 5, 1, 2))
        by_key = {(t.schedule, t.key): t for t in fired}
        assert sorted(by_key) == [
            ("bad_params", "2026-05-01T02:00:00Z"),
            ("busy", "2026-05-01T01:00:00Z"),
            ("busy", "2026-05-01T02:00:00Z"),
            ("fine", "2026-05-01T02:00:00Z"),
        ]
        first, second = (
            by_key["busy", "2026-05-01T01:00:00Z"],
            by_key["busy", "2026-05-01T02:00:00Z"],
        )
        assert first.run_id is not None and first.error is None
        assert second.run_id is None and second.error is not None
        assert second.error.startswith("RunConflictError: workflow 'busy' already has 1 active")
        bad = by_key["bad_params", "2026-05-01T02:00:00Z"]
        assert bad.run_id is None and bad.error is not None and "ParamsError" in bad.error
        assert "day: Field required" in bad.error
        assert by_key["fine", "2026-05-01T02:00:00Z"].run_id is not None
        busy = stored(orch, "busy")
        assert (busy.last_tick, busy.last_run_id, busy.last_error) == (
            "2026-05-01T02:00:00Z",
            None,
            second.error,
        )
        # A refused tick is still claimed: it is not tried again.
        assert service.run_due(utc(2026, 5, 1, 2, 0, 30)) == []
    finally:
        release.set()
    assert orch.wait(first.run_id, timeout=WAIT)
    assert orch.get_run(first.run_id).state is RunState.SUCCEEDED


# -- daylight saving time --------------------------------------------------------------------


def walk(service: TriggerService, start: datetime, end: datetime, every: timedelta) -> list[str]:
    """Step the service from ``start`` to ``end``; the keys of the ticks it fired."""
    service.sync(start)
    fired: list[str] = []
    now = start
    while now < end:
        now += every
        fired += keys(step(service, now))
    return fired


def test_daily_schedule_across_the_spring_gap_and_the_autumn_overlap(
    orchestrator: OpenOrchestrator,
) -> None:
    berlin = scheduled("berlin", "30 2 * * *", timezone="Europe/Berlin")
    orch = orchestrator(berlin, home="spring")
    spring = walk(TriggerService(orch), utc(2026, 3, 27), utc(2026, 3, 31, 3), H)
    assert spring == [
        "2026-03-27T01:30:00Z",  # 02:30 CET
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:30:00Z",  # 02:30 does not exist: 03:30 CEST, shifted by the gap
        "2026-03-30T00:30:00Z",  # 02:30 CEST
        "2026-03-31T00:30:00Z",
    ]
    orch = orchestrator(berlin, home="autumn")
    autumn = walk(TriggerService(orch), utc(2026, 10, 23, 22), utc(2026, 10, 26, 3), H)
    assert autumn == [
        "2026-10-24T00:30:00Z",  # 02:30 CEST
        "2026-10-25T00:30:00Z",  # 02:30 happens twice: the first one (CEST) fires, once
        "2026-10-26T01:30:00Z",  # 02:30 CET
    ]
    runs = orch.runs(RunFilter(limit=100))
    assert len(runs) == 3 and all(r.state is RunState.SUCCEEDED for r in runs)


def test_hourly_schedule_keeps_elapsed_time_across_the_overlap(
    orchestrator: OpenOrchestrator,
) -> None:
    orch = orchestrator(scheduled("berlin", "0 * * * *", timezone="Europe/Berlin"))
    fired = walk(TriggerService(orch), utc(2026, 10, 24, 23), utc(2026, 10, 25, 3), H / 2)
    # 02:00 CEST, 02:00 CET (the repeated hour fires twice), 03:00 CET, 04:00 CET
    assert fired == [f"2026-10-25T0{h}:00:00Z" for h in range(4)]


# -- the loop on its thread ------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT:g} s waiting for {what}")
        time.sleep(0.02)


def test_the_loop_sleeps_until_the_next_tick_and_fires_it(orchestrator: OpenOrchestrator) -> None:
    orch = orchestrator(scheduled("minutely", "* * * * *"))
    tick = utc(2030, 1, 1, 12, 0)
    offset = tick.timestamp() - 0.5 - time.time()  # the clock reads half a second before it
    service = TriggerService(orch, clock=lambda: time.time() + offset)
    service.start()
    try:
        assert service.running
        wait_until("the tick to fire", lambda: stored(orch, "minutely").last_run_id is not None)
        record = stored(orch, "minutely")
        assert record.last_tick == tick_key(tick)
        assert record.last_run_id is not None
        assert orch.wait(record.last_run_id, timeout=WAIT)
        assert orch.get_run(record.last_run_id).state is RunState.SUCCEEDED
        with pytest.raises(RuntimeError, match="already started"):
            service.start()
    finally:
        service.stop(timeout=WAIT)
    assert not service.running


@pytest.mark.parametrize("crons", [["0 0 1 1 *"], []], ids=["yearly", "no-schedule"])
def test_stop_wakes_a_sleeping_loop(orchestrator: OpenOrchestrator, crons: list[str]) -> None:
    orch = orchestrator(*[scheduled(f"s{i}", cron) for i, cron in enumerate(crons)])
    service = TriggerService(orch)
    service.start()
    assert service.running
    service.stop(timeout=WAIT)  # the loop sleeps until next New Year (or for ever): stop wakes it
    assert not service.running


# -- two services, two processes, one Postgres -----------------------------------------------

PG_URL = os.environ.get("KLAW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated schema of the test Postgres (dropped afterwards)."""
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"Postgres is not reachable at {PG_URL} (set KLAW_TEST_POSTGRES_URL): {exc}")
    schema = f"klaw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    with PostgresMetadataStore(url) as store:
        store.migrate()
    yield url
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


FLOWS = """
import klaw


@klaw.stage
def noop() -> int:
    return 1


every_minute = klaw.workflow(
    "every_minute", [noop], schedule="* * * * *", catch_up="latest", max_active_runs=1000
)
"""

SERVICE = """
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from klaw.service.orchestrator import Orchestrator
from klaw.triggers import TriggerService

root, url, home, ready, go = sys.argv[1:6]
orch = Orchestrator.open(Path(root), metadata_url=url, home=home)
start = datetime(2030, 1, 1, tzinfo=UTC)
service = TriggerService(orch, clock=start.timestamp)
service.sync(start)
Path(ready).touch()
deadline = time.monotonic() + 60
while not Path(go).exists():
    if time.monotonic() > deadline:
        raise SystemExit("no go signal within 60 s")
    time.sleep(0.005)
fired = []
for minute in range(1, 101):
    fired += service.run_due(start + timedelta(minutes=minute))
for tick in fired:
    if tick.run_id is not None and not orch.wait(tick.run_id, timeout=120):
        raise SystemExit(f"run {tick.run_id} did not end within 120 s")
print(json.dumps([[tick.key, tick.run_id, tick.error] for tick in fired]))
orch.close()
"""


def test_two_services_in_two_processes_fire_each_of_100_ticks_once(
    pg_url: str, tmp_path: Path
) -> None:
    (tmp_path / "klaw.toml").write_text('[project]\nname = "cron"\nmodules = ["flows.py"]\n')
    (tmp_path / "flows.py").write_text(textwrap.dedent(FLOWS))
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLAW_")}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(tmp_path),
                pg_url,
                str(tmp_path / f"home{i}"),
                str(tmp_path / f"ready{i}"),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    try:
        wait_until(
            "both services to be ready",
            lambda: all(
                (tmp_path / f"ready{i}").exists() or p.poll() is not None
                for i, p in enumerate(procs)
            ),
        )
        go.touch()  # both step through the same 100 minutes at the same time
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    fired = [json.loads(out) for out, _ in outputs]
    expected = {tick_key(utc(2030, 1, 1) + timedelta(minutes=m)) for m in range(1, 101)}

    # Each process reports the ticks it won; together they are the 100 ticks, none twice.
    won = [[key for key, _, _ in f] for f in fired]
    assert sorted(won[0] + won[1]) == sorted(expected)
    assert all(error is None and run_id for f in fired for _, run_id, error in f)

    # The database agrees: 100 claimed ticks, each with its own run, every run succeeded.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        ticks = conn.execute("SELECT tick, run_id, error, owner FROM schedule_ticks").fetchall()
        runs = dict(
            conn.execute(
                "SELECT run_id, state FROM runs WHERE workflow = 'every_minute'"
            ).fetchall()
        )
    assert {t[0] for t in ticks} == expected and len(ticks) == 100
    assert all(error is None for _, _, error, _ in ticks)
    run_ids = [run_id for _, run_id, _, _ in ticks]
    assert len(set(run_ids)) == 100 and set(run_ids) == set(runs)
    assert set(runs.values()) == {"succeeded"}
    owners = {owner for *_, owner in ticks}
    assert owners <= {f"{socket.gethostname()}:{p.pid}" for p in procs}
