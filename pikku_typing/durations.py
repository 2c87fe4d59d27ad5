"""Durations: ``timedelta``, a number of seconds, or a string such as ``"500ms" "5s" "10m" "2h" "1d" "1w"``."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Final, TypeAlias

from pikku_typing.errors import InvalidDurationError

Duration: TypeAlias = "timedelta | int | float | str"

_UNITS: Final[dict[str, float]] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_PATTERN: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(value: object) -> float:
    """Return the duration in seconds, or raise :class:`InvalidDurationError` naming the problem."""
    if isinstance(value, bool):
        raise InvalidDurationError(f"invalid duration {value!r}: a bool is not a duration")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise InvalidDurationError(
                f"invalid duration {value!r}: expected a number followed by one of "
                "ms, s, m, h, d, w (for example '500ms', '5s', '10m', '2h', '1d', '1w')"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise InvalidDurationError(
            f"invalid duration {value!r}: expected a timedelta, a number of seconds or a string like '5s'"
        )
    if math.isnan(seconds) or math.isinf(seconds):
        raise InvalidDurationError(f"invalid duration {value!r}: not a finite number of seconds")
    if seconds < 0:
        raise InvalidDurationError(f"invalid duration {value!r}: durations cannot be negative")
    return seconds


def to_timedelta(value: object) -> timedelta:
    """Like :func:`parse_duration` but returns a ``timedelta``."""
    return timedelta(seconds=parse_duration(value))
