"""The end-to-end run both stores that write step results behind are tested with: its first
result is lost (its claim taken over) while the store holds it back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from registry_support import isolated_registry

from pikku_typing import InProcessQueue, Workflow, WorkflowRuntime, wire_workflow
from pikku_typing.models import ErrorInfo, StepState, WorkflowRun
from pikku_typing.state.base import WorkflowStateService

__all__ = ["run_losing_a_held_back_result"]


async def run_losing_a_held_back_result(
    store: WorkflowStateService, other: WorkflowStateService, name: str
) -> tuple[Any, WorkflowRun[Any, Any], dict[str, StepState], list[int]]:
    """Run an inline workflow of steps ``a`` then ``b`` on ``store``. Right after the pass
    handed ``a``'s first result to the store (``complete_step_later``), ``other`` (another
    process) takes that attempt over (abandoned, due again). Return the run's output, the
    run, its steps and the attempts ``a``'s code ran (``[1, 2]``: ``a`` ran again)."""
    ran: list[int] = []

    async def body() -> int:
        ran.append(len(ran) + 1)
        return len(ran) * 10

    complete_later = store.complete_step_later

    async def then_taken_over(run_id: str, key: str, **kwargs: Any) -> bool:
        stored = await complete_later(run_id, key, **kwargs)
        if key == "a" and ran == [1]:
            await other.fail_step_attempt(
                run_id, "a", token=None, retry_at=datetime.now(UTC),
                error=ErrorInfo(type="AbandonedAttempt", message="taken over"),
            )  # fmt: skip
        return stored

    store.complete_step_later = then_taken_over  # type: ignore[method-assign]

    async def flow(workflow: Workflow, _: None) -> int:
        a = int(await workflow.do("a", body))
        return int(await workflow.do("b", lambda: a + 1))

    with isolated_registry():
        wire_workflow(name=name, func=flow, execution_mode="inline")
        runtime = WorkflowRuntime(store, InProcessQueue(retry_backoff=0.001))
        try:
            client = runtime.client(name)
            handle = await client.start(None)
            await runtime.drain()
            output = await client.result(handle.run_id, timeout=60)
            run = await client.get_run(handle.run_id)
            return output, run, await store.get_step_states(handle.run_id), ran
        finally:
            await runtime.close()
