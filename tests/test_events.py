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
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict

import pytest
import test_runtime
from events_workers import start_same_run_worker
from registry_support import isolated_registry
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
    InProcessQueue,
    RunExistsError,
    RunStatus,
    StepKind,
    StepStatus,
    Workflow,
    WorkflowRegistrationError,
    WorkflowRuntime,
    WorkflowStateService,
    wire_event,
    wire_workflow,
)
from pikku_typing.errors import InvalidRunIdError
from pikku_typing.wiring import EventDefinition, registry


async def result(rt: WorkflowRuntime, workflow: str, run_id: str) -> Any:
    """The run's output, running its jobs until it settles (on any queue: ``result()``
    alone runs jobs only with the in-process queue)."""
    await settle(rt, run_id)
    return await rt.client(workflow).result(run_id, timeout=SETTLE_CAP)


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    with isolated_registry():
        yield


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



def new_runtime(
    made: list[WorkflowRuntime], state: WorkflowStateService, **kw: Any
) -> WorkflowRuntime:
    return test_runtime.new_runtime(made, state, **kw)


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
    assert await result(rt, "order", "order-42") == "42"
    settled = await client.start(data, run_id="order-42")  # a settled run: its handle
    assert await result(rt, "order", settled.run_id) == "42"
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


# ----------------------------------------------------------- wait_for_event


class Approval(TypedDict):
    by: str
    at: datetime


@MODES
async def test_wait_then_send_wakes_the_run_with_a_typed_payload(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    wire_event(name="payment.received", payload=PaymentReceived)
    seen: list[Any] = []

    async def order(workflow: Workflow, data: OrderIn) -> str:
        paid = await workflow.wait_for_event("awaitPayment", "payment.received")
        seen.append(paid)
        await workflow.do("after", lambda: 1)
        return f"{data['id']}:{paid['amount']}"

    wire_workflow(name="order", func=order, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store)
    handle = await rt.client("order").start({"id": "o1", "amount": Decimal("9.50")})
    await rt.drain()
    run = await store.get_run(handle.run_id)
    assert run.status is RunStatus.SUSPENDED and run.wake_at is None  # no timeout: no wake-up
    step = (await store.get_step_states(handle.run_id))["awaitPayment"]
    assert step.kind is StepKind.EVENT and step.status is StepStatus.SCHEDULED
    assert step.rpc_name == "payment.received" and step.next_attempt_at is None
    assert await rt.send_event(handle.run_id, "payment.received", {"amount": Decimal("9.50")})
    assert await result(rt, "order", handle.run_id) == "o1:9.50"
    assert seen[-1] == {"amount": Decimal("9.50")} and isinstance(seen[-1]["amount"], Decimal)
    [event] = await store.list_events(handle.run_id)
    assert event.consumed_by == "awaitPayment"
    step = (await store.get_step_states(handle.run_id))["awaitPayment"]
    assert step.status is StepStatus.SUCCEEDED and step.result == {"seq": 1, "payload": {"amount": "9.50"}}


@MODES
async def test_events_sent_before_the_wait_are_kept_and_consumed_in_send_order(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str, clock: Any
) -> None:
    wire_event(name="approval", payload=Approval)
    wire_event(name="other", payload=Shipped)
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    async def flow(workflow: Workflow, data: None) -> list[str]:
        await workflow.sleep("first", "1h")  # the events come while the run sleeps
        a = await workflow.wait_for_event("a", "approval")
        b = await workflow.wait_for_event("b", "approval", timeout="1h")
        assert b is not None and isinstance(a["at"], datetime)
        return [a["by"], b["by"]]

    wire_workflow(name="flow", func=flow, execution_mode=mode)  # type: ignore[arg-type]
    rt = WorkflowRuntime(store, clock.queue())
    runtimes.append(rt)
    handle = await rt.client("flow").start(None)
    await rt.drain()
    assert await rt.send_event(handle.run_id, "other", Shipped("x"))
    for who in ("ann", "bob", "cid"):
        assert await rt.send_event(handle.run_id, "approval", {"by": who, "at": t0})
    await rt.drain()
    assert (await store.get_step_states(handle.run_id)).keys() == {"first"}  # still asleep
    clock.advance(timedelta(hours=2))
    await rt.drain()
    assert await result(rt, "flow", handle.run_id) == ["ann", "bob"]
    events = await store.list_events(handle.run_id)
    assert [(e.name, e.consumed_by) for e in events] == [
        ("other", None), ("approval", "a"), ("approval", "b"), ("approval", None),
    ]


@MODES
async def test_wait_timeout_is_a_durable_deadline_and_returns_none(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str, clock: Any
) -> None:
    wire_event(name="payment.received", payload=PaymentReceived)

    async def order(workflow: Workflow, data: None) -> str:
        paid = await workflow.wait_for_event("awaitPayment", "payment.received", timeout="3d")
        return "timed out" if paid is None else "paid"

    wire_workflow(name="order", func=order, execution_mode=mode)  # type: ignore[arg-type]
    rt = WorkflowRuntime(store, clock.queue())
    runtimes.append(rt)
    handle = await rt.client("order").start(None)
    await rt.drain()
    run = await store.get_run(handle.run_id)
    step = (await store.get_step_states(handle.run_id))["awaitPayment"]
    assert run.status is RunStatus.SUSPENDED
    assert run.wake_at is not None and run.wake_at == step.next_attempt_at
    assert step.next_attempt_at is not None
    assert step.next_attempt_at - step.created_at == timedelta(days=3)
    clock.advance(timedelta(days=2))
    await rt.drain()
    assert (await store.get_run(handle.run_id)).status is RunStatus.SUSPENDED
    clock.advance(timedelta(days=1, seconds=1))
    await rt.drain()
    assert await result(rt, "order", handle.run_id) == "timed out"
    step = (await store.get_step_states(handle.run_id))["awaitPayment"]
    assert step.result == {"timed_out": True}
    # the run is settled: a late event is refused, nothing is stored
    assert await rt.send_event(handle.run_id, "payment.received", {"amount": 1}) is False


@MODES
async def test_event_before_the_deadline_wins_over_the_timeout(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str, clock: Any
) -> None:
    wire_event(name="payment.received", payload=PaymentReceived)

    async def order(workflow: Workflow, data: None) -> Decimal | None:
        paid = await workflow.wait_for_event("awaitPayment", "payment.received", timeout="1h")
        return None if paid is None else paid["amount"]

    wire_workflow(name="order", func=order, execution_mode=mode)  # type: ignore[arg-type]
    rt = WorkflowRuntime(store, clock.queue())
    runtimes.append(rt)
    handle = await rt.client("order").start(None)
    await rt.drain()
    assert await rt.send_event(handle.run_id, "payment.received", {"amount": Decimal("1.5")})
    await rt.drain()
    assert await result(rt, "order", handle.run_id) == Decimal("1.5")
    clock.advance(timedelta(hours=2))  # the old deadline's wake-up changes nothing
    await rt.drain()
    assert (await rt.client("order").get_run(handle.run_id)).output == Decimal("1.5")


@MODES
async def test_an_event_consumed_by_a_killed_pass_is_delivered_once(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    """A pass consumed event 1 for step ``first`` and died before recording the step (the
    store call is made here by hand): the replay gets the SAME event for ``first`` (consume
    is idempotent by step key), and ``second`` gets event 2; nothing is consumed twice."""
    wire_event(name="tick", payload=int)

    async def flow(workflow: Workflow, data: None) -> list[int]:
        a = await workflow.wait_for_event("first", "tick")
        b = await workflow.wait_for_event("second", "tick")
        return [a, b]

    wire_workflow(name="flow", func=flow, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store, live_runs=0)
    handle = await rt.client("flow").start(None)
    await rt.drain()
    for n in (1, 2, 3):
        await store.send_event(handle.run_id, "tick", n)  # stored only: nobody wakes the run
    consumed = await store.consume_event(handle.run_id, "tick", "first")
    assert consumed is not None and consumed.payload == 1
    assert (await store.get_step_states(handle.run_id))["first"].status is StepStatus.SCHEDULED
    await rt.recover()
    assert await result(rt, "flow", handle.run_id) == [1, 2]
    events = await store.list_events(handle.run_id)
    assert [(e.payload, e.consumed_by) for e in events] == [(1, "first"), (2, "second"), (3, None)]


async def test_replay_returns_the_recorded_payload_and_checks_the_event_name(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], clock: Any
) -> None:
    wire_event(name="approval", payload=Approval)
    wire_event(name="rejection", payload=Approval)
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    names = {"kept": "approval", "changed": "approval"}

    async def flow(workflow: Workflow, data: str) -> str:
        got = await workflow.wait_for_event("decision", names[data])
        await workflow.sleep("cool", "1h")
        assert isinstance(got["at"], datetime)
        return got["by"]

    wire_workflow(name="flow", func=flow, execution_mode="inline")
    rt = WorkflowRuntime(store, clock.queue(), live_runs=0)  # every pass replays
    runtimes.append(rt)
    kept = await rt.client("flow").start("kept")
    changed = await rt.client("flow").start("changed")
    await rt.drain()
    for handle in (kept, changed):
        assert await rt.send_event(handle.run_id, "approval", {"by": "ann", "at": t0})
    await rt.drain()
    names["changed"] = "rejection"  # the code changed under a run in flight
    clock.advance(timedelta(hours=2))
    await rt.drain()
    assert await result(rt, "flow", kept.run_id) == "ann"
    await settle(rt, changed.run_id)
    run = await store.get_run(changed.run_id)
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.type == "WorkflowNonDeterminismError"
    assert "recorded as event 'approval'" in run.error.message


async def test_waiting_for_an_undeclared_event_fails_the_run_clearly(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    async def flow(workflow: Workflow, data: None) -> Any:
        return await workflow.wait_for_event("w", "never.declared")

    wire_workflow(name="flow", func=flow, execution_mode="inline")
    rt = new_runtime(runtimes, store)
    handle = await rt.client("flow").start(None)
    await settle(rt, handle.run_id)
    run = await store.get_run(handle.run_id)
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.type == "EventNotFoundError" and "never.declared" in run.error.message


async def test_cancel_a_run_waiting_for_an_event(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    wire_event(name="tick", payload=int)

    async def flow(workflow: Workflow, data: None) -> Any:
        return await workflow.wait_for_event("w", "tick")

    wire_workflow(name="flow", func=flow, execution_mode="remote")
    rt = new_runtime(runtimes, store)
    handle = await rt.client("flow").start(None)
    await rt.drain()
    assert await rt.cancel_run(handle.run_id)
    await rt.drain()
    assert (await store.get_run(handle.run_id)).status is RunStatus.CANCELLED
    assert await rt.send_event(handle.run_id, "tick", 1) is False


@pytest.mark.parametrize("factory", store_params(cross_process_only=True))
async def test_two_processes_sending_events_to_one_run_lose_none(
    factory: StoreFactory, tmp_path: Path
) -> None:
    """Two processes send 15 ``tick`` events each to one run at once, while this process
    runs it: the run receives all 30, each exactly once, in each sender's order."""
    from events_workers import register, send_ticks_worker

    spec = factory.make_spec(tmp_path)
    count = 15
    try:
        register()
        async with spec.open() as state:
            rt = WorkflowRuntime(state, InProcessQueue())
            try:
                handle = await rt.client("collector").start(2 * count)
                await rt.drain()
                ctx = _ctx()
                barrier = ctx.Barrier(2)
                procs = [
                    ctx.Process(target=send_ticks_worker, args=(spec, handle.run_id, i, count, barrier))
                    for i in range(2)
                ]

                def run_senders() -> None:
                    for p in procs:
                        p.start()
                    for p in procs:
                        p.join(120)
                        assert p.exitcode == 0, p.exitcode

                sending = asyncio.create_task(asyncio.to_thread(run_senders))
                while not sending.done():  # run the collector while the events arrive
                    await rt.recover()
                    await rt.drain()
                    await asyncio.sleep(0.01)
                await sending
                await rt.recover()
                got = await result(rt, "collector", handle.run_id)
                assert len(got) == 2 * count
                assert sorted((t["sender"], t["n"]) for t in got) == [
                    (s, n) for s in range(2) for n in range(count)
                ]
                for s in range(2):
                    assert [t["n"] for t in got if t["sender"] == s] == list(range(count))
                events = await state.list_events(handle.run_id)
                assert len(events) == 2 * count and all(e.consumed_by for e in events)
                assert len({e.consumed_by for e in events}) == 2 * count
            finally:
                await rt.close()
    finally:
        if factory.cleanup is not None:
            factory.cleanup(spec)


async def test_the_test_environment_skips_event_timeouts_and_delivers_sent_events() -> None:
    from pikku_typing.testing import WorkflowTestEnv

    wire_event(name="payment.received", payload=PaymentReceived)

    async def order(workflow: Workflow, data: str) -> str:
        paid = await workflow.wait_for_event("awaitPayment", "payment.received", timeout="3d")
        return "timed out" if paid is None else f"paid {paid['amount']}"

    wire_workflow(name="order", func=order, execution_mode="remote")
    async with WorkflowTestEnv() as env:
        assert await env.run("order", "a") == "timed out"  # three days pass at once
        with env.hold_clock():
            handle = await env.start("order", "b")
            assert (await env.get_run(handle.run_id)).status is RunStatus.SUSPENDED
            assert await env.send_event(handle.run_id, "payment.received", {"amount": "2.5"})
            assert await env.result(handle.run_id) == "paid 2.5"
