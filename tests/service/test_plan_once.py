"""A run plans once; a workflow object run again in the same process reuses its graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import klaw
from klaw.service import catalog


@klaw.stage
def first() -> int:
    return 1


@klaw.stage
def second(first: int) -> int:
    return first + 1


def test_each_run_plans_once_and_reuses_the_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def counted(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(catalog, "build_graph", counted("build", catalog.build_graph))
    monkeypatch.setattr(catalog, "make_plan", counted("plan", catalog.make_plan))
    wf = klaw.workflow("twice", [first, second])
    for i in range(2):
        assert klaw.run(wf, home=tmp_path / f"home{i}").state.value == "succeeded"
    assert calls == ["build", "plan", "plan"]
    # a changed definition is a new workflow object: its graph is built anew
    changed = klaw.workflow("twice", [first])
    assert klaw.run(changed, home=tmp_path / "home2").state.value == "succeeded"
    assert calls == ["build", "plan", "plan", "build", "plan"]
