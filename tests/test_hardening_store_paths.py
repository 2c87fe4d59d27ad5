"""Issue 10: OS errors from a store's path become the store's own error type
(:class:`StorePathError`, naming the path and the reason), never a raw ``NotADirectoryError``
/ ``PermissionError`` from deep inside the first ``start()``."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pikku_typing import StorePathError, Workflow, WorkflowRuntime, wire_workflow
from pikku_typing.errors import StoreUnavailableError
from pikku_typing.state import file as file_module
from pikku_typing.state import open_store
from pikku_typing.state import sqlite as sqlite_module

WORKFLOW = "hardening_paths_flow"


async def _flow(workflow: Workflow, data: int) -> int:
    return data


wire_workflow(name=WORKFLOW, func=_flow, execution_mode="inline")


def _not_a_directory(tmp_path: Path) -> Path:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    return blocker


def _under_a_file(tmp_path: Path) -> Path:
    return _not_a_directory(tmp_path) / "state"


@pytest.mark.parametrize("where", [_not_a_directory, _under_a_file])
async def test_file_store_path_that_is_not_a_directory(tmp_path: Path, where: Any) -> None:
    path = where(tmp_path)
    async with WorkflowRuntime(state=open_store(f"file:{path}")) as runtime:
        with pytest.raises(StorePathError) as info:
            await runtime.client(WORKFLOW).start(1)
    message = str(info.value)
    assert str(tmp_path / "blocker") in message and "cannot" in message
    assert isinstance(info.value, OSError)  # still an OSError for existing handlers


async def test_file_store_missing_parents_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state"
    async with WorkflowRuntime(state=open_store(f"file:{path}")) as runtime:
        handle = await runtime.client(WORKFLOW).start(4)
        assert await handle.result(timeout=10) == 4


async def test_file_store_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only file system (EROFS; injected: the tests run as root, for whom permission
    bits do not apply): every write is StorePathError; reads still work."""
    url = f"file:{tmp_path / 'state'}"
    async with WorkflowRuntime(state=open_store(url)) as runtime:
        handle = await runtime.client(WORKFLOW).start(1)
        await runtime.drain()

    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "state"))

    real_open = os.open

    def no_create(path: Any, flags: int, *args: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(file_module, "atomic_write_bytes", read_only)
    monkeypatch.setattr(os, "open", no_create)
    store = open_store(url)
    assert (await store.get_run(handle.run_id)).output == 1
    with pytest.raises(StorePathError, match="Read-only file system"):
        await store.create_run(WORKFLOW, 2)


async def test_file_store_disk_full_is_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    store = open_store(f"file:{tmp_path / 'state'}")
    await store.create_run(WORKFLOW, 1, run_id="r1")
    monkeypatch.setattr(file_module, "atomic_write_bytes", full)
    with pytest.raises(StoreUnavailableError, match="No space left"):
        await store.create_run(WORKFLOW, 1, run_id="r2")


async def test_sqlite_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "runs.db").mkdir()
    async with WorkflowRuntime(state=open_store(f"sqlite:{tmp_path / 'runs.db'}")) as runtime:
        with pytest.raises(StorePathError, match="is a directory"):
            await runtime.client(WORKFLOW).start(1)


async def test_sqlite_parent_is_a_file(tmp_path: Path) -> None:
    path = _under_a_file(tmp_path) / "runs.db"
    async with WorkflowRuntime(state=open_store(f"sqlite:{path}")) as runtime:
        with pytest.raises(StorePathError) as info:
            await runtime.client(WORKFLOW).start(1)
    assert str(tmp_path / "blocker") in str(info.value)


async def test_sqlite_read_only_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite refuses to write the file (injected at sqlite3.connect, as root ignores modes)."""

    def refuse(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(sqlite_module.sqlite3, "connect", refuse)
    store = open_store(f"sqlite:{tmp_path / 'runs.db'}")
    with pytest.raises(StorePathError, match="writable"):
        await store.create_run(WORKFLOW, 1)
