"""Is the generated map stale? Asked only when a name is not in the map (issue 10).

A name missing from the map is either a typo (then "did you mean" helps) or a name the user has
just added and ``pikku-analyze`` has not seen yet (then "did you mean" is wrong). The sources of
``[tool.pikku] src`` tell them apart without importing anything:

* a source file defines the name (``@pikku_func(name="x")``, ``@pikku_func`` on ``def x``,
  ``wire_workflow(name="x")``, ``wire_event(name="x")``): the map is stale;
* a source file that wires something (mentions ``pikku_func``, ``wire_workflow`` or
  ``wire_event``) changed after the map was written: the map is stale too (it may not know the
  name yet).

The scan reads only ``.py`` files below the source directories (not hidden, virtual-env or
``__pycache__`` directories), at most :data:`MAX_FILES`, once per map version.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

Kind = Literal["rpc", "workflow", "event"]

MAX_FILES: Final = 5000
_SKIP_DIRS: Final = frozenset(
    {"__pycache__", "node_modules", "site-packages", "dist-packages", "build", "dist"}
)
_WIRING_CALL: Final = {
    "rpc": "pikku_func",
    "workflow": "wire_workflow",
    "event": "wire_event",
}


@dataclass(frozen=True)
class Staleness:
    """Why the map is stale: the file that defines the name, or the newest changed source."""

    defined_in: str | None
    changed: str | None

    def message(self) -> str:
        if self.defined_in is not None:
            return f"the workflow map is stale: run pikku-analyze ({self.defined_in} defines it)"
        return f"the workflow map is stale: run pikku-analyze ({self.changed} changed since)"


class StaleChecker:
    """Caches the source listing per map file version (``mtime``)."""

    def __init__(self, src: tuple[Path, ...], root: Path | None, generated: Path | None) -> None:
        self.src = src
        self.root = root
        self.generated = generated
        self._key: int | None = None
        self._files: list[tuple[Path, int]] = []
        self._texts: dict[Path, str] = {}
        self._newer: tuple[str, ...] | None = None

    def _refresh(self, map_path: Path) -> int | None:
        try:
            map_mtime = os.stat(map_path).st_mtime_ns
        except OSError:
            return None
        if self._key != map_mtime:
            self._key = map_mtime
            self._files = list(self._scan())
            self._texts = {}
            self._newer = None
        return map_mtime

    def newer_wiring_files(self, map_path: Path) -> tuple[str, ...]:
        """The sources that wire something and changed after the map was written: part of the
        plugin's cache key, so that cached verdicts are checked again when the map goes
        stale (once: further edits of the same files do not invalidate the cache again)."""
        map_mtime = self._refresh(map_path)
        if map_mtime is None:
            return ()
        if self._newer is None:  # once per map version (asked for every module mypy checks)
            self._newer = tuple(
                self._display(path)
                for path, mtime in self._files
                if mtime > map_mtime and any(c in self._text(path) for c in _WIRING_CALL.values())
            )
        return self._newer

    def check(self, map_path: Path, kind: Kind, name: str) -> Staleness | None:
        map_mtime = self._refresh(map_path)
        if map_mtime is None:
            return None
        pattern = _definition(kind, name)
        newest: tuple[int, Path] | None = None
        for path, mtime in self._files:
            text = self._text(path)
            if _WIRING_CALL[kind] in text and pattern.search(text):
                return Staleness(self._display(path), None)
            wires = any(call in text for call in _WIRING_CALL.values())
            if wires and mtime > map_mtime and (newest is None or mtime > newest[0]):
                newest = (mtime, path)
        if newest is not None:
            return Staleness(None, self._display(newest[1]))
        return None

    def _text(self, path: Path) -> str:
        text = self._texts.get(path)
        if text is None:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self._texts[path] = text
        return text

    def _scan(self) -> Iterator[tuple[Path, int]]:
        count = 0
        seen: set[Path] = set()
        for base in self.src:
            for directory, dirs, files in os.walk(base):
                here = Path(directory)
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not d.startswith(".")
                    and d not in _SKIP_DIRS
                    and not (here / d / "pyvenv.cfg").exists()
                    and (here / d) != self.generated
                )
                for file in sorted(files):
                    if not file.endswith(".py"):
                        continue
                    path = here / file
                    if path in seen:
                        continue
                    seen.add(path)
                    try:
                        mtime = os.stat(path).st_mtime_ns
                    except OSError:
                        continue
                    yield path, mtime
                    count += 1
                    if count >= MAX_FILES:
                        return

    def _display(self, path: Path) -> str:
        for base in (Path.cwd(), self.root):
            if base is None:
                continue
            try:
                return path.relative_to(base).as_posix()
            except ValueError:
                continue
        return str(path)


def _definition(kind: Kind, name: str) -> re.Pattern[str]:
    quoted = rf"""name\s*=\s*(?P<q>["']){re.escape(name)}(?P=q)"""
    call = _WIRING_CALL[kind]
    if kind == "rpc" and name.isidentifier():
        return re.compile(
            rf"@(?:\w+\.)?{call}\s*\(\s*{quoted}"
            rf"|@(?:\w+\.)?{call}\s*(?:\(\s*\))?\s*\n\s*(?:async\s+)?def\s+{re.escape(name)}\b"
        )
    return re.compile(rf"(?:\w+\.)?{call}\s*\([^()]*?{quoted}", re.S)
