"""SPEC section 8, child runs: ``workflow.run_child`` / ``workflow.start_child`` on every
store (the fixtures of ``tests/test_runtime.py``) and in both execution modes;
``tests/test_postgres_events.py`` runs them again on ``PostgresQueue``. Real processes killed
while a child runs: ``tests/test_events_crash.py``."""

# ruff: noqa: F811 - pytest fixtures imported from test_runtime are used as parameters

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict

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
    ChildWorkflowFailedError,
    InProcessQueue,
    RunStatus,
    StepKind,
    StepStatus,
    Workflow,
    WorkflowRuntime,
    WorkflowStateService,
    wire_workflow,
)
from pikku_typing.models import StepState
from pikku_typing.runtime.lifecycle import child_run_id


async def result(rt: WorkflowRuntime, workflow: str, run_id: str) -> Any:
    """The run's output, running its jobs until it settles (on any queue: ``result()``
    alone runs jobs only with the in-process queue)."""
    await settle(rt, run_id)
    return await rt.client(workflow).result(run_id, timeout=SETTLE_CAP)


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    with isolated_registry():
        yield


def new_runtime(made: list[WorkflowRuntime], state: WorkflowStateService, **kw: Any) -> WorkflowRuntime:
    return test_runtime.new_runtime(made, state, **kw)


class BillIn(TypedDict):
    order_id: str
    amount: Decimal


class Receipt(TypedDict):
    order_id: str
    charged: Decimal


def _billing(mode: str, calls: list[str] | None = None) -> None:
    async def billing(workflow: Workflow, data: BillIn) -> Receipt:
        if data["amount"] < 0:
            raise ValueError(f"negative amount {data['amount']}")
        charged = await workflow.do("charge", lambda: data["amount"] * 2, result_type=Decimal)
        if calls is not None:
            calls.append(workflow.run_id)
        return {"order_id": data["order_id"], "charged": charged}

    wire_workflow(name="billing", func=billing, execution_mode=mode)  # type: ignore[arg-type]


@MODES
async def test_run_child_returns_the_typed_output_and_links_the_runs(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    calls: list[str] = []
    _billing(mode, calls)

    async def order(workflow: Workflow, data: str) -> str:
        receipt = await workflow.run_child("bill", "billing", {"order_id": data, "amount": "4.25"})
        assert isinstance(receipt["charged"], Decimal)
        return f"{receipt['order_id']}:{receipt['charged']}"

    wire_workflow(name="order", func=order, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store, live_runs=0)  # every pass replays the parent
    handle = await rt.client("order").start("o-1")
    assert await result(rt, "order", handle.run_id) == "o-1:8.50"
    kid = child_run_id(handle.run_id, "bill")
    assert calls == [kid]  # one child, run once, with the derived id
    child = await store.get_run(kid)
    assert child.workflow == "billing" and child.parent_run_id == handle.run_id
    assert child.status is RunStatus.COMPLETED
    assert child.input == {"order_id": "o-1", "amount": "4.25"}
    step = (await store.get_step_states(handle.run_id))["bill"]
    assert step.kind is StepKind.CHILD and step.rpc_name == "billing"
    assert step.status is StepStatus.SUCCEEDED
    assert step.data == {"run_id": kid, "workflow": "billing", "wait": True}
    assert step.result == {"run_id": kid, "status": "completed", "output": child.output}
    assert [r.id for r in await store.list_runs(workflow="billing")] == [kid]


@MODES
async def test_the_parent_is_suspended_until_the_child_settles(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str, clock: Any
) -> None:
    async def slow(workflow: Workflow, data: int) -> int:
        await workflow.sleep("nap", "1h")
        return data + 1

    async def parent(workflow: Workflow, data: int) -> int:
        return int(await workflow.run_child("kid", "slow", data)) * 10

    wire_workflow(name="slow", func=slow, execution_mode=mode)  # type: ignore[arg-type]
    wire_workflow(name="parent", func=parent, execution_mode=mode)  # type: ignore[arg-type]
    rt = WorkflowRuntime(store, clock.queue())
    runtimes.append(rt)
    handle = await rt.client("parent").start(4)
    await rt.drain()
    kid = child_run_id(handle.run_id, "kid")
    parent_run = await store.get_run(handle.run_id)
    assert parent_run.status is RunStatus.SUSPENDED and parent_run.wake_at is None
    assert (await store.get_run(kid)).status is RunStatus.SUSPENDED  # the child sleeps
    clock.advance(timedelta(hours=2))
    await rt.drain()  # the child completes and wakes its parent through the queue
    assert (await store.get_run(kid)).status is RunStatus.COMPLETED
    assert await result(rt, "parent", handle.run_id) == 50


@MODES
async def test_a_failed_child_raises_child_workflow_failed_error_catchable(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    _billing(mode)
    caught: list[ChildWorkflowFailedError] = []

    async def careful(workflow: Workflow, data: None) -> str:
        try:
            await workflow.run_child("bill", "billing", {"order_id": "x", "amount": "-1"})
        except ChildWorkflowFailedError as exc:
            caught.append(exc)
            return f"handled {exc.error_type}"
        return "unexpected"

    async def careless(workflow: Workflow, data: None) -> str:
        await workflow.run_child("bill", "billing", {"order_id": "y", "amount": "-2"})
        return "unreachable"

    wire_workflow(name="careful", func=careful, execution_mode=mode)  # type: ignore[arg-type]
    wire_workflow(name="careless", func=careless, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store, live_runs=0)
    handle = await rt.client("careful").start(None)
    assert await result(rt, "careful", handle.run_id) == "handled ValueError"
    exc = caught[-1]
    assert exc.child_run_id == child_run_id(handle.run_id, "bill")
    assert exc.workflow == "billing" and exc.step == "bill"
    assert "negative amount -1" in str(exc)
    assert (await store.get_run(exc.child_run_id)).status is RunStatus.FAILED

    other = await rt.client("careless").start(None)
    await settle(rt, other.run_id)
    run = await store.get_run(other.run_id)
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.type == "ValueError" and "negative amount -2" in run.error.message


async def test_a_cancelled_child_fails_the_wait_and_cancelling_the_parent_cancels_children(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    async def forever(workflow: Workflow, data: int) -> int:
        await workflow.sleep("nap", "30d")
        return data

    async def parent(workflow: Workflow, data: int) -> str:
        try:
            await workflow.run_child("kid", "forever", data)
        except ChildWorkflowFailedError as exc:
            return f"child {exc.error_type}"
        return "done"

    wire_workflow(name="forever", func=forever, execution_mode="inline")
    wire_workflow(name="parent", func=parent, execution_mode="inline")
    rt = new_runtime(runtimes, store)
    first = await rt.client("parent").start(1)
    second = await rt.client("parent").start(2)
    await rt.drain()
    kid1, kid2 = child_run_id(first.run_id, "kid"), child_run_id(second.run_id, "kid")
    assert await rt.cancel_run(kid1)  # the child is cancelled: the waiting parent is told
    assert await result(rt, "parent", first.run_id) == "child WorkflowCancelled"
    assert await rt.cancel_run(second.run_id)  # the parent is cancelled: so is its child
    await rt.drain()
    assert (await store.get_run(second.run_id)).status is RunStatus.CANCELLED
    assert (await store.get_run(kid2)).status is RunStatus.CANCELLED


@MODES
async def test_start_child_returns_the_child_id_without_waiting(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str, clock: Any
) -> None:
    async def audit(workflow: Workflow, data: str) -> str:
        await workflow.sleep("later", "1h")
        return f"audited {data}"

    async def order(workflow: Workflow, data: str) -> str:
        child_id = await workflow.start_child("audit", "audit", data)
        again = await workflow.start_child("audit", "audit", data)  # a second step: audit#1
        assert child_id != again
        return str(child_id)

    wire_workflow(name="audit", func=audit, execution_mode=mode)  # type: ignore[arg-type]
    wire_workflow(name="order", func=order, execution_mode=mode)  # type: ignore[arg-type]
    rt = WorkflowRuntime(store, clock.queue(), live_runs=0)
    runtimes.append(rt)
    handle = await rt.client("order").start("o-9")
    await rt.drain()
    output = await result(rt, "order", handle.run_id)
    assert output == child_run_id(handle.run_id, "audit")
    children = {r.id: r for r in await store.list_runs(workflow="audit")}
    assert set(children) == {output, child_run_id(handle.run_id, "audit#1")}
    assert all(r.parent_run_id == handle.run_id for r in children.values())
    assert all(r.status is RunStatus.SUSPENDED for r in children.values())  # still asleep
    clock.advance(timedelta(hours=2))
    await rt.drain()
    assert await result(rt, "audit", output) == "audited o-9"


async def test_a_step_recorded_before_a_crash_gets_exactly_one_child(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    """A pass recorded the child step and died before creating the child run: the next pass
    creates it (with the derived id), once; and a child created before the crash is reused."""
    _billing("inline")

    async def order(workflow: Workflow, data: str) -> str:
        receipt = await workflow.run_child("bill", "billing", {"order_id": data, "amount": "1"})
        return str(receipt["charged"])

    wire_workflow(name="order", func=order, execution_mode="inline")
    rt = new_runtime(runtimes, store)
    parent = await store.create_run("order", "o-1")
    kid = child_run_id(parent.id, "bill")
    await store.insert_step(
        parent.id,
        StepState(
            key="bill", step_name="bill", kind=StepKind.CHILD, rpc_name="billing",
            status=StepStatus.SCHEDULED, data={"run_id": kid, "workflow": "billing", "wait": True},
        ),
    )
    await rt.recover()
    assert await result(rt, "order", parent.id) == "2"
    assert [r.id for r in await store.list_runs(workflow="billing")] == [kid]

    second = await store.create_run("order", "o-2")
    kid2 = child_run_id(second.id, "bill")
    await store.create_run("billing", {"order_id": "o-2", "amount": "3"}, run_id=kid2,
                           parent_run_id=second.id)  # created, then the parent's process died
    await rt.recover()
    assert await result(rt, "order", second.id) == "6"
    assert sorted(r.id for r in await store.list_runs(workflow="billing")) == sorted([kid, kid2])


async def test_unknown_child_workflow_and_bad_input_fail_the_parent_clearly(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    _billing("inline")

    async def typo(workflow: Workflow, data: None) -> Any:
        return await workflow.run_child("bill", "biling", {"order_id": "x", "amount": "1"})

    async def bad_input(workflow: Workflow, data: None) -> Any:
        return await workflow.run_child("bill", "billing", {"order_id": "x"})

    wire_workflow(name="typo", func=typo, execution_mode="inline")
    wire_workflow(name="bad_input", func=bad_input, execution_mode="inline")
    rt = new_runtime(runtimes, store)
    first = await rt.client("typo").start(None)
    second = await rt.client("bad_input").start(None)
    await settle(rt, first.run_id)
    await settle(rt, second.run_id)
    run = await store.get_run(first.run_id)
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.type == "WorkflowNotFoundError"
    assert "'biling'" in run.error.message and "billing" in run.error.message
    run = await store.get_run(second.run_id)
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.type == "WorkflowInputError" and "amount" in run.error.message
    assert await store.list_runs(workflow="billing") == []  # no child was created


async def test_replay_with_another_child_input_is_non_determinism(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], clock: Any
) -> None:
    _billing("inline")
    amounts = ["1"]

    async def order(workflow: Workflow, data: None) -> str:
        receipt = await workflow.run_child("bill", "billing", {"order_id": "o", "amount": amounts[0]})
        await workflow.sleep("cool", "1h")
        return str(receipt["charged"])

    wire_workflow(name="order", func=order, execution_mode="inline")
    rt = WorkflowRuntime(store, clock.queue(), live_runs=0)
    runtimes.append(rt)
    handle = await rt.client("order").start(None)
    await rt.drain()
    amounts[0] = "5"
    clock.advance(timedelta(hours=2))
    await settle(rt, handle.run_id)
    run = await store.get_run(handle.run_id)
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.type == "WorkflowNonDeterminismError" and "another input" in run.error.message


def test_pikku_runs_show_links_parent_and_children(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pikku_typing.runtime import runs_cli
    from pikku_typing.state import open_store

    _billing("inline")

    async def order(workflow: Workflow, data: str) -> str:
        await workflow.start_child("audit", "billing", {"order_id": data, "amount": "1"})
        receipt = await workflow.run_child("bill", "billing", {"order_id": data, "amount": "2"})
        return str(receipt["charged"])

    wire_workflow(name="order", func=order, execution_mode="inline")
    url = f"file:{tmp_path / 'state'}"

    async def run() -> str:
        async with open_store(url) as state, WorkflowRuntime(state, InProcessQueue()) as rt:
            handle = await rt.client("order").start("o-7")
            assert await result(rt, "order", handle.run_id) == "4"
            return handle.run_id

    parent = asyncio.run(run())
    audit, bill = child_run_id(parent, "audit"), child_run_id(parent, "bill")
    assert runs_cli.main(["--store", url, "show", parent]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if line.strip().startswith("child ")]
    assert lines == [
        ["child", audit, "billing", "step", "audit", "started"],
        ["child", bill, "billing", "step", "bill", "completed"],
    ]
    assert runs_cli.main(["--store", url, "show", bill]) == 0
    out = capsys.readouterr().out
    assert f"parent  {parent}  (pikku-runs show {parent})" in out
