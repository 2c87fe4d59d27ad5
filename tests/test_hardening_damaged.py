"""Issue 10: one damaged run record never stops the others.

On every store a run is damaged in a way a real crash, disk or operator can damage it; then
``pikku-runs list`` lists the others and shows the damaged one as damaged, ``pikku-runs
show`` explains what is wrong, and ``WorkflowRuntime.recover()`` logs and skips it and
recovers every other run (they complete)."""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn

from pikku_typing import Workflow, WorkflowRuntime, wire_workflow
from pikku_typing.errors import StateCorruptedError
from pikku_typing.models import RunStatus
from pikku_typing.runtime import runs_cli
from pikku_typing.state import file as file_module
from pikku_typing.state import open_store

WORKFLOW = "hardening_damaged_flow"


async def _flow(workflow: Workflow, data: int) -> int:
    doubled: int = await workflow.do("double", lambda: data * 2)
    return doubled + 1


wire_workflow(name=WORKFLOW, func=_flow, execution_mode="inline")


async def _start_three(url: str) -> list[str]:
    """Three runs started (stored, first pass queued in a queue that is then dropped: a
    process that died right after ``start``)."""
    store = open_store(url)
    async with WorkflowRuntime(state=store) as runtime:
        client = runtime.client(WORKFLOW)
        ids = [(await client.start(n, run_id=f"run-{n}")).run_id for n in (1, 2, 3)]
    await store.close()
    return ids


async def _recover_and_finish(url: str) -> tuple[int, dict[str, RunStatus]]:
    store = open_store(url)
    async with WorkflowRuntime(state=store) as runtime:
        queued = await runtime.recover()
        await runtime.drain()
        statuses = {}
        for run in await store.list_runs():
            statuses[run.id] = run.status
    await store.close()
    return queued, statuses


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = runs_cli.main(list(argv))
    return code, capsys.readouterr().out


def _check_everything(
    url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    damaged: str,
    fragment: str,
) -> None:
    """The damaged run is reported everywhere; the others are listed and recovered."""
    others = sorted({"run-1", "run-2", "run-3"} - {damaged})
    code, out = _cli(capsys, "--store", url, "list")
    assert code == 0, out
    for run_id in others:
        assert run_id in out
    damaged_lines = [line for line in out.splitlines() if damaged in line]
    assert damaged_lines and all("damaged" in line for line in damaged_lines), out
    code, out = _cli(capsys, "--store", url, "--format", "json", "list")
    payload = json.loads(out)
    assert sorted(r["id"] for r in payload["runs"]) == others
    assert [d["run_id"] for d in payload["damaged"]] == [damaged]
    assert fragment in payload["damaged"][0]["problem"]

    code, out = _cli(capsys, "--store", url, "show", damaged)
    assert code == 1
    assert "DAMAGED" in out and fragment in out

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        queued, statuses = asyncio.run(_recover_and_finish(url))
    assert queued >= 2
    assert {k: v for k, v in statuses.items() if k in others} == {
        k: RunStatus.COMPLETED for k in others
    }
    assert damaged in caplog.text  # logged, not silently dropped


# ------------------------------------------------------------------ file store

FILE_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated-json": (
        lambda d: (d / "runs" / "run-2.json").write_bytes(
            (d / "runs" / "run-2.json").read_bytes()[:40]
        ),
        "is corrupt",
    ),
    "garbage-bytes": (
        lambda d: (d / "runs" / "run-2.json").write_bytes(b"\x00\xff\xfe\x13garbage"),
        "is corrupt",
    ),
    "missing-steps-file": (
        lambda d: (d / "steps" / "run-2.json").unlink(),
        "steps document is missing",
    ),
    "unreadable-steps-file": (  # a directory where the document should be
        lambda d: ((d / "steps" / "run-2.json").unlink(), (d / "steps" / "run-2.json").mkdir()),
        "cannot be read",
    ),
}


@pytest.mark.parametrize("damage", list(FILE_DAMAGE))
def test_file_store_damaged_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    url = f"file:{tmp_path / 'state'}?fsync=0"
    asyncio.run(_start_three(url))
    breaker, fragment = FILE_DAMAGE[damage]
    breaker(tmp_path / "state")
    _check_everything(f"file:{tmp_path / 'state'}", capsys, caplog, "run-2", fragment)


def test_file_store_unreadable_run_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run file the process may not read (EACCES; injected: the tests run as root)."""
    url = f"file:{tmp_path / 'state'}"
    asyncio.run(_start_three(url))
    target = str(tmp_path / "state" / "runs" / "run-3.json")
    real_open = builtins.open

    def guarded(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(file_module, "open", guarded, raising=False)
    _check_everything(url, capsys, caplog, "run-3", "Permission denied")


def test_file_store_damaged_run_is_never_overwritten(tmp_path: Path) -> None:
    url = f"file:{tmp_path / 'state'}"
    asyncio.run(_start_three(url))
    (tmp_path / "state" / "steps" / "run-1.json").unlink()

    async def go() -> None:
        store = open_store(url)
        with pytest.raises(StateCorruptedError, match="steps document is missing"):
            await store.get_step_states("run-1")
        async with WorkflowRuntime(state=store) as runtime:
            await runtime.client(WORKFLOW).start(1, run_id="run-1")  # idempotent restart
            await runtime.drain()  # the pass fails on the damaged run: logged, not raised
        assert not (tmp_path / "state" / "steps" / "run-1.json").exists()
        assert (await store.get_run("run-1")).status is RunStatus.RUNNING

    asyncio.run(go())


# --------------------------------------------------------------------- SQLite


@pytest.mark.parametrize("table", ["runs", "steps"])
def test_sqlite_corrupted_row(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    table: str,
) -> None:
    db = tmp_path / "runs.db"
    url = f"sqlite:{db}"
    asyncio.run(_start_three(url))
    with sqlite3.connect(db) as conn:
        if table == "runs":
            conn.execute("UPDATE runs SET doc = '{\"id\": \"run-1\", \"workf' WHERE id = 'run-1'")
        else:  # a step row of a run that ran its first step
            conn.execute(
                "INSERT INTO steps (run_id, key, status, doc) VALUES ('run-1', 'x', 'running', "
                "'not json')"
            )
    _check_everything(url, capsys, caplog, "run-1", "run-1")


# ----------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_url() -> Iterator[str]:
    dsn = create_schema_dsn("pikku_damaged_")
    try:
        yield f"postgres:{dsn}"
    finally:
        drop_schema_dsn(dsn)


@pytest.mark.parametrize(
    "column", [pytest.param(c, marks=POSTGRES_MARKS) for c in ("input", "owner")]
)
def test_postgres_bad_json_in_a_row(
    pg_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    column: str,
) -> None:
    import psycopg

    asyncio.run(_start_three(pg_url))
    dsn = pg_url.removeprefix("postgres:")
    with psycopg.connect(dsn, autocommit=True) as conn:
        if column == "input":  # stored as JSON text
            conn.execute("UPDATE pikku_runs SET input = '{\"trunc' WHERE id = 'run-3'")
        else:  # jsonb that does not fit the model
            conn.execute("UPDATE pikku_runs SET owner = '{\"host\": 1}'::jsonb WHERE id = 'run-3'")
    _check_everything(pg_url, capsys, caplog, "run-3", "run-3")


