"""The metadata store contract: every backend's test class subclasses ``MetadataStoreContract``
and provides a ``store`` fixture (an already-migrated, empty store)."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from typing import Any, Protocol

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klaw.errors import MetadataError, RunConflictError, RunNotFoundError, ScheduleNotFoundError
from klaw.metadata.records import (
    AttemptRecord,
    Batch,
    EventRecord,
    IdempotencyRecord,
    Lease,
    LogRecord,
    MetricRecord,
    RunFilter,
    RunRecord,
    ScheduleDefinition,
    TokenRecord,
)
from klaw.metadata.store import (
    ActivityReader,
    IdempotencyStore,
    LeaseStore,
    MetadataReader,
    MetadataWriter,
    MetricsReader,
    ScheduleStore,
    TokenStore,
)
from klaw.states import RunState, StageState


class Store(
    MetadataWriter,
    MetadataReader,
    LeaseStore,
    MetricsReader,
    ScheduleStore,
    TokenStore,
    IdempotencyStore,
    ActivityReader,
    Protocol,
):
    """Everything a full metadata backend offers."""


_ids = itertools.count()


def fresh_id(prefix: str = "run") -> str:
    """A run id unique within the test session (ids sort by creation order)."""
    return f"{prefix}{next(_ids):08d}"


def make_run(run_id: str | None = None, **fields: object) -> RunRecord:
    values: dict[str, object] = {
        "run_id": run_id or fresh_id(),
        "workflow": "wf",
        "state": RunState.QUEUED,
        "created_at": 1_000.0,
        "owner_host": socket.gethostname(),
        "owner_pid": os.getpid(),
    }
    values.update(fields)
    return RunRecord(**values)  # type: ignore[arg-type]


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def event(run_id: str, kind: str, ts: float = 1.0, **fields: object) -> EventRecord:
    return EventRecord(run_id=run_id, kind=kind, ts=ts, **fields)  # type: ignore[arg-type]


class MetadataStoreContract:
    # -- runs ------------------------------------------------------------------------------

    def test_run_round_trips_every_field(self, store: Store) -> None:
        run = make_run(
            state=RunState.RUNNING,
            created_at=1_700_000_000.25,
            started_at=1_700_000_001.5,
            ended_at=None,
            params={"day": "2024-01-01", "nested": {"n": [1, 2.5, None, True]}},
            selection="orders+",
            parent_run_id="parent-run-0001",
            owner_host="host-a",
            owner_pid=4242,
            error="a previous error",
            stage_counts={"succeeded": 3, "running": 1},
        )
        store.create_run(run)
        assert store.get_run(run.run_id) == run

    def test_create_run_appends_run_created_event(self, store: Store) -> None:
        run = make_run(created_at=5.0)
        store.create_run(run)
        events = store.list_events(run.run_id)
        assert [(e.seq, e.kind, e.run_id) for e in events] == [(1, "run_created", run.run_id)]
        assert events[0].ts == 5.0

    def test_create_run_twice_is_refused(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)
        with pytest.raises(MetadataError, match=run.run_id):
            store.create_run(run)
        assert len(store.list_events(run.run_id)) == 1

    def test_run_upsert_latest_wins(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)
        running = make_run(run.run_id, state=RunState.RUNNING, started_at=2.0)
        store.commit(Batch(runs=[running]))
        assert store.get_run(run.run_id) == running
        done = make_run(
            run.run_id,
            state=RunState.SUCCEEDED,
            started_at=2.0,
            ended_at=9.0,
            stage_counts={"succeeded": 4},
        )
        store.commit(Batch(runs=[done]))
        assert store.get_run(run.run_id) == done

    def test_commit_inserts_a_run_it_has_not_seen(self, store: Store) -> None:
        run = make_run(state=RunState.RUNNING)
        store.commit(Batch(runs=[run]))
        assert store.get_run(run.run_id) == run

    def test_get_unknown_run_names_the_id(self, store: Store) -> None:
        with pytest.raises(RunNotFoundError, match="no-such-run-xyz") as info:
            store.get_run("no-such-run-xyz")
        assert "did you mean" not in str(info.value)

    def test_get_unknown_run_suggests_close_ids(self, store: Store) -> None:
        stem = fresh_id("near")
        for suffix in ("a1", "a2", "a3", "a4"):
            store.create_run(make_run(f"{stem}{suffix}"))
        far = fresh_id("far")
        store.create_run(make_run(far))
        decoy = f"{stem[:4]}-shares-only-four-chars"  # sorts before the stem's runs
        store.create_run(make_run(decoy))
        with pytest.raises(RunNotFoundError) as info:
            store.get_run(f"{stem}zz")
        message = str(info.value)
        assert f"{stem}zz" in message
        assert "did you mean" in message
        assert sum(f"{stem}a{i}" in message for i in range(1, 5)) == 3
        assert far not in message
        assert decoy not in message

    def test_list_runs_newest_first_with_filters(self, store: Store) -> None:
        wf = fresh_id("wf")
        other = fresh_id("wf")
        runs = [
            make_run(workflow=wf, created_at=100.0 + i, state=state)
            for i, state in enumerate(
                [RunState.SUCCEEDED, RunState.FAILED, RunState.RUNNING, RunState.QUEUED]
            )
        ]
        for run in runs:
            store.create_run(run)
        store.create_run(make_run(workflow=other, created_at=500.0))

        listed = store.list_runs(RunFilter(workflow=wf))
        assert [r.run_id for r in listed] == [r.run_id for r in reversed(runs)]
        assert listed[0] == runs[-1]

        active = store.list_runs(RunFilter(workflow=wf, states=(RunState.QUEUED, RunState.RUNNING)))
        assert [r.run_id for r in active] == [runs[3].run_id, runs[2].run_id]

        assert [r.run_id for r in store.list_runs(RunFilter(workflow=wf, limit=2))] == [
            runs[3].run_id,
            runs[2].run_id,
        ]
        everyone = store.list_runs(RunFilter(limit=1000))
        ids = [r.run_id for r in everyone]
        assert set(ids) >= {r.run_id for r in runs}
        created = [r.created_at for r in everyone]
        assert created == sorted(created, reverse=True)

    def test_list_runs_pages_with_before_cursor(self, store: Store) -> None:
        wf = fresh_id("wf")
        # Two runs share a created_at: the run id breaks the tie.
        runs = [make_run(workflow=wf, created_at=float(10 + i // 2)) for i in range(7)]
        for run in runs:
            store.create_run(run)
        expected = [r.run_id for r in sorted(runs, key=lambda r: (r.created_at, r.run_id))][::-1]
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(10):
            page = store.list_runs(RunFilter(workflow=wf, limit=3, before=cursor))
            if not page:
                break
            assert len(page) <= 3
            seen.extend(r.run_id for r in page)
            cursor = page[-1].run_id
        assert seen == expected

    def test_list_runs_in_a_time_range(self, store: Store) -> None:
        wf = fresh_id("wf")
        runs = [make_run(workflow=wf, created_at=float(t)) for t in (10, 20, 30, 40)]
        for run in runs:
            store.create_run(run)
        found = store.list_runs(RunFilter(workflow=wf, since=20.0, until=40.0))
        assert [r.run_id for r in found] == [runs[2].run_id, runs[1].run_id]

    def test_last_runs_of_each_workflow(self, store: Store) -> None:
        a, b, none = fresh_id("wf"), fresh_id("wf"), fresh_id("wf")
        runs = {
            wf: [make_run(workflow=wf, created_at=float(t)) for t in (5, 7, 6)] for wf in (a, b)
        }
        for made in runs.values():
            for run in made:
                store.create_run(run)
        found = store.last_runs([b, none, a, b], 2)
        newest = [runs[b][1], runs[b][2], runs[a][1], runs[a][2]]
        assert [r.run_id for r in found] == [r.run_id for r in newest]

    def test_activity_counts_a_window_by_bucket_and_ranks_stages(self, store: Store) -> None:
        since = 3e9  # later than every other test's runs: this window holds only these
        wf = fresh_id("wf")
        states = [RunState.SUCCEEDED, RunState.FAILED, RunState.FAILED, RunState.RUNNING]
        runs = [
            make_run(workflow=wf, created_at=since + 30.0 * i, state=state)
            for i, state in enumerate(states)
        ]
        store.create_run(make_run(workflow=wf, created_at=since - 1.0))  # before the window
        for run in runs:
            store.create_run(run)

        def attempt(run: RunRecord, stage: str, n: int, state: StageState, took: float) -> Any:
            start = run.created_at + 1.0
            return AttemptRecord(
                run_id=run.run_id,
                stage=stage,
                attempt=n,
                state=state,
                token="t",
                started_at=start,
                ended_at=start + took,
                error=f"{stage} broke in {run.run_id}" if state is StageState.FAILED else None,
            )

        store.commit(
            Batch(
                attempts=[
                    attempt(runs[0], "load", 1, StageState.SUCCEEDED, 5.0),
                    attempt(runs[1], "load", 1, StageState.FAILED, 1.0),
                    attempt(runs[1], "load", 2, StageState.FAILED, 2.0),
                    attempt(runs[2], "load", 1, StageState.FAILED, 1.5),
                    attempt(runs[2], "sum", 1, StageState.FAILED, 9.0),
                ]
            )
        )
        found = store.activity(since, bucket_s=60.0, limit=2)
        counts = {(c.start, c.state): c.count for c in found.counts}
        assert counts == {
            (since, RunState.SUCCEEDED): 1,
            (since, RunState.FAILED): 1,
            (since + 60.0, RunState.FAILED): 1,
            (since + 60.0, RunState.RUNNING): 1,
        }
        [load, total] = found.failing
        assert (load.stage, load.failures, load.last_run_id) == ("load", 3, runs[2].run_id)
        assert load.last_error == f"load broke in {runs[2].run_id}"
        assert (total.stage, total.failures) == ("sum", 1)
        assert [(d.stage, d.duration_s) for d in found.longest] == [("sum", 9.0), ("load", 5.0)]
        with pytest.raises(MetadataError, match="positive"):
            store.activity(since, bucket_s=0.0)

    # -- attempts --------------------------------------------------------------------------

    def test_attempt_round_trips_every_field(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)
        attempt = AttemptRecord(
            run_id=run.run_id,
            stage="daily_revenue",
            attempt=2,
            state=StageState.SUCCEEDED,
            token="tok-123",
            queued_at=1.0,
            started_at=2.0,
            ended_at=5.5,
            error="boom once",
            traceback="Traceback (most recent call last):\n  ...",
            asset_key="daily_revenue",
            snapshot_id=2**40 + 7,
            reused_from="older-run",
            rows=12_345_678_901,
            bytes=2**41,
        )
        store.commit(Batch(attempts=[attempt]))
        [got] = store.list_attempts(run.run_id)
        assert got == attempt
        assert got.duration == 3.5

    def test_attempt_upsert_latest_state_wins(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)

        def attempt(state: StageState, **fields: object) -> AttemptRecord:
            return AttemptRecord(
                run_id=run.run_id,
                stage="s",
                attempt=1,
                state=state,
                **fields,  # type: ignore[arg-type]
            )

        store.commit(Batch(attempts=[attempt(StageState.READY, queued_at=1.0)]))
        # Two updates of one attempt in one batch: the later one wins.
        store.commit(
            Batch(
                attempts=[
                    attempt(StageState.READY, queued_at=1.0, token="t"),
                    attempt(StageState.RUNNING, queued_at=1.0, started_at=2.0),
                ]
            )
        )
        store.commit(
            Batch(
                attempts=[
                    attempt(StageState.SUCCEEDED, queued_at=1.0, started_at=2.0, ended_at=3.0)
                ]
            )
        )
        # An attempt that has ended is never written again (a stale writer is fenced off).
        store.commit(Batch(attempts=[attempt(StageState.FAILED, error="late")]))
        store.commit(Batch(attempts=[attempt(StageState.RUNNING, started_at=9.0)]))
        assert store.list_attempts(run.run_id) == [
            attempt(StageState.SUCCEEDED, queued_at=1.0, started_at=2.0, ended_at=3.0)
        ]

    def test_attempt_written_as_it_gains_fields_reads_back_as_each_commit_left_it(
        self, store: Store
    ) -> None:
        run = make_run()
        store.create_run(run)
        record = AttemptRecord(
            run_id=run.run_id, stage="s", attempt=1, state=StageState.READY, queued_at=1.0
        )
        changes: list[dict[str, object]] = [
            {},
            {"state": StageState.RUNNING, "token": "tok", "started_at": 2.0},
            {"lease_expires_at": 32.0},
            {"state": StageState.SUCCEEDED, "ended_at": 3.0, "snapshot_id": 7, "rows": 0},
        ]
        for change in changes:
            record = msgspec.structs.replace(record, **change)
            store.commit(Batch(attempts=[record]))
            assert store.list_attempts(run.run_id) == [record]

    def test_attempts_ordered_by_stage_then_attempt(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)
        keys = [("b", 2), ("a", 1), ("b", 1), ("c", 0), ("a", 3), ("a", 2)]
        store.commit(
            Batch(
                attempts=[
                    AttemptRecord(run_id=run.run_id, stage=s, attempt=n, state=StageState.PENDING)
                    for s, n in keys
                ]
            )
        )
        got = [(a.stage, a.attempt) for a in store.list_attempts(run.run_id)]
        assert got == sorted(keys)
        assert store.list_attempts("no-such-run") == []

    # -- events ----------------------------------------------------------------------------

    def test_event_round_trips_every_field(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)
        sent = event(
            run.run_id,
            "stage_failed",
            ts=123.5,
            stage="orders",
            attempt=3,
            state="failed",
            data={"error": "boom", "retry_in": 1.5, "tags": ["a", "b"], "n": None},
        )
        store.commit(Batch(events=[sent]))
        got = store.list_events(run.run_id)[-1]
        assert (got.run_id, got.kind, got.ts, got.stage, got.attempt, got.state, got.data) == (
            run.run_id,
            "stage_failed",
            123.5,
            "orders",
            3,
            "failed",
            {"error": "boom", "retry_in": 1.5, "tags": ["a", "b"], "n": None},
        )
        assert got.seq == 2

    def test_event_seq_monotonic_across_commits_and_per_run(self, store: Store) -> None:
        a, b = make_run(), make_run()
        store.create_run(a)
        store.create_run(b)
        store.commit(Batch(events=[event(a.run_id, "x"), event(b.run_id, "y")]))
        store.commit(Batch(events=[event(a.run_id, f"x{i}") for i in range(3)]))
        store.commit(Batch(events=[event(b.run_id, "y2"), event(a.run_id, "x3")]))
        assert [(e.seq, e.kind) for e in store.list_events(a.run_id)] == [
            (1, "run_created"),
            (2, "x"),
            (3, "x0"),
            (4, "x1"),
            (5, "x2"),
            (6, "x3"),
        ]
        assert [(e.seq, e.kind) for e in store.list_events(b.run_id)] == [
            (1, "run_created"),
            (2, "y"),
            (3, "y2"),
        ]

    def test_list_events_after_seq(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)
        store.commit(Batch(events=[event(run.run_id, f"e{i}") for i in range(5)]))
        assert [e.seq for e in store.list_events(run.run_id, after_seq=4)] == [5, 6]
        assert store.list_events(run.run_id, after_seq=6) == []
        assert store.list_events("no-such-run") == []

    @settings(
        max_examples=40,
        deadline=None,
        # Every backend's class runs this one test function (differing executors, by design).
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        batches=st.lists(
            st.lists(
                st.tuples(
                    st.sampled_from([0, 1]),
                    st.text(min_size=1, max_size=12),
                    st.dictionaries(
                        st.text(max_size=5),
                        st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=8)),
                        max_size=3,
                    ),
                ),
                max_size=6,
            ),
            max_size=6,
        )
    )
    def test_any_batches_round_trip_events_in_order(
        self, store: Store, batches: list[list[tuple[int, str, dict[str, object]]]]
    ) -> None:
        runs = [make_run(), make_run()]
        for run in runs:
            store.create_run(run)
        sent: list[list[tuple[str, dict[str, object]]]] = [[], []]
        for items in batches:
            store.commit(
                Batch(events=[event(runs[i].run_id, kind, data=data) for i, kind, data in items])
            )
            for i, kind, data in items:
                sent[i].append((kind, data))
        for run, expected in zip(runs, sent, strict=True):
            got = store.list_events(run.run_id)[1:]
            assert [(e.kind, e.data) for e in got] == expected
            assert [e.seq for e in got] == list(range(2, len(expected) + 2))

    # -- logs and metrics ------------------------------------------------------------------

    def test_logs_round_trip_order_and_filters(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)

        def log(stage: str, attempt: int, line: str, **fields: object) -> LogRecord:
            values: dict[str, object] = {"stream": "stdout", "ts": 1.0, **fields}
            return LogRecord(
                run_id=run.run_id,
                stage=stage,
                attempt=attempt,
                line=line,
                **values,  # type: ignore[arg-type]
            )

        store.commit(
            Batch(logs=[log("b", 1, "b1-first"), log("a", 2, "a2-first"), log("a", 1, "a1-first")])
        )
        store.commit(
            Batch(
                logs=[
                    log("a", 1, "a1-second", stream="stderr", level="WARNING", ts=2.5),
                    log("b", 1, "b1-second"),
                ]
            )
        )
        got = store.read_logs(run.run_id)
        assert [g.line for g in got] == [
            "a1-first",
            "a1-second",
            "a2-first",
            "b1-first",
            "b1-second",
        ]
        assert sorted(g.seq for g in got) == [1, 2, 3, 4, 5]
        second = got[1]
        assert (second.run_id, second.stage, second.attempt, second.stream) == (
            run.run_id,
            "a",
            1,
            "stderr",
        )
        assert (second.ts, second.level, second.seq) == (2.5, "WARNING", 4)
        assert [g.line for g in store.read_logs(run.run_id, stage="a")] == [
            "a1-first",
            "a1-second",
            "a2-first",
        ]
        assert [g.line for g in store.read_logs(run.run_id, stage="a", attempt=1)] == [
            "a1-first",
            "a1-second",
        ]
        assert [g.line for g in store.read_logs(run.run_id, attempt=1)] == [
            "a1-first",
            "a1-second",
            "b1-first",
            "b1-second",
        ]
        assert store.read_logs(run.run_id, stage="zzz") == []
        # ``seq`` is a per-run cursor: only the lines written after it come back
        later = store.read_logs(run.run_id, after_seq=3)
        assert [(g.seq, g.line) for g in later] == [(4, "a1-second"), (5, "b1-second")]
        assert [g.line for g in store.read_logs(run.run_id, stage="b", after_seq=1)] == [
            "b1-second"
        ]
        assert store.read_logs(run.run_id, after_seq=5) == []

    def test_log_pages_follow_the_seq_cursor(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)
        lines = [
            LogRecord(
                run_id=run.run_id, stage=s, attempt=1, stream="stdout", ts=1.0, line=f"{s}{i}"
            )
            for i, s in enumerate("babab")
        ]
        store.commit(Batch(logs=lines))  # seq 1..5 in this order, whatever the stages

        def page(**kw: object) -> list[tuple[int, str]]:
            return [(g.seq, g.line) for g in store.read_logs(run.run_id, **kw)]  # type: ignore[arg-type]

        assert page(limit=2) == [(1, "b0"), (2, "a1")]
        assert page(after_seq=2, limit=2) == [(3, "b2"), (4, "a3")]
        assert page(after_seq=4, limit=2) == [(5, "b4")]
        assert page(limit=2, tail=True) == [(4, "a3"), (5, "b4")]
        assert page(after_seq=4, limit=3, tail=True) == [(5, "b4")]
        assert page(stage="a", limit=5, tail=True) == [(2, "a1"), (4, "a3")]

    def test_metrics_round_trip(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)
        metrics = [
            MetricRecord(
                run_id=run.run_id, name="duration_s", value=1.25, ts=3.0, stage="a", attempt=1
            ),
            MetricRecord(run_id=run.run_id, name="rows", value=1e12, ts=4.0),
        ]
        store.commit(Batch(metrics=metrics))
        got = store.list_metrics(run.run_id)
        assert sorted(got, key=lambda m: m.name) == metrics
        assert store.list_metrics("no-such-run") == []

    # -- batches ---------------------------------------------------------------------------

    def test_empty_batch_is_a_noop(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)
        store.commit(Batch())
        assert store.list_events(run.run_id)[-1].seq == 1
        store.commit(Batch(events=[event(run.run_id, "next")]))
        assert [e.seq for e in store.list_events(run.run_id)] == [1, 2]

    def test_failed_batch_writes_nothing_and_leaves_no_seq_gap(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)
        broken = make_run(workflow=None)  # NOT NULL violation, after the events in the batch
        with pytest.raises(MetadataError):
            store.commit(
                Batch(
                    events=[event(run.run_id, "lost")],
                    attempts=[
                        AttemptRecord(
                            run_id=run.run_id, stage="s", attempt=1, state=StageState.READY
                        )
                    ],
                    runs=[broken],
                )
            )
        assert [e.kind for e in store.list_events(run.run_id)] == ["run_created"]
        assert store.list_attempts(run.run_id) == []
        store.commit(Batch(events=[event(run.run_id, "kept")]))
        assert [(e.seq, e.kind) for e in store.list_events(run.run_id)] == [
            (1, "run_created"),
            (2, "kept"),
        ]

    def test_migrate_again_is_harmless(self, store: Store) -> None:
        run = make_run()
        store.create_run(run)
        store.migrate()
        assert store.get_run(run.run_id) == run

    # -- concurrency limit -----------------------------------------------------------------

    def test_limit_refuses_when_live_owner_runs(self, store: Store) -> None:
        wf = fresh_id("wf")
        live = make_run(workflow=wf, state=RunState.RUNNING, owner_pid=os.getpid())
        store.create_run(live)
        blocked = make_run(workflow=wf)
        with pytest.raises(RunConflictError) as info:
            store.create_run(blocked, max_active=1)
        message = str(info.value)
        assert wf in message
        assert live.run_id in message
        assert str(os.getpid()) in message
        assert "klaw cancel" in message
        with pytest.raises(RunNotFoundError):
            store.get_run(blocked.run_id)
        assert store.get_run(live.run_id).state is RunState.RUNNING

    def test_limit_counts_queued_and_running_only(self, store: Store) -> None:
        wf = fresh_id("wf")
        store.create_run(make_run(workflow=wf, state=RunState.QUEUED))
        for state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED):
            store.create_run(make_run(workflow=wf, state=state))
        store.create_run(make_run(workflow=fresh_id("wf"), state=RunState.RUNNING))
        second = make_run(workflow=wf)
        store.create_run(second, max_active=2)
        assert store.get_run(second.run_id).state is RunState.QUEUED
        with pytest.raises(RunConflictError):
            store.create_run(make_run(workflow=wf), max_active=2)

    def test_limit_marks_dead_owner_failed_and_lets_new_run_in(self, store: Store) -> None:
        wf = fresh_id("wf")
        pid = dead_pid()
        host = socket.gethostname()
        orphan = make_run(workflow=wf, state=RunState.RUNNING, owner_pid=pid, owner_host=host)
        store.create_run(orphan)
        store.commit(Batch(events=[event(orphan.run_id, "stage_started")]))
        fresh = make_run(workflow=wf)
        store.create_run(fresh, max_active=1)

        assert store.get_run(fresh.run_id).state is RunState.QUEUED
        failed = store.get_run(orphan.run_id)
        assert failed.state is RunState.FAILED
        assert failed.error == f"abandoned: owner process {pid} on {host} is gone"
        assert failed.ended_at is not None
        events = store.list_events(orphan.run_id)
        assert [(e.seq, e.kind) for e in events] == [
            (1, "run_created"),
            (2, "stage_started"),
            (3, "run_abandoned"),
        ]

    def test_limit_marks_dead_owner_failed_even_when_refusing(self, store: Store) -> None:
        wf = fresh_id("wf")
        orphan = make_run(workflow=wf, state=RunState.RUNNING, owner_pid=dead_pid())
        live = make_run(workflow=wf, state=RunState.RUNNING)
        store.create_run(orphan)
        store.create_run(live)
        with pytest.raises(RunConflictError) as info:
            store.create_run(make_run(workflow=wf), max_active=1)
        assert orphan.run_id not in str(info.value)
        assert store.get_run(orphan.run_id).state is RunState.FAILED

    def test_limit_assumes_other_hosts_owner_alive(self, store: Store) -> None:
        wf = fresh_id("wf")
        remote = make_run(
            workflow=wf,
            state=RunState.RUNNING,
            owner_pid=dead_pid(),
            owner_host=socket.gethostname() + "-elsewhere",
        )
        store.create_run(remote)
        with pytest.raises(RunConflictError, match=remote.run_id):
            store.create_run(make_run(workflow=wf), max_active=1)
        assert store.get_run(remote.run_id).state is RunState.RUNNING

    # -- leases ----------------------------------------------------------------------------

    @staticmethod
    def _running(store: Store, run: RunRecord, stage: str, token: str, lease: float) -> Lease:
        store.commit(
            Batch(
                attempts=[
                    AttemptRecord(
                        run_id=run.run_id,
                        stage=stage,
                        attempt=1,
                        state=StageState.RUNNING,
                        token=token,
                        lease_expires_at=lease,
                    )
                ]
            )
        )
        return Lease(run.run_id, stage, 1, token)

    def test_renewal_extends_a_live_lease_and_fences_a_stale_one(self, store: Store) -> None:
        run = make_run(state=RunState.RUNNING)
        store.create_run(run)
        live = self._running(store, run, "a", "tok-a", 100.0)
        stale = Lease(run.run_id, "a", 1, "old-token")
        unknown = Lease(run.run_id, "not-yet-recorded", 1, "t")  # its write is on its way
        assert store.renew_leases([live, stale, unknown], 500.0) == [stale]
        [attempt] = store.list_attempts(run.run_id)
        assert attempt.lease_expires_at == 500.0

    def test_expiry_ends_only_lapsed_attempts_and_fences_them(self, store: Store) -> None:
        run = make_run(state=RunState.RUNNING)
        store.create_run(run)
        lapsed = self._running(store, run, "a", "tok-a", 100.0)
        live = self._running(store, run, "b", "tok-b", 300.0)
        [ended] = store.expire_leases(run.run_id, 200.0, "lease expired")
        assert (ended.stage, ended.state, ended.error) == ("a", StageState.FAILED, "lease expired")
        assert ended.ended_at == 200.0
        assert store.expire_leases(run.run_id, 200.0, "again") == []
        # the lapsed attempt is fenced: its renewals are refused and its late writes dropped
        assert store.renew_leases([lapsed, live], 900.0) == [lapsed]
        late = AttemptRecord(
            run_id=run.run_id, stage="a", attempt=1, state=StageState.SUCCEEDED, token="tok-a"
        )
        store.commit(Batch(attempts=[late]))
        states = {a.stage: a.state for a in store.list_attempts(run.run_id)}
        assert states == {"a": StageState.FAILED, "b": StageState.RUNNING}

    def test_adopt_run_takes_over_once_and_fences_unfinished_attempts(self, store: Store) -> None:
        old = (socket.gethostname(), dead_pid())
        run = make_run(state=RunState.RUNNING, owner_host=old[0], owner_pid=old[1])
        store.create_run(run)
        done = AttemptRecord(
            run_id=run.run_id, stage="a", attempt=1, state=StageState.SUCCEEDED, token="t1"
        )
        store.commit(Batch(attempts=[done]))
        lease = self._running(store, run, "b", "t2", 1e12)
        me = (socket.gethostname(), os.getpid())
        fenced = store.adopt_run(run.run_id, old, me, "owner died")
        assert fenced is not None
        assert [(a.stage, a.state, a.error) for a in fenced] == [
            ("b", StageState.FAILED, "owner died")
        ]
        assert store.adopt_run(run.run_id, old, (old[0], 1), "again") is None  # taken already
        taken = store.get_run(run.run_id)
        assert (taken.owner_host, taken.owner_pid) == me
        assert store.renew_leases([lease], 2e12) == [lease]
        finished = make_run(state=RunState.SUCCEEDED, owner_host=old[0], owner_pid=old[1])
        store.create_run(finished)
        assert store.adopt_run(finished.run_id, old, me, "x") is None  # not active

    # -- cancel ----------------------------------------------------------------------------

    def test_request_cancel_appends_event_and_returns_run(self, store: Store) -> None:
        run = make_run(state=RunState.RUNNING)
        store.create_run(run)
        store.commit(Batch(events=[event(run.run_id, "stage_started")]))
        assert store.request_cancel(run.run_id) == run
        store.commit(Batch(events=[event(run.run_id, "run_cancelled")]))
        assert [(e.seq, e.kind) for e in store.list_events(run.run_id)] == [
            (1, "run_created"),
            (2, "stage_started"),
            (3, "cancel_requested"),
            (4, "run_cancelled"),
        ]

    def test_request_cancel_unknown_run(self, store: Store) -> None:
        with pytest.raises(RunNotFoundError, match="no-such-run-abc"):
            store.request_cancel("no-such-run-abc")

    # -- schedules -------------------------------------------------------------------------

    def test_synced_schedules_round_trip(self, store: Store) -> None:
        nightly = sched("nightly", cron="0 3 * * *", timezone="Europe/Paris", catch_up="all")
        store.sync_schedules([sched("hourly"), nightly], now=100.0)
        listed = store.list_schedules()
        assert [s.name for s in listed] == ["hourly", "nightly"]
        got = listed[1]
        assert (got.workflow, got.cron, got.timezone, got.catch_up) == (
            "nightly",
            "0 3 * * *",
            "Europe/Paris",
            "all",
        )
        assert got.paused is False and (got.created_at, got.updated_at) == (100.0, 100.0)
        assert got.paused_at is None and got.resumed_at is None
        assert (got.last_tick, got.last_tick_at, got.last_run_id, got.last_error) == (
            None,
            None,
            None,
            None,
        )
        store.sync_schedules([], now=200.0)  # nothing to sync: nothing changes
        assert store.list_schedules() == listed

    def test_a_tick_is_claimed_once(self, store: Store) -> None:
        store.sync_schedules([sched("hourly")], now=1.0)
        tick = "2026-05-01T01:00:00Z"
        assert store.claim_tick("hourly", tick, now=2.0, owner="host-a:1") is True
        assert store.claim_tick("hourly", tick, now=2.5, owner="host-b:2") is False
        assert store.claim_tick("hourly", tick, now=3.0, owner="host-a:1") is False
        assert store.claim_tick("hourly", "2026-05-01T02:00:00Z", now=4.0) is True
        assert store.claim_tick("no-such-schedule", tick, now=4.0) is False

    def test_finish_tick_records_the_run_or_the_error(self, store: Store) -> None:
        store.sync_schedules([sched("a"), sched("b")], now=1.0)
        assert store.claim_tick("a", "2026-05-01T01:00:00Z", now=2.0)
        store.finish_tick("a", "2026-05-01T01:00:00Z", run_id="run-1")
        assert store.claim_tick("b", "2026-05-01T01:00:00Z", now=3.0)
        store.finish_tick("b", "2026-05-01T01:00:00Z", error="RunConflictError: busy")
        a, b = store.list_schedules()
        assert (a.last_tick, a.last_tick_at, a.last_run_id, a.last_error) == (
            "2026-05-01T01:00:00Z",
            2.0,
            "run-1",
            None,
        )
        assert (b.last_run_id, b.last_error) == (None, "RunConflictError: busy")

    def test_last_tick_is_the_newest_tick_not_the_latest_claim(self, store: Store) -> None:
        store.sync_schedules([sched("a")], now=1.0)
        for tick in ("2026-05-01T10:00:00Z", "2026-05-02T09:00:00Z", "2026-05-01T23:00:00Z"):
            assert store.claim_tick("a", tick, now=2.0)
        [a] = store.list_schedules()
        assert a.last_tick == "2026-05-02T09:00:00Z"

    def test_pause_refuses_claims_and_survives_a_resync(self, store: Store) -> None:
        store.sync_schedules([sched("a")], now=1.0)
        paused = store.set_paused("a", True, now=5.0)
        assert paused.paused is True and paused.paused_at == 5.0
        assert store.claim_tick("a", "2026-05-01T01:00:00Z", now=6.0) is False
        store.sync_schedules([sched("a", cron="*/5 * * * *", catch_up="none")], now=7.0)
        [a] = store.list_schedules()
        assert a.paused is True and a.paused_at == 5.0 and a.cron == "*/5 * * * *"
        resumed = store.set_paused("a", False, now=9.0)
        assert resumed.paused is False and resumed.resumed_at == 9.0
        assert store.claim_tick("a", "2026-05-01T01:00:00Z", now=10.0) is True

    def test_pause_and_resume_twice_keep_the_first_time(self, store: Store) -> None:
        store.sync_schedules([sched("a")], now=1.0)
        store.set_paused("a", True, now=2.0)
        assert store.set_paused("a", True, now=3.0).paused_at == 2.0
        store.set_paused("a", False, now=4.0)
        again = store.set_paused("a", False, now=5.0)
        assert again.paused is False and again.resumed_at == 4.0

    def test_resync_moves_updated_at_only_when_the_ticks_change(self, store: Store) -> None:
        store.sync_schedules([sched("a"), sched("b")], now=1.0)
        store.sync_schedules([sched("a", catch_up="all")], now=2.0)  # policy only; b not given
        a, b = store.list_schedules()
        assert (a.catch_up, a.created_at, a.updated_at) == ("all", 1.0, 1.0)
        assert (b.catch_up, b.updated_at) == ("latest", 1.0)  # left alone
        for changed in (
            sched("a", cron="0 4 * * *"),
            sched("a", cron="0 4 * * *", timezone="Asia/Tokyo"),
            sched("a", cron="0 4 * * *", timezone="Asia/Tokyo", workflow="other"),
        ):
            now = store.list_schedules()[0].updated_at + 1.0
            store.sync_schedules([changed], now=now)
            got = store.list_schedules()[0]
            assert (got.cron, got.timezone, got.workflow) == (
                changed.cron,
                changed.timezone,
                changed.workflow,
            )
            assert (got.created_at, got.updated_at) == (1.0, now)

    def test_pausing_an_unknown_schedule_names_it_and_close_names(self, store: Store) -> None:
        store.sync_schedules([sched("nightly"), sched("hourly")], now=1.0)
        with pytest.raises(ScheduleNotFoundError) as info:
            store.set_paused("nightley", True, now=2.0)
        assert "'nightley'" in info.value.message and "'nightly'" in info.value.message
        assert info.value.hint
        assert [s.paused for s in store.list_schedules()] == [False, False]

    # -- API tokens ------------------------------------------------------------------------

    def test_tokens_round_trip_and_list_oldest_first(self, store: Store) -> None:
        assert store.list_tokens() == [] and store.find_token("nope") is None
        b = token("tokb", created_at=2.0, expires_at=100.0)
        a = token("toka", created_at=1.0)
        store.create_token(b)
        store.create_token(a)
        assert store.find_token("tokb") == b
        assert store.list_tokens() == [a, b]

    def test_a_token_id_is_taken_once(self, store: Store) -> None:
        store.create_token(token("dup"))
        with pytest.raises(MetadataError) as info:
            store.create_token(token("dup", name="other"))
        assert "'dup'" in info.value.message
        assert [t.name for t in store.list_tokens()] == ["ci"]

    def test_revoking_keeps_the_first_time_and_unknown_is_none(self, store: Store) -> None:
        store.create_token(token("tok"))
        revoked = store.revoke_token("tok", now=5.0)
        assert revoked is not None and revoked.revoked_at == 5.0
        again = store.revoke_token("tok", now=9.0)
        assert again is not None and again.revoked_at == 5.0
        assert store.revoke_token("missing", now=9.0) is None
        found = store.find_token("tok")
        assert found is not None and not found.live(6.0)

    def test_use_is_recorded_at_most_once_a_minute(self, store: Store) -> None:
        store.create_token(token("tok"))
        store.touch_token("tok", now=100.0)
        store.touch_token("tok", now=130.0)
        found = store.find_token("tok")
        assert found is not None and found.last_used_at == 100.0
        store.touch_token("tok", now=161.0)
        found = store.find_token("tok")
        assert found is not None and found.last_used_at == 161.0
        store.touch_token("missing", now=200.0)  # unknown: nothing to record, no error

    # -- Idempotency-Keys ------------------------------------------------------------------

    def test_a_key_is_claimed_once_and_then_names_its_run(self, store: Store) -> None:
        first = claim("k", claim="c1")
        assert store.begin_key(first) is None
        pending = store.begin_key(claim("k", claim="c2", created_at=2.0))
        assert pending is not None
        assert (pending.claim, pending.run_id, pending.fingerprint) == ("c1", None, "f")
        assert store.finish_key(first, "run-1")
        done = store.begin_key(claim("k", claim="c3", fingerprint="other", created_at=3.0))
        assert done is not None and (done.claim, done.run_id) == ("c1", "run-1")
        assert done.fingerprint == "f" and done.expires_at == 100.0
        # a finished key is not taken over when its pending time is past, only when it expires
        late = store.begin_key(claim("k", claim="c4", created_at=50.0))
        assert late is not None and late.run_id == "run-1"
        # another subject's key of the same name is another key
        assert store.begin_key(claim("k", subject="bob", claim="c5")) is None

    def test_an_expired_key_is_claimed_anew_and_pruned(self, store: Store) -> None:
        first = claim("k", claim="c1")
        assert store.begin_key(first) is None
        assert store.finish_key(first, "run-1")
        again = claim("k", claim="c2", fingerprint="g", created_at=100.0, expires_at=200.0)
        assert store.begin_key(again) is None
        assert not store.finish_key(first, "run-stale")  # the old claim no longer holds it
        assert store.finish_key(again, "run-2")
        held = store.begin_key(claim("k", claim="c3", created_at=150.0))
        assert held is not None and (held.run_id, held.fingerprint) == ("run-2", "g")
        assert store.begin_key(claim("other", claim="c4")) is None
        assert store.prune_keys(150.0) == 1  # "other" (expires at 100); "k" lives until 200
        assert store.prune_keys(150.0) == 0
        assert store.prune_keys(200.0) == 1

    def test_a_claim_that_made_no_run_in_time_is_taken_over(self, store: Store) -> None:
        dead = claim("k", claim="c1", pending_until=10.0)
        assert store.begin_key(dead) is None
        early = store.begin_key(claim("k", claim="c2", created_at=9.0))
        assert early is not None and early.claim == "c1"
        taker = claim("k", claim="c3", fingerprint="g", created_at=10.0, pending_until=70.0)
        assert store.begin_key(taker) is None
        assert not store.finish_key(dead, "run-late")
        store.abandon_key(dead)  # no longer its key: nothing happens
        assert store.finish_key(taker, "run-3")
        found = store.begin_key(claim("k", claim="c4", created_at=11.0))
        assert found is not None and (found.claim, found.run_id) == ("c3", "run-3")

    def test_an_abandoned_key_can_be_claimed_again(self, store: Store) -> None:
        first = claim("k", claim="c1")
        assert store.begin_key(first) is None
        store.abandon_key(first)
        second = claim("k", claim="c2", fingerprint="g")
        assert store.begin_key(second) is None
        assert store.finish_key(second, "run-2")
        store.abandon_key(second)  # a key that made its run stays
        found = store.begin_key(claim("k", claim="c3"))
        assert found is not None and found.run_id == "run-2"

    def test_keys_round_trip_any_text(self, store: Store) -> None:
        odd = "k\u00e9y \U0001f511 / ' \" ; --"
        assert store.begin_key(claim(odd, subject="oidc:" + odd)) is None
        found = store.begin_key(claim(odd, subject="oidc:" + odd, claim="c2"))
        assert found is not None and (found.subject, found.key) == ("oidc:" + odd, odd)

    def test_threads_racing_for_one_key_make_one_claim(self, store: Store) -> None:
        import threading

        won: list[str] = []
        start = threading.Barrier(8)

        def race(i: int) -> None:
            start.wait()
            if store.begin_key(claim("race", claim=f"c{i}")) is None:
                won.append(f"c{i}")

        threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1
        found = store.begin_key(claim("race", claim="late"))
        assert found is not None and found.claim == won[0]

    # -- the pipeline lifecycle (migration 7) ----------------------------------------------

    def test_run_records_its_version_and_environment(self, store: Store) -> None:
        run = make_run(version=3, environment="qa")
        store.create_run(run)
        assert store.get_run(run.run_id) == run
        plain = make_run()
        store.create_run(plain)
        assert store.get_run(plain.run_id).version is None

    def test_versions_deployments_requests_and_audit(self, store: Store) -> None:
        from klaw.metadata.records import (
            ApprovalRecord,
            AuditRecord,
            DecisionRecord,
            DeploymentRecord,
            VersionRecord,
        )

        wf = fresh_id("wf")

        def version(n: int) -> VersionRecord:
            return VersionRecord(
                workflow=wf,
                version=n,
                hash=f"h{n}",
                format=1,
                kind="folder",
                author="a",
                message=f"m{n}",
                created_at=float(n),
                stage="dev",
                stages=2,
            )

        def make(tx: Any) -> None:
            for n in (1, 2, 3):
                assert tx.next_version() == n
                tx.add_version(version(n), f'{{"n": {n}}}')
                tx.audit(
                    AuditRecord(
                        at=float(n), actor="a", action="version.created", workflow=wf, version=n
                    )
                )
            tx.deploy(
                DeploymentRecord(
                    workflow=wf, environment="dev", version=3, deployed_at=3.0, deployed_by="a"
                )
            )
            tx.set_stage(1, "qa")
            tx.add_request(
                ApprovalRecord(
                    request_id=f"{wf}-r1",
                    workflow=wf,
                    version=1,
                    environment="uat",
                    requester="a",
                    state="pending",
                    created_at=4.0,
                    required=1,
                )
            )
            tx.decide(
                f"{wf}-r1", DecisionRecord(approver="b", decision="approve", comment="ok", at=5.0)
            )

        store.change(wf, "test", make)
        assert [v.version for v in store.list_versions(wf)] == [3, 2, 1]
        assert [v.version for v in store.list_versions(wf, limit=1, before=3)] == [2]
        assert store.get_version(wf, 1).stage == "qa"
        assert store.version_by_hash(wf, "h2").version == 2
        assert store.version_content(wf, 3) == '{"n": 3}'
        assert [(d.environment, d.version) for d in store.list_deployments(wf)] == [("dev", 3)]
        [pending] = store.list_requests(workflow=wf, state="pending")
        assert pending.decisions[0].approver == "b" and pending.decisions[0].comment == "ok"
        assert store.change(wf, "test", lambda tx: tx.close_request(f"{wf}-r1", "approved", 6.0))
        assert not store.change(
            wf, "test", lambda tx: tx.close_request(f"{wf}-r1", "approved", 7.0)
        )
        assert store.get_request(f"{wf}-r1").state == "approved"
        entries = store.list_audit(workflow=wf)
        assert [e.version for e in entries] == [3, 2, 1]  # newest first
        assert [e.version for e in store.list_audit(workflow=wf, before=entries[0].seq)] == [2, 1]
        with pytest.raises(MetadataError):  # the same content is one version
            store.change(
                wf,
                "test",
                lambda tx: tx.add_version(
                    version(4).__class__(**{**msgspec.structs.asdict(version(4)), "hash": "h1"}),
                    "{}",
                ),
            )

    def test_one_pending_request_per_environment(self, store: Store) -> None:
        from klaw.metadata.records import ApprovalRecord

        wf = fresh_id("wf")

        def ask(request_id: str) -> ApprovalRecord:
            return ApprovalRecord(
                request_id=request_id,
                workflow=wf,
                version=1,
                environment="prod",
                requester="a",
                state="pending",
                created_at=1.0,
                required=1,
            )

        store.change(wf, "test", lambda tx: tx.add_request(ask(f"{wf}-1")))
        with pytest.raises(MetadataError):
            store.change(wf, "test", lambda tx: tx.add_request(ask(f"{wf}-2")))
        store.change(wf, "test", lambda tx: tx.close_request(f"{wf}-1", "rejected", 2.0))
        store.change(wf, "test", lambda tx: tx.add_request(ask(f"{wf}-3")))  # decided: free again

    def test_the_audit_log_is_append_only(self, store: Store) -> None:
        from klaw.metadata.records import AuditRecord

        wf = fresh_id("wf")
        entry = AuditRecord(at=1.0, actor="a", action="promoted", workflow=wf, detail={"k": [1]})
        store.change(wf, "test", lambda tx: tx.audit(entry))
        [found] = store.list_audit(workflow=wf)
        assert found.detail == {"k": [1]} and found.actor == "a"
        sql = store._sql  # type: ignore[attr-defined]
        for statement in ("UPDATE audit SET actor = 'x'", "DELETE FROM audit"):
            with pytest.raises(MetadataError, match="append-only"):
                store._in_transaction("test", lambda conn, s=statement: conn.execute(sql(s)))  # type: ignore[attr-defined]
        assert store.list_audit(workflow=wf) == [found]


def claim(key: str, **fields: object) -> IdempotencyRecord:
    """A claim on ``key`` of alice with fingerprint f, made at 1.0, pending until 60.0 and
    expiring at 100.0."""
    values: dict[str, object] = {
        "subject": "alice",
        "key": key,
        "fingerprint": "f",
        "claim": "c",
        "created_at": 1.0,
        "expires_at": 100.0,
        "pending_until": 60.0,
    }
    values.update(fields)
    return IdempotencyRecord(**values)  # type: ignore[arg-type]


def sched(name: str, **fields: str) -> ScheduleDefinition:
    """A schedule definition named ``name`` (its workflow too, unless given), hourly in UTC."""
    values = {"name": name, "workflow": name, "cron": "0 * * * *"} | fields
    return ScheduleDefinition(**values)


def token(token_id: str, **fields: object) -> TokenRecord:
    """A stored token with id ``token_id`` (an admin token named ci, made at 1.0)."""
    values: dict[str, object] = {
        "token_id": token_id,
        "name": "ci",
        "role": "admin",
        "secret_hash": "ab" * 32,
        "created_at": 1.0,
    }
    values.update(fields)
    return TokenRecord(**values)  # type: ignore[arg-type]
