"""Terminal output shared by every command (``pikku-analyze``, ``pikku-runs``, ``pikku-worker``,
``pikku-deploys``): whether to colour, the ANSI styles, aligned tables, one-line errors.

Colour (https://no-color.org): never when ``NO_COLOR`` is set to a non-empty value, always
when ``FORCE_COLOR`` is, else only on a TTY whose ``TERM`` is not ``dumb``. Importing this
module imports nothing but the standard library (``pikku-analyze`` stays fast).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TextIO

from pikku_typing._log import describe as one_line

__all__ = ["STYLES", "Painter", "one_line", "table", "use_colour"]

RESET: Final = "\x1b[0m"
STYLES: Final[Mapping[str, str]] = {
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "red": "\x1b[31m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "blue": "\x1b[34m",
    "magenta": "\x1b[35m",
    "cyan": "\x1b[36m",
    "error": "\x1b[31m",
    "warning": "\x1b[33m",
}
"""Style names; a style may combine several, separated by spaces (``"bold red"``)."""


def use_colour(stream: TextIO) -> bool:
    """Whether to colour what is written to ``stream`` (see the module docstring)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


@dataclass(frozen=True)
class Painter:
    """``paint(text, style)``: ``text`` in ``style`` when colour is on, else as it is."""

    colour: bool

    def __call__(self, text: str, style: str | None) -> str:
        if not self.colour or not style or not text:
            return text
        return "".join(STYLES[s] for s in style.split()) + text + RESET


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    paint: Painter,
    *,
    styles: Sequence[Sequence[str | None]] | None = None,
    indent: str = "",
    header_style: str | None = "bold",
    rule: bool = False,
) -> list[str]:
    """Aligned columns separated by two spaces; trailing spaces stripped. ``rule``: a line of
    dashes under the headers. Widths are measured on the plain text, colour applied after."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
    colour = paint.colour
    lines = [indent + _join([paint(h, header_style) for h in headers] if colour else headers, headers, widths)]
    if rule:
        lines.append(indent + "  ".join(["-" * w for w in widths]))
    for r, row in enumerate(rows):
        if colour and styles is not None:
            lines.append(indent + _join([paint(c, styles[r][i]) for i, c in enumerate(row)], row, widths))
        else:
            lines.append(indent + _join(row, row, widths))
    return lines


def _join(painted: Sequence[str], plain: Sequence[str], widths: Sequence[int]) -> str:
    last = len(painted) - 1
    return "  ".join(
        [cell if i == last else cell + " " * (widths[i] - len(plain[i])) for i, cell in enumerate(painted)]
    ).rstrip()
