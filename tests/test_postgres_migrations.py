"""Upgrading a PostgreSQL store that holds runs in flight.

A deploy of a newer pikku-workflows migrates the schema on first use (``migrate()``). The
runs recorded under the older schema must go on: here a run is started and parked on a
remote step by the code with its schema held at version 3 (the last schema before issue 16's
index and foreign-key changes), then the current code opens the store, migrates it and
finishes the run. Skipped without ``PIKKU_TEST_POSTGRES_DSN``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn, schema_of
from registry_support import isolated_registry

from pikku_typing import (
    InProcessQueue,
    RunStatus,
    StepStatus,
    Workflow,
    WorkflowRuntime,
    pikku_func,
    wire_workflow,
)
from pikku_typing.runtime.queues.base import orchestrator_queue
from pikku_typing.state import postgres as pg

pytestmark = [*POSTGRES_MARKS]

OLD_VERSION = 3


@pytest.fixture
def dsn() -> Iterator[str]:
    value = create_schema_dsn("pikku_upgrade_")
    yield value
    drop_schema_dsn(value)


async def _query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(sql, params or None)
        return await cur.fetchall() if cur.description else []


async def test_a_run_in_flight_at_schema_3_completes_after_the_upgrade(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[int] = []

    async def add(data: int) -> int:
        ran.append(data)
        return data + 1

    async def flow(workflow: Workflow, n: int) -> int:
        first: int = await workflow.do("first", "upgrade.add", n)
        return int(await workflow.do("second", "upgrade.add", first))

    with isolated_registry():
        pikku_func(name="upgrade.add")(add)
        wire_workflow(name="upgrade", func=flow, execution_mode="remote")

        # the old deploy: schema 3, one pass, the run parked on its first (remote) step
        monkeypatch.setattr(pg, "SCHEMA_VERSION", OLD_VERSION)
        old = WorkflowRuntime(pg.PostgresWorkflowStateService(dsn), InProcessQueue())
        run_id = (await old.client("upgrade").start(5)).run_id
        await old.drain(queues=[orchestrator_queue("upgrade")])
        await old.close()
        await old.state.close()
        versions = await _query(dsn, "SELECT version FROM pikku_schema_version ORDER BY 1")
        assert versions == [(v,) for v in range(1, OLD_VERSION + 1)]
        fkeys = await _query(
            dsn,
            "SELECT conname FROM pg_constraint WHERE conrelid = 'pikku_steps'::regclass"
            " AND contype = 'f'",
        )
        assert fkeys  # schema 3 still had the steps' foreign key on their run
        monkeypatch.undo()

        # the new deploy: migrates on first use, recovers the run, finishes it
        new = WorkflowRuntime(pg.PostgresWorkflowStateService(dsn), InProcessQueue())
        try:
            parked = await new.state.get_run(run_id)  # the first use migrates
            assert parked.status is RunStatus.SUSPENDED
            versions = await _query(dsn, "SELECT version FROM pikku_schema_version ORDER BY 1")
            assert versions == [(v,) for v in range(1, pg.SCHEMA_VERSION + 1)]
            steps = await new.state.get_step_states(run_id)
            assert steps["first"].status is StepStatus.SCHEDULED
            assert await new.recover() == 1
            await new.drain()
            done = await new.state.get_run(run_id)
            assert done.status is RunStatus.COMPLETED and done.output == 7
            assert ran == [5, 6]
        finally:
            await new.close()
            await new.state.close()

    # what the upgrade changed: the steps' foreign key became a delete trigger
    assert await _query(
        dsn,
        "SELECT conname FROM pg_constraint WHERE conrelid = 'pikku_steps'::regclass"
        " AND contype = 'f'",
    ) == []
    indexes = await _query(
        dsn, "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
        schema_of(dsn), "pikku_steps",
    )
    assert [name for (name,) in indexes] == ["pikku_steps_pkey"]
    await _query(dsn, "DELETE FROM pikku_runs WHERE id = %s", run_id)
    assert await _query(dsn, "SELECT key FROM pikku_steps WHERE run_id = %s", run_id) == []
