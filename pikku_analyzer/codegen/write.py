"""Writing the generated files: only what changed, atomically; staleness and leftovers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pikku_analyzer.codegen.render import (
    HEADER,
    META_JSON,
    PARTIAL_MARKER,
    TYPED_API_PACKAGE,
)
from pikku_typing._fs import atomic_write_text

if TYPE_CHECKING:
    from pikku_analyzer.codegen import GeneratedFile


def _current(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except UnicodeDecodeError:
        return None


def _atomic_write(path: Path, content: str) -> None:
    atomic_write_text(path, content, fsync=True, make_parents=True)


def stale_files(files: Sequence[GeneratedFile]) -> list[Path]:
    return [f.path for f in files if _current(f.path) != f.content]


def write_files(files: Sequence[GeneratedFile]) -> list[Path]:
    written: list[Path] = []
    for file in files:
        if _current(file.path) == file.content:
            continue
        _atomic_write(file.path, file.content)
        written.append(file.path)
    return written


def is_generated_file(path: Path) -> bool:
    """A file this generator wrote: a ``.py``/``.pyi`` starting with its header, or the
    metadata JSON."""
    if path.name == META_JSON:
        return True
    if path.name == "py.typed" and path.parent.name == TYPED_API_PACKAGE:
        return _current(path) == PARTIAL_MARKER  # the marker of the partial stubs
    if path.suffix not in (".py", ".pyi"):
        return False
    try:
        with path.open(encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return first.rstrip("\n") == HEADER


def leftover_files(directories: Iterable[Path], files: Sequence[GeneratedFile]) -> list[Path]:
    """Generated files (by their header) in ``directories`` that are no longer produced."""
    produced = {f.path for f in files}
    leftovers: set[Path] = set()
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if path.is_file() and path not in produced and is_generated_file(path):
                leftovers.add(path)
    return sorted(leftovers)
