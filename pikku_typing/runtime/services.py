"""What the runtime core runs on (:class:`Services`) and how it queues its jobs.

The core (:mod:`~pikku_typing.runtime.orchestrator`, :mod:`~pikku_typing.runtime.context`,
:mod:`~pikku_typing.runtime.step_jobs`, :mod:`~pikku_typing.runtime.lifecycle`) never
knows which store or queue it runs on: it gets a :class:`Services`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pikku_typing.models import StepState, WorkflowRun
from pikku_typing.runtime import codec
from pikku_typing.runtime.queues.base import Job, WorkflowQueue, orchestrator_queue, step_queue
from pikku_typing.state.base import WorkflowStateService
from pikku_typing.wiring import Registry, WorkflowDefinition

__all__ = ["Services", "enqueue_orchestrator", "enqueue_step", "typed_run"]

@dataclass
class Services:
    """What the runtime core needs; it never knows which store or queue it runs on."""

    state: WorkflowStateService
    queue: WorkflowQueue
    registry: Registry
    lease_seconds: float = 30.0
    max_inline_wait: float = 1.0
    live_runs: int = 1000
    on_settled: Callable[[str], None] = lambda run_id: None
    unknown_workflow_retry: float = 30.0
    """Seconds before a run whose workflow this process does not have is tried again."""

async def enqueue_orchestrator(
    queue: WorkflowQueue, workflow: str, run_id: str, at: datetime | None = None
) -> None:
    """Queue an orchestrator pass of the run (now, or at ``at``); deduplicated per time."""
    when = "now" if at is None else at.isoformat()
    await queue.enqueue(
        Job(
            queue=orchestrator_queue(workflow),
            kind="orchestrate",
            workflow=workflow,
            run_id=run_id,
            run_at=at,
            dedupe_key=f"{run_id}:orchestrate:{when}",
        )
    )

async def enqueue_step(queue: WorkflowQueue, workflow: str, run_id: str, step: StepState) -> None:
    """Queue the next attempt of a remote step (at its ``next_attempt_at``)."""
    assert step.rpc_name is not None
    attempt = step.attempt_count + 1
    await queue.enqueue(
        Job(
            queue=step_queue(workflow, step.rpc_name),
            kind="step",
            workflow=workflow,
            run_id=run_id,
            step_key=step.key,
            attempt=attempt,
            run_at=step.next_attempt_at,
            dedupe_key=f"{run_id}:{step.key}:{attempt}",
        )
    )

def typed_run(run: WorkflowRun[Any, Any], definition: WorkflowDefinition | None) -> WorkflowRun[Any, Any]:
    """The run with ``input`` and ``output`` rebuilt with the workflow's annotations."""
    if definition is None:
        return run
    update: dict[str, Any] = {}
    if not codec.is_untyped(definition.input_type):
        update["input"] = codec.decode(run.input, definition.input_type, what=f"run {run.id!r} input")
    else:
        update["input"] = codec.decode(run.input, None, what=f"run {run.id!r} input")
    if run.output is not None:
        update["output"] = codec.decode(
            run.output, definition.output_type, what=f"run {run.id!r} output"
        )
    return run.model_copy(update=update)
