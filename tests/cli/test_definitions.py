"""Workflows defined wrongly: every problem is named (with the path of a cycle, the closest
stage name, the file and line), exit 2, and no Python traceback unless ``--debug``."""

from __future__ import annotations

from pathlib import Path

import pytest

from .driver import assert_error, klaw, line_of, write_project

GRAPHS = """
import pyarrow as pa

import klaw


@klaw.stage(deps=["b"])
def a():
    return 1


@klaw.stage(deps=["a"])
def b():
    return 1


cyclic = klaw.workflow("cyclic", [a, b])


@klaw.asset
def orders():
    return pa.table({"x": [1]})


@klaw.asset
def revenue(ordres):
    return ordres


unknown_dep = klaw.workflow("unknown_dep", [orders, revenue])


@klaw.asset(name="orders")
def more_orders():
    return pa.table({"x": [2]})


twice = klaw.workflow("twice", [orders, more_orders])

fine = klaw.workflow("fine", [orders])
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("cli-definitions"), {"graphs": GRAPHS})


def test_cycle_shows_its_path(project: Path) -> None:
    result = klaw(project, "run", "cyclic")
    assert_error(result, 2, "Cycle: a -> b -> a", "klaw validate")


def test_debug_shows_the_traceback(project: Path) -> None:
    result = klaw(project, "--debug", "run", "cyclic")
    assert result.returncode == 2, str(result)
    assert "Traceback (most recent call last)" in result.stderr
    assert "GraphError" in result.stderr
    assert "error: Cycle: a -> b -> a" in result.out


def test_unknown_dependency_names_the_closest_stage(project: Path) -> None:
    result = klaw(project, "plan", "unknown_dep")
    module = project / "wf" / "graphs.py"
    where = f"{module}:{line_of(module, 'def revenue') - 1}"  # where its decorator starts
    assert_error(result, 2, "'revenue'", "'ordres'", "did you mean 'orders'", where)


def test_two_stages_with_one_name(project: Path) -> None:
    result = klaw(project, "run", "twice")
    module = project / "wf" / "graphs.py"
    assert_error(
        result,
        2,
        "2 stages named 'orders'",
        f"{module}:{line_of(module, 'def orders') - 1}",
        f"{module}:{line_of(module, 'def more_orders') - 1}",
    )


def test_validate_reports_every_invalid_workflow(project: Path) -> None:
    result = klaw(project, "validate", "-o", "json")
    assert "Traceback" not in result.stderr, str(result)
    found = {r["workflow"]: r for r in result.json()}
    assert sorted(found) == ["cyclic", "fine", "twice", "unknown_dep"]
    assert found["fine"] == {"workflow": "fine", "ok": True, "problems": [], "unchecked": []}
    assert not found["cyclic"]["ok"]
    assert any("a -> b -> a" in p for p in found["cyclic"]["problems"])
    assert any("'ordres'" in p for p in found["unknown_dep"]["problems"])
    assert any("named 'orders'" in p for p in found["twice"]["problems"])


def test_validate_exits_2_when_a_workflow_is_invalid(project: Path) -> None:
    result = klaw(project, "validate")
    assert "invalid cyclic" in result.out
    assert result.returncode == 2, str(result)
