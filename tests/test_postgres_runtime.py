"""The runtime suite (``tests/test_runtime.py``) again, on the PostgreSQL store AND the
PostgreSQL queue (procrastinate): every test that takes a store runs here with
``PostgresQueue`` in place of the in-process queue, in a fresh schema per test.

(``tests/test_runtime.py`` itself already runs on the PostgreSQL store with the in-process
queue, through the ``postgres`` store factory.) Skipped without ``PIKKU_TEST_POSTGRES_DSN``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import test_runtime
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn
from stores import StoreSpec
from test_runtime import *  # noqa: F403 - the runtime tests and their fixtures

from pikku_typing import (
    RunStatus,
    StepStatus,
    Workflow,
    WorkflowRuntime,
    WorkflowStateService,
    wire_workflow,
)
from pikku_typing.runtime.queues.postgres import PostgresQueue

pytestmark = [*POSTGRES_MARKS]

# Keep only the tests that run on the store fixture (the others do not touch a queue), and
# not those about the in-process queue itself (e.g. result() running its jobs).
for _name, _obj in list(globals().items()):
    if (
        _name.startswith("test_")
        and inspect.isfunction(_obj)
        and (
            "store" not in inspect.signature(_obj).parameters
            or "in-process queue" in inspect.getsource(_obj)
            or "InProcessQueue" in inspect.getsource(_obj)
        )
    ):
        del globals()[_name]

# test_sleep_is_durable_and_drain_does_not_wait moves a fake clock that only the in-process
# queue follows (so it is left out above); test_durable_sleep_survives_a_new_queue (below) is
# the same scenario on procrastinate.


@pytest.fixture
def store_spec(tmp_path: Path) -> Iterator[StoreSpec]:  # overrides test_runtime's
    dsn = create_schema_dsn()
    yield StoreSpec(f"postgres:{dsn}")
    drop_schema_dsn(dsn)


@pytest.fixture(autouse=True)
async def postgres_queues(
    monkeypatch: pytest.MonkeyPatch, store: WorkflowStateService
) -> AsyncIterator[list[PostgresQueue]]:
    queues: list[PostgresQueue] = []
    dsn: str = store.dsn  # type: ignore[attr-defined]

    def new_runtime(made: list[WorkflowRuntime], store: WorkflowStateService, **kw: Any) -> WorkflowRuntime:
        # a short retry backoff (the default is 2 s, doubled per failure): the tests that
        # make a job fail several times finish in a fraction of a second per retry
        queue = PostgresQueue(
            dsn, poll_interval=0.05, shutdown_timeout=10, retry_backoff=0.05,
            max_retry_backoff=0.5,
        )
        queues.append(queue)
        rt = WorkflowRuntime(store, queue, **kw)
        made.append(rt)
        return rt

    monkeypatch.setattr(test_runtime, "new_runtime", new_runtime)
    yield queues
    for queue in queues:
        await queue.close()


async def _make_delayed_jobs_due(dsn: str) -> int:
    """The queue's side of moving the clock forward: every delayed procrastinate job of this
    schema becomes due now."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now()"
            " WHERE status = 'todo' AND scheduled_at > now()"
        )
        return cur.rowcount


@test_runtime.MODES
async def test_durable_sleep_survives_a_new_queue(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str,
    clock: test_runtime.FakeClock,
) -> None:
    """A sleeping run is a delayed procrastinate job: a new runtime with a NEW queue object
    (a restarted worker) runs it when the sleep ends, without recover(); drain() before that
    leaves it suspended. The sleep is long and ends when the test moves both clocks (the
    runtime's, and the jobs' due times in PostgreSQL), so a slow machine changes nothing."""
    after: list[int] = []

    async def wf(workflow: Workflow, data: None) -> str:
        await workflow.do("before", lambda: 1)
        await workflow.sleep("nap", timedelta(hours=1))
        after.append(1)
        return "woke"

    wire_workflow(name="pg_sleepy", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = test_runtime.new_runtime(runtimes, store)
    handle = await rt.client("pg_sleepy").start(None)
    await rt.drain()
    nap = (await store.get_step_states(handle.run_id))["nap"]
    assert nap.status is StepStatus.SCHEDULED and nap.next_attempt_at is not None
    await rt.close()
    await rt.queue.close()
    rt2 = test_runtime.new_runtime(runtimes, store)
    await rt2.drain()
    assert (await store.get_run(handle.run_id)).status is RunStatus.SUSPENDED
    assert after == []
    clock.advance(timedelta(hours=1))
    assert await _make_delayed_jobs_due(store.dsn) == 1  # type: ignore[attr-defined]  # the wake-up
    await rt2.drain()
    assert await rt2.client("pg_sleepy").result(handle.run_id, timeout=60) == "woke"
    assert after == [1]


@test_runtime.MODES
async def test_a_store_outage_is_retried_by_procrastinate(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job that hit ``StoreUnavailableError`` fails in procrastinate (not marked done), which
    retries it after its backoff: the run completes without ``recover()``."""

    async def wf(workflow: Workflow, data: None) -> str:
        first = await workflow.do("a", lambda: "a")
        return first + str(await workflow.do("b", lambda: "b"))

    wire_workflow(name="pg_blip", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = test_runtime.new_runtime(runtimes, store)
    handle = await rt.client("pg_blip").start(None)
    calls = test_runtime._fail_once(monkeypatch, store, "insert_step_at_boundary")
    await rt.drain()
    assert calls and (await store.get_run(handle.run_id)).status is RunStatus.RUNNING
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60  # a generous cap: the retry backoff is 0.05 s here
    while not (await store.get_run(handle.run_id)).status.is_settled:
        assert loop.time() < deadline, "the failed job was never retried"
        await asyncio.sleep(0.2)
        await rt.drain()
    assert await rt.client("pg_blip").result(handle.run_id, timeout=10) == "ab"
