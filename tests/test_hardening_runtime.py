"""Issue 10, runtime items: transient errors never reach workflow code, client.start retries
them, a step started inside a step is NestedStepError, a run whose workflow a worker does not
have records why and waits for one that has it, and injected store outages over many runs
strand none of them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn

from pikku_typing import Workflow, WorkflowRuntime, pikku_func, wire_workflow
from pikku_typing.errors import StoreUnavailableError, WorkflowFailedError
from pikku_typing.models import RunStatus, StepState
from pikku_typing.runtime.queues.base import WorkflowQueue
from pikku_typing.runtime.queues.memory import InProcessQueue
from pikku_typing.runtime.services import enqueue_orchestrator
from pikku_typing.state import InMemoryWorkflowStateService, open_store
from pikku_typing.state.base import WorkflowStateService
from pikku_typing.wiring import Registry, registry

SETTLE_CAP = 60.0


# ------------------------------------------------- 3. transient errors stay outside


caught: list[BaseException] = []


async def _catches_everything(workflow: Workflow, data: int) -> int:
    try:
        value: int = await workflow.do("a", lambda: data)
    except Exception as exc:  # a user's except: must never see an infrastructure failure
        caught.append(exc)
        return -1
    return value


wire_workflow(name="hard_catches", func=_catches_everything, execution_mode="inline")


async def test_store_failure_never_reaches_the_workflows_except(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caught.clear()
    store = InMemoryWorkflowStateService()
    original = store.insert_step_at_boundary
    failures = [1]

    async def flaky(run_id: str, step: StepState) -> StepState | None:
        if failures:
            failures.pop()
            raise StoreUnavailableError("test: the database blinked")
        return await original(run_id, step)

    monkeypatch.setattr(store, "insert_step_at_boundary", flaky)
    async with WorkflowRuntime(store, InProcessQueue(retry_backoff=0.001)) as rt:
        handle = await rt.client("hard_catches").start(7)
        assert await handle.result(timeout=SETTLE_CAP) == 7
    assert caught == [] and failures == []  # the blink happened, and was not caught


async def test_client_start_retries_transient_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    store = InMemoryWorkflowStateService()
    original = store.create_run
    calls: list[int] = []

    async def lost_reply(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            await original(*args, **kwargs)  # stored, but the reply is lost
            raise StoreUnavailableError("test: connection reset after the insert")
        if len(calls) == 2:
            raise StoreUnavailableError("test: still away")
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, "create_run", lost_reply)
    async with WorkflowRuntime(store, InProcessQueue()) as rt:
        handle = await rt.client("hard_catches").start(3)
        assert await handle.result(timeout=SETTLE_CAP) == 3
    assert len(calls) == 3
    assert len(await store.list_runs()) == 1  # never two runs for one start


async def test_client_start_gives_up_after_bounded_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = InMemoryWorkflowStateService()
    calls: list[int] = []

    async def down(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise StoreUnavailableError("test: down")

    monkeypatch.setattr(store, "create_run", down)
    monkeypatch.setattr("pikku_typing.runtime.runtime.START_RETRY_DELAY", 0.001)
    async with WorkflowRuntime(store, InProcessQueue()) as rt:
        with pytest.raises(StoreUnavailableError):
            await rt.client("hard_catches").start(3)
    assert len(calls) == 6  # the first try + START_RETRIES


# ----------------------------------------------------------- 9. nested steps

inner_calls: list[str] = []


async def _nested(workflow: Workflow, data: None) -> str:
    async def outer_body() -> str:
        inner_calls.append("outer")
        return str(await workflow.do("inner", lambda: "x"))

    return str(await workflow.do("outer", outer_body))


wire_workflow(name="hard_nested_inline", func=_nested, execution_mode="inline")
wire_workflow(name="hard_nested_remote", func=_nested, execution_mode="remote")


@pytest.mark.parametrize("name", ["hard_nested_inline", "hard_nested_remote"])
async def test_a_step_started_inside_a_step_fails_the_run(name: str) -> None:
    inner_calls.clear()
    store = InMemoryWorkflowStateService()
    async with WorkflowRuntime(store, InProcessQueue()) as rt:
        handle = await rt.client(name).start(None)
        with pytest.raises(WorkflowFailedError) as info:
            await handle.result(timeout=SETTLE_CAP)
        run = await handle.get_run()
        steps = await store.get_step_states(handle.run_id)
    assert info.value.error_type == "NestedStepError"
    assert run.error is not None and "'inner'" in run.error.message
    assert "'outer'" in run.error.message
    assert inner_calls == ["outer"]  # not retried: one attempt
    assert list(steps) == ["outer"]  # the inner step was never recorded as a sibling
    assert steps["outer"].attempt_count == 1


# ------------------------------------------- 10. a worker without the workflow


async def _ghost(workflow: Workflow, data: int) -> int:
    return int(await workflow.do("a", lambda: data + 1))


async def _known(workflow: Workflow, data: int) -> int:
    return data


wire_workflow(name="hard_ghost", func=_ghost, execution_mode="inline")
wire_workflow(name="hard_known", func=_known, execution_mode="inline")


def _show(url: str, run_id: str) -> str:
    import contextlib
    import io

    from pikku_typing.runtime import runs_cli

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert runs_cli.main(["--store", url, "show", run_id]) == 0
    return buffer.getvalue()


async def test_a_run_of_an_unknown_workflow_records_why_and_waits(tmp_path: Any) -> None:
    store = open_store(f"sqlite:{tmp_path / 'runs.db'}")
    without = Registry(
        workflows={k: v for k, v in registry.workflows.items() if k != "hard_ghost"},
        rpcs=dict(registry.rpcs),
        events=dict(registry.events),
    )
    queue = InProcessQueue()
    async with WorkflowRuntime(store, queue, registry=without) as old_worker:
        old_worker.services.unknown_workflow_retry = 0.05
        ghost = await store.create_run("hard_ghost", 41)
        await enqueue_orchestrator(queue, "hard_ghost", ghost.id)
        known = await old_worker.client("hard_known").start(5)
        await old_worker.drain()
        assert (await store.get_run(known.run_id)).status is RunStatus.COMPLETED  # goes on
        run = await store.get_run(ghost.id)
        assert run.status is RunStatus.SUSPENDED
        assert run.error is not None and run.error.type == "WorkflowNotFoundError"
        assert "hard_ghost" in run.error.message
        assert [job.run_id for job in queue.pending()] == [ghost.id]  # retried later
        await store.close()
        shown = await asyncio.to_thread(_show, f"sqlite:{tmp_path / 'runs.db'}", ghost.id)
        assert "WorkflowNotFoundError" in shown and "hard_ghost" in shown
    async with WorkflowRuntime(store, InProcessQueue()) as new_worker:  # has the workflow
        assert await new_worker.recover() == 1
        await new_worker.drain()
        run = await store.get_run(ghost.id)
    assert run.status is RunStatus.COMPLETED and run.output == 42 and run.error is None
    await store.close()


# --------------------------------------------- 8. outages never strand a run


@pikku_func(name="hard.add")
async def _add(data: int) -> int:
    return data + 1


async def _two_remote_steps(workflow: Workflow, data: int) -> int:
    first: int = await workflow.do("first", "hard.add", data)
    second: int = await workflow.do("second", "hard.add", first)
    return second


wire_workflow(name="hard_flaky", func=_two_remote_steps, execution_mode="remote")


class FlakyStore(WorkflowStateService):
    """Fault injection: a store whose calls fail ``rate`` of the time with
    StoreUnavailableError, half of them AFTER the call took effect (the reply was lost)."""

    def __init__(self, inner: WorkflowStateService, rate: float, seed: int) -> None:
        self.inner = inner
        self.rate = rate
        self.random = random.Random(seed)
        self.failures = 0
        self.enabled = True

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method: Callable[..., Any] = getattr(self.inner, name)
        roll = self.random.random() if self.enabled else 1.0
        if roll < self.rate / 2:
            self.failures += 1
            raise StoreUnavailableError(f"injected: {name} failed before")
        result = await method(*args, **kwargs)
        if roll < self.rate:
            self.failures += 1
            raise StoreUnavailableError(f"injected: {name} reply lost")
        return result

    async def create_run(self, *a: Any, **k: Any) -> Any:
        return await self._call("create_run", *a, **k)

    async def get_run(self, *a: Any, **k: Any) -> Any:
        return await self._call("get_run", *a, **k)

    async def list_runs(self, *a: Any, **k: Any) -> Any:
        return await self._call("list_runs", *a, **k)

    async def _update_run(self, *a: Any, **k: Any) -> Any:
        return await self._call("_update_run", *a, **k)

    async def get_step_states(self, *a: Any, **k: Any) -> Any:
        return await self._call("get_step_states", *a, **k)

    async def get_step(self, *a: Any, **k: Any) -> Any:
        return await self._call("get_step", *a, **k)

    async def insert_step(self, *a: Any, **k: Any) -> Any:
        return await self._call("insert_step", *a, **k)

    async def insert_step_at_boundary(self, *a: Any, **k: Any) -> Any:
        return await self._call("insert_step_at_boundary", *a, **k)

    async def schedule_step(self, *a: Any, **k: Any) -> Any:
        return await self._call("schedule_step", *a, **k)

    async def claim_step(self, *a: Any, **k: Any) -> Any:
        return await self._call("claim_step", *a, **k)

    async def heartbeat_step(self, *a: Any, **k: Any) -> Any:
        return await self._call("heartbeat_step", *a, **k)

    async def complete_step(self, *a: Any, **k: Any) -> Any:
        return await self._call("complete_step", *a, **k)

    async def complete_step_later(self, *a: Any, **k: Any) -> Any:
        return await self._call("complete_step_later", *a, **k)  # PostgreSQL: write-behind

    async def fail_step_attempt(self, *a: Any, **k: Any) -> Any:
        return await self._call("fail_step_attempt", *a, **k)

    async def reset_step(self, *a: Any, **k: Any) -> Any:
        return await self._call("reset_step", *a, **k)

    def lock_run(self, run_id: str, *, timeout: float | None = None) -> Any:
        return self.inner.lock_run(run_id, timeout=timeout)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "queued"])
@pytest.mark.parametrize(
    "backend", ["memory", "sqlite", pytest.param("postgres", marks=POSTGRES_MARKS)]
)
async def test_injected_store_outages_strand_no_run(
    backend: str, eager: bool, tmp_path: Any
) -> None:
    """20% of store calls fail (half of them after taking effect) while runs of a remote
    workflow go through their steps: every run completes, none stays suspended. On
    PostgreSQL the jobs go through PostgresQueue (a failed job is retried, never dropped: at
    5% a step job that ran out of procrastinate's retries stranded a run now and then, at
    20% every time). Both
    with eager steps (the pass runs the steps it reaches) and with every step queued."""
    dsn: str | None = None
    queue: WorkflowQueue
    if backend == "memory":
        inner: WorkflowStateService = InMemoryWorkflowStateService()
    elif backend == "sqlite":
        inner = open_store(f"sqlite:{tmp_path / 'runs.db'}?synchronous=NORMAL")
    else:
        dsn = create_schema_dsn("pikku_flaky_")
        inner = open_store(f"postgres:{dsn}")
    if dsn is None:
        queue = InProcessQueue(retry_backoff=0.001, max_retry_backoff=0.02, max_job_retries=3)
    else:
        from pikku_typing.runtime.queues.postgres import PostgresQueue

        queue = PostgresQueue(
            dsn, poll_interval=0.05, max_job_retries=3, retry_backoff=0.05, max_retry_backoff=0.5
        )
    store = FlakyStore(inner, rate=0.2, seed=10)
    runs = 60 if dsn is None or eager else 30  # an eager run makes fewer store calls
    try:
        async with WorkflowRuntime(store, queue, sweep_interval=1.0, eager_steps=eager) as rt:
            client = rt.client("hard_flaky")
            store.enabled = False
            ids = [(await client.start(n)).run_id for n in range(runs)]
            store.enabled = True
            stop = asyncio.Event()
            server = asyncio.create_task(
                rt.serve(stop=stop, concurrency=4, handle_signals=False)
            )
            unsettled = ids
            for _ in range(12000):  # a condition, not a deadline (120 s cap)
                store.enabled = False
                states = {r.id: r.status for r in await inner.list_runs()}
                store.enabled = True
                unsettled = [i for i in ids if not states[i].is_settled]
                if not unsettled:
                    break
                await asyncio.sleep(0.01)
            stop.set()
            await server
        assert store.failures > 5  # the outages did happen (eager steps make fewer calls)
        assert unsettled == []
        outputs = {r.id: r.output for r in await inner.list_runs()}
        assert all(outputs[i] == n + 2 for n, i in enumerate(ids))
    finally:
        await queue.close()
        await inner.close()
        if dsn is not None:
            drop_schema_dsn(dsn)


# ------------------------------------- 4. interrupts on the in-process queue

interrupts: list[str] = []


async def _interrupting(workflow: Workflow, data: int) -> int:
    def body() -> int:
        if not interrupts:
            interrupts.append("raised")
            raise SystemExit(4)
        return data

    try:
        return int(await workflow.do("s", body))
    except BaseException as exc:  # even this must not swallow the interrupt for good
        interrupts.append(f"seen {type(exc).__name__}")
        raise


wire_workflow(name="hard_interrupting", func=_interrupting, execution_mode="inline")


async def test_in_process_serve_stops_on_an_interrupt_and_the_attempt_runs_again() -> None:
    interrupts.clear()
    store = InMemoryWorkflowStateService()
    queue = InProcessQueue(retry_backoff=0.001)
    async with WorkflowRuntime(store, queue) as rt:
        handle = await rt.client("hard_interrupting").start(6)
        with pytest.raises(SystemExit) as info:
            await rt.serve(concurrency=2, handle_signals=False)  # stops by itself
        assert info.value.code == 4
        step = (await store.get_step_states(handle.run_id))["s"]
        assert step.attempts[0].error is not None
        assert step.attempts[0].error.type == "SystemExit"
        assert step.status.value == "scheduled"  # abandoned: due again at once
        assert (await store.get_run(handle.run_id)).status is not RunStatus.FAILED
        assert await handle.result(timeout=SETTLE_CAP) == 6  # the job was kept: it runs again
