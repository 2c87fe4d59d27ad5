"""SPEC section 8, deterministic helpers: ``workflow.now()``, ``uuid4()``, ``random()`` are
recorded once as ``value`` steps and replayed after, on every store and in both execution
modes."""

# ruff: noqa: F811 - pytest fixtures imported from test_runtime are used as parameters

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import test_runtime
from registry_support import isolated_registry
from test_runtime import (  # noqa: F401 - the fixtures
    MODES,
    SETTLE_CAP,
    clock,
    runtimes,
    settle,
    store,
    store_spec,
)

from pikku_typing import (
    RunStatus,
    StepKind,
    StepStatus,
    Workflow,
    WorkflowRuntime,
    WorkflowStateService,
    wire_workflow,
)
from pikku_typing.testing import WorkflowTestEnv


async def result(rt: WorkflowRuntime, workflow: str, run_id: str) -> Any:
    """The run's output, running its jobs until it settles (on any queue: ``result()``
    alone runs jobs only with the in-process queue)."""
    await settle(rt, run_id)
    return await rt.client(workflow).result(run_id, timeout=SETTLE_CAP)


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    with isolated_registry():
        yield


Seen = list[tuple[datetime, uuid.UUID, float, datetime]]


def _flow(mode: str, seen: Seen) -> None:
    async def flow(workflow: Workflow, data: None) -> float:
        started = await workflow.now()
        token = await workflow.uuid4()
        dice = await workflow.random()
        await workflow.sleep("nap", "1h")
        later = await workflow.now()
        seen.append((started, token, dice, later))
        return dice

    wire_workflow(name="flow", func=flow, execution_mode=mode)  # type: ignore[arg-type]


@MODES
async def test_values_are_recorded_once_and_replayed(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str, clock: Any
) -> None:
    seen: Seen = []
    _flow(mode, seen)
    rt = WorkflowRuntime(store, clock.queue(), live_runs=0)  # every pass replays
    runtimes.append(rt)
    before = clock.now()
    handle = await rt.client("flow").start(None)
    await rt.drain()
    steps = await store.get_step_states(handle.run_id)
    assert [k for k in steps] == ["now", "uuid4", "random", "nap"]
    for key in ("now", "uuid4", "random"):
        assert steps[key].kind is StepKind.VALUE and steps[key].status is StepStatus.SUCCEEDED
        assert steps[key].rpc_name == key and steps[key].attempt_count == 0
    clock.advance(timedelta(hours=2))
    await rt.drain()
    output = await result(rt, "flow", handle.run_id)
    [(started, token, dice, later)] = seen  # the final pass replayed the three values
    assert started == datetime.fromisoformat(steps["now"].result.replace("Z", "+00:00"))
    assert token == uuid.UUID(steps["uuid4"].result) and dice == steps["random"].result
    assert isinstance(started, datetime) and started.tzinfo is not None
    assert started.utcoffset() == timedelta(0) and before <= started < before + timedelta(minutes=5)
    assert isinstance(token, uuid.UUID) and token.version == 4
    assert isinstance(dice, float) and 0.0 <= dice < 1.0
    assert later - started >= timedelta(hours=2)  # a second now() is a new step: now#1
    assert (await store.get_step_states(handle.run_id)).keys() >= {"now#1"}
    assert output == dice


async def test_two_runs_get_different_values(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    async def flow(workflow: Workflow, data: int) -> list[str]:
        return [str(await workflow.uuid4()), str(await workflow.uuid4()), str(await workflow.random())]

    wire_workflow(name="flow", func=flow, execution_mode="inline")
    rt = test_runtime.new_runtime(runtimes, store)
    one = await rt.client("flow").start(1)
    two = await rt.client("flow").start(2)
    a = await result(rt, "flow", one.run_id)
    b = await result(rt, "flow", two.run_id)
    assert len({a[0], a[1], b[0], b[1]}) == 4
    steps = await store.get_step_states(one.run_id)
    assert list(steps) == ["uuid4", "uuid4#1", "random"]


async def test_a_value_where_the_history_has_another_step_is_non_determinism(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], clock: Any
) -> None:
    use_value = [False]

    async def flow(workflow: Workflow, data: None) -> Any:
        if use_value[0]:
            got = await workflow.random()
        else:
            got = await workflow.do("random", lambda: 0.5)
        await workflow.sleep("nap", "1h")
        return got

    wire_workflow(name="flow", func=flow, execution_mode="inline")
    rt = WorkflowRuntime(store, clock.queue(), live_runs=0)
    runtimes.append(rt)
    handle = await rt.client("flow").start(None)
    await rt.drain()
    use_value[0] = True  # the code changed: the inline step became workflow.random()
    clock.advance(timedelta(hours=2))
    await settle(rt, handle.run_id)
    run = await store.get_run(handle.run_id)
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.type == "WorkflowNonDeterminismError"
    assert "recorded as inline but the replay reached it as value 'random'" in run.error.message


async def test_now_reads_the_test_environment_clock() -> None:
    start = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)

    async def flow(workflow: Workflow, data: None) -> list[datetime]:
        first = await workflow.now()
        await workflow.sleep("nap", "1d")
        return [first, await workflow.now()]

    wire_workflow(name="flow", func=flow, execution_mode="inline")
    async with WorkflowTestEnv(start=start) as env:
        first, second = await env.run("flow", None)
    assert first == start
    assert second == start + timedelta(days=1)
