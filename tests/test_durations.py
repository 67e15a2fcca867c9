"""One duration grammar for every flag: a number (decimals allowed) and a unit s, m, h, d or w
(a number alone is seconds); zero only where the flag allows it; errors name the flag."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klaw.durations import UNITS, parse_duration
from klaw.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("1.5h", 5400.0),
        ("7d", 604_800.0),
        ("2w", 1_209_600.0),
        ("90", 90.0),
        (" 12 H ", 43_200.0),
        (".5m", 30.0),
    ],
)
def test_the_grammar(text: str, seconds: float) -> None:
    assert parse_duration(text, flag="--for") == seconds


@given(
    whole=st.integers(min_value=0, max_value=10**6),
    tenths=st.integers(min_value=0, max_value=9),
    unit=st.sampled_from(sorted(UNITS)),
    upper=st.booleans(),
)
def test_every_number_and_unit(whole: int, tenths: int, unit: str, upper: bool) -> None:
    text = f"{whole}.{tenths}{unit.upper() if upper else unit}"
    expected = float(f"{whole}.{tenths}") * UNITS[unit]
    assert parse_duration(text, flag="--for", allow_zero=True) == expected
    if expected > 0:
        assert parse_duration(text, flag="--for") == expected


@given(st.text(max_size=12))
def test_anything_else_is_refused_naming_the_flag(text: str) -> None:
    try:
        seconds = parse_duration(text, flag="--older-than", allow_zero=True)
    except ConfigError as exc:
        assert exc.message.startswith("--older-than ")
        assert exc.hint and "1.5h" in exc.hint
    else:
        assert seconds >= 0


@pytest.mark.parametrize("text", ["soon", "", "-3h", "3 hours", "1e3s", "h", "2x", "1..5h"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ConfigError, match="--for .* is not a duration"):
        parse_duration(text, flag="--for")


def test_zero_only_where_it_makes_sense() -> None:
    assert parse_duration("0s", flag="--older-than", allow_zero=True) == 0.0
    with pytest.raises(ConfigError, match="--expires '0d' is zero") as info:
        parse_duration("0d", flag="--expires")
    assert info.value.hint and "above zero" in info.value.hint
