"""SPEC section 8, events: ``wire_event`` registration, then the runtime behaviour of
``wait_for_event`` / ``send_event`` and idempotent starts, on every store (the fixtures of
``tests/test_runtime.py``) and in both execution modes. ``tests/test_postgres_events.py``
runs the runtime tests again on ``PostgresQueue``."""

# ruff: noqa: F811 - pytest fixtures imported from test_runtime are used as parameters

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict

import pytest
import test_runtime
from events_workers import start_same_run_worker
from stores import StoreFactory, store_params
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
    EventNotFoundError,
    EventPayloadError,
    RunExistsError,
    RunStatus,
    Workflow,
    WorkflowRegistrationError,
    WorkflowRuntime,
    WorkflowStateService,
    wire_event,
    wire_workflow,
)
from pikku_typing.errors import InvalidRunIdError
from pikku_typing.wiring import EventDefinition, registry


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    saved = (dict(registry.workflows), dict(registry.rpcs), dict(registry.events))
    registry.clear()
    yield
    registry.clear()
    registry.workflows.update(saved[0])
    registry.rpcs.update(saved[1])
    registry.events.update(saved[2])


class PaymentReceived(TypedDict):
    amount: Decimal


@dataclass
class Shipped:
    tracking: str


def test_wire_event_registers_name_and_payload_type() -> None:
    definition = wire_event(name="payment.received", payload=PaymentReceived)
    assert definition == EventDefinition(name="payment.received", payload_type=PaymentReceived)
    assert registry.get_event("payment.received") is definition
    untyped = wire_event(name="ping")
    assert untyped.payload_type is None


def test_wire_event_same_declaration_twice_is_allowed() -> None:
    wire_event(name="shipped", payload=Shipped)
    wire_event(name="shipped", payload=Shipped)  # a module reload
    assert registry.get_event("shipped").payload_type is Shipped


def test_wire_event_name_with_two_payload_types_is_refused() -> None:
    wire_event(name="shipped", payload=Shipped)
    with pytest.raises(WorkflowRegistrationError, match=r"'shipped' is declared twice"):
        wire_event(name="shipped", payload=PaymentReceived)


@pytest.mark.parametrize("bad", ["", None, 3])
def test_wire_event_needs_a_name(bad: object) -> None:
    with pytest.raises(WorkflowRegistrationError, match="non-empty string"):
        wire_event(name=bad, payload=Shipped)  # type: ignore[arg-type]


def test_unknown_event_names_the_declared_ones() -> None:
    wire_event(name="a.b", payload=Shipped)
    with pytest.raises(EventNotFoundError, match=r"no event named 'nope' .*declared: a\.b"):
        registry.get_event("nope")


# ----------------------------------------------------------------- runtime
# The fixtures of the runtime suite: every store (memory, file, SQLite, PostgreSQL when
# configured); ``tests/test_postgres_events.py`` runs these tests again on PostgresQueue.



def new_runtime(made: list[WorkflowRuntime], state: WorkflowStateService) -> WorkflowRuntime:
    return test_runtime.new_runtime(made, state)


class OrderIn(TypedDict):
    id: str
    amount: Decimal


async def test_send_event_to_unknown_or_settled_run_returns_false(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    wire_event(name="payment.received", payload=PaymentReceived)

    async def quick(workflow: Workflow, data: OrderIn) -> str:
        return data["id"]

    wire_workflow(name="quick", func=quick, execution_mode="inline")
    rt = new_runtime(runtimes, store)
    client = rt.client("quick")
    assert await client.send_event("no-such-run", "payment.received", {"amount": 1}) is False
    with pytest.raises(InvalidRunIdError):
        await rt.send_event("../escape", "payment.received", {"amount": 1})
    handle = await client.start({"id": "o1", "amount": Decimal("9.50")})
    await settle(rt, handle.run_id)
    assert (await client.get_run(handle.run_id)).status is RunStatus.COMPLETED
    assert await rt.send_event(handle.run_id, "payment.received", {"amount": 1}) is False
    assert await store.list_events(handle.run_id) == []


async def test_send_event_validates_name_and_payload_before_storing(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    wire_event(name="payment.received", payload=PaymentReceived)
    run = await store.create_run("nothing", None)
    rt = new_runtime(runtimes, store)
    with pytest.raises(EventNotFoundError, match=r"'payment\.recieved'"):
        await rt.send_event(run.id, "payment.recieved", {"amount": 1})
    with pytest.raises(EventPayloadError, match=r"payment\.received"):
        await rt.send_event(run.id, "payment.received", {"amount": "not a number"})
    assert await store.list_events(run.id) == []
    assert await rt.send_event(run.id, "payment.received", {"amount": Decimal("9.50")}) is True
    [event] = await store.list_events(run.id)
    assert event.payload == {"amount": "9.50"}  # typed JSON, rebuilt by the waiting step


# ----------------------------------------------------------- idempotent start


async def _counting_workflow(runs: list[str]) -> None:
    async def order(workflow: Workflow, data: OrderIn) -> str:
        await workflow.do("count", lambda: runs.append(workflow.run_id))
        return data["id"]

    wire_workflow(name="order", func=order, execution_mode="inline")


async def test_start_with_run_id_is_idempotent(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    runs: list[str] = []
    await _counting_workflow(runs)

    async def other(workflow: Workflow, data: OrderIn) -> str:
        return "other"

    wire_workflow(name="other", func=other)
    rt = new_runtime(runtimes, store)
    client = rt.client("order")
    data: OrderIn = {"id": "42", "amount": Decimal("9.50")}
    first = await client.start(data, run_id="order-42")
    again = await client.start({"id": "42", "amount": Decimal("9.5")}, run_id="order-42")
    assert first.run_id == again.run_id == "order-42"
    with pytest.raises(RunExistsError, match="another input"):
        await client.start({"id": "42", "amount": Decimal("10")}, run_id="order-42")
    with pytest.raises(RunExistsError, match="for workflow 'order'"):
        await rt.client("other").start(data, run_id="order-42")
    assert await client.result("order-42", timeout=SETTLE_CAP) == "42"
    settled = await client.start(data, run_id="order-42")  # a settled run: its handle
    assert await settled.result(timeout=SETTLE_CAP) == "42"
    assert runs == ["order-42"]
    assert [r.id for r in await store.list_runs()] == ["order-42"]


def _ctx() -> Any:
    return multiprocessing.get_context("spawn")


def _collect(results: Any, procs: list[Any], count: int) -> list[Any]:
    deadline = time.monotonic() + 180
    out: list[Any] = []
    while len(out) < count:
        try:
            out.append(results.get(timeout=0.2))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"a child process failed (exit codes {dead})"
            assert time.monotonic() < deadline, "timed out waiting for the child processes"
    return out


def _run_procs(procs: list[Any], results: Any, count: int) -> list[Any]:
    for p in procs:
        p.start()
    try:
        out = _collect(results, procs, count)
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        return out
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()


@pytest.mark.parametrize("factory", store_params(cross_process_only=True))
@pytest.mark.parametrize("same_input", [True, False], ids=["same-input", "other-input"])
async def test_processes_racing_to_start_one_run_id(
    factory: StoreFactory, tmp_path: Path, same_input: bool
) -> None:
    """Four processes start ``order-42`` at once: one atomic insert, never two runs. With
    the same input every process gets the handle; with different inputs exactly one wins and
    the others get RunExistsError."""
    spec = factory.make_spec(tmp_path)
    try:
        ctx = _ctx()
        barrier = ctx.Barrier(4)
        results = ctx.Queue()
        amounts = ["9.50"] * 4 if same_input else ["1", "2", "3", "4"]
        procs = [
            ctx.Process(target=start_same_run_worker, args=(spec, a, barrier, results))
            for a in amounts
        ]
        outcomes = await asyncio.to_thread(_run_procs, procs, results, 4)
        async with spec.open() as check:
            runs = await check.list_runs()
        assert [r.id for r in runs] == ["order-42"]
        if same_input:
            assert sorted(o for _, o in outcomes) == ["order-42"] * 4
        else:
            winners = [a for a, o in outcomes if o == "order-42"]
            assert len(winners) == 1 and sorted(o for _, o in outcomes).count("exists") == 3
            assert runs[0].input == {"id": "42", "amount": winners[0]}
    finally:
        if factory.cleanup is not None:
            factory.cleanup(spec)
