"""workflow.sql files: named statements (`-- name: <stage>`), every problem named by file and
line at once."""

from __future__ import annotations

import pytest

from klaw.authoring.sql import load_sql_file, parse_sql_file
from klaw.errors import DefinitionError


def test_named_statements_with_their_lines() -> None:
    text = (
        "-- Sales: cleaned orders and revenue.\n"  # 1: comments may come first
        "\n"  # 2
        "-- name: orders_clean\n"  # 3
        "SELECT *\n"  # 4
        "FROM orders WHERE amount > 0;\n"  # 5
        "\n"  # 6
        "--name:revenue\n"  # 7
        "\n"  # 8
        "-- per day\n"  # 9
        "SELECT day, sum(amount) AS revenue FROM orders_clean GROUP BY day ;;  \n"  # 10
    )
    assert parse_sql_file(text, "w/workflow.sql") == [
        ("orders_clean", "SELECT *\nFROM orders WHERE amount > 0", 4),
        (
            "revenue",
            "-- per day\nSELECT day, sum(amount) AS revenue FROM orders_clean GROUP BY day",
            9,
        ),
    ]


def _problems(text: str) -> str:
    with pytest.raises(DefinitionError) as info:
        parse_sql_file(text, "w/workflow.sql")
    return str(info.value)


def test_a_missing_name() -> None:
    message = _problems("-- name:\nSELECT 1\n")
    assert message == "w/workflow.sql:1: '-- name:' needs a stage name after it."


def test_sql_before_the_first_name() -> None:
    message = _problems("-- header\nSELECT 1;\n-- name: a\nSELECT 2\n")
    assert message.startswith("w/workflow.sql:2: SQL before the first '-- name:' line")


def test_duplicate_names() -> None:
    message = _problems("-- name: a\nSELECT 1\n-- name: b\nSELECT 2\n-- name: a\nSELECT 3\n")
    assert message == (
        "w/workflow.sql:5: the name 'a' is used twice (first at line 1); give each statement "
        "its own name."
    )


def test_an_empty_statement() -> None:
    message = _problems("-- name: a\n  ;\n-- name: b\n-- only a comment\n-- name: c\nSELECT 1\n")
    assert "2 problems in w/workflow.sql:" in message
    assert "w/workflow.sql:1: the statement 'a' is empty." in message
    assert "w/workflow.sql:3: the statement 'b' is empty." in message


def test_an_invalid_name_and_a_file_without_statements() -> None:
    assert "'my-stage' is not a valid stage name" in _problems("-- name: my-stage\nSELECT 1\n")
    assert _problems("-- nothing here\n").startswith("w/workflow.sql: no statements")


def test_every_problem_at_once() -> None:
    message = _problems("SELECT 0\n-- name:\nSELECT 1\n-- name: a\n-- name: a\nSELECT 2\n")
    assert message.startswith("4 problems in w/workflow.sql:")
    for where in (":1: SQL before", ":2: '-- name:' needs", ":5: the name 'a' is used twice"):
        assert where in message


def test_load_names_an_unreadable_file(tmp_path: object) -> None:
    with pytest.raises(DefinitionError, match="Cannot read SQL file .*missing.sql"):
        load_sql_file(f"{tmp_path}/missing.sql")
