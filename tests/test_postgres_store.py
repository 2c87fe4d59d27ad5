"""What only the PostgreSQL store has (the shared contract is tests/test_state_contract.py):
versioned migrations, clear errors when the server is away, run locks on dedicated sessions
that never go back to a pool while locked, locks scoped to the schema, lazy pools."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from postgres_support import (
    PG_DSN,
    POSTGRES_MARKS,
    create_schema_dsn,
    drop_schema_dsn,
    eventually,
    schema_of,
)

from pikku_typing.errors import StoreUnavailableError
from pikku_typing.models import StepKind, StepState
from pikku_typing.state.postgres import SCHEMA_VERSION, PostgresWorkflowStateService, describe_dsn

UNREACHABLE = "postgresql://bob:sekret@127.0.0.1:9/nope?connect_timeout=2"


def test_constructing_needs_no_event_loop_and_no_server() -> None:
    store = PostgresWorkflowStateService(UNREACHABLE)
    assert "sekret" not in repr(store) and "127.0.0.1:9/nope" in repr(store)
    assert describe_dsn("host=db.example port=6543 dbname=app password=x") == "db.example:6543/app"
    with pytest.raises(ValueError):
        PostgresWorkflowStateService("")


async def test_unreachable_server_is_store_unavailable_without_password() -> None:
    store = PostgresWorkflowStateService(UNREACHABLE, connect_timeout=2)
    with pytest.raises(StoreUnavailableError) as info:
        await store.get_run("abc")
    message = str(info.value)
    assert "PostgreSQL at 127.0.0.1:9/nope is unavailable" in message
    assert "sekret" not in message and "\n" not in message
    with pytest.raises(StoreUnavailableError):
        async with store.lock_run("abc", timeout=1):
            pass
    await store.close()


@pytest.fixture
def dsn() -> Iterator[str]:
    value = create_schema_dsn()
    yield value
    drop_schema_dsn(value)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresWorkflowStateService]:
    s = PostgresWorkflowStateService(dsn)
    yield s
    await s.close()


async def _query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(sql, params)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []


async def _advisory_locks(
    dsn: str, store: PostgresWorkflowStateService, run_id: str
) -> list[tuple[Any, ...]]:
    """``(pid, granted)`` of the sessions holding or waiting for ``run_id``'s lock."""
    return await _query(
        dsn,
        "SELECT pid, granted FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND ((classid::bigint << 32) | objid::bigint) = hashtextextended(%s, %s)",
        run_id,
        store._seed,
    )


@pytest.mark.postgres
@pytest.mark.skipif(PG_DSN is None, reason="PIKKU_TEST_POSTGRES_DSN not set")
class TestOnServer:
    pytestmark = list(POSTGRES_MARKS)

    async def test_schema_is_versioned_and_migration_idempotent(self, dsn: str) -> None:
        stores = [PostgresWorkflowStateService(dsn) for _ in range(5)]
        try:
            # five first uses at once: one migration, no race
            runs = await asyncio.gather(*(s.create_run("wf", i) for i, s in enumerate(stores)))
            assert sorted(r.input for r in runs) == list(range(5))
            assert await stores[0].migrate() == SCHEMA_VERSION
        finally:
            for s in stores:
                await s.close()
        rows = await _query(dsn, "SELECT version FROM pikku_schema_version ORDER BY version")
        assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        schema = schema_of(dsn)
        tables = await _query(
            dsn,
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename",
            schema,
        )
        assert [t for (t,) in tables] == [
            "pikku_events", "pikku_runs", "pikku_schema_version", "pikku_steps"
        ]

    async def test_step_statements_find_the_row_by_its_key(self, dsn: str) -> None:
        """Issue 16: the generic plan of a step transition (what a prepared statement runs
        after psycopg's 5 executions) looks the step up by (run_id, key) even on a table
        without statistics; with the (run_id, seq) index of schema 3 it scanned every step
        of the run (a completion cost O(steps of the run))."""
        import re

        import psycopg

        from pikku_typing.state import postgres as pg

        async with PostgresWorkflowStateService(dsn) as store:
            run = await store.create_run("wf", None)
            for n in range(3):
                await store.insert_step(
                    run.id, StepState(key=f"s{n}", step_name="s", kind=StepKind.INLINE)
                )
        names: list[str] = []

        def numbered(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            for name in ("complete_step", "claim_step", "fail_step_attempt", "heartbeat_step"):
                names.clear()
                text = re.sub(r"%\((\w+)\)s", numbered, pg._Q[name])
                await conn.execute(f"PREPARE p AS {text}")  # type: ignore[call-overload]
                types = await conn.execute(
                    "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = 'p'"
                )
                row = await types.fetchone()
                assert row is not None
                values = ", ".join(f"NULL::{t}" for t in row[0])
                plan = await conn.execute(f"EXPLAIN EXECUTE p({values})")  # type: ignore[call-overload]
                text = "\n".join(line for (line,) in await plan.fetchall())
                await conn.execute("DEALLOCATE p")
                run_id, key = names.index("run_id") + 1, names.index("key") + 1
                assert f"Index Cond: ((run_id = ${run_id}) AND (key = ${key}))" in text, (name, text)

    async def test_a_step_insert_takes_no_lock_on_its_run(self, dsn: str) -> None:
        """Issue 16: inserting a step reads its run in the same statement instead of a
        foreign key's SELECT ... FOR KEY SHARE (a row lock written to the run: the run's
        row got an xmax); a run deleted by hand still takes its steps with it."""
        from pikku_typing.models import ClaimOwner, StepAttempt, StepStatus

        owner = ClaimOwner(host="h", pid=1, token="t1")
        async with PostgresWorkflowStateService(dsn) as store:
            run = await store.create_run("wf", None)
            await store.insert_step(run.id, StepState(key="a", step_name="a", kind=StepKind.INLINE))
            running = StepState(
                key="b", step_name="b", kind=StepKind.INLINE, status=StepStatus.RUNNING,
                attempt_count=1, attempts=[StepAttempt(number=1, status=StepStatus.RUNNING, owner=owner)],
            )  # fmt: skip
            assert await store.insert_step_at_boundary(run.id, running) is not None
            other = await store.create_run("wf", None)
            await store.insert_step(other.id, StepState(key="c", step_name="c", kind=StepKind.INLINE))
        xmax = await _query(dsn, "SELECT xmax::text FROM pikku_runs WHERE id = %s", run.id)
        assert xmax == [("0",)]  # nobody locked or updated the run's row
        await _query(dsn, "DELETE FROM pikku_runs WHERE id = %s", run.id)
        left = await _query(dsn, "SELECT run_id, key FROM pikku_steps ORDER BY key")
        assert left == [(other.id, "c")]

    async def test_step_transitions_are_hot_updates(self, dsn: str) -> None:
        """Issue 16: the indexes of pikku_steps cover only the columns that never change
        (run_id, key), so completing, failing, claiming or heartbeating a step can be a HOT
        update (schema version 4 dropped the unused index on status, next_attempt_at)."""
        async with PostgresWorkflowStateService(dsn) as store:
            await store.migrate()
        rows = await _query(
            dsn,
            "SELECT DISTINCT a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND (a.attnum = ANY(i.indkey) OR strpos(pg_get_expr(i.indpred, i.indrelid), a.attname) > 0) "
            "WHERE i.indrelid = 'pikku_steps'::regclass ORDER BY 1",
        )
        assert [name for (name,) in rows] == ["key", "run_id"]

    async def test_extra_fields_at_their_defaults_store_null(self, dsn: str) -> None:
        """Issue 16: a step whose ``extra`` fields all hold their defaults stores NULL there
        (no dict built and dumped per step); reading it gives the defaults back."""
        if "retry_delay" not in StepState.model_fields:
            pytest.skip("no extra field")
        async with PostgresWorkflowStateService(dsn) as store:
            run = await store.create_run("wf", None)
            await store.insert_step(run.id, StepState(key="d", step_name="d", kind=StepKind.INLINE))
            await store.insert_step(
                run.id,
                StepState(key="f", step_name="f", kind=StepKind.INLINE, retry_delay=2.5),  # type: ignore[call-arg]
            )
            got = await store.get_step_states(run.id)
        assert got["d"].retry_delay is None and got["f"].retry_delay == 2.5  # type: ignore[attr-defined]
        rows = await _query(dsn, "SELECT key, extra::text FROM pikku_steps ORDER BY key")
        assert rows == [("d", None), ("f", '{"retry_delay": 2.5}')]

    async def test_newer_schema_is_refused_with_a_clear_error(self, dsn: str) -> None:
        async with PostgresWorkflowStateService(dsn) as first:
            await first.migrate()
        await _query(dsn, "INSERT INTO pikku_schema_version (version) VALUES (%s)", 999)
        store = PostgresWorkflowStateService(dsn)
        with pytest.raises(StoreUnavailableError, match="schema version 999, newer than"):
            await store.list_runs()
        await store.close()

    async def test_new_step_fields_round_trip(self, store: PostgresWorkflowStateService) -> None:
        run = await store.create_run("wf", None)
        step = StepState(key="s", step_name="s", kind=StepKind.RPC, rpc_name="x")
        if "retry_delay" in StepState.model_fields:
            step = step.model_copy(update={"retry_delay": 2.5})
        await store.insert_step(run.id, step)
        got = await store.get_step(run.id, "s")
        assert got is not None and got.model_dump() == (await store.get_step_states(run.id))["s"].model_dump()
        if "retry_delay" in StepState.model_fields:
            assert got.retry_delay == 2.5  # type: ignore[attr-defined]

    async def test_lock_is_held_by_a_dedicated_session_and_released(
        self, store: PostgresWorkflowStateService, dsn: str
    ) -> None:
        run = await store.create_run("wf", None)
        async with store.lock_run(run.id):
            held = [row for row in await _advisory_locks(dsn, store, run.id) if row[1]]
            assert len(held) == 1
            # data operations go through the data pool, never the locked session
            await store.get_run(run.id)
            await store.list_runs()
        assert [row for row in await _advisory_locks(dsn, store, run.id) if row[1]] == []
        # the lock session went back to its pool unlocked: the next lock reuses it
        async with store.lock_run(run.id, timeout=30):
            assert len([row for row in await _advisory_locks(dsn, store, run.id) if row[1]]) == 1
        assert await _advisory_locks(dsn, store, run.id) == []

    async def test_cancelled_waiter_leaves_no_lock_behind(
        self, store: PostgresWorkflowStateService, dsn: str
    ) -> None:
        run = await store.create_run("wf", None)
        release = asyncio.Event()
        holding = asyncio.Event()

        async def holder() -> None:
            async with store.lock_run(run.id):
                holding.set()
                await release.wait()

        async def waiter() -> None:
            async with store.lock_run(run.id):
                pytest.fail("the waiter must not get the lock")

        hold = asyncio.create_task(holder())
        await holding.wait()
        wait = asyncio.create_task(waiter())
        async def waiting() -> bool:  # the waiter's session waits on the server
            return any(not granted for _, granted in await _advisory_locks(dsn, store, run.id))

        await eventually(waiting)
        wait.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wait
        release.set()
        await hold
        async def released() -> bool:  # the cancelled session is gone, or no longer waits
            return await _advisory_locks(dsn, store, run.id) == []

        await eventually(released)
        assert await _advisory_locks(dsn, store, run.id) == []
        async with store.lock_run(run.id, timeout=30):
            pass

    async def test_locks_are_scoped_to_the_schema(self) -> None:
        a, b = create_schema_dsn(), create_schema_dsn()
        try:
            async with PostgresWorkflowStateService(a) as sa, PostgresWorkflowStateService(b) as sb:
                await sa.create_run("wf", None, run_id="same-id")
                await sb.create_run("wf", None, run_id="same-id")
                async with sa.lock_run("same-id"), sb.lock_run("same-id", timeout=30):
                    pass  # two apps in two schemas do not share run locks
        finally:
            drop_schema_dsn(a)
            drop_schema_dsn(b)

    def test_store_works_across_event_loops(self, dsn: str) -> None:
        store = PostgresWorkflowStateService(dsn)

        async def create() -> str:
            return (await store.create_run("wf", {"a": 1})).id

        run_id = asyncio.run(create())

        async def read() -> Any:
            try:
                return (await store.get_run(run_id)).input
            finally:
                await store.close()

        assert asyncio.run(read()) == {"a": 1}

    async def test_sessions_ended_by_the_server_are_replaced(self, dsn: str) -> None:
        """A server restart ends every idle pooled session (admin_shutdown): the next
        operations and locks run on fresh sessions instead of failing."""
        import uuid

        from psycopg.conninfo import make_conninfo

        app = f"pikku-test-{uuid.uuid4().hex[:8]}"
        store = PostgresWorkflowStateService(make_conninfo(dsn, application_name=app))
        try:
            run = await store.create_run("wf", {"a": 1})
            await asyncio.gather(*(store.get_run(run.id) for _ in range(4)))
            async with store.lock_run(run.id):
                pass
            ended = await _query(
                dsn,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                app,
            )
            assert ended[0][0] >= 2
            await asyncio.sleep(0.2)
            assert (await store.get_run(run.id)).input == {"a": 1}
            async with store.lock_run(run.id, timeout=10):
                await store.insert_step(run.id, StepState(key="s", step_name="s", kind=StepKind.INLINE))
            assert list(await store.get_step_states(run.id)) == ["s"]
        finally:
            await store.close()


def _with_options(dsn: str, extra: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    options = str(conninfo_to_dict(dsn).get("options") or "")
    return make_conninfo(dsn, options=f"{options} {extra}".strip())


async def _statements_by_setting(
    store: PostgresWorkflowStateService, operations: Any
) -> dict[str, set[str]]:
    """Run ``operations(store)`` and return ``{statement name: {synchronous_commit of the
    sessions that ran it}}``: a hook records the session of every named statement, then
    ``SHOW synchronous_commit`` is asked on each of those (idle) sessions (the migration's
    own session is closed by then and left out). A statement that sets its own commit
    (``insert_step_at_boundary``: ``set_config`` local to its transaction, by its
    ``asynchronous`` parameter) counts as ``off`` when that parameter is true."""
    import psycopg

    from pikku_typing.state import postgres as pg

    names = {text: name for name, text in pg._Q.items()}
    ran: list[tuple[str, Any]] = []
    original = psycopg.AsyncCursor.execute  # what every statement goes through

    async def hooked(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, str) and query in names:
            params = args[0] if args else kwargs.get("params")
            own = isinstance(params, dict) and params.get("asynchronous") is True
            ran.append((names[query], "off" if own else self.connection))
        return await original(self, query, *args, **kwargs)

    psycopg.AsyncCursor.execute = hooked  # type: ignore[method-assign]
    try:
        await operations(store)
    finally:
        psycopg.AsyncCursor.execute = original  # type: ignore[method-assign]
    settings: dict[int, str] = {id("off"): "off"}
    ran = [(name, conn) for name, conn in ran if conn == "off" or not conn.closed]
    for _, conn in ran:
        if id(conn) not in settings:
            cur = await conn.execute("SHOW synchronous_commit")
            row = await cur.fetchone()
            settings[id(conn)] = str(row["synchronous_commit"])
    result: dict[str, set[str]] = {}
    for name, conn in ran:
        result.setdefault(name, set()).add(settings[id(conn)])
    return result


async def _one_step_each_way(store: PostgresWorkflowStateService) -> None:
    """Each statement an inline and a remote step send, with each kind of run change."""
    from pikku_typing.models import ClaimOwner, ErrorInfo, RunStatus, StepStatus
    from pikku_typing.state.base import RunChanges

    run = await store.create_run("wf", None)
    owner = ClaimOwner(host="h", pid=1, token="t1")
    await store.update_run(run.id, RunChanges(status=RunStatus.RUNNING, owner=owner))
    await store.get_run(run.id)
    started = StepState(
        key="inline", step_name="inline", kind=StepKind.INLINE, status=StepStatus.RUNNING
    )
    await store.insert_step(run.id, started)
    await store.complete_step(run.id, "inline", result=1, token=None)
    await store.insert_step(run.id, StepState(key="rpc", step_name="rpc", kind=StepKind.RPC))
    await store.schedule_step(run.id, "rpc", at=None)
    assert await store.claim_step(run.id, "rpc", owner=owner, lease_seconds=30) is not None
    assert await store.heartbeat_step(run.id, "rpc", token="t1", lease_seconds=30)
    await store.fail_step_attempt(
        run.id, "rpc", token="t1", error=ErrorInfo(type="E", message="m"), retry_at=None
    )
    await store.update_run(run.id, RunChanges(status=RunStatus.SUSPENDED, owner=None))
    await store.update_run(run.id, RunChanges(cancel_requested=True))
    await store.update_run(run.id, RunChanges(status=RunStatus.COMPLETED, output=2))


BOOKKEEPING = {"claim_step", "heartbeat_step"}
"""Statements that are always bookkeeping (insert_step and update_run depend on the change)."""


@pytest.mark.postgres
@pytest.mark.skipif(PG_DSN is None, reason="PIKKU_TEST_POSTGRES_DSN not set")
class TestAsynchronousBookkeeping:
    """Bookkeeping commits run on sessions with ``synchronous_commit = off``; results,
    schedules, settlements, cancel requests keep the server's setting (forced to ``on`` here
    through the DSN, since the test server itself runs with it off)."""

    pytestmark = list(POSTGRES_MARKS)

    async def test_bookkeeping_commits_are_asynchronous_the_rest_synchronous(
        self, dsn: str
    ) -> None:
        store = PostgresWorkflowStateService(_with_options(dsn, "-c synchronous_commit=on"))
        try:
            seen = await _statements_by_setting(store, _one_step_each_way)
        finally:
            await store.close()
        for name in BOOKKEEPING:
            assert seen[name] == {"off"}, name
        # insert_step: the RUNNING (attempt start) insert was off, the pending one on
        assert seen["insert_step"] == {"off", "on"}
        # update_run: RUNNING/SUSPENDED marks off; the cancel request and settlement on
        assert seen["update_run"] == {"off", "on"}
        for name in ("insert_run", "complete_step", "schedule_step", "fail_step_attempt"):
            assert seen[name] == {"on"}, name

    async def test_update_run_and_insert_step_pick_the_pool_by_the_change(
        self, dsn: str
    ) -> None:
        from pikku_typing.models import RunStatus, StepStatus
        from pikku_typing.state.base import RunChanges

        store = PostgresWorkflowStateService(_with_options(dsn, "-c synchronous_commit=on"))

        async def settle(s: PostgresWorkflowStateService) -> None:
            run = await s.create_run("wf", None)
            await s.insert_step(
                run.id,
                StepState(key="a", step_name="a", kind=StepKind.INLINE, status=StepStatus.SUCCEEDED,
                          result=1),
            )
            await s.update_run(run.id, RunChanges(status=RunStatus.FAILED))

        async def mark(s: PostgresWorkflowStateService) -> None:
            run = await s.create_run("wf", None)
            await s.insert_step(
                run.id,
                StepState(key="a", step_name="a", kind=StepKind.INLINE, status=StepStatus.RUNNING),
            )
            await s.update_run(run.id, RunChanges(status=RunStatus.RUNNING))

        try:
            synchronous = await _statements_by_setting(store, settle)
            asynchronous = await _statements_by_setting(store, mark)
        finally:
            await store.close()
        assert synchronous["insert_step"] == synchronous["update_run"] == {"on"}
        assert asynchronous["insert_step"] == asynchronous["update_run"] == {"off"}

    async def test_synchronous_every_commit_keeps_every_commit_synchronous(
        self, dsn: str
    ) -> None:
        store = PostgresWorkflowStateService(
            _with_options(dsn, "-c synchronous_commit=on"), synchronous_every_commit=True
        )
        try:
            seen = await _statements_by_setting(store, _one_step_each_way)
            assert store._book_pool is store._pool  # no third pool
        finally:
            await store.close()
        assert set().union(*seen.values()) == {"on"}
        assert set(seen) >= BOOKKEEPING

    async def test_bookkeeping_pool_keeps_the_dsn_options(self, dsn: str) -> None:
        """The ``SET`` runs after connecting: the DSN's search_path (the schema) still holds,
        and the asynchronous commits are visible to the other sessions at once."""
        from pikku_typing.models import ClaimOwner

        store = PostgresWorkflowStateService(dsn)
        try:
            run = await store.create_run("wf", None)
            await store.insert_step(run.id, StepState(key="r", step_name="r", kind=StepKind.RPC))
            await store.schedule_step(run.id, "r", at=None)
            owner = ClaimOwner(host="h", pid=1, token="t9")
            claimed = await store.claim_step(run.id, "r", owner=owner, lease_seconds=30)
            assert claimed is not None
            rows = await _query(dsn, "SELECT status, lease_token FROM pikku_steps WHERE key = 'r'")
            assert rows == [("running", "t9")]
            assert await store.claim_step(run.id, "r", owner=owner, lease_seconds=30) is None
        finally:
            await store.close()


@pytest.mark.postgres
@pytest.mark.skipif(PG_DSN is None, reason="PIKKU_TEST_POSTGRES_DSN not set")
class TestStepAndRunInOneRead:
    pytestmark = list(POSTGRES_MARKS)

    async def test_get_step_and_run_is_one_statement_equal_to_the_two_reads(
        self, store: PostgresWorkflowStateService
    ) -> None:
        from pikku_typing.errors import RunNotFoundError
        from pikku_typing.models import ClaimOwner, RunStatus
        from pikku_typing.state.base import RunChanges, WorkflowStateService

        run = await store.create_run("wf", {"x": [1, 2.5, "é"]}, version="v1")
        owner = ClaimOwner(host="h", pid=1, token="t")
        await store.update_run(run.id, RunChanges(status=RunStatus.SUSPENDED, owner=owner))
        await store.insert_step(run.id, StepState(key="r", step_name="r", kind=StepKind.RPC,
                                                  rpc_name="x", data={"a": 1}))

        async def both(s: PostgresWorkflowStateService) -> None:
            nonlocal got
            got = await s.get_step_and_run(run.id, "r")

        got: Any = None
        seen = await _statements_by_setting(store, both)
        assert list(seen) == ["get_step_and_run"]  # one statement
        default = await WorkflowStateService.get_step_and_run(store, run.id, "r")  # two reads
        assert got is not None and default is not None
        assert got[0].model_dump() == default[0].model_dump()
        assert got[1].model_dump() == default[1].model_dump()
        assert got[1].owner == owner and got[1].version == "v1"
        assert await store.get_step_and_run(run.id, "missing") is None
        with pytest.raises(RunNotFoundError):
            await store.get_step_and_run("no-such-run", "r")


@pytest.mark.postgres
@pytest.mark.skipif(PG_DSN is None, reason="PIKKU_TEST_POSTGRES_DSN not set")
class TestInlineStepStatements:
    """Issue 16: an inline step is one statement on PostgreSQL in a pass: the step boundary
    folded into the attempt's insert, with the result of the step before written behind into
    the same statement (one synchronous commit); alone (no result held back), the insert
    commits asynchronously and the result synchronously; an insert sends back a flag, and
    the step it returns is the one a read gives back."""

    pytestmark = list(POSTGRES_MARKS)

    async def test_insert_step_at_boundary_is_one_statement(self, dsn: str) -> None:
        from pikku_typing.models import ClaimOwner, RunStatus, StepAttempt, StepStatus
        from pikku_typing.state.base import RunChanges

        store = PostgresWorkflowStateService(_with_options(dsn, "-c synchronous_commit=on"))
        owner = ClaimOwner(host="h", pid=1, token="t1")
        running = StepState(
            key="a", step_name="a", kind=StepKind.INLINE, status=StepStatus.RUNNING,
            attempt_count=1, attempts=[StepAttempt(number=1, status=StepStatus.RUNNING, owner=owner)],
        )  # fmt: skip
        got: list[StepState | None] = []
        try:
            run = await store.create_run("wf", None)

            async def attempt_start(s: PostgresWorkflowStateService) -> None:
                got.append(await s.insert_step_at_boundary(run.id, running))

            async def remote_step(s: PostgresWorkflowStateService) -> None:
                got.append(await s.insert_step_at_boundary(
                    run.id, StepState(key="r", step_name="r", kind=StepKind.RPC, rpc_name="x",
                                      status=StepStatus.SCHEDULED)))  # fmt: skip

            async def cancelled(s: PostgresWorkflowStateService) -> None:
                got.append(await s.insert_step_at_boundary(run.id, running.model_copy(update={"key": "b"})))

            # one statement each: no get_run before the insert
            assert await _statements_by_setting(store, attempt_start) == {
                "insert_step_at_boundary": {"off"}  # an attempt's start: asynchronous commit
            }
            assert await _statements_by_setting(store, remote_step) == {
                "insert_step_at_boundary": {"on"}
            }
            await store.update_run(run.id, RunChanges(cancel_requested=True))
            assert list(await _statements_by_setting(store, cancelled)) == [
                "insert_step_at_boundary"  # stopped at the boundary: nothing inserted
            ]
            first, second, stopped = got
            assert first is not None and first.current_attempt is not None
            assert first.current_attempt.owner == owner and first.status is StepStatus.RUNNING
            assert second is not None and second.status is StepStatus.SCHEDULED
            assert stopped is None
            assert sorted(await store.get_step_states(run.id)) == ["a", "r"]
            assert (await store.get_run(run.id)).status is RunStatus.RUNNING
        finally:
            await store.close()

    async def test_the_boundary_insert_sets_its_own_commit(self, dsn: str) -> None:
        """insert_step_at_boundary commits asynchronously by its ``asynchronous`` parameter
        (set_config local to its transaction), whatever the session's setting: the
        setting seen inside the statement's transaction, before it commits."""
        import psycopg

        from pikku_typing.state import postgres as pg

        async with PostgresWorkflowStateService(dsn) as store:
            run = await store.create_run("wf", None)
        params = pg._insert_step_params(
            run.id, StepState(key="k", step_name="k", kind=StepKind.INLINE)
        )
        async with await psycopg.AsyncConnection.connect(
            _with_options(dsn, "-c synchronous_commit=on"), autocommit=True
        ) as conn:
            seen = []
            for n, asynchronous in enumerate((True, False)):
                async with conn.transaction():
                    await conn.execute(
                        pg._Q["insert_step_at_boundary"],
                        {**params, "key": f"k{n}", "asynchronous": asynchronous},
                    )
                    seen.append(await (await conn.execute("SHOW synchronous_commit")).fetchone())
                seen.append(await (await conn.execute("SHOW synchronous_commit")).fetchone())
        assert seen == [("off",), ("on",), ("on",), ("on",)]

    async def test_the_returned_step_is_the_step_read_back(
        self, store: PostgresWorkflowStateService
    ) -> None:
        """insert_step(_at_boundary) no longer reads the row back (RETURNING a flag): what it
        returns must still equal what get_step reads, for values that do not survive JSON
        as they are (a tuple, integer keys) and timestamps that are naive or not in UTC."""
        from datetime import UTC, datetime, timedelta, timezone

        from pikku_typing.models import StepStatus

        run = await store.create_run("wf", None)
        later = timezone(timedelta(hours=5, minutes=30))
        data: dict[Any, Any] = {1: ("a", [2]), "k": {"n": None}}
        fields: dict[str, Any] = {
            "kind": StepKind.INLINE, "status": StepStatus.SUCCEEDED, "data": data,
            "result": (1, 2), "created_at": datetime(2030, 1, 2, 3, 4, 5, 678901),
            "updated_at": datetime(2030, 1, 2, 8, 34, 5, 678901, tzinfo=later),
            "finished_at": datetime(2030, 1, 2, 3, 4, 6, tzinfo=UTC),
        }  # fmt: skip
        if "retry_delay" in StepState.model_fields:
            fields["retry_delay"] = 2.5
        for key, insert in (("i", store.insert_step), ("b", store.insert_step_at_boundary)):
            returned = await insert(run.id, StepState(key=key, step_name=key, **fields))
            read = await store.get_step(run.id, key)
            assert returned is not None and read is not None
            assert returned.model_dump() == read.model_dump()
            assert returned.data == {"1": ["a", [2]], "k": {"n": None}} and returned.result == [1, 2]
            assert returned.created_at == datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
            assert returned.created_at.tzinfo is UTC and returned.updated_at.tzinfo is UTC
            assert returned.updated_at == read.updated_at == fields["created_at"].replace(tzinfo=UTC)
        data["k"]["n"] = 1  # the caller's value: the returned step holds a copy
        assert returned.data["k"] == {"n": None}

    async def test_a_lock_wait_leaves_no_lock_timeout(self, dsn: str) -> None:
        """The lock wait sets lock_timeout on the lock's session and resets it in the same
        round trip: the run's statements run on that session while it holds the lock (a row
        lock wait must not time out). A wait that timed out rolled its SET back."""
        async with (
            PostgresWorkflowStateService(dsn) as holder,
            PostgresWorkflowStateService(dsn, lock_pool_size=1) as waiter,
        ):
            run = await holder.create_run("wf", None)
            other = await holder.create_run("wf", None)
            async with holder.lock_run(run.id):
                with pytest.raises(TimeoutError):
                    async with waiter.lock_run(run.id, timeout=0.2):
                        pass
            async with waiter.lock_run(other.id, timeout=30):  # the same pooled session
                cur = await waiter._held[other.id].connection.execute("SHOW lock_timeout")
                assert await cur.fetchone() == {"lock_timeout": "0"}

    async def test_a_lost_lock_session_fails_the_statements_of_its_run(self, dsn: str) -> None:
        """While this process holds a run's lock, the run's statements go through the lock's
        session; when that session is lost, the lock is lost with it, so they fail with
        StoreUnavailableError (reads too: no retry on another session that would let the
        pass go on without its lock); another run's statements are not affected."""
        from pikku_typing.errors import StoreUnavailableError

        async with PostgresWorkflowStateService(dsn) as store:
            run = await store.create_run("wf", None)
            other = await store.create_run("wf", None)
            # releasing the lost lock fails too, as StoreUnavailableError (not the driver's)
            with pytest.raises(StoreUnavailableError):
                async with store.lock_run(run.id):
                    assert await store.get_step(run.id, "k") is None
                    held = store._held[run.id].connection
                    cur = await held.execute("SELECT pg_backend_pid() AS pid")
                    backend = await cur.fetchone()
                    assert backend is not None
                    await _query(dsn, "SELECT pg_terminate_backend(%s)", backend["pid"])
                    with pytest.raises(StoreUnavailableError):
                        await store.get_step(run.id, "k")
                    assert (await store.get_run(other.id)).id == other.id
            assert (await store.get_run(run.id)).id == run.id  # released: the pool again

    async def test_an_inline_step_is_one_statement(
        self, store: PostgresWorkflowStateService
    ) -> None:
        from pikku_typing import InProcessQueue, Workflow, WorkflowRuntime, wire_workflow
        from pikku_typing.wiring import registry

        async def flow(workflow: Workflow, n: int) -> int:
            total = 0
            for i in range(n):
                total += await workflow.do("step", lambda i=i: i)  # type: ignore[misc]
            return total

        saved = dict(registry.workflows)
        wire_workflow(name="pg_inline_statements", func=flow, execution_mode="inline")
        runtime = WorkflowRuntime(store, InProcessQueue())
        client = runtime.client("pg_inline_statements")
        per_run: list[dict[str, int]] = []

        async def one(n: int) -> None:
            counts: dict[str, int] = {}

            async def run(s: PostgresWorkflowStateService) -> None:
                handle = await client.start(n)
                await runtime.drain()
                assert await client.result(handle.run_id, timeout=60) == n * (n - 1) // 2

            import psycopg

            from pikku_typing.state import postgres as pg

            names = {text: name for name, text in pg._Q.items()}
            original = psycopg.AsyncCursor.execute  # what every statement goes through

            async def hooked(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
                name = names.get(query, "other") if isinstance(query, str) else "other"
                counts[name] = counts.get(name, 0) + 1
                return await original(self, query, *args, **kwargs)

            from psycopg_pool import AsyncConnectionPool

            getconn = AsyncConnectionPool.getconn

            async def checkout(self: Any, *args: Any, **kwargs: Any) -> Any:
                counts["pool checkout"] = counts.get("pool checkout", 0) + 1
                return await getconn(self, *args, **kwargs)

            make_cursor = psycopg.AsyncConnection.cursor

            def cursor(self: Any, *args: Any, **kwargs: Any) -> Any:
                counts["cursor"] = counts.get("cursor", 0) + 1
                return make_cursor(self, *args, **kwargs)

            psycopg.AsyncCursor.execute = hooked  # type: ignore[method-assign]
            AsyncConnectionPool.getconn = checkout  # type: ignore[method-assign]
            psycopg.AsyncConnection.cursor = cursor  # type: ignore[method-assign,assignment]
            try:
                await run(store)
            finally:
                psycopg.AsyncCursor.execute = original  # type: ignore[method-assign]
                AsyncConnectionPool.getconn = getconn  # type: ignore[method-assign]
                psycopg.AsyncConnection.cursor = make_cursor  # type: ignore[method-assign]
            per_run.append(counts)

        try:
            await one(2)
            await one(2)  # warm: the first run pays for the pools and the migration
            await one(7)
        finally:
            await runtime.close()
            registry.workflows.clear()
            registry.workflows.update(saved)
        short, long = per_run[1], per_run[2]
        extra = {k: long.get(k, 0) - short.get(k, 0) for k in set(short) | set(long)}
        extra = {k: v for k, v in extra.items() if v}
        # five more steps: five statements, each the result of the step before (written
        # behind) with the boundary and attempt start of the next, nothing else, and no pool
        # checkout or new cursor: a pass sends them on the session holding the run's lock,
        # through one cursor (the last step's result goes before the run's settlement, as
        # in the short run)
        assert extra == {"complete_then_insert_step_at_boundary": 5}


@pytest.mark.postgres
@pytest.mark.skipif(PG_DSN is None, reason="PIKKU_TEST_POSTGRES_DSN not set")
class TestStepJobClaim:
    """Issue 16: a step job's first move on PostgreSQL is one statement: the due attempt of a
    run that goes on is claimed at once (``claim_due_step``) instead of reading the step and
    its run (``get_step_and_run``) and then claiming (``claim_step``)."""

    pytestmark = list(POSTGRES_MARKS)

    async def test_claim_due_step_claims_only_while_the_run_goes_on(self, dsn: str) -> None:
        from datetime import UTC, datetime, timedelta

        from pikku_typing.models import ClaimOwner, RunStatus, StepStatus
        from pikku_typing.state.base import RunChanges

        owner = ClaimOwner(host="h", pid=1, token="t1")

        def scheduled(key: str, **kw: Any) -> StepState:
            return StepState(key=key, step_name=key, kind=StepKind.RPC, rpc_name="x",
                             status=StepStatus.SCHEDULED, **kw)  # fmt: skip

        async with PostgresWorkflowStateService(dsn) as store:
            run = await store.create_run("wf", None)
            later = datetime.now(UTC) + timedelta(hours=1)
            for step in (scheduled("a"), scheduled("later", next_attempt_at=later)):
                await store.insert_step(run.id, step)
            claimed = await store.claim_due_step(run.id, "a", owner=owner, lease_seconds=30)
            assert claimed is not None and claimed.status is StepStatus.RUNNING
            assert claimed.attempt_count == 1 and claimed.current_attempt is not None
            assert claimed.current_attempt.owner == owner
            assert claimed == await store.get_step(run.id, "a")
            # held, not due, no such step: not claimed (the caller reads and decides)
            assert await store.claim_due_step(run.id, "a", owner=owner, lease_seconds=30) is None
            assert await store.claim_due_step(
                run.id, "later", owner=owner, lease_seconds=30) is None  # fmt: skip
            assert await store.claim_due_step(run.id, "nope", owner=owner, lease_seconds=30) is None
            # a cancel request, then a settled run: a step boundary, nothing claimed
            await store.insert_step(run.id, scheduled("b"))
            await store.update_run(run.id, RunChanges(cancel_requested=True))
            assert await store.claim_due_step(run.id, "b", owner=owner, lease_seconds=30) is None
            await store.update_run(
                run.id, RunChanges(cancel_requested=False, status=RunStatus.COMPLETED)
            )
            assert await store.claim_due_step(run.id, "b", owner=owner, lease_seconds=30) is None
            assert (await store.get_step(run.id, "b")).status is StepStatus.SCHEDULED  # type: ignore[union-attr]

    async def test_a_step_job_claims_without_reading_first(self, dsn: str) -> None:
        import psycopg
        from registry_support import isolated_registry

        from pikku_typing import (
            InProcessQueue,
            Workflow,
            WorkflowRuntime,
            pikku_func,
            wire_workflow,
        )
        from pikku_typing.runtime.queues.base import orchestrator_queue, step_queue
        from pikku_typing.state import postgres as pg

        async def flow(workflow: Workflow, n: int) -> int:
            return int(await workflow.do("only", "claim.add", n))

        names = {text: name for name, text in pg._Q.items()}
        ran: list[str] = []
        original = psycopg.AsyncCursor.execute

        async def hooked(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(query, str) and query in names:
                params = args[0] if args else kwargs.get("params")
                due = isinstance(params, dict) and params.get("run_goes_on") is True
                ran.append("claim_due_step" if due else names[query])  # claim_step's guarded form
            return await original(self, query, *args, **kwargs)

        with isolated_registry():
            pikku_func(name="claim.add")(lambda n: n + 1)  # type: ignore[arg-type, return-value]
            wire_workflow(name="claim_flow", func=flow, execution_mode="remote")
            store = PostgresWorkflowStateService(dsn)
            rt = WorkflowRuntime(store, InProcessQueue(), eager_steps=False)
            try:
                run_id = (await rt.client("claim_flow").start(1)).run_id
                await rt.drain(queues=[orchestrator_queue("claim_flow")])  # the step queued
                psycopg.AsyncCursor.execute = hooked  # type: ignore[method-assign]
                try:
                    await rt.drain(queues=[step_queue("claim_flow", "claim.add")])
                finally:
                    psycopg.AsyncCursor.execute = original  # type: ignore[method-assign]
                await rt.drain()
                assert (await store.get_run(run_id)).output == 2
            finally:
                await rt.close()
                await store.close()
        assert ran[:2] == ["claim_due_step", "complete_step"], ran
        assert "get_step_and_run" not in ran and "claim_step" not in ran


@pytest.mark.postgres
@pytest.mark.skipif(PG_DSN is None, reason="PIKKU_TEST_POSTGRES_DSN not set")
class TestWriteBehind:
    """Issue 16: ``complete_step_later`` while this process holds the run's lock holds the
    result back and sends it with the run's next statement: a step's insert carries it in
    the same statement, committed synchronously; any other statement of the run sends it
    first; the lock's release sends it at the latest; a claim taken over meanwhile is a
    ``StepCompletionLostError`` and nothing of the statement applies."""

    pytestmark = list(POSTGRES_MARKS)

    @staticmethod
    def _running(key: str, token: str) -> StepState:
        from pikku_typing.models import ClaimOwner, StepAttempt, StepStatus

        owner = ClaimOwner(host="h", pid=1, token=token)
        return StepState(
            key=key, step_name=key, kind=StepKind.INLINE, status=StepStatus.RUNNING,
            attempt_count=1, attempts=[StepAttempt(number=1, status=StepStatus.RUNNING, owner=owner)],
        )  # fmt: skip

    async def _stored(self, dsn: str, run_id: str) -> dict[str, tuple[str, Any]]:
        rows = await _query(dsn, "SELECT key, status, result FROM pikku_steps WHERE run_id = %s", run_id)
        return {key: (status, result) for key, status, result in rows}

    async def test_the_next_insert_carries_the_result_in_one_synchronous_statement(
        self, dsn: str
    ) -> None:
        # the test server commits asynchronously: the sessions' own setting, as a real one's
        store = PostgresWorkflowStateService(_with_options(dsn, "-c synchronous_commit=on"))
        try:
            run = await store.create_run("wf", None)
            async with store.lock_run(run.id):
                await store.insert_step_at_boundary(run.id, self._running("a", "t1"))
                assert await store.complete_step_later(run.id, "a", result=7, token="t1")
                # held back: another session does not see it yet
                assert (await self._stored(dsn, run.id))["a"][0] == "running"

                async def next_step(s: PostgresWorkflowStateService) -> None:
                    assert await s.insert_step_at_boundary(run.id, self._running("b", "t2"))

                # one statement, on a session that commits synchronously (the lock's)
                assert await _statements_by_setting(store, next_step) == {
                    "complete_then_insert_step_at_boundary": {"on"}
                }
                assert await self._stored(dsn, run.id) == {
                    "a": ("succeeded", "7"), "b": ("running", None)
                }
                assert store._pending == {}
        finally:
            await store.close()

    async def test_any_other_statement_of_the_run_or_the_release_sends_it(
        self, dsn: str
    ) -> None:
        from pikku_typing.models import StepStatus

        store = PostgresWorkflowStateService(dsn)
        try:
            run = await store.create_run("wf", None)
            other = await store.create_run("wf", None)
            async with store.lock_run(run.id):
                await store.insert_step_at_boundary(run.id, self._running("a", "t1"))
                await store.complete_step_later(run.id, "a", result="x", token="t1")
                await store.get_run(other.id)  # another run's statement: still held back
                assert (await self._stored(dsn, run.id))["a"][0] == "running"
                step = await store.get_step(run.id, "a")  # the run's own read sends it first
                assert step is not None and step.status is StepStatus.SUCCEEDED
                assert step.result == "x"
                await store.insert_step_at_boundary(run.id, self._running("b", "t2"))
                await store.complete_step_later(run.id, "b", result=[1], token="t2")
                await store.complete_step_later(run.id, "b", result=[2], token="t2")
            # released: sent before the unlock (the second one no longer applied: logged)
            assert (await self._stored(dsn, run.id))["b"] == ("succeeded", "[1]")
            assert store._pending == {}
        finally:
            await store.close()

    async def test_the_runs_durable_write_carries_it_in_one_statement(self, dsn: str) -> None:
        """The run's settlement (a durable update_run) carries the last step's held-back
        result: one statement, one synchronous commit. An update that does not apply
        (another status expected) still stores the result; a lost claim applies neither."""
        from datetime import UTC, datetime

        from pikku_typing.models import ErrorInfo, RunStatus
        from pikku_typing.state.base import RunChanges, StepCompletionLostError

        store = PostgresWorkflowStateService(_with_options(dsn, "-c synchronous_commit=on"))
        other = PostgresWorkflowStateService(dsn)
        try:
            run = await store.create_run("wf", None)
            async with store.lock_run(run.id):
                await store.insert_step_at_boundary(run.id, self._running("a", "t1"))
                await store.complete_step_later(run.id, "a", result=1, token="t1")

                async def settle(s: PostgresWorkflowStateService) -> None:
                    settled = await s.transition_run(
                        run.id, (RunStatus.RUNNING,), RunChanges(status=RunStatus.COMPLETED, output=1)
                    )
                    assert settled is not None and settled.status is RunStatus.COMPLETED

                assert await _statements_by_setting(store, settle) == {
                    "complete_then_update_run": {"on"}
                }
                assert (await self._stored(dsn, run.id))["a"] == ("succeeded", "1")

            second = await store.create_run("wf", None)
            async with store.lock_run(second.id):
                await store.insert_step_at_boundary(second.id, self._running("a", "t1"))
                await store.complete_step_later(second.id, "a", result=2, token="t1")
                missed = await store.transition_run(
                    second.id, (RunStatus.SUSPENDED,), RunChanges(status=RunStatus.FAILED)
                )
                assert missed is None  # the run is running: not updated, the result stored
                assert (await self._stored(dsn, second.id))["a"] == ("succeeded", "2")
                assert (await store.get_run(second.id)).status is RunStatus.RUNNING

                await store.insert_step_at_boundary(second.id, self._running("b", "t2"))
                await store.complete_step_later(second.id, "b", result=3, token="t2")
                await other.fail_step_attempt(
                    second.id, "b", token=None, retry_at=datetime.now(UTC),
                    error=ErrorInfo(type="AbandonedAttempt", message="taken over"),
                )
                with pytest.raises(StepCompletionLostError, match="'b'"):
                    await store.transition_run(
                        second.id, (RunStatus.RUNNING,), RunChanges(status=RunStatus.COMPLETED)
                    )
                assert (await store.get_run(second.id)).status is RunStatus.RUNNING
                assert (await self._stored(dsn, second.id))["b"] == ("scheduled", None)
        finally:
            await store.close()
            await other.close()

    async def test_without_the_lock_it_is_stored_at_once(self, dsn: str) -> None:
        store = PostgresWorkflowStateService(dsn)
        try:
            run = await store.create_run("wf", None)
            await store.insert_step(run.id, self._running("a", "t1"))
            assert await store.complete_step_later(run.id, "a", result=1, token="t1")
            assert (await self._stored(dsn, run.id))["a"] == ("succeeded", "1")
            assert not await store.complete_step_later(run.id, "a", result=2, token="t1")
        finally:
            await store.close()

    async def test_write_behind_false_stores_it_at_once_under_the_lock(self, dsn: str) -> None:
        store = PostgresWorkflowStateService(dsn, write_behind=False)
        try:
            run = await store.create_run("wf", None)
            async with store.lock_run(run.id):
                await store.insert_step_at_boundary(run.id, self._running("a", "t1"))
                assert await store.complete_step_later(run.id, "a", result=1, token="t1")
                assert (await self._stored(dsn, run.id))["a"] == ("succeeded", "1")
                assert store._pending == {}
        finally:
            await store.close()

    async def test_a_claim_taken_over_meanwhile_is_lost_and_nothing_applies(
        self, dsn: str
    ) -> None:
        from datetime import UTC, datetime

        from pikku_typing.models import ErrorInfo
        from pikku_typing.state.base import StepCompletionLostError

        store = PostgresWorkflowStateService(dsn)
        other = PostgresWorkflowStateService(dsn)  # another process abandons the attempt
        try:
            run = await store.create_run("wf", None)
            async with store.lock_run(run.id):
                await store.insert_step_at_boundary(run.id, self._running("a", "t1"))
                await store.complete_step_later(run.id, "a", result=7, token="t1")
                await other.fail_step_attempt(
                    run.id, "a", token=None, error=ErrorInfo(type="AbandonedAttempt", message="m"),
                    retry_at=datetime.now(UTC),
                )
                with pytest.raises(StepCompletionLostError, match="'a'"):
                    await store.insert_step_at_boundary(run.id, self._running("b", "t2"))
                assert store._pending == {}
            stored = await self._stored(dsn, run.id)
            assert stored == {"a": ("scheduled", None)}  # no result, no step b
        finally:
            await store.close()
            await other.close()

    async def test_a_pass_whose_held_back_result_is_lost_runs_again(self, dsn: str) -> None:
        """End to end: the first attempt of step ``a`` is taken over by another process
        (abandoned, due again) after its code returned and the pass handed its result to the
        store, before the pass's next statement; its result, held back, does not apply when
        the insert of step ``b`` carries it: the pass is abandoned (step ``b`` is not
        inserted), the job runs again and the replay runs ``a`` again: the run completes
        with the second attempt's value."""
        from write_behind_support import run_losing_a_held_back_result

        from pikku_typing.models import RunStatus

        store = PostgresWorkflowStateService(dsn)
        other = PostgresWorkflowStateService(dsn)
        try:
            output, run, steps, ran = await run_losing_a_held_back_result(store, other, "pg_lost_result")
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
