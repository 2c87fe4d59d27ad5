"""``workflow.run_child(step_name, workflow_name, input)`` and ``workflow.start_child(...)``:
another workflow run as a child of this one (SPEC section 8).

The step (kind ``child``, ``rpc_name`` = the child workflow, ``data`` = ``{"run_id",
"workflow", "wait"}``, ``data_digest`` = the digest of the child's input) is recorded first;
the child run is created after it, with the id :func:`~pikku_typing.runtime.lifecycle.child_run_id`
derives from this run's id and the step key, and ``parent_run_id`` = this run. So a replay,
or a process killed between the two writes, finds the same child (one atomic insert: never
two children for one step) and creates it only if it is missing.

``start_child`` records the child's id as the step's result and returns it. ``run_child``
parks until the child settles (the child's settlement wakes this run through the queue,
:func:`~pikku_typing.runtime.lifecycle.after_settled`), then records the child's outcome
(``{"run_id", "status", "output" | "error"}``) as the step's result: the output is returned
rebuilt with the child's output type; a failed or cancelled child raises
:class:`~pikku_typing.errors.ChildWorkflowFailedError` (on every replay too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pikku_typing.errors import (
    ChildWorkflowFailedError,
    RunAlreadyExistsError,
    RunNotFoundError,
    StepSerializationError,
    WorkflowInputError,
)
from pikku_typing.models import RunStatus, StepKind, StepState, StepStatus, WorkflowRun
from pikku_typing.runtime import codec, lifecycle, steps
from pikku_typing.runtime.services import enqueue_orchestrator
from pikku_typing.wiring import WorkflowDefinition, workflow_version

if TYPE_CHECKING:
    from pikku_typing.runtime.context import RunContext


async def child(
    ctx: RunContext, step_name: str, workflow_name: str, input: Any, *, wait: bool
) -> Any:
    api = "run_child" if wait else "start_child"
    definition = ctx.services.registry.get_workflow(workflow_name)
    try:
        _, encoded = codec.coerce(input, definition.input_type, what="input")
    except StepSerializationError as exc:
        raise WorkflowInputError(
            f"workflow.{api}({step_name!r}, {workflow_name!r}, ...): invalid input for "
            f"workflow {workflow_name!r}: {exc}"
        ) from exc
    key = ctx.next_key(api, step_name)
    digest = codec.digest(encoded)
    step = ctx.recorded(key, StepKind.CHILD, workflow_name)
    if step is not None and step.data_digest is not None and step.data_digest != digest:
        raise ctx.nondeterminism(
            f"step {key!r} (child {workflow_name!r}) was recorded with another input (digest "
            f"{step.data_digest}) than the replay passes now (digest {digest})"
        )
    child_id = lifecycle.child_run_id(ctx.run_id, key)
    state = ctx.services.state
    if step is None:
        t = steps.now()
        step = await ctx.insert_at_boundary(
            StepState(
                key=key,
                step_name=step_name,
                kind=StepKind.CHILD,
                rpc_name=workflow_name,
                status=StepStatus.SCHEDULED,
                data={"run_id": child_id, "workflow": workflow_name, "wait": wait},
                data_digest=digest,
                created_at=t,
                updated_at=t,
                started_at=t,
            ),
        )
    while True:
        if step.status is StepStatus.SUCCEEDED:
            return _outcome(ctx, key, definition, step.result, wait=wait)
        run = await _ensure_child(ctx, definition, child_id, encoded)
        if not wait or run.status.is_settled:
            result = {"run_id": child_id} if not wait else _result(run)
            if not await state.complete_step(ctx.run_id, key, result=result, token=None):
                fresh = await state.get_step(ctx.run_id, key)
                assert fresh is not None
                step = fresh
                continue
            return _outcome(ctx, key, definition, result, wait=wait)

        async def settled() -> bool:
            return (await state.get_run(child_id)).status.is_settled

        fresh_step = await ctx.park(key, None, ready=settled)
        step = fresh_step if fresh_step is not None else step


async def _ensure_child(
    ctx: RunContext, definition: WorkflowDefinition, child_id: str, encoded: Any
) -> WorkflowRun[Any, Any]:
    """The child run, created (and its first pass queued) when it does not exist yet."""
    state, queue = ctx.services.state, ctx.services.queue
    try:
        run = await state.get_run(child_id)
    except RunNotFoundError:
        try:
            run = await state.create_run(
                definition.name, encoded, run_id=child_id, parent_run_id=ctx.run_id,
                version=workflow_version(definition.name),
            )
        except RunAlreadyExistsError:  # pragma: no cover - created meanwhile (passes are locked)
            run = await state.get_run(child_id)
        await enqueue_orchestrator(queue, definition.name, child_id)
        return run
    if run.status is RunStatus.RUNNING and run.owner is None:
        # created, but its first pass may not have been queued (a crash in between)
        await enqueue_orchestrator(queue, definition.name, child_id)
    return run


def _result(run: WorkflowRun[Any, Any]) -> dict[str, Any]:
    if run.status is RunStatus.COMPLETED:
        return {"run_id": run.id, "status": "completed", "output": run.output}
    error = run.error
    if run.status is RunStatus.CANCELLED:
        info = {"type": "WorkflowCancelled", "message": "the child run was cancelled"}
    else:
        info = {
            "type": error.type if error else "WorkflowFailed",
            "message": error.message if error else "the child run failed",
        }
    return {"run_id": run.id, "status": run.status.value, "error": info}


def _outcome(
    ctx: RunContext, key: str, definition: WorkflowDefinition, result: Any, *, wait: bool
) -> Any:
    """What ``run_child`` / ``start_child`` returns for the recorded ``result``."""
    result = result if isinstance(result, dict) else {}
    child_id = str(result.get("run_id"))
    if not wait:
        return child_id
    if result.get("status") == "completed":
        return codec.decode(
            result.get("output"), definition.output_type,
            what=f"workflow {ctx.name!r} run {ctx.run_id!r} step {key!r}: child output",
        )
    error = result.get("error") if isinstance(result.get("error"), dict) else {}
    assert isinstance(error, dict)
    raise ChildWorkflowFailedError(
        f"child run {child_id!r} of workflow {definition.name!r} (step {key!r}) "
        f"{result.get('status', 'failed')}: {error.get('type')}: {error.get('message')}",
        child_run_id=child_id,
        workflow=definition.name,
        error_type=str(error.get("type") or "WorkflowFailed"),
        step=key,
    )
