"""What the runtime core runs on (:class:`Services`) and how it queues its jobs.

The core (:mod:`~pikku_typing.runtime.orchestrator`, :mod:`~pikku_typing.runtime.context`,
:mod:`~pikku_typing.runtime.step_jobs`, :mod:`~pikku_typing.runtime.lifecycle`) never
knows which store or queue it runs on: it gets a :class:`Services`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pikku_typing.models import StepState, WorkflowRun
from pikku_typing.runtime import codec
from pikku_typing.runtime.queues.base import Job, WorkflowQueue, orchestrator_queue, step_queue
from pikku_typing.state.base import WorkflowStateService
from pikku_typing.wiring import Registry, WorkflowDefinition

__all__ = ["EagerSlots", "Services", "enqueue_orchestrator", "enqueue_step", "typed_run"]


class EagerSlots:
    """Eager dispatch of remote steps: which step queues this process serves with the
    default job handler (``serves``, set by ``WorkflowRuntime`` while it serves or drains),
    and how many eager attempts run now (at most ``limit``).

    A pass that reaches a new remote RPC step takes a slot (:meth:`take`); with one, the step
    is claimed by its insert and run in the pass (like a local first attempt) instead of
    being queued; without one (eager off, the queue not served here, every slot in use) it
    goes through the queue. The default (``Services()`` without it) never takes a slot."""

    __slots__ = ("limit", "running", "serves")

    def __init__(self, serves: Callable[[str], bool] | None = None, limit: int = 0) -> None:
        self.serves: Callable[[str], bool] = serves or (lambda queue: False)
        self.limit = limit
        self.running = 0

    def take(self, queue: str) -> bool:
        """Take a slot for an eager attempt of a step of ``queue`` (``False``: queue it)."""
        if self.running >= self.limit or not self.serves(queue):
            return False
        self.running += 1
        return True

    def release(self) -> None:
        self.running -= 1


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
    eager: EagerSlots = field(default_factory=EagerSlots)
    """Eager dispatch of remote steps (off unless a serving ``WorkflowRuntime`` sets it)."""
    serves_orchestrator: Callable[[str], bool] = lambda workflow: False
    """Does this process serve the workflow's orchestrator queue with the default handler
    right now (a step job that ends here may then continue the run's live pass itself)?"""

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
