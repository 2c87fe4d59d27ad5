"""Child-process workers of ``tests/test_events.py`` and ``tests/test_children.py`` (run in
``spawn``-ed processes: module-level functions, picklable arguments)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, TypedDict

from stores import StoreSpec

from pikku_typing import Workflow, WorkflowRuntime, wire_event, wire_workflow
from pikku_typing.errors import RunExistsError


class OrderIn(TypedDict):
    id: str
    amount: Decimal


class Tick(TypedDict):
    sender: int
    n: int


def register() -> None:
    """The workflows and events the workers use (the test process registers them too)."""

    async def order(workflow: Workflow, data: OrderIn) -> str:
        return data["id"]

    async def collector(workflow: Workflow, data: int) -> list[Tick]:
        got: list[Tick] = []
        for _ in range(data):
            got.append(await workflow.wait_for_event("tick", "tick"))
        return got

    wire_event(name="tick", payload=Tick)
    wire_workflow(name="order", func=order, execution_mode="inline")
    wire_workflow(name="collector", func=collector, execution_mode="inline")


def start_same_run_worker(
    spec: StoreSpec, amount: str, barrier: Any, results: Any
) -> None:
    """``client.start(..., run_id="order-42")`` at the same moment as other processes."""

    async def main() -> None:
        register()
        store = spec.open()
        runtime = WorkflowRuntime(store)
        try:
            barrier.wait(120)
            try:
                handle = await runtime.client("order").start(
                    {"id": "42", "amount": Decimal(amount)}, run_id="order-42"
                )
                results.put((amount, handle.run_id))
            except RunExistsError:
                results.put((amount, "exists"))
        finally:
            await runtime.close()
            await store.close()

    asyncio.run(main())


def send_ticks_worker(spec: StoreSpec, run_id: str, index: int, count: int, barrier: Any) -> None:
    """Send ``count`` ``tick`` events to the run through a runtime of this process."""

    async def main() -> None:
        register()
        store = spec.open()
        runtime = WorkflowRuntime(store)
        try:
            barrier.wait(120)
            for n in range(count):
                assert await runtime.send_event(run_id, "tick", {"sender": index, "n": n})
        finally:
            await runtime.close()
            await store.close()

    asyncio.run(main())
