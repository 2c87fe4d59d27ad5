"""Atomic file writes: the one copy every part of pikku uses (state store, analyzer cache,
generated code, ``--fix``).

A write goes to a temp file in the destination's directory (``.<name>.<random hex>.tmp``,
created exclusively), which is then ``os.replace``-d over the destination: a reader sees
either the old or the new complete file, never a mix, and a killed writer leaves at most a
temp file behind. With ``fsync=True`` the temp file is fsynced before the rename and the
directory after it, so the new content survives a power loss once the call returns.

An existing destination keeps its permission bits; a new one gets ``0o644`` (less the umask).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "fsync_directory", "is_temp_name"]

TEMP_SUFFIX = ".tmp"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of this module's temp files (``.<name>.<hex>.tmp``)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in ``directory`` durable."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    fsync: bool = False,
    make_parents: bool = False,
) -> None:
    """Replace ``path`` with ``data`` atomically (see the module docstring).

    ``fsync=True``: durable when this returns (file and directory fsynced).
    ``make_parents=True``: create the missing parent directories first.
    """
    target = Path(path)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    mode: int | None = None
    with contextlib.suppress(OSError):
        mode = os.stat(target).st_mode & 0o7777
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_directory(target.parent)


def atomic_write_text(
    path: str | os.PathLike[str],
    text: str,
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    fsync: bool = False,
    make_parents: bool = False,
) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded (newlines are written as given)."""
    atomic_write_bytes(
        path, text.encode(encoding, errors), fsync=fsync, make_parents=make_parents
    )
