"""SQLite-store specifics: pragmas, schema version, corruption, busy handling, transactions."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from registry_support import isolated_registry
from stores import make_owner

from pikku_typing.errors import StateCorruptedError, StoreUnavailableError
from pikku_typing.models import StepKind, StepState, StepStatus
from pikku_typing.state import SqliteWorkflowStateService, open_store
from pikku_typing.state.sqlite import SCHEMA_VERSION


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "state.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteWorkflowStateService]:
    async with SqliteWorkflowStateService(db_path) as store:
        yield store


def inline(key: str) -> StepState:
    return StepState(key=key, step_name=key, kind=StepKind.INLINE)


def _trace(store: SqliteWorkflowStateService, callback: Callable[[str], None] | None) -> None:
    """Trace every statement of the store's connection (``None``: stop)."""
    store._connection().set_trace_callback(callback)


async def test_wal_schema_version_and_synchronous(
    store: SqliteWorkflowStateService, db_path: Path
) -> None:
    await store.create_run("wf", None)
    assert db_path.exists()
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()
    assert store._conn is not None
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


async def test_synchronous_normal_can_be_chosen(db_path: Path) -> None:
    async with SqliteWorkflowStateService(db_path, synchronous="NORMAL") as store:
        await store.create_run("wf", None)
        assert store._conn is not None
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    with pytest.raises(ValueError, match="synchronous"):
        SqliteWorkflowStateService(db_path, synchronous="OFF")  # type: ignore[arg-type]


async def test_data_persists_and_reopens_after_close(db_path: Path) -> None:
    store = SqliteWorkflowStateService(db_path)
    run = await store.create_run("wf", {"a": "é"})
    await store.insert_step(run.id, inline("s"))
    await store.close()
    await store.close()
    # A closed service reopens its connection on the next call.
    assert (await store.get_run(run.id)).input == {"a": "é"}
    await store.close()
    async with SqliteWorkflowStateService(db_path) as other:
        assert list(await other.get_step_states(run.id)) == ["s"]


async def test_newer_schema_version_is_refused(db_path: Path) -> None:
    async with SqliteWorkflowStateService(db_path) as store:
        await store.create_run("wf", None)
    raw = sqlite3.connect(db_path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    async with SqliteWorkflowStateService(db_path) as store:
        with pytest.raises(StateCorruptedError, match="schema version 99"):
            await store.list_runs()


async def test_not_a_database_is_reported_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    garbage = b"this is not an sqlite database " * 100
    path.write_bytes(garbage)
    async with SqliteWorkflowStateService(path) as store:
        with pytest.raises(StateCorruptedError) as info:
            await store.create_run("wf", None)
    assert str(path) in str(info.value)
    assert path.read_bytes() == garbage


async def test_open_store_sqlite_urls(tmp_path: Path) -> None:
    store = open_store(f"sqlite:{tmp_path / 'a.db'}")
    assert isinstance(store, SqliteWorkflowStateService) and store.path == tmp_path / "a.db"
    store = open_store(f"sqlite://{tmp_path / 'b.db'}")
    assert isinstance(store, SqliteWorkflowStateService) and store.path == tmp_path / "b.db"


async def test_run_locks_live_next_to_the_database(
    store: SqliteWorkflowStateService, db_path: Path
) -> None:
    run = await store.create_run("wf", None)
    async with store.lock_run(run.id, timeout=1):
        assert (db_path.parent / "state.db.locks" / f"{run.id}.lock").exists()


async def test_each_step_transition_is_one_transaction(store: SqliteWorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    await store.insert_step(run.id, inline("s"))
    statements: list[str] = []
    _trace(store, statements.append)
    owner = make_owner()
    await store.claim_step(run.id, "s", owner=owner, lease_seconds=5)
    await store.complete_step(run.id, "s", result=[1], token=owner.token)
    _trace(store, None)
    # the claim: BEGIN, SELECT, UPDATE ... WHERE, COMMIT between two PRAGMAs that switch off
    # its fsync (see test_bookkeeping_commits_and_fsync_every_commit); the completion of the
    # held attempt: ONE guarded UPDATE (its own transaction, the document changed in SQL)
    words = [s.split()[0] for s in statements]
    assert words == ["PRAGMA", "BEGIN", "SELECT", "UPDATE", "COMMIT", "PRAGMA", "UPDATE"], statements
    pragmas = [s for s in statements if s.startswith("PRAGMA")]
    assert pragmas == ["PRAGMA synchronous = NORMAL", "PRAGMA synchronous = FULL"]
    updates = [s for s in statements if s.startswith("UPDATE")]
    assert all("status" in u.split("WHERE", 1)[1] for u in updates)
    done = await store.get_step(run.id, "s")
    assert done is not None and done.status is StepStatus.SUCCEEDED and done.result == [1]
    assert done.current_attempt is not None
    assert done.current_attempt.status is StepStatus.SUCCEEDED
    assert done.finished_at == done.updated_at == done.current_attempt.finished_at


async def test_a_new_step_at_its_boundary_is_one_statement(
    store: SqliteWorkflowStateService, db_path: Path
) -> None:
    """``insert_step_at_boundary``: the run's cancel/settled check is in the INSERT itself
    (no read of the run first); only a miss reads (to tell a stop from an existing step)."""
    run = await store.create_run("wf", None)
    statements: list[str] = []
    _trace(store, statements.append)
    assert await store.insert_step_at_boundary(run.id, inline("s")) is not None
    _trace(store, None)
    assert [s.split()[0] for s in statements] == ["INSERT"], statements
    # a run document that is not JSON is that run's corruption, not a store outage
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.execute("UPDATE runs SET doc = '{not json' WHERE id = ?", (run.id,))
    raw.close()
    with pytest.raises(StateCorruptedError, match=run.id):
        await store.insert_step_at_boundary(run.id, inline("t"))


async def test_waits_for_another_writer(store: SqliteWorkflowStateService, db_path: Path) -> None:
    run = await store.create_run("wf", None)
    await store.insert_step(run.id, inline("s"))
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    timer.start()
    try:
        claimed = await store.claim_step(run.id, "s", owner=make_owner(), lease_seconds=5)
        assert claimed is not None
    finally:
        timer.join()
        other.close()


async def test_busy_timeout_exceeded_is_store_unavailable(db_path: Path) -> None:
    async with SqliteWorkflowStateService(db_path, busy_timeout=0.05) as store:
        run = await store.create_run("wf", None)
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreUnavailableError, match="locked"):
                await store.insert_step(run.id, inline("s"))
        finally:
            other.execute("ROLLBACK")
            other.close()
        # Nothing was half-done; the store works again.
        await store.insert_step(run.id, inline("s"))
        assert list(await store.get_step_states(run.id)) == ["s"]


async def test_one_service_shared_by_threads(store: SqliteWorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    await store.insert_step(run.id, inline("s"))
    barrier = threading.Barrier(6)
    wins: list[bool] = []

    def claim() -> None:
        async def main() -> bool:
            barrier.wait()
            got = await store.claim_step(run.id, "s", owner=make_owner(), lease_seconds=5)
            return got is not None

        wins.append(asyncio.run(main()))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(wins) == [False] * 5 + [True]
    got = await store.get_step(run.id, "s")
    assert got is not None and got.status is StepStatus.RUNNING and got.attempt_count == 1


async def test_many_steps_keep_creation_order(store: SqliteWorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    other = await store.create_run("wf", None)
    keys = [f"k{(i * 7919) % 300}" for i in range(300)]
    for i, key in enumerate(keys):
        await store.insert_step(run.id if i % 3 else other.id, inline(key))
    assert list(await store.get_step_states(run.id)) == [k for i, k in enumerate(keys) if i % 3]
    assert list(await store.get_step_states(other.id)) == [
        k for i, k in enumerate(keys) if not i % 3
    ]


# ----------------------------------------------------- which commits are fsynced


def _commits(store: SqliteWorkflowStateService) -> list[str]:
    """Trace the store's connection: one entry per commit (a COMMIT, or a write statement
    outside BEGIN...COMMIT: its own transaction), 'fsync' or 'no fsync' by the synchronous
    level in force when it ran."""
    commits: list[str] = []

    def tracer(conn: sqlite3.Connection) -> Callable[[str], None]:
        level = {"sync": str(conn.execute("PRAGMA synchronous").fetchone()[0])}
        in_tx = [False]

        def trace(statement: str) -> None:
            text = " ".join(statement.split()).upper()
            if text.startswith("PRAGMA SYNCHRONOUS ="):
                level["sync"] = text.rsplit("=", 1)[1].strip()
            elif text.startswith("BEGIN"):
                in_tx[0] = True
            elif text == "ROLLBACK":
                in_tx[0] = False
            elif text == "COMMIT" or (
                not in_tx[0] and text.startswith(("INSERT", "UPDATE", "DELETE"))
            ):
                in_tx[0] = False
                commits.append("no fsync" if level["sync"] in ("NORMAL", "1") else "fsync")

        return trace

    conn = store._connection()
    conn.set_trace_callback(tracer(conn))
    return commits


async def test_an_inline_step_costs_one_fsync(store: SqliteWorkflowStateService) -> None:
    from pikku_typing import Workflow, WorkflowRuntime, wire_workflow

    async def flow(workflow: Workflow, n: int) -> int:
        return int(await workflow.do("only", lambda: n + 1))

    with isolated_registry():
        wire_workflow(name="fsync_flow", func=flow, execution_mode="inline")
        runtime = WorkflowRuntime(store)
        client = runtime.client("fsync_flow")
        commits = _commits(store)
        handle = await client.start(1)
        assert commits == ["fsync"]  # the new run
        commits.clear()
        assert await client.result(handle.run_id, timeout=60) == 2
        # the pass marks the run running, starts the attempt (bookkeeping), stores the
        # result (fsync), settles the run (fsync)
        assert commits.count("fsync") == 2, commits
        assert commits.count("no fsync") == 2, commits
        assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
        await runtime.close()


async def test_bookkeeping_commits_and_fsync_every_commit(db_path: Path) -> None:
    async with SqliteWorkflowStateService(db_path, fsync_every_commit=True) as strict, \
            SqliteWorkflowStateService(db_path.with_name("fast.db")) as fast:
        for s in (strict, fast):
            run = await s.create_run("wf", {"n": 1})
            step = StepState(key="a", step_name="a", kind=StepKind.RPC, rpc_name="x.y",
                             status=StepStatus.PENDING)
            await s.insert_step(run.id, step)
            commits = _commits(s)
            owner = make_owner()
            token = owner.token
            assert await s.claim_step(run.id, "a", owner=owner, lease_seconds=30) is not None
            assert await s.heartbeat_step(run.id, "a", token=token, lease_seconds=30)
            assert await s.complete_step(run.id, "a", result=1, token=token)
            expected = ["fsync"] * 3 if s is strict else ["no fsync", "no fsync", "fsync"]
            assert commits == expected
