"""SQL kept as package resources (``pikku_typing/state/sql/``), read with
:mod:`importlib.resources` so an installed wheel finds them as a checkout does.

* ``sql/<backend>/queries.sql``: named statements, each introduced by a ``-- name: <name>``
  line. Other comment lines are dropped (a ``%`` in a comment would confuse psycopg's
  placeholders).
* ``sql/<backend>/migrations/NNNN_<what>.sql``: schema version ``NNNN``, applied in order.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Final

__all__ = ["migrations", "queries"]

_PACKAGE: Final = "pikku_typing.state"
_NAME_LINE: Final = re.compile(r"^--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")
_MIGRATION: Final = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")


def _folder(backend: str) -> Traversable:
    folder = resources.files(_PACKAGE).joinpath("sql", backend)
    if not folder.is_dir():
        raise RuntimeError(
            f"pikku_typing was installed without its SQL files (pikku_typing/state/sql/{backend}"
            " is missing): reinstall pikku-workflows"
        )
    return folder


def parse_queries(text: str) -> dict[str, str]:
    """``{name: statement}`` from a ``-- name:``-sectioned SQL text."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        match = _NAME_LINE.match(stripped)
        if match:
            name = match.group(1)
            if name in found:
                raise ValueError(f"query {name!r} is defined twice")
            current = found[name] = []
        elif stripped.startswith("--") or current is None:
            continue
        else:
            current.append(line.rstrip())
    return {name: "\n".join(lines).strip() for name, lines in found.items()}


@functools.cache
def queries(backend: str) -> dict[str, str]:
    """The named statements of ``sql/<backend>/queries.sql``."""
    return parse_queries(_folder(backend).joinpath("queries.sql").read_text(encoding="utf-8"))


@functools.cache
def migrations(backend: str) -> dict[int, str]:
    """``{version: DDL}`` from ``sql/<backend>/migrations/``; versions are 1, 2, ... with no gap."""
    folder = _folder(backend).joinpath("migrations")
    found: dict[int, str] = {}
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found[int(match.group(1))] = entry.read_text(encoding="utf-8")
    if sorted(found) != list(range(1, len(found) + 1)):
        raise RuntimeError(f"pikku_typing's {backend} migrations are not numbered 1..n: {sorted(found)}")
    return found
