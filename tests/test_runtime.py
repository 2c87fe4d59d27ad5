"""The durable runtime in one process, on every store (memory, file, SQLite, PostgreSQL when
configured) and in both execution modes: replay, keys, typed round trips, retries, sleep,
cancel, middleware, duplicate deliveries, abandoned claims, non-determinism."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict
from uuid import UUID

import pytest
from pydantic import BaseModel
from registry_support import isolated_registry
from stores import STORE_FACTORIES, StoreFactory, StoreSpec

from pikku_typing import (
    InMemoryWorkflowStateService,
    InProcessQueue,
    RunStatus,
    StepCall,
    StepKind,
    StepStatus,
    Workflow,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowInputError,
    WorkflowRuntime,
    WorkflowStateService,
    pikku_func,
    wire_workflow,
)
from pikku_typing.errors import StoreUnavailableError, WorkflowNotFoundError
from pikku_typing.models import ClaimOwner, StepState
from pikku_typing.runtime import process
from pikku_typing.runtime import steps as steps_module
from pikku_typing.runtime.queues.base import Job, step_queue
from pikku_typing.runtime.steps import retry_delay_seconds
from pikku_typing.runtime.workers import run_orchestrator_job
from pikku_typing.state import RunChanges


def _sqlite_ready() -> bool:
    from pikku_typing.state.sqlite import SqliteWorkflowStateService

    return getattr(SqliteWorkflowStateService, "__abstractmethods__", None) is not None


def _store_params() -> list[Any]:
    factories = list(STORE_FACTORIES)
    if not any(f.name == "sqlite" for f in factories):
        factories.append(
            StoreFactory(
                "sqlite",
                lambda tmp_path: StoreSpec(f"sqlite:{tmp_path / 'state.db'}"),
                marks=(pytest.mark.skipif(not _sqlite_ready(), reason="SQLite store not built yet"),),
            )
        )
    return [pytest.param(f, marks=f.marks, id=f.name) for f in factories]


@pytest.fixture(params=_store_params())
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreSpec]:
    factory: StoreFactory = request.param
    spec = factory.make_spec(tmp_path)
    yield spec
    if factory.cleanup is not None:
        factory.cleanup(spec)


@pytest.fixture
async def store(store_spec: StoreSpec) -> AsyncIterator[WorkflowStateService]:
    s = store_spec.open()
    yield s
    await s.close()


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    with isolated_registry():
        yield


@pytest.fixture
async def runtimes(store: WorkflowStateService) -> AsyncIterator[list[WorkflowRuntime]]:
    made: list[WorkflowRuntime] = []
    yield made
    for rt in made:
        await rt.close()


def new_runtime(made: list[WorkflowRuntime], store: WorkflowStateService, **kw: Any) -> WorkflowRuntime:
    rt = WorkflowRuntime(store, InProcessQueue(), **kw)
    made.append(rt)
    return rt


SETTLE_CAP = 60.0
"""Seconds a test waits for a condition before giving up: a generous cap for a loaded CI
machine, never a timing assertion (waits end as soon as the condition holds)."""


async def settle(rt: WorkflowRuntime, run_id: str, cap: float = SETTLE_CAP) -> None:
    """Drain until the run settles (waiting for sleeps/retries that are not due yet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cap
    while True:
        await rt.drain()
        run = await rt.state.get_run(run_id)
        if run.status.is_settled:
            return
        if loop.time() > deadline:
            raise AssertionError(f"run {run_id} did not settle within {cap}s: {run.status}")
        await asyncio.sleep(0.02)


class FakeClock:
    """The runtime's clock (``steps.now``) and an in-process queue's clock, both real time
    plus an offset the test moves forward: a sleep ends when the test says so, however slow
    the machine is (no short sleep that may end too early or too late)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def advance(self, delta: timedelta) -> None:
        self.offset += delta.total_seconds()

    def queue(self) -> InProcessQueue:
        """An in-process queue whose jobs are due by this clock."""
        return InProcessQueue(clock=self.time)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(steps_module, "now", fake.now)
    return fake


MODES = pytest.mark.parametrize("mode", ["inline", "remote"])


# ----------------------------------------------------------------- types


class Profile(BaseModel):
    id: UUID
    joined: datetime
    balance: Decimal


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Receipt(TypedDict):
    at: datetime
    amount: Decimal


class Num(TypedDict):
    n: int


# ----------------------------------------------------------------- basics


@MODES
async def test_runs_to_completion_with_typed_output(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    calls: list[int] = []

    @pikku_func(name="math.double")
    async def double(data: Num) -> int:
        calls.append(data["n"])
        return data["n"] * 2

    class Out(TypedDict):
        total: Decimal

    async def wf(workflow: Workflow, data: Num) -> Out:
        a = await workflow.do("double", "math.double", {"n": data["n"]})
        b = await workflow.do("half", lambda: Decimal(a) / 4)
        return {"total": b + 1}

    wire_workflow(name="basic", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store)
    client = rt.client("basic")
    handle = await client.start({"n": 3})
    await rt.drain()
    run = await client.get_run(handle.run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.output == {"total": Decimal("2.5")}
    assert isinstance(run.output["total"], Decimal)
    assert await client.result(handle.run_id) == {"total": Decimal("2.5")}
    assert calls == [3]
    steps = await client.get_steps(handle.run_id)
    assert [(k, s.kind, s.status, s.attempt_count) for k, s in steps.items()] == [
        ("double", StepKind.RPC, StepStatus.SUCCEEDED, 1),
        ("half", StepKind.INLINE, StepStatus.SUCCEEDED, 1),
    ]
    assert steps["double"].data == {"n": 3} and steps["double"].data_digest


async def test_input_is_validated(store: WorkflowStateService, runtimes: list[WorkflowRuntime]) -> None:
    async def wf(workflow: Workflow, data: Num) -> int:
        return data["n"]

    wire_workflow(name="typed_in", func=wf)
    rt = new_runtime(runtimes, store)
    with pytest.raises(WorkflowInputError, match="typed_in"):
        await rt.client("typed_in").start({"n": "not a number"})
    with pytest.raises(WorkflowNotFoundError):
        rt.client("nope")
    assert await store.list_runs() == []


@MODES
async def test_repeated_step_names_get_numbered_keys(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    @pikku_func(name="echo")
    def echo(data: Num) -> int:
        return data["n"]

    async def wf(workflow: Workflow, data: None) -> list[int]:
        out = []
        for i in range(3):
            out.append(await workflow.do("item", "echo", {"n": i}))
        out.append(await workflow.do("item#1x", lambda: 9))
        return out

    wire_workflow(name="loop", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store)
    handle = await rt.client("loop").start(None)
    await rt.drain()
    assert await rt.client("loop").result(handle.run_id, timeout=SETTLE_CAP) == [0, 1, 2, 9]
    assert list(await store.get_step_states(handle.run_id)) == ["item", "item#1", "item#2", "item#1x"]


# ----------------------------------------------------------------- replay


def _register_replay_app(mode: str, counts: dict[str, int]) -> None:
    @pikku_func(name="profile.load")
    async def load(data: Num) -> Profile:
        counts["profile"] = counts.get("profile", 0) + 1
        return Profile(
            id=UUID(int=data["n"]), joined=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            balance=Decimal("10.50"),
        )

    @pikku_func(name="point.make")
    def make_point(data: Num) -> Point:
        counts["point"] = counts.get("point", 0) + 1
        return Point(data["n"], 0.5)

    async def receipt() -> Receipt:
        counts["receipt"] = counts.get("receipt", 0) + 1
        return {"at": datetime(2025, 5, 6, tzinfo=UTC), "amount": Decimal("1.25")}

    def ident() -> UUID:
        counts["ident"] = counts.get("ident", 0) + 1
        return UUID(int=7)

    async def wf(workflow: Workflow, data: Num) -> dict[str, str]:
        profile = await workflow.do("profile", "profile.load", {"n": data["n"]})
        point = await workflow.do("point", "point.make", {"n": 2})
        rec = await workflow.do("receipt", receipt)
        uid = await workflow.do("ident", ident, result_type=UUID)
        stamp = await workflow.do("stamp", lambda: datetime(2020, 1, 1, tzinfo=UTC))
        await workflow.sleep("nap", "1h")  # ends when the test moves the clock
        # After the sleep, a fresh runtime replays: every value must have its original type.
        assert isinstance(profile, Profile) and isinstance(profile.id, UUID), profile
        assert isinstance(profile.balance, Decimal) and isinstance(profile.joined, datetime)
        assert isinstance(point, Point) and point == Point(2, 0.5), point
        assert isinstance(rec["at"], datetime) and isinstance(rec["amount"], Decimal), rec
        assert isinstance(uid, UUID), uid
        assert isinstance(stamp, datetime), stamp
        return {"profile": str(profile.id), "amount": str(rec["amount"])}

    wire_workflow(name="replay", func=wf, execution_mode=mode)  # type: ignore[arg-type]


@MODES
async def test_replay_in_a_new_runtime_rebuilds_types_and_never_reruns_steps(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str, clock: FakeClock
) -> None:
    counts: dict[str, int] = {}
    _register_replay_app(mode, counts)
    first = new_runtime(runtimes, store)
    handle = await first.client("replay").start({"n": 5})
    await first.drain()
    assert (await store.get_run(handle.run_id)).status is RunStatus.SUSPENDED
    await first.close()  # the process "ends": its live continuation is gone

    second = new_runtime(runtimes, store)
    clock.advance(timedelta(hours=2))  # the nap is over
    assert await second.recover() == 1
    await settle(second, handle.run_id)
    run = await second.client("replay").get_run(handle.run_id)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == {"profile": str(UUID(int=5)), "amount": "1.25"}
    assert counts == {"profile": 1, "point": 1, "receipt": 1, "ident": 1}


async def test_value_that_cannot_round_trip_fails_at_first_execution(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    ran: list[str] = []

    async def wf(workflow: Workflow, data: None) -> None:
        await workflow.do("model", lambda: Point(1, 2.0))  # no annotation, no result_type
        ran.append("after")

    wire_workflow(name="bad_value", func=wf)
    rt = new_runtime(runtimes, store)
    handle = await rt.client("bad_value").start(None)
    await rt.drain()
    run = await store.get_run(handle.run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.type == "StepSerializationError"
    assert "result_type" in run.error.message
    step = (await store.get_step_states(handle.run_id))["model"]
    assert step.status is StepStatus.FAILED and step.attempt_count == 1  # not retried
    assert ran == []


async def test_settled_run_is_never_replayed(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    passes: list[int] = []

    async def wf(workflow: Workflow, data: None) -> int:
        passes.append(1)
        return 1

    wire_workflow(name="once", func=wf)
    rt = new_runtime(runtimes, store)
    handle = await rt.client("once").start(None)
    await rt.drain()
    job = Job(queue="x", kind="orchestrate", workflow="once", run_id=handle.run_id)
    await run_orchestrator_job(rt, job)
    await rt.recover()
    await rt.drain()
    assert passes == [1]


# ------------------------------------------------------- non-determinism


@pytest.mark.parametrize(
    ("variant", "needle"),
    [
        ("kind", "recorded as rpc 'nd.a' but the replay reached it as inline"),
        ("rpc", "recorded as rpc 'nd.a' but the replay reached it as rpc 'nd.b'"),
        ("data", "other data"),
    ],
)
async def test_non_determinism_is_detected_on_replay(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], variant: str, needle: str
) -> None:
    current = {"variant": "original"}

    @pikku_func(name="nd.a")
    def a(data: Num) -> int:
        return data["n"]

    @pikku_func(name="nd.b")
    def b(data: Num) -> int:
        return data["n"]

    async def wf(workflow: Workflow, data: None) -> int:
        v = current["variant"]
        if v == "kind":
            x = await workflow.do("first", lambda: 1)
        elif v == "rpc":
            x = await workflow.do("first", "nd.b", {"n": 1})
        elif v == "data":
            x = await workflow.do("first", "nd.a", {"n": 2})
        else:
            x = await workflow.do("first", "nd.a", {"n": 1})
        await workflow.sleep("wait", "1h")  # never ends here: the replay fails before it
        return x

    wire_workflow(name="nd", func=wf, execution_mode="inline")
    first = new_runtime(runtimes, store)
    handle = await first.client("nd").start(None)
    await first.drain()
    await first.close()
    current["variant"] = variant
    second = new_runtime(runtimes, store)
    await second.recover()
    await settle(second, handle.run_id)
    run = await store.get_run(handle.run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.type == "WorkflowNonDeterminismError"
    assert needle in run.error.message and "'first'" in run.error.message


# ----------------------------------------------------------------- retries


def test_default_retry_delay_is_exponential_and_capped() -> None:
    assert [retry_delay_seconds(None, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay_seconds(None, 30) == 300.0
    assert retry_delay_seconds(2.0, 7) == 2.0


@MODES
async def test_retries_record_every_attempt_then_succeed(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    attempts: list[int] = []

    @pikku_func(name="flaky")
    def flaky(data: None) -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(f"boom {len(attempts)}")
        return "ok"

    async def wf(workflow: Workflow, data: None) -> str:
        return str(await workflow.do("call", "flaky", None, retries=3, retry_delay="10ms"))

    wire_workflow(name="retry", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store)
    handle = await rt.client("retry").start(None)
    await settle(rt, handle.run_id)
    assert await rt.client("retry").result(handle.run_id) == "ok"
    step = (await store.get_step_states(handle.run_id))["call"]
    assert step.attempt_count == 3 and len(attempts) == 3
    assert [a.status for a in step.attempts] == [
        StepStatus.FAILED, StepStatus.FAILED, StepStatus.SUCCEEDED,
    ]
    assert step.attempts[0].error is not None and step.attempts[0].error.message == "boom 1"
    assert step.max_attempts == 4


@MODES
@pytest.mark.parametrize("retries", [0, 2])
async def test_exhausted_retries_fail_the_run_with_the_step_error(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str, retries: int
) -> None:
    attempts: list[int] = []
    after: list[int] = []

    async def always() -> int:
        attempts.append(1)
        raise ValueError("bad input")

    @pikku_func(name="always")
    async def always_rpc(data: None) -> int:
        return await always()

    async def wf(workflow: Workflow, data: None) -> int:
        if mode == "remote":
            await workflow.do("s", "always", None, retries=retries, retry_delay=0.01)
        else:
            await workflow.do("s", always, retries=retries, retry_delay=0.01)
        after.append(1)
        return 1

    wire_workflow(name="fails", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store)
    client = rt.client("fails")
    handle = await client.start(None)
    await settle(rt, handle.run_id)
    run = await client.get_run(handle.run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.message, run.error.step) == ("ValueError", "bad input", "s")
    assert len(attempts) == retries + 1 and after == []
    step = (await store.get_step_states(handle.run_id))["s"]
    assert step.status is StepStatus.FAILED and step.attempt_count == retries + 1
    with pytest.raises(WorkflowFailedError) as info:
        await client.result(handle.run_id)
    assert info.value.error_type == "ValueError" and info.value.step == "s"


async def test_caught_step_failure_lets_the_workflow_continue(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    def broken() -> int:
        raise KeyError("x")

    async def wf(workflow: Workflow, data: None) -> str:
        try:
            await workflow.do("broken", broken, retries=0)
        except WorkflowFailedError as exc:
            return f"handled {exc.error_type} at {exc.step}"
        return "unreachable"

    wire_workflow(name="catch", func=wf, execution_mode="inline")
    rt = new_runtime(runtimes, store)
    handle = await rt.client("catch").start(None)
    await rt.drain()
    assert await rt.client("catch").result(handle.run_id) == "handled KeyError at broken"


# ------------------------------------------------------------------- sleep


@MODES
async def test_sleep_is_durable_and_drain_does_not_wait(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str, clock: FakeClock
) -> None:
    """A sleep is a scheduled wake-up in the store: drain() does not wait for it, a restarted
    runtime (an empty InProcessQueue) re-arms it through recover(), and it wakes the run when
    the clock reaches it."""
    after: list[int] = []

    async def wf(workflow: Workflow, data: None) -> str:
        await workflow.do("before", lambda: 1)
        await workflow.sleep("nap", timedelta(minutes=5))
        after.append(1)
        return "woke"

    wire_workflow(name="sleepy", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = WorkflowRuntime(store, clock.queue())
    runtimes.append(rt)
    handle = await rt.client("sleepy").start(None)
    await rt.drain()
    run = await store.get_run(handle.run_id)
    nap = (await store.get_step_states(handle.run_id))["nap"]
    assert run.status is RunStatus.SUSPENDED and after == []
    assert nap.kind is StepKind.SLEEP and nap.status is StepStatus.SCHEDULED
    assert nap.next_attempt_at is not None and run.wake_at == nap.next_attempt_at
    # A restart: a new runtime (empty queue) recovers the sleeping run from the store.
    await rt.close()
    queue2 = clock.queue()
    rt2 = WorkflowRuntime(store, queue2)
    runtimes.append(rt2)
    await rt2.recover()
    await rt2.drain()
    assert (await store.get_run(handle.run_id)).status is RunStatus.SUSPENDED and after == []
    assert queue2.next_due() == nap.next_attempt_at  # the wake-up is queued again
    clock.advance(timedelta(minutes=5))
    await rt2.drain()
    assert await rt2.client("sleepy").result(handle.run_id, timeout=SETTLE_CAP) == "woke"
    assert after == [1]


# ------------------------------------------------------------------- cancel


@MODES
async def test_cancel_a_sleeping_run(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    after: list[int] = []

    async def wf(workflow: Workflow, data: None) -> None:
        await workflow.sleep("long", "1h")
        after.append(1)
        await workflow.do("next", lambda: 1)

    wire_workflow(name="cancel_sleep", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store)
    client = rt.client("cancel_sleep")
    handle = await client.start(None)
    await rt.drain()
    assert await client.cancel_run(handle.run_id) is True
    await rt.drain()
    assert (await client.get_run(handle.run_id)).status is RunStatus.CANCELLED
    assert await client.cancel_run(handle.run_id) is False
    with pytest.raises(WorkflowCancelledError):
        await client.result(handle.run_id, timeout=SETTLE_CAP)
    await rt.recover()
    await rt.drain()
    assert after == []
    assert list(await store.get_step_states(handle.run_id)) == ["long"]


@MODES
async def test_cancel_stops_a_running_run_at_the_next_step_boundary(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    ran: list[str] = []
    holder: dict[str, WorkflowRuntime] = {}

    @pikku_func(name="cancel.self")
    async def cancel_self(data: None) -> int:
        ran.append("cancel")
        run_id = holder["run_id"]  # type: ignore[index]
        assert await holder["rt"].cancel_run(run_id)  # type: ignore[arg-type]
        return 1

    async def wf(workflow: Workflow, data: None) -> None:
        holder["run_id"] = workflow.run_id  # type: ignore[assignment]
        await workflow.do("first", "cancel.self", None)
        await workflow.do("second", lambda: ran.append("second"))

    wire_workflow(name="cancel_run", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store)
    holder["rt"] = rt
    handle = await rt.client("cancel_run").start(None)
    await rt.drain()
    run = await store.get_run(handle.run_id)
    assert run.status is RunStatus.CANCELLED
    assert ran == ["cancel"]
    assert list(await store.get_step_states(handle.run_id)) == ["first"]


async def _run_reads_for_1_and_6(
    store: WorkflowStateService,
    runtimes: list[WorkflowRuntime],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    wf: Any,
    steps_per_round: int,
) -> list[int]:
    """Wire ``wf`` (inline) as ``name``, run it with n = 1 and n = 6 rounds of its steps, and
    return how often each run was read (``get_run``); skips the stores that use the base
    class's default boundary (a read, then the insert)."""
    if type(store).insert_step_at_boundary is WorkflowStateService.insert_step_at_boundary:
        pytest.skip(f"{type(store).__name__} uses the default (a read, then the insert)")
    reads: list[str] = []
    original = store.get_run

    async def counted(run_id: str) -> Any:
        reads.append(run_id)
        return await original(run_id)

    monkeypatch.setattr(store, "get_run", counted)
    wire_workflow(name=name, func=wf, execution_mode="inline")
    rt = new_runtime(runtimes, store)
    client = rt.client(name)
    counts = []
    for n in (1, 6):
        handle = await client.start(n)
        await rt.drain()
        run = await original(handle.run_id)
        assert run.status is RunStatus.COMPLETED and run.output == n
        assert len(await store.get_step_states(handle.run_id)) == steps_per_round * n
        counts.append(reads.count(handle.run_id))
    return counts


async def test_a_new_step_reads_no_run_its_boundary_is_in_its_insert(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cancel check of a new inline step's boundary is made by its insert
    (``insert_step_at_boundary``), not by a read of the run per step: a run of 6 steps reads
    the run as often as a run of 1 step (on the stores that fold the check into the insert;
    the default of the base class reads the run first)."""

    @pikku_func(name="boundary.echo")
    def echo(data: int) -> int:
        return data

    async def wf(workflow: Workflow, n: int) -> int:
        for i in range(n):
            await workflow.do("s", "boundary.echo", i)
        return n

    counts = await _run_reads_for_1_and_6(store, runtimes, monkeypatch, "boundary_reads", wf, 1)
    assert counts[0] == counts[1], counts


async def test_value_and_sleep_steps_read_no_run_at_their_boundary(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``now``/``uuid4``/``random`` and a sleep that is already due fold their boundary into
    their insert like ``do`` (``insert_step_at_boundary``): 6 rounds of them read the run as
    often as 1 round."""

    async def wf(workflow: Workflow, n: int) -> int:
        for _ in range(n):
            await workflow.now()
            await workflow.uuid4()
            await workflow.random()
            await workflow.sleep("nap", 0)
        return n

    counts = await _run_reads_for_1_and_6(
        store, runtimes, monkeypatch, "boundary_value_reads", wf, 4
    )
    assert counts[0] == counts[1], counts


async def test_a_pass_of_local_steps_shares_the_event_loop(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that never awaits (memory, SQLite, file) and short attempts (no heartbeat
    task): a pass of local steps still gives the event loop a turn every
    ``SHARE_LOOP_EVERY`` seconds (0 here: after every step), so other tasks of the process
    run meanwhile."""
    from pikku_typing.runtime import context

    monkeypatch.setattr(context, "SHARE_LOOP_EVERY", 0.0)
    turns: list[int] = []

    async def ticker() -> None:
        while True:
            turns.append(1)
            await asyncio.sleep(0)

    async def wf(workflow: Workflow, n: int) -> int:
        for i in range(n):
            await workflow.do("s", lambda i=i: i)  # type: ignore[misc]
        return n

    wire_workflow(name="shares_loop", func=wf, execution_mode="inline")
    rt = new_runtime(runtimes, store)
    handle = await rt.client("shares_loop").start(50)
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    turns.clear()
    try:
        await rt.drain()
    finally:
        task.cancel()
    assert await handle.result(timeout=SETTLE_CAP) == 50
    assert len(turns) >= 50, len(turns)


async def test_result_runs_the_in_process_jobs_itself_and_times_out(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    async def quick(workflow: Workflow, data: None) -> int:
        await workflow.sleep("short", "30ms")
        return 1

    async def slow(workflow: Workflow, data: None) -> int:
        await workflow.sleep("long", "1h")
        return 2

    wire_workflow(name="quick", func=quick)
    wire_workflow(name="slow", func=slow)
    rt = new_runtime(runtimes, store)
    # No drain, no serve: with the in-process queue, result() runs the due jobs itself.
    handle = await rt.client("quick").start(None)
    assert await handle.result(timeout=SETTLE_CAP) == 1
    sleeper = await rt.client("slow").start(None)
    with pytest.raises(TimeoutError, match="did not settle"):
        await sleeper.result(timeout=0.05)
    assert (await store.get_run(sleeper.run_id)).status is RunStatus.SUSPENDED


# -------------------------------------------------------------- middleware


@MODES
async def test_middleware_wraps_each_step_execution(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    seen: list[tuple[str, str, str | None, int]] = []

    async def mw(call: StepCall, call_next: Any) -> Any:
        seen.append((call.step_key, call.kind, call.rpc_name, call.attempt))
        result = await call_next()
        return result + 100 if isinstance(result, int) else result

    @pikku_func(name="one")
    def one(data: None) -> int:
        return 1

    async def wf(workflow: Workflow, data: None) -> list[int]:
        a = await workflow.do("a", "one", None)
        b = await workflow.do("b", lambda: 2)
        await workflow.sleep("z", 0)
        return [a, b]

    wire_workflow(name="mw", func=wf, execution_mode=mode, middleware=[mw])  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store)
    handle = await rt.client("mw").start(None)
    await rt.drain()
    assert await handle.result(timeout=SETTLE_CAP) == [101, 102]
    assert seen == [("a", "rpc", "one", 1), ("b", "inline", None, 1)]


# ------------------------------------------------- duplicates and claims


async def test_duplicate_step_deliveries_are_ignored(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    calls: list[int] = []

    @pikku_func(name="count")
    async def count(data: None) -> int:
        calls.append(1)
        await asyncio.sleep(0.01)
        return len(calls)

    async def wf(workflow: Workflow, data: None) -> int:
        return int(await workflow.do("c", "count", None))

    wire_workflow(name="dup", func=wf, execution_mode="remote")
    rt = new_runtime(runtimes, store)
    handle = await rt.client("dup").start(None)
    await rt.drain(queues=["pikku-workflow-dup-orchestrator"])  # the step is now queued
    dup = Job(
        queue=step_queue("dup", "count"), kind="step", workflow="dup",
        run_id=handle.run_id, step_key="c", attempt=1,
    )
    # Three deliveries of the same attempt at once, then one more after it finished.
    await asyncio.gather(*(rt.handle_job(dup) for _ in range(3)))
    await rt.drain()
    await rt.handle_job(dup)
    await rt.drain()
    assert calls == [1]
    assert await handle.result(timeout=SETTLE_CAP) == 1


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(
    ("holder", "lease", "rerun"),
    [
        ("dead_local", 3600, True),  # same host, process gone: abandoned at once
        ("other_host_expired", -1, True),  # other host: only after the lease
        ("other_host_live", 3600, False),
    ],
)
async def test_attempt_held_by_a_dead_or_expired_holder_runs_again(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], holder: str, lease: int, rerun: bool
) -> None:
    calls: list[int] = []

    @pikku_func(name="work")
    def work(data: None) -> str:
        calls.append(1)
        return "done"

    async def wf(workflow: Workflow, data: None) -> str:
        return str(await workflow.do("w", "work", None))

    wire_workflow(name="claims", func=wf, execution_mode="remote")
    run = await store.create_run("claims", None)
    host = socket.gethostname() if holder == "dead_local" else "some-other-host.example"
    pid = _dead_pid() if holder == "dead_local" else 4242
    owner = ClaimOwner(host=host, pid=pid, token=f"x.{uuid.uuid4().hex}")
    await store.insert_step(
        run.id,
        StepState(
            key="w", step_name="w", kind=StepKind.RPC, rpc_name="work", data=None,
            data_digest=None, status=StepStatus.SCHEDULED, max_attempts=1,
        ),
    )
    claimed = await store.claim_step(run.id, "w", owner=owner, lease_seconds=lease)
    assert claimed is not None
    rt = new_runtime(runtimes, store)
    await rt.recover()
    await rt.drain()
    step = (await store.get_step_states(run.id))["w"]
    if rerun:
        assert calls == [1]
        assert step.status is StepStatus.SUCCEEDED and step.attempt_count == 2
        assert step.attempts[0].error is not None
        assert step.attempts[0].error.type == "AbandonedAttempt"
        assert (await store.get_run(run.id)).status is RunStatus.COMPLETED
    else:
        assert calls == []
        assert step.status is StepStatus.RUNNING and step.attempt_count == 1


async def test_pid_reuse_is_not_mistaken_for_the_holder() -> None:
    from pikku_typing.runtime import process

    me = os.getpid()
    owner = ClaimOwner(host=socket.gethostname(), pid=me, token=f"1.{uuid.uuid4().hex}")
    assert process.holder_liveness(owner) == "dead"  # our pid, another start time
    parent = os.getppid()
    start = process.process_start_time(parent)
    assert start is not None
    assert process.holder_liveness(
        ClaimOwner(host=socket.gethostname(), pid=parent, token=f"{start}.abc")
    ) == "alive"
    assert process.holder_liveness(
        ClaimOwner(host=socket.gethostname(), pid=parent, token=f"{int(start) + 1}.abc")
    ) == "dead"
    assert process.holder_liveness(ClaimOwner(host="elsewhere", pid=1, token="1.a")) == "unknown"


# ------------------------------------------------------ workers and serve


async def test_generated_style_workers_are_used_for_their_queues(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    from pikku_typing.runtime.queues.base import orchestrator_queue
    from pikku_typing.runtime.workers import run_step_job

    used: list[str] = []

    @pikku_func(name="gen.step")
    def gen_step(data: None) -> int:
        return 5

    async def wf(workflow: Workflow, data: None) -> int:
        return int(await workflow.do("s", "gen.step", None))

    async def orchestrator_worker(rt: WorkflowRuntime, job: Job) -> None:
        used.append("orchestrator")
        await run_orchestrator_job(rt, job)

    async def step_worker(rt: WorkflowRuntime, job: Job) -> None:
        used.append("step")
        await run_step_job(rt, job)

    wire_workflow(name="gen", func=wf)
    rt = new_runtime(
        runtimes, store,
        workers={
            orchestrator_queue("gen"): orchestrator_worker,
            step_queue("gen", "gen.step"): step_worker,
        },
    )
    handle = await rt.client("gen").start(None)
    await rt.drain()
    assert await handle.result(timeout=SETTLE_CAP) == 5
    assert used == ["orchestrator", "step", "orchestrator"]


async def test_serve_runs_many_runs_concurrently_until_stopped(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    @pikku_func(name="slow")
    async def slow(data: Num) -> int:
        await asyncio.sleep(0.01)
        return data["n"]

    async def wf(workflow: Workflow, data: Num) -> int:
        total = 0
        for i in range(3):
            total += await workflow.do("s", "slow", {"n": data["n"] + i})
        await workflow.sleep("nap", "20ms")
        return total

    wire_workflow(name="many", func=wf)
    rt = new_runtime(runtimes, store)
    client = rt.client("many")
    handles = [await client.start({"n": n}) for n in range(8)]
    stop = asyncio.Event()
    server = asyncio.create_task(rt.serve(stop=stop, concurrency=4))
    results = [await h.result(timeout=SETTLE_CAP) for h in handles]
    stop.set()
    await server
    assert results == [3 * n + 3 for n in range(8)]


async def test_default_runtime_uses_the_file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pikku_typing import FileWorkflowStateService

    monkeypatch.chdir(tmp_path)

    async def wf(workflow: Workflow, data: None) -> str:
        return str(await workflow.do("s", lambda: "hi"))

    wire_workflow(name="default", func=wf)
    async with WorkflowRuntime() as rt:
        assert isinstance(rt.state, FileWorkflowStateService)
        from pikku_typing.runtime.queues.store import StoreQueue

        assert isinstance(rt.queue, StoreQueue)  # shared with other processes on the store
        handle = await rt.client("default").start(None)
        await rt.drain()
        assert await handle.result(timeout=SETTLE_CAP) == "hi"
    assert (tmp_path / ".pikku" / "state").is_dir()


async def test_memory_store_runtime_has_no_live_task_leak() -> None:
    async def wf(workflow: Workflow, data: None) -> None:
        await workflow.sleep("forever", "1d")

    wire_workflow(name="leak", func=wf)
    rt = WorkflowRuntime(InMemoryWorkflowStateService())
    await rt.client("leak").start(None)
    await rt.drain()
    before = len(asyncio.all_tasks())
    await rt.close()
    assert len(asyncio.all_tasks()) == before - 1


# ------------------------------------------------- reads, parallel steps, leases


@MODES
async def test_step_states_are_read_once_per_replay_and_live_runs_are_not_replayed(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @pikku_func(name="inc")
    def inc(data: Num) -> int:
        return data["n"] + 1

    async def wf(workflow: Workflow, data: None) -> int:
        n = 0
        for _ in range(10):
            n = await workflow.do("inc", "inc", {"n": n})
        await workflow.sleep("nap", "100ms")
        return n

    wire_workflow(name="reads", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    reads: list[str] = []
    original = store.get_step_states

    async def counting(run_id: str) -> dict[str, StepState]:
        reads.append(run_id)
        return await original(run_id)

    monkeypatch.setattr(store, "get_step_states", counting)
    rt = new_runtime(runtimes, store)
    handle = await rt.client("reads").start(None)
    await settle(rt, handle.run_id)
    # One replay read for the first pass; every later pass resumed the live continuation.
    assert reads == [handle.run_id]
    await rt.close()
    # A new process replays: one read per pass, however many steps are recorded.
    rt2 = new_runtime(runtimes, store)
    await store.transition_run(
        handle.run_id, (RunStatus.COMPLETED,), RunChanges(status=RunStatus.SUSPENDED)
    )
    await rt2.recover()
    await rt2.drain()
    assert reads == [handle.run_id, handle.run_id]
    assert await rt2.client("reads").result(handle.run_id, timeout=SETTLE_CAP) == 10


@MODES
async def test_parallel_steps_with_gather(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    @pikku_func(name="sq")
    async def sq(data: Num) -> int:
        await asyncio.sleep(0.001 * (5 - data["n"]))
        return data["n"] ** 2

    async def wf(workflow: Workflow, data: None) -> list[int]:
        first = await asyncio.gather(*(workflow.do("sq", "sq", {"n": n}) for n in range(5)))
        second = await workflow.do("after", lambda: sum(first))
        return [*first, second]

    wire_workflow(name="par", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store)
    handle = await rt.client("par").start(None)
    await settle(rt, handle.run_id)
    assert await handle.result(timeout=SETTLE_CAP) == [0, 1, 4, 9, 16, 30]
    steps = await store.get_step_states(handle.run_id)
    assert {k: s.result for k, s in steps.items() if k.startswith("sq")} == {
        "sq": 0, "sq#1": 1, "sq#2": 4, "sq#3": 9, "sq#4": 16,
    }


async def test_sweep_wakes_a_suspended_run_whose_step_holder_died(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime]
) -> None:
    """A suspended run whose remote step is ``running``, held by a process that died with
    its step job (or whose job the queue lost), is woken by nothing but the sweep: the pass
    it queues abandons the dead attempt (counted) and the step runs again. A step whose
    holder is alive is left alone."""
    ran: list[int] = []

    @pikku_func(name="sw.step")
    def sw_step(data: Num) -> int:
        ran.append(data["n"])
        return data["n"] + 1

    async def wf(workflow: Workflow, data: Num) -> int:
        return int(await workflow.do("s", "sw.step", {"n": data["n"]}))

    wire_workflow(name="sw", func=wf, execution_mode="remote")
    rt = new_runtime(runtimes, store, eager_steps=False)
    run_id = (await rt.client("sw").start(Num(n=4))).run_id
    job = Job(queue="x", kind="orchestrate", workflow="sw", run_id=run_id)
    await run_orchestrator_job(rt, job)  # the pass: the step is queued, the run suspended
    assert (await store.get_run(run_id)).status.value == "suspended"
    holder = process.new_owner()  # a claim of this process that is held (alive)
    process.mark_active(holder.token)
    claimed = await store.claim_step(run_id, "s", owner=holder, lease_seconds=600)
    assert claimed is not None and claimed.status.value == "running"
    fresh = new_runtime(runtimes, store, eager_steps=False)  # its queue holds no job
    assert await fresh.sweep() == 0  # the holder is alive: its attempt is its own
    process.mark_inactive(holder.token)  # the holder is gone, and its step job with it
    assert await fresh.sweep() == 1
    await settle(fresh, run_id)
    run = await store.get_run(run_id)
    assert run.status.value == "completed" and run.output == 5
    step = (await store.get_step_states(run_id))["s"]
    assert step.attempt_count == 2 and step.attempts[0].error is not None  # counted
    assert ran == [4]


# ------------------------------------------- transient infrastructure errors


def _fail_once(
    monkeypatch: pytest.MonkeyPatch, store: WorkflowStateService, name: str, *, skip: int = 0
) -> list[int]:
    """Make ``store.<name>`` raise :class:`StoreUnavailableError` on its ``skip + 1``-th call
    only (a database blip); returns a list that grows by one per call."""
    original = getattr(store, name)
    calls: list[int] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == skip + 1:
            raise StoreUnavailableError(f"test outage in {name}")
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, name, flaky)
    return calls


@MODES
@pytest.mark.parametrize(
    "method", ["insert_step_at_boundary", "transition_run", "get_step_states"]
)
async def test_a_store_outage_during_a_pass_redelivers_the_job(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str, method: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``StoreUnavailableError`` is not the workflow's fault: the job goes back to the queue
    (instead of being marked done with its run left ``running``, or failing the run) and one
    ``drain()`` finishes the run once the store is back (the in-process queue waits for the
    short redelivery backoff; ``tests/test_postgres_runtime.py`` checks procrastinate's)."""
    ran: list[int] = []

    @pikku_func(name="double")
    def double(data: Num) -> int:
        ran.append(data["n"])
        return data["n"] * 2

    async def wf(workflow: Workflow, data: Num) -> int:
        a = await workflow.do("a", "double", {"n": data["n"]})
        return int(await workflow.do("b", "double", {"n": a}))

    wire_workflow(name="blip", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store)
    handle = await rt.client("blip").start({"n": 3})
    calls = _fail_once(monkeypatch, store, method)
    await rt.drain()
    assert calls, f"{method} was never called"
    run = await rt.client("blip").get_run(handle.run_id)
    assert run.status is RunStatus.COMPLETED, (run.status, run.error)
    assert run.output == 12
    assert set(ran) == {3, 6}  # at least once each (a lost inline result runs again)


@pytest.mark.parametrize(
    ("mode", "eager"), [("inline", True), ("remote", True), ("remote", False)],
    ids=["inline", "remote-eager", "remote-queued"],
)
async def test_attempts_cut_short_by_store_outages_do_not_use_up_the_retries(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str, eager: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step with no retries whose result cannot be stored 5 times in a row (the store is
    away each time its attempt ends) still completes: each attempt cut short by the outage
    is recorded as ``StoreOutage`` and runs again without using up a retry. Before, they
    were abandoned attempts like a crash's and the step failed after 3 extra ones (a
    database blip failed the workflow)."""
    ran: list[int] = []

    @pikku_func(name="once")
    def once(data: Num) -> int:
        ran.append(data["n"])
        return data["n"] + 1

    async def wf(workflow: Workflow, data: Num) -> int:
        return int(await workflow.do("a", "once", {"n": data["n"]}, retries=0))

    wire_workflow(name="blips", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store, eager_steps=eager)
    handle = await rt.client("blips").start({"n": 1})
    original = store.complete_step
    failures: list[int] = []

    async def away(*args: Any, **kwargs: Any) -> Any:
        if len(failures) < 5:
            failures.append(1)
            raise StoreUnavailableError("test outage in complete_step")
        return await original(*args, **kwargs)

    original_later = store.complete_step_later

    async def away_later(*args: Any, **kwargs: Any) -> Any:  # a pass's write-behind result
        if len(failures) < 5:
            failures.append(1)
            raise StoreUnavailableError("test outage in complete_step_later")
        return await original_later(*args, **kwargs)

    monkeypatch.setattr(store, "complete_step", away)
    monkeypatch.setattr(store, "complete_step_later", away_later)
    await settle(rt, handle.run_id)
    run = await rt.client("blips").get_run(handle.run_id)
    assert run.status is RunStatus.COMPLETED, (run.status, run.error)
    assert run.output == 2 and len(failures) == 5
    step = (await store.get_step_states(handle.run_id))["a"]
    assert [a.error.type if a.error else None for a in step.attempts] == [
        "StoreOutage"] * 5 + [None]
    assert step.max_attempts == 1 and ran == [1] * 6


async def test_a_store_that_keeps_failing_under_a_step_ends_it_after_the_grace(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Free attempts after store outages are bounded (``OUTAGE_GRACE``, 10): a store that
    never takes a step's result is no blip, and the step's code must not run forever. After
    them, cut-short attempts count as abandoned ones (3 more), then the step fails."""
    ran: list[int] = []

    @pikku_func(name="never")
    def never(data: Num) -> int:
        ran.append(data["n"])
        return data["n"]

    async def wf(workflow: Workflow, data: Num) -> int:
        return int(await workflow.do("a", "never", {"n": data["n"]}, retries=0))

    wire_workflow(name="never_stored", func=wf, execution_mode="remote")
    rt = WorkflowRuntime(
        store, InProcessQueue(retry_backoff=0.001, max_retry_backoff=0.005), eager_steps=False
    )
    runtimes.append(rt)
    handle = await rt.client("never_stored").start({"n": 1})

    async def away(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("test outage in complete_step")

    monkeypatch.setattr(store, "complete_step", away)
    await settle(rt, handle.run_id)
    run = await rt.client("never_stored").get_run(handle.run_id)
    assert run.status is RunStatus.FAILED
    step = (await store.get_step_states(handle.run_id))["a"]
    assert [a.error.type for a in step.attempts if a.error] == (
        ["StoreOutage"] * steps_module.OUTAGE_GRACE + ["AbandonedAttempt"] * 4
    )
    assert len(ran) == steps_module.OUTAGE_GRACE + 4


async def test_a_store_outage_in_a_step_worker_redelivers_the_step_job(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Remote mode: the step's result could not be stored; the redelivered step job abandons
    the attempt of its (finished) holder and runs the step again (one ``drain()`` of the
    in-process queue)."""
    ran: list[int] = []

    @pikku_func(name="double")
    def double(data: Num) -> int:
        ran.append(data["n"])
        return data["n"] * 2

    async def wf(workflow: Workflow, data: Num) -> int:
        return int(await workflow.do("a", "double", {"n": data["n"]}))

    wire_workflow(name="blip", func=wf, execution_mode="remote")
    rt = new_runtime(runtimes, store)
    handle = await rt.client("blip").start({"n": 5})
    # an eager step runs in the pass: its result goes through complete_step_later
    _fail_once(monkeypatch, store, "complete_step_later")
    await rt.drain()
    run = await rt.client("blip").get_run(handle.run_id)
    assert run.status is RunStatus.COMPLETED, (run.status, run.error)
    assert run.output == 10 and ran == [5, 5]
    step = (await store.get_step_states(handle.run_id))["a"]
    assert step.attempt_count == 2 and step.status is StepStatus.SUCCEEDED


async def test_a_lock_timeout_redelivers_the_job(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TimeoutError`` from ``lock_run``: redelivered (one ``drain()`` of the
    in-process queue)."""

    async def wf(workflow: Workflow, data: None) -> str:
        return str(await workflow.do("a", lambda: "done"))

    wire_workflow(name="locked", func=wf)
    rt = new_runtime(runtimes, store)
    handle = await rt.client("locked").start(None)
    original = store.lock_run
    calls: list[str] = []

    @contextlib.asynccontextmanager
    async def timed_out() -> AsyncIterator[None]:
        raise TimeoutError("test: the run lock is busy")
        yield  # pragma: no cover

    def flaky_lock(run_id: str, *, timeout: float | None = None) -> Any:
        calls.append(run_id)
        if len(calls) == 1:
            return timed_out()
        return original(run_id, timeout=timeout)

    monkeypatch.setattr(store, "lock_run", flaky_lock)
    await rt.drain()
    assert len(calls) >= 2
    run = await rt.client("locked").get_run(handle.run_id)
    assert run.status is RunStatus.COMPLETED and run.output == "done"


async def test_a_job_that_keeps_failing_is_kept_after_bounded_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``drain()`` does not spin forever on a job whose store stays away: the in-process queue
    retries it ``max_job_retries`` times with a backoff, then logs it and stops waiting for
    it, but never drops it (issue 10): it stays queued, retried every ``max_retry_backoff``
    seconds, and the run completes once the store is back."""
    store = InMemoryWorkflowStateService()

    async def wf(workflow: Workflow, data: None) -> str:
        return str(await workflow.do("a", lambda: "done"))

    wire_workflow(name="down", func=wf)
    queue = InProcessQueue(max_job_retries=3, retry_backoff=0.001, max_retry_backoff=0.05)
    async with WorkflowRuntime(store, queue) as rt:
        handle = await rt.client("down").start(None)
        original = store.insert_step_at_boundary
        attempts: list[int] = []

        async def down(run_id: str, step: StepState) -> StepState:
            attempts.append(1)
            raise StoreUnavailableError("test: the database is down")

        monkeypatch.setattr(store, "insert_step_at_boundary", down)
        assert await rt.drain() == 4  # the first delivery + 3 retries
        assert len(attempts) == 4 and len(queue) == 1  # kept, not dropped
        assert (await store.get_run(handle.run_id)).status is RunStatus.RUNNING
        monkeypatch.setattr(store, "insert_step_at_boundary", original)
        assert await handle.result(timeout=SETTLE_CAP) == "done"  # the kept job ran again


async def test_in_process_queue_redelivers_a_failed_job_with_backoff() -> None:
    queue = InProcessQueue(max_job_retries=2, retry_backoff=0.001)
    seen: list[str] = []

    async def handler(job: Job) -> None:
        seen.append(job.run_id)
        if job.run_id == "flaky" and seen.count("flaky") == 1:
            raise StoreUnavailableError("once")
        if job.run_id == "broken":
            raise RuntimeError("always")

    for run_id in ("flaky", "broken", "fine"):
        await queue.enqueue(Job(queue="q", kind="orchestrate", workflow="w", run_id=run_id))
    assert await queue.drain(handler) == 2 + 3 + 1
    assert seen.count("flaky") == 2 and seen.count("broken") == 3 and seen.count("fine") == 1
    assert [job.run_id for job in queue.pending()] == ["broken"]  # kept, never dropped
    await queue.close()
    # serve(): the same redelivery, bounded too
    seen.clear()
    await queue.enqueue(Job(queue="q", kind="orchestrate", workflow="w", run_id="flaky"))
    stop = asyncio.Event()
    server = asyncio.create_task(queue.serve(handler, stop=stop))
    for _ in range(6000):  # until redelivered (condition, not a deadline; 60 s cap)
        if seen.count("flaky") == 2:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await server
    assert seen == ["flaky", "flaky"]


class _RecordingQueue(InProcessQueue):
    """The in-process queue, recording every ``enqueue`` call (before de-duplication)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Job] = []

    async def enqueue(self, job: Job) -> None:
        self.calls.append(job)
        await super().enqueue(job)


@pytest.mark.parametrize("live_runs", [1000, 0])
async def test_each_remote_step_job_is_enqueued_once(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], live_runs: int
) -> None:
    """A new remote step is queued ONCE (a second enqueue with the same dedupe key is free in
    memory but a failed insert per step on PostgreSQL)."""

    @pikku_func(name="sq")
    async def sq(data: Num) -> int:
        return data["n"] ** 2

    async def wf(workflow: Workflow, data: None) -> int:
        first = await workflow.do("one", "sq", {"n": 2})
        more = await asyncio.gather(*(workflow.do("par", "sq", {"n": n}) for n in range(3)))
        return first + sum(more)

    wire_workflow(name="once", func=wf, execution_mode="remote")
    queue = _RecordingQueue()
    # eager off: every step goes through the queue (eager, they run in the pass)
    rt = WorkflowRuntime(store, queue, live_runs=live_runs, eager_steps=False)
    runtimes.append(rt)
    handle = await rt.client("once").start(None)
    await settle(rt, handle.run_id)
    assert await handle.result(timeout=SETTLE_CAP) == 4 + 0 + 1 + 4
    step_jobs = [job.step_key for job in queue.calls if job.kind == "step"]
    assert sorted(step_jobs) == ["one", "par", "par#1", "par#2"]


@MODES
async def test_a_running_attempt_keeps_its_lease_alive(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str
) -> None:
    seen: list[datetime] = []
    holder: dict[str, str] = {}

    async def lease() -> datetime | None:
        step = await store.get_step(holder["run_id"], "long")
        attempt = step.current_attempt if step else None
        return attempt.lease_expires_at if attempt else None

    @pikku_func(name="long")
    async def long(data: None) -> int:
        first = await lease()
        assert first is not None
        seen.append(first)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_CAP  # until the heartbeat moved the lease (a cap)
        while loop.time() < deadline:
            await asyncio.sleep(0.02)
            current = await lease()
            if current is not None and current > first:
                seen.append(current)
                break
        return len(seen)

    async def wf(workflow: Workflow, data: None) -> int:
        holder["run_id"] = workflow.run_id
        # every attempt, the first one included, is claimed with a lease in both modes
        return int(await workflow.do("long", "long", None, retries=1, retry_delay=0))

    wire_workflow(name="lease", func=wf, execution_mode=mode)  # type: ignore[arg-type]
    rt = new_runtime(runtimes, store, lease_seconds=0.3)
    handle = await rt.client("lease").start(None)
    await settle(rt, handle.run_id)
    assert await handle.result(timeout=SETTLE_CAP) == 2
    assert len(seen) == 2 and seen[1] > seen[0]
    step = (await store.get_step_states(handle.run_id))["long"]
    assert step.attempt_count == 1 and step.status is StepStatus.SUCCEEDED


def test_one_runtime_across_several_event_loops(clock: FakeClock) -> None:
    """``asyncio.run`` per call: a continuation left on a closed loop is replayed instead."""
    ran: list[str] = []

    async def wf(workflow: Workflow, data: None) -> str:
        await workflow.do("a", lambda: ran.append("a"))
        await workflow.sleep("nap", "1h")
        await workflow.do("b", lambda: ran.append("b"))
        return "ok"

    wire_workflow(name="loops", func=wf)
    rt = WorkflowRuntime(InMemoryWorkflowStateService(), clock.queue())
    handle = asyncio.run(rt.client("loops").start(None))
    asyncio.run(rt.drain())
    assert ran == ["a"]

    async def finish() -> str:
        clock.advance(timedelta(hours=2))  # the nap is over, its wake-up job due
        await settle(rt, handle.run_id)
        return str(await handle.result(timeout=SETTLE_CAP))

    assert asyncio.run(finish()) == "ok"
    assert ran == ["a", "b"]


@MODES
async def test_without_live_continuations_every_pass_replays_from_the_store(
    store: WorkflowStateService, runtimes: list[WorkflowRuntime], mode: str,
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock,
) -> None:
    """``live_runs=0``: each suspension unwinds the function (the private suspend exception)
    and the next pass replays it; finished steps still run once and keep their types."""
    counts: dict[str, int] = {}
    _register_replay_app(mode, counts)
    reads: list[str] = []
    original = store.get_step_states

    async def counting(run_id: str) -> dict[str, StepState]:
        reads.append(run_id)
        return await original(run_id)

    monkeypatch.setattr(store, "get_step_states", counting)
    # eager off: each remote step suspends the run (eager, it runs in the pass)
    rt = new_runtime(runtimes, store, live_runs=0, eager_steps=False)
    handle = await rt.client("replay").start({"n": 4})
    await rt.drain()
    assert (await store.get_run(handle.run_id)).status is RunStatus.SUSPENDED  # the nap
    clock.advance(timedelta(hours=2))
    await rt.recover()  # the wake-up pass (its queued job is due by the real clock)
    await settle(rt, handle.run_id)
    run = await rt.client("replay").get_run(handle.run_id)
    assert run.status is RunStatus.COMPLETED, run.error
    assert counts == {"profile": 1, "point": 1, "receipt": 1, "ident": 1}
    # remote: a pass per RPC step (2) + the first + the sleep's wake-up; inline: first + wake-up
    assert len(reads) == (4 if mode == "remote" else 2)
