"""Source discovery: the ``.py`` files under the ``src`` roots, their module names, problems.

Module names are computed from the ``src`` roots: a file ``<src>/a/b.py`` is module
``a.b``; when a ``src`` directory is itself a package (has ``__init__.py``), names start at
its first ancestor that is not a package (``src = ["app"]`` gives ``app.onboarding``).
Directory symlinks are followed once (a loop is reported, never followed again).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pikku_analyzer.config import PikkuConfig

SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv"})
"""Directories never analysed (nor watched), besides every directory whose name starts with
a dot (``.git``, ``.venv``, ``.pikku``, ``.mypy_cache``...)."""


def skipped_dir(name: str) -> bool:
    """Whether a directory of this name is skipped by discovery and by ``--watch``."""
    return name in SKIP_DIRS or name.startswith(".")


@dataclass(frozen=True, slots=True)
class SourceFile:
    fspath: str
    """Absolute path as a string (building thousands of ``Path`` objects is measurable)."""
    rel: str
    """Path relative to the project root, forward slashes (the report's ``file``)."""
    module: str
    is_package: bool

    @property
    def path(self) -> Path:
        """Absolute path."""
        return Path(self.fspath)


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


def _rel_str(path: str, root: str) -> str:
    if path.startswith(root + os.sep):
        rel = path[len(root) + 1 :]
    elif path == root:
        rel = "."
    else:
        rel = os.path.relpath(path, root)
    return rel.replace(os.sep, "/") if os.sep != "/" else rel


def discover(config: PikkuConfig) -> Discovery:
    """Every ``.py`` file under the ``src`` roots, minus excludes and the generated package."""
    out = Discovery()
    root = str(config.root)
    generated = {os.path.realpath(config.package_dir), os.path.realpath(config.stub_package_dir)}
    seen_files: set[str] = set()
    patterns = config.exclude
    for src in config.src:
        base = str(_module_base(src))
        visited_dirs: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
            try:
                info = os.stat(dirpath)
                key = (info.st_dev, info.st_ino)
            except OSError as exc:
                out.problems.append(
                    Problem("UNREADABLE_FILE", _rel_str(dirpath, root), f"cannot read directory: {exc.strerror}")
                )
                dirnames[:] = []
                continue
            if key in visited_dirs:
                out.problems.append(
                    Problem(
                        "SYMLINK_LOOP",
                        _rel_str(dirpath, root),
                        "directory symlink leads to a directory already analysed; skipped",
                    )
                )
                dirnames[:] = []
                continue
            visited_dirs.add(key)
            rel_dir = _rel_str(dirpath, root)
            prefix = "" if rel_dir == "." else rel_dir + "/"
            keep: list[str] = []
            for name in sorted(dirnames):
                if skipped_dir(name):
                    continue
                if patterns and _excluded(prefix + name, name, patterns):
                    continue
                if os.path.realpath(os.path.join(dirpath, name)) in generated:
                    continue
                keep.append(name)
            dirnames[:] = keep
            if dirpath.startswith(base + os.sep):
                module_dir = dirpath[len(base) + 1 :].replace(os.sep, ".")
            elif dirpath == base:
                module_dir = ""
            else:
                module_dir = os.path.relpath(dirpath, base).replace(os.sep, ".")
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                rel = prefix + name
                if patterns and _excluded(rel, name, patterns):
                    continue
                path = os.path.join(dirpath, name)
                if path in seen_files:
                    continue
                seen_files.add(path)
                stem = name[:-3]
                is_package = stem == "__init__"
                if is_package:
                    module = module_dir
                else:
                    module = f"{module_dir}.{stem}" if module_dir else stem
                out.files.append(SourceFile(path, rel, module, is_package))
    # a missing or unreadable src root
    for src in config.src:
        if not os.access(src, os.R_OK | os.X_OK):
            out.problems.append(Problem("UNREADABLE_FILE", relpath(src, config.root), "cannot read directory"))
    out.files.sort(key=lambda f: f.rel)
    return out


def read_source(path: str | Path) -> bytes | str:
    """The file's bytes, or a one-line reason it cannot be read (never blocks on a FIFO)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if exc.errno == errno.ELOOP:
            reason = "symlink loop"
        return f"cannot read the file: {reason}"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "cannot read the file: not a regular file"
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, max(info.st_size + 1, 65536))
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or type(exc).__name__}"
    except MemoryError:
        return "cannot read the file: out of memory"
    finally:
        os.close(fd)
