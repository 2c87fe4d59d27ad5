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
        # the pass marks the run running, starts the attempt (bookkeeping), settles the run
        # with the step's result (written behind: in the settlement's transaction), one
        # fsync; a step after the first costs one fsync more (TestWriteBehind)
        assert commits == ["no fsync", "no fsync", "fsync"], commits
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


# ------------------------------------------------------------ write-behind results


def _running(key: str, token: str) -> StepState:
    from pikku_typing.models import ClaimOwner, StepAttempt

    owner = ClaimOwner(host="h", pid=1, token=token)
    return StepState(
        key=key, step_name=key, kind=StepKind.INLINE, status=StepStatus.RUNNING, attempt_count=1,
        attempts=[StepAttempt(number=1, status=StepStatus.RUNNING, owner=owner)],
    )  # fmt: skip


def _stored(db_path: Path, run_id: str) -> dict[str, tuple[str, str | None]]:
    """The run's steps as another connection sees them: status and result (JSON text)."""
    raw = sqlite3.connect(db_path)
    try:
        rows = raw.execute(
            "SELECT key, status, json_extract(doc, '$.result') FROM steps WHERE run_id = ?",
            (run_id,),
        ).fetchall()
    finally:
        raw.close()
    return {key: (status, None if result is None else str(result)) for key, status, result in rows}


class TestWriteBehind:
    """Issue 16: ``complete_step_later`` while this store holds the run's lock holds the
    result back and sends it with the run's next statement: the next step's insert carries
    it in ONE write transaction (one fsync for both), and so does any other durable write of
    the run; any other statement of the run sends it first; the lock's release sends it at
    the latest; a claim taken over meanwhile is a ``StepCompletionLostError`` and nothing of
    the statement applies."""

    async def test_the_next_insert_carries_it_in_one_transaction_and_one_fsync(
        self, store: SqliteWorkflowStateService, db_path: Path
    ) -> None:
        run = await store.create_run("wf", None)
        async with store.lock_run(run.id):
            await store.insert_step_at_boundary(run.id, _running("a", "t1"))
            statements: list[str] = []
            _trace(store, statements.append)
            assert await store.complete_step_later(run.id, "a", result={"x": "é"}, token="t1")
            assert statements == []  # held back: nothing sent
            assert _stored(db_path, run.id)["a"] == ("running", None)  # another connection
            commits = _commits(store)
            assert await store.insert_step_at_boundary(run.id, _running("b", "t2")) is not None
            # the completion and the insert: one transaction, committed with one fsync, no
            # PRAGMA switch (the attempt's start rides on the durable commit)
            assert commits == ["fsync"]
            assert _stored(db_path, run.id) == {
                "a": ("succeeded", '{"x":"é"}'), "b": ("running", None)
            }  # fmt: skip
            assert store._pending == {}
        done = await store.get_step(run.id, "a")
        assert done is not None and done.result == {"x": "é"}
        assert done.current_attempt is not None
        assert done.current_attempt.status is StepStatus.SUCCEEDED
        assert done.finished_at == done.updated_at == done.current_attempt.finished_at

    async def test_the_statements_of_the_combined_insert(
        self, store: SqliteWorkflowStateService
    ) -> None:
        run = await store.create_run("wf", None)
        async with store.lock_run(run.id):
            await store.insert_step_at_boundary(run.id, _running("a", "t1"))
            await store.complete_step_later(run.id, "a", result=1, token="t1")
            statements: list[str] = []
            _trace(store, statements.append)
            await store.insert_step_at_boundary(run.id, _running("b", "t2"))
            _trace(store, None)
        words = [s.split()[0] for s in statements]
        assert words == ["BEGIN", "UPDATE", "INSERT", "COMMIT"], statements

    async def test_an_inline_step_is_one_transaction_with_one_fsync(
        self, store: SqliteWorkflowStateService
    ) -> None:
        from pikku_typing import Workflow, WorkflowRuntime, wire_workflow

        async def flow(workflow: Workflow, n: int) -> int:
            total = 0
            for i in range(n):
                total += int(await workflow.do(f"s{i}", lambda i=i: i))
            return total

        per_run: list[list[str]] = []
        with isolated_registry():
            wire_workflow(name="wb_flow", func=flow, execution_mode="inline")
            runtime = WorkflowRuntime(store)
            try:
                client = runtime.client("wb_flow")
                for n in (1, 4):
                    handle = await client.start(n)
                    commits = _commits(store)
                    assert await client.result(handle.run_id, timeout=60) == n * (n - 1) // 2
                    per_run.append(list(commits))
                    _trace(store, None)
            finally:
                await runtime.close()
        short, long = per_run
        # three more steps: three commits, each fsynced (the result of the step before and
        # the next step's start); nothing unfsynced
        assert long.count("fsync") - short.count("fsync") == 3, per_run
        assert long.count("no fsync") == short.count("no fsync"), per_run

    async def test_any_other_statement_of_the_run_sends_it_first(
        self, store: SqliteWorkflowStateService, db_path: Path
    ) -> None:
        run = await store.create_run("wf", None)
        other = await store.create_run("wf", None)
        async with store.lock_run(run.id):
            await store.insert_step_at_boundary(run.id, _running("a", "t1"))
            await store.complete_step_later(run.id, "a", result="x", token="t1")
            await store.get_run(other.id)  # another run's statement: still held back
            await store.list_runs()
            assert _stored(db_path, run.id)["a"] == ("running", None)
            step = await store.get_step(run.id, "a")  # the run's own read sends it first
            assert step is not None and step.status is StepStatus.SUCCEEDED
            assert step.result == "x"
            assert _stored(db_path, run.id)["a"] == ("succeeded", "x")
            # a bookkeeping write of the run: the result goes first, fsynced, before the
            # switch to synchronous=NORMAL
            await store.insert_step_at_boundary(run.id, _running("b", "t2"))
            await store.complete_step_later(run.id, "b", result=2, token="t2")
            commits = _commits(store)
            assert await store.claim_step(
                run.id, "a", owner=make_owner(), lease_seconds=5
            ) is None  # succeeded: nothing to claim
            assert commits == ["fsync", "no fsync"]
            assert _stored(db_path, run.id)["b"] == ("succeeded", "2")
            assert store._pending == {}

    async def test_a_durable_write_of_the_run_carries_it_in_its_transaction(
        self, store: SqliteWorkflowStateService, db_path: Path
    ) -> None:
        from pikku_typing.models import RunStatus
        from pikku_typing.state.base import RunChanges

        run = await store.create_run("wf", None)
        async with store.lock_run(run.id):
            await store.insert_step_at_boundary(run.id, _running("a", "t1"))
            await store.complete_step_later(run.id, "a", result=3, token="t1")
            commits = _commits(store)
            await store.update_run(run.id, RunChanges(status=RunStatus.COMPLETED, output=3))
            assert commits == ["fsync"]  # the result and the settlement: one commit
            assert _stored(db_path, run.id)["a"] == ("succeeded", "3")
            assert store._pending == {}

    async def test_a_write_that_rolls_back_holds_it_back_again(
        self, store: SqliteWorkflowStateService, db_path: Path
    ) -> None:
        from pikku_typing.errors import RunAlreadyExistsError

        run = await store.create_run("wf", None)
        child = await store.create_run("child", None)
        async with store.lock_run(run.id):
            await store.insert_step_at_boundary(run.id, _running("a", "t1"))
            await store.complete_step_later(run.id, "a", result=4, token="t1")
            # a child run of the run (its parent's result goes first, in its transaction)
            # that cannot be created: rolled back, the result with it, held back again
            with pytest.raises(RunAlreadyExistsError):
                await store.create_run("child", None, run_id=child.id, parent_run_id=run.id)
            assert _stored(db_path, run.id)["a"] == ("running", None)
            assert len(store._pending[run.id]) == 1
        assert _stored(db_path, run.id)["a"] == ("succeeded", "4")  # the release sent it

    async def test_the_lock_release_sends_it(
        self, store: SqliteWorkflowStateService, db_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        run = await store.create_run("wf", None)
        with pytest.raises(RuntimeError, match="the pass failed"):
            async with store.lock_run(run.id):
                await store.insert_step_at_boundary(run.id, _running("a", "t1"))
                await store.complete_step_later(run.id, "a", result=[1], token="t1")
                await store.complete_step_later(run.id, "a", result=[2], token="t1")
                raise RuntimeError("the pass failed")
        # released: sent before the unlock; the second one no longer applied: logged
        assert _stored(db_path, run.id)["a"] == ("succeeded", "[1]")
        assert store._pending == {} and store._locked == set()
        assert "was not stored before its lock was released" in caplog.text

    async def test_a_cancelled_pass_still_sends_it_and_releases_the_lock(
        self, store: SqliteWorkflowStateService, db_path: Path
    ) -> None:
        run = await store.create_run("wf", None)
        held = asyncio.Event()

        async def pass_() -> None:
            async with store.lock_run(run.id):
                await store.insert_step_at_boundary(run.id, _running("a", "t1"))
                await store.complete_step_later(run.id, "a", result=5, token="t1")
                held.set()
                await asyncio.Event().wait()  # the workflow's code, cancelled

        task = asyncio.create_task(pass_())
        await held.wait()
        assert _stored(db_path, run.id)["a"] == ("running", None)  # held back
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _stored(db_path, run.id)["a"] == ("succeeded", "5")
        async with store.lock_run(run.id, timeout=1):  # released
            pass

    async def test_without_the_lock_or_with_write_behind_false_it_is_stored_at_once(
        self, store: SqliteWorkflowStateService, db_path: Path
    ) -> None:
        run = await store.create_run("wf", None)
        await store.insert_step(run.id, _running("a", "t1"))
        assert await store.complete_step_later(run.id, "a", result=1, token="t1")
        assert _stored(db_path, run.id)["a"] == ("succeeded", "1")
        assert not await store.complete_step_later(run.id, "a", result=2, token="t1")
        eager = SqliteWorkflowStateService(db_path, write_behind=False)
        async with eager, eager.lock_run(run.id):
            await eager.insert_step_at_boundary(run.id, _running("b", "t2"))
            assert await eager.complete_step_later(run.id, "b", result=3, token="t2")
            assert _stored(db_path, run.id)["b"] == ("succeeded", "3")
            assert eager._pending == {}

    async def test_a_result_that_is_not_json_fails_at_the_call(
        self, store: SqliteWorkflowStateService
    ) -> None:
        run = await store.create_run("wf", None)
        async with store.lock_run(run.id):
            await store.insert_step_at_boundary(run.id, _running("a", "t1"))
            with pytest.raises(Exception) as at_once:
                await store.complete_step(run.id, "a", result=object(), token="t1")
            with pytest.raises(type(at_once.value)):
                await store.complete_step_later(run.id, "a", result=object(), token="t1")
            assert store._pending == {}

    async def test_a_claim_taken_over_meanwhile_is_lost_and_nothing_applies(
        self, store: SqliteWorkflowStateService, db_path: Path
    ) -> None:
        from datetime import UTC, datetime

        from pikku_typing.models import ErrorInfo
        from pikku_typing.state.base import StepCompletionLostError

        run = await store.create_run("wf", None)
        async with SqliteWorkflowStateService(db_path) as other:  # another process
            async with store.lock_run(run.id):
                await store.insert_step_at_boundary(run.id, _running("a", "t1"))
                await store.complete_step_later(run.id, "a", result=7, token="t1")
                await other.fail_step_attempt(
                    run.id, "a", token=None, error=ErrorInfo(type="AbandonedAttempt", message="m"),
                    retry_at=datetime.now(UTC),
                )  # fmt: skip
                with pytest.raises(StepCompletionLostError, match="'a'"):
                    await store.insert_step_at_boundary(run.id, _running("b", "t2"))
                assert store._pending == {}
                assert _stored(db_path, run.id) == {"a": ("scheduled", None)}  # no b
                # a lost completion sent by any other statement of the run: the same error,
                # and the statement does not run
                await store.complete_step_later(run.id, "a", result=8, token="t1")
                with pytest.raises(StepCompletionLostError, match="'a'"):
                    await store.get_step_states(run.id)
            assert _stored(db_path, run.id) == {"a": ("scheduled", None)}

    async def test_a_durable_write_carrying_a_lost_result_does_not_apply(
        self, store: SqliteWorkflowStateService, db_path: Path
    ) -> None:
        from pikku_typing.models import RunStatus
        from pikku_typing.state.base import RunChanges, StepCompletionLostError

        run = await store.create_run("wf", None)
        async with store.lock_run(run.id):
            await store.insert_step_at_boundary(run.id, _running("a", "t1"))
            await store.insert_step_at_boundary(run.id, _running("b", "t2"))
            await store.complete_step_later(run.id, "a", result=1, token="t1")
            await store.complete_step_later(run.id, "b", result=2, token="stolen")
            with pytest.raises(StepCompletionLostError, match="'b'"):
                await store.update_run(run.id, RunChanges(status=RunStatus.COMPLETED, output=3))
            assert store._pending == {}
        # the result that applied is stored; the settlement is not
        assert _stored(db_path, run.id) == {"a": ("succeeded", "1"), "b": ("running", None)}
        assert (await store.get_run(run.id)).status is RunStatus.RUNNING

    async def test_a_pass_whose_held_back_result_is_lost_runs_again(self, db_path: Path) -> None:
        """End to end: the first attempt of step ``a`` is taken over by another process
        (abandoned, due again) after its code returned and the pass handed its result to the
        store, before the pass's next statement; its result, held back, does not apply when
        the insert of step ``b`` carries it: the pass is abandoned (step ``b`` is not
        inserted), the job runs again and the replay runs ``a`` again: the run completes
        with the second attempt's value."""
        from write_behind_support import run_losing_a_held_back_result

        from pikku_typing.models import RunStatus

        store = SqliteWorkflowStateService(db_path)
        other = SqliteWorkflowStateService(db_path)
        try:
            output, run, steps, ran = await run_losing_a_held_back_result(store, other, "sqlite_lost_result")
            assert output == 21
            assert run.status is RunStatus.COMPLETED
            assert ran == [1, 2]
            assert [x.error.type if x.error else None for x in steps["a"].attempts] == [
                "AbandonedAttempt", None
            ]  # fmt: skip
            assert steps["b"].attempt_count == 1
        finally:
            await store.close()
            await other.close()
