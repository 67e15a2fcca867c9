"""The readiness state machine alone: no clock, no I/O, no threads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klaw.execution.readiness import Readiness
from klaw.states import RunState, StageState

S = StageState
DIAMOND = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}


def names(transitions: list) -> list[tuple[str, StageState]]:
    return [(t.stage, t.state) for t in transitions]


def test_diamond_runs_in_dependency_order() -> None:
    r = Readiness(DIAMOND, {})
    assert names(r.start()) == [("a", S.READY)]
    r.started("a")
    assert names(r.succeeded("a")) == [("a", S.SUCCEEDED), ("b", S.READY), ("c", S.READY)]
    r.started("b")
    r.started("c")
    assert names(r.succeeded("b")) == [("b", S.SUCCEEDED)]  # d still waits for c
    assert names(r.succeeded("c")) == [("c", S.SUCCEEDED), ("d", S.READY)]
    r.started("d")
    r.succeeded("d")
    assert r.finished and r.run_state is RunState.SUCCEEDED


def test_failure_marks_everything_downstream_upstream_failed() -> None:
    r = Readiness(DIAMOND, {})
    r.start()
    r.started("a")
    r.succeeded("a")
    r.started("b")
    r.started("c")
    assert names(r.failed("b")) == [("b", S.FAILED), ("d", S.UPSTREAM_FAILED)]
    assert not r.finished  # c is still running: continue mode lets it finish
    r.succeeded("c")
    assert r.finished and r.run_state is RunState.FAILED


def test_retry_then_success_counts_attempts() -> None:
    r = Readiness({"a": ()}, {"a": 2})
    assert r.start()[0].attempt == 1
    r.started("a")
    assert names(r.failed("a")) == [("a", S.RETRYING)]
    retry = r.retry_due("a")
    assert (retry.state, retry.attempt) == (S.READY, 2)
    r.started("a")
    r.failed("a")
    r.retry_due("a")
    r.started("a")
    assert names(r.failed("a")) == [("a", S.FAILED)]  # third failure: budget of 2 spent
    assert r.attempt["a"] == 3


def test_non_retryable_and_timeout_failures() -> None:
    r = Readiness({"a": (), "b": ()}, {"a": 5, "b": 5})
    r.start()
    r.started("a")
    r.started("b")
    assert names(r.failed("a", retryable=False)) == [("a", S.FAILED)]
    assert names(r.failed("b", state=S.TIMED_OUT)) == [("b", S.RETRYING)]


def test_fail_fast_skips_unstarted_stages() -> None:
    r = Readiness({"a": (), "b": (), "c": ("b",)}, {}, fail_fast=True)
    r.start()
    r.started("a")
    out = names(r.failed("a"))
    assert ("a", S.FAILED) in out and ("b", S.SKIPPED) in out and ("c", S.SKIPPED) in out
    assert r.finished and r.run_state is RunState.FAILED


def test_cancel_ends_waiting_stages_and_waits_for_running_ones() -> None:
    r = Readiness(DIAMOND, {"a": 1})
    r.start()
    r.started("a")
    cancelled = names(r.cancel())
    assert cancelled == [("b", S.CANCELLED), ("c", S.CANCELLED), ("d", S.CANCELLED)]
    assert not r.finished
    r.stopped("a")
    assert r.finished and r.run_state is RunState.CANCELLED


def test_cancel_prevents_retry() -> None:
    r = Readiness({"a": ()}, {"a": 3})
    r.start()
    r.started("a")
    r.cancel()
    assert names(r.failed("a")) == [("a", S.FAILED)]


def test_reused_stages_count_as_done() -> None:
    r = Readiness(DIAMOND, {}, done=frozenset({"a", "b"}))
    assert names(r.start()) == [("c", S.READY)]
    r.started("c")
    assert names(r.succeeded("c")) == [("c", S.SUCCEEDED), ("d", S.READY)]


def test_wrong_transition_is_refused() -> None:
    r = Readiness({"a": ()}, {})
    with pytest.raises(ValueError, match="'a' is pending, not ready"):
        r.started("a")


@st.composite
def dags(draw: st.DrawFn) -> dict[str, tuple[str, ...]]:
    n = draw(st.integers(1, 25))
    graph: dict[str, tuple[str, ...]] = {}
    for i in range(n):
        ups = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        graph[f"s{i}"] = tuple(f"s{u}" for u in sorted(ups))
    return graph


@settings(max_examples=200, deadline=None)
@given(graph=dags(), data=st.data())
def test_any_outcome_order_finishes_and_respects_dependencies(
    graph: dict[str, tuple[str, ...]], data: st.DataObject
) -> None:
    r = Readiness(graph, dict.fromkeys(graph, 1))
    ready = [t.stage for t in r.start()]
    running: list[str] = []
    succeeded: set[str] = set()
    while ready or running:
        if ready and (not running or data.draw(st.booleans())):
            stage = ready.pop(data.draw(st.integers(0, len(ready) - 1)))
            assert all(u in succeeded for u in graph[stage])  # never before its upstream
            r.started(stage)
            running.append(stage)
            continue
        stage = running.pop(data.draw(st.integers(0, len(running) - 1)))
        if data.draw(st.integers(0, 4)) == 0:
            for t in r.failed(stage):
                if t.state is S.RETRYING:
                    ready.append(r.retry_due(stage).stage)
        else:
            succeeded.add(stage)
            ready.extend(t.stage for t in r.succeeded(stage) if t.state is S.READY)
    assert r.finished
    assert all(st_.terminal for st_ in r.state.values())
    expected = RunState.SUCCEEDED if len(succeeded) == len(graph) else RunState.FAILED
    assert r.run_state is expected
