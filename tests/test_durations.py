from datetime import timedelta

import pytest

from pikku_typing import InvalidDurationError, parse_duration
from pikku_typing.durations import to_timedelta


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1.5s", 1.5),
        (" 3s ", 3.0),
        (0, 0.0),
        (2, 2.0),
        (0.25, 0.25),
        (timedelta(minutes=2), 120.0),
    ],
)
def test_valid_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("5", "expected a number followed by"),
        ("5 years", "expected a number followed by"),
        ("-5s", "expected a number followed by"),
        ("", "expected a number followed by"),
        (-1, "negative"),
        (timedelta(seconds=-1), "negative"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (True, "bool"),
        (None, "expected a timedelta"),
        ([1], "expected a timedelta"),
    ],
)
def test_invalid_durations_name_the_problem(value: object, fragment: str) -> None:
    with pytest.raises(InvalidDurationError) as info:
        parse_duration(value)
    assert fragment in str(info.value)
    assert repr(value) in str(info.value)


def test_invalid_duration_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_to_timedelta() -> None:
    assert to_timedelta("2h") == timedelta(hours=2)
