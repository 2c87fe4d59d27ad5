"""Source discovery: the ``.py`` files under the ``src`` roots, their module names, problems.

Module names are computed from the ``src`` roots: a file ``<src>/a/b.py`` is module
``a.b``; when a ``src`` directory is itself a package (has ``__init__.py``), names start at
its first ancestor that is not a package (``src = ["app"]`` gives ``app.onboarding``).
Directory symlinks are followed once (a loop is reported, never followed again).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from pikku_analyzer.config import PikkuConfig

SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", "site-packages", ".git", ".hg", ".svn", ".pikku"}
)
MAX_FILE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path
    """Absolute path."""
    rel: str
    """Path relative to the project root, forward slashes (the report's ``file``)."""
    module: str
    is_package: bool


@dataclass(frozen=True, slots=True)
class Problem:
    """A file or directory that could not be analysed (reported as a diagnostic)."""

    code: str
    rel: str
    message: str


@dataclass(slots=True)
class Discovery:
    files: list[SourceFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def relpath(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, root)).as_posix()


def _module_base(src: Path) -> Path:
    base = src
    while (base / "__init__.py").is_file() and base.parent != base:
        base = base.parent
    return base


def _excluded(rel: str, name: str, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        stripped = pattern.rstrip("/")
        if (
            fnmatch.fnmatchcase(rel, stripped)
            or fnmatch.fnmatchcase(name, stripped)
            or fnmatch.fnmatchcase(rel, stripped + "/*")
            or rel.startswith(stripped + "/")
        ):
            return True
    return False


def module_name(path: Path, base: Path) -> tuple[str, bool]:
    rel = path.relative_to(base).with_suffix("")
    parts = list(rel.parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def discover(config: PikkuConfig) -> Discovery:
    """Every ``.py`` file under the ``src`` roots, minus excludes and the generated package."""
    out = Discovery()
    root = config.root
    generated = {config.package_dir.resolve(), config.stub_package_dir.resolve()}
    seen_files: set[Path] = set()
    for src in config.src:
        base = _module_base(src)
        visited_dirs: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(src, followlinks=True, onerror=None):
            directory = Path(dirpath)
            try:
                stat = directory.stat()
                key = (stat.st_dev, stat.st_ino)
            except OSError as exc:
                out.problems.append(
                    Problem("UNREADABLE_FILE", relpath(directory, root), f"cannot read directory: {exc.strerror}")
                )
                dirnames[:] = []
                continue
            if key in visited_dirs:
                out.problems.append(
                    Problem(
                        "SYMLINK_LOOP",
                        relpath(directory, root),
                        "directory symlink leads to a directory already analysed; skipped",
                    )
                )
                dirnames[:] = []
                continue
            visited_dirs.add(key)
            keep: list[str] = []
            for name in sorted(dirnames):
                if name in SKIP_DIRS or name.startswith("."):
                    continue
                child = directory / name
                rel = relpath(child, root)
                if config.exclude and _excluded(rel, name, config.exclude):
                    continue
                if child.resolve() in generated:
                    continue
                keep.append(name)
            dirnames[:] = keep
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                path = directory / name
                rel = relpath(path, root)
                if config.exclude and _excluded(rel, name, config.exclude):
                    continue
                if path in seen_files:
                    continue
                seen_files.add(path)
                try:
                    module, is_package = module_name(path, base)
                except ValueError:
                    module, is_package = path.stem, False
                out.files.append(SourceFile(path, rel, module, is_package))
    # a missing or unreadable src root
    for src in config.src:
        if not os.access(src, os.R_OK | os.X_OK):
            out.problems.append(Problem("UNREADABLE_FILE", relpath(src, root), "cannot read directory"))
    out.files.sort(key=lambda f: f.rel)
    return out


def read_source(path: Path) -> bytes | str:
    """The file's bytes, or a one-line reason it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if exc.errno == 40:  # ELOOP
            reason = "symlink loop"
        return f"cannot read the file: {reason}"
    except MemoryError:
        return "cannot read the file: out of memory"
