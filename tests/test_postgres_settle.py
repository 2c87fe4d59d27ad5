"""``result()`` on PostgreSQL waits on LISTEN/NOTIFY, not on polling.

The store's ``update_run`` statement notifies ``pikku_settled`` when a run settles; each store
holds one listening connection (:class:`pikku_typing.state._pg_listen.SettleListener`). Two
store instances have two sets of connections, as two processes do. Waits below use long
timeouts (60 s) bounded by a shorter ``asyncio.wait_for``: a notice that does not arrive
fails the test instead of being covered by the fallback sleep.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn
from registry_support import isolated_registry

from pikku_typing import (
    PostgresWorkflowStateService,
    RunStatus,
    Workflow,
    WorkflowRuntime,
    wire_workflow,
)
from pikku_typing.runtime import runtime as runtime_module
from pikku_typing.state._pg_listen import SettleListener
from pikku_typing.state.base import RunChanges

NOTICE_WITHIN = 20.0
"""Bound for a wait that a notice must end (the wait's own timeout is 60 s)."""


# ------------------------------------------------------------ without a server


async def test_a_listener_that_cannot_connect_falls_back_to_sleeping() -> None:
    calls = 0

    async def connect() -> Any:
        nonlocal calls
        calls += 1
        raise OSError("connection refused")

    listener = SettleListener(connect)
    loop = asyncio.get_running_loop()
    for _ in range(3):
        started = loop.time()
        await listener.wait("run-1", 0.05)
        assert loop.time() - started >= 0.04  # slept its timeout: the caller polls
    assert calls == 1  # no reconnect storm: the next attempt waits RETRY_SECONDS
    await listener.close()


# --------------------------------------------------------------- with a server


async def _listening(store: PostgresWorkflowStateService, run_id: str) -> None:
    """Open the store's listener (its first wait does) and wait until it listens."""
    await store.wait_settled(run_id, 0.01)
    ready = store._listener._ready
    assert ready is not None
    assert await asyncio.wait_for(asyncio.shield(ready), NOTICE_WITHIN)


@pytest.fixture(autouse=True)
def clean_registry() -> Any:
    with isolated_registry():
        yield


@pytest.fixture
def dsn() -> Any:
    pytest.importorskip("psycopg")
    value = create_schema_dsn()
    yield value
    drop_schema_dsn(value)


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED])
async def test_a_settle_in_another_store_wakes_the_waiter(dsn: str, status: RunStatus) -> None:
    async with PostgresWorkflowStateService(dsn) as waiter, \
            PostgresWorkflowStateService(dsn) as writer:
        run = await writer.create_run("wf", {"n": 1})
        assert waiter.pushes_settled
        await _listening(waiter, run.id)
        waiting = asyncio.ensure_future(waiter.wait_settled(run.id, 60))
        await writer.update_run(run.id, RunChanges(status=RunStatus.SUSPENDED))
        await writer.update_run(run.id, RunChanges(status=status))
        await asyncio.wait_for(waiting, NOTICE_WITHIN)


async def test_a_notice_between_read_and_wait_is_not_lost(dsn: str) -> None:
    async with PostgresWorkflowStateService(dsn) as waiter, \
            PostgresWorkflowStateService(dsn) as writer:
        first = await writer.create_run("wf", {"n": 1})
        await _listening(waiter, first.id)
        second = await writer.create_run("wf", {"n": 2})
        # a waiter that read `second` as running, then got here after it settled
        await writer.update_run(second.id, RunChanges(status=RunStatus.COMPLETED, output=2))
        for _ in range(500):
            if second.id in waiter._listener._recent:
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(waiter.wait_settled(second.id, 60), NOTICE_WITHIN)


async def test_an_update_that_does_not_settle_does_not_wake(dsn: str) -> None:
    async with PostgresWorkflowStateService(dsn) as waiter, \
            PostgresWorkflowStateService(dsn) as writer:
        run = await writer.create_run("wf", {"n": 1})
        await _listening(waiter, run.id)
        waiting = asyncio.ensure_future(waiter.wait_settled(run.id, 60))
        await writer.update_run(run.id, RunChanges(status=RunStatus.SUSPENDED))
        await writer.update_run(run.id, RunChanges(status=RunStatus.RUNNING))
        other = await writer.create_run("wf", {"n": 2})
        await writer.update_run(other.id, RunChanges(status=RunStatus.COMPLETED, output=2))
        # the other run's notice arrives (it is recorded), ours must not have woken us
        for _ in range(500):
            if other.id in waiter._listener._recent:
                break
            await asyncio.sleep(0.01)
        assert other.id in waiter._listener._recent
        assert not waiting.done()
        waiting.cancel()


async def test_result_wakes_on_a_settle_made_by_another_runtime(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # result() reads the run once, then waits: only the notice can end the wait in time
    monkeypatch.setattr(runtime_module, "POLL_FIRST", 60.0)
    monkeypatch.setattr(runtime_module, "POLL_MAX_PUSHED", 60.0)
    async def parked(workflow: Workflow, data: int) -> int:
        await workflow.sleep("nap", "1d")
        return data

    wire_workflow(name="settle_wf", func=parked, execution_mode="inline")
    async with PostgresWorkflowStateService(dsn) as state, \
            PostgresWorkflowStateService(dsn) as other:
        runtime = WorkflowRuntime(state)
        client = runtime.client("settle_wf")
        handle = await client.start(7)
        await runtime.drain()
        assert (await client.get_run(handle.run_id)).status is RunStatus.SUSPENDED
        await _listening(state, handle.run_id)
        waiting = asyncio.ensure_future(client.result(handle.run_id, timeout=120))
        await asyncio.sleep(0.1)  # result() read the run and is waiting
        await other.update_run(handle.run_id, RunChanges(status=RunStatus.COMPLETED, output=7))
        assert await asyncio.wait_for(waiting, NOTICE_WITHIN) == 7
        await runtime.close()


EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    from pikku_typing import PostgresWorkflowStateService, Workflow, WorkflowRuntime, wire_workflow

    async def echo(workflow: Workflow, data: dict) -> dict:
        return data

    wire_workflow(name="exit_echo", func=echo)

    async def main() -> None:
        runtime = WorkflowRuntime(state=PostgresWorkflowStateService(sys.argv[1]))
        client = runtime.client("exit_echo")
        handle = await client.start({"n": 1})
        assert await client.result(handle.run_id, timeout=60) == {"n": 1}
        # the settle listener was opened by result(); nothing is closed

    asyncio.run(main())
    print(f"returned {time.time()}", flush=True)
    """
)


def test_an_open_listener_lets_the_process_exit(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    sys.path.insert(0, os.path.dirname(__file__))
    from test_process_exit import EXIT_WITHIN, _run_one

    script = tmp_path / "listening.py"
    script.write_text(EXIT_SCRIPT)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _run_one(script), range(8)))
    failures = [err for took, err in results if took is None]
    assert not failures, failures[0]
    assert all(took is not None and took <= EXIT_WITHIN for took, _ in results), results


pytestmark = list(POSTGRES_MARKS)
