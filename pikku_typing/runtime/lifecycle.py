"""Run lifecycle across runs (SPEC section 8): events, child runs, cancellation.

* :func:`send_event`: validate an event's payload against its ``wire_event`` type, store it
  (the store refuses settled and unknown runs) and wake the run through the queue.
* :func:`child_run_id`: the run id of the child a step starts, derived from the parent's run
  id and the step key (stable across replays and crashes).
* :func:`after_settled`: what follows a run's settlement: its waiting parent is woken, and a
  cancelled run's unsettled children are cancelled.
* :func:`cancel_run`: request cancellation of a run and of its unsettled children.

Wake-ups are sent twice on purpose: a job on the queue (the fast path, on every queue) and
the run's ``wake_at`` set to now when it is suspended (so a poller of due runs, or
``recover()``, finds it even when the job went to another process's in-process queue).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

from pikku_typing.errors import EventPayloadError, RunNotFoundError, StepSerializationError
from pikku_typing.models import RunStatus, StepKind, StepState, WorkflowRun
from pikku_typing.runtime import _observe, codec, steps
from pikku_typing.runtime.services import Services, enqueue_orchestrator
from pikku_typing.state.base import RunChanges

__all__ = [
    "after_settled",
    "cancel_run",
    "child_run_id",
    "child_run_ids",
    "send_event",
    "wake",
]

_CHILD_NAMESPACE: Final = uuid.UUID("6b1f3c52-7f0e-5a3e-9d35-70696b6b7531")


def child_run_id(parent_run_id: str, step_key: str) -> str:
    """The id of the child run started by step ``step_key`` of run ``parent_run_id``: a
    uuid5 of both (32 hex digits, a valid run id), the same on every replay."""
    return uuid.uuid5(_CHILD_NAMESPACE, f"{parent_run_id}\x00{step_key}").hex


def child_run_ids(steps_of_run: Mapping[str, StepState]) -> list[tuple[str, str, str]]:
    """``(step key, child workflow, child run id)`` of every child step of a run, in order."""
    out: list[tuple[str, str, str]] = []
    for step in steps_of_run.values():
        if step.kind is StepKind.CHILD and isinstance(step.data, dict):
            child_id = step.data.get("run_id")
            if isinstance(child_id, str):
                out.append((step.key, str(step.data.get("workflow") or step.rpc_name), child_id))
    return out


async def wake(services: Services, run: WorkflowRun[Any, Any]) -> None:
    """Wake a run that may be suspended waiting for something that just happened."""
    if run.status.is_settled:
        return
    if run.status is RunStatus.SUSPENDED:
        await services.state.transition_run(
            run.id, (RunStatus.SUSPENDED,), RunChanges(wake_at=steps.now())
        )
    await enqueue_orchestrator(services.queue, run.workflow, run.id)


async def send_event(services: Services, run_id: str, name: str, payload: Any) -> bool:
    """Send event ``name`` to run ``run_id``; False when the run is settled or unknown.
    Raises :class:`EventNotFoundError` (no ``wire_event`` for ``name``) and
    :class:`EventPayloadError` (the payload does not match the declared type)."""
    definition = services.registry.get_event(name)
    try:
        _, encoded = codec.coerce(payload, definition.payload_type, what=f"event {name!r} payload")
    except StepSerializationError as exc:
        raise EventPayloadError(f"invalid payload for event {name!r}: {exc}") from exc
    event = await services.state.send_event(run_id, name, encoded)
    if event is None:
        return False
    try:
        run = await services.state.get_run(run_id)
    except RunNotFoundError:  # pragma: no cover - runs are never deleted
        return True
    # The store made a suspended run due (wake_at); the job wakes it now.
    await enqueue_orchestrator(services.queue, run.workflow, run.id)
    return True


async def after_settled(services: Services, run: WorkflowRun[Any, Any]) -> None:
    """Follow-ups of a run that just settled: wake its parent (a ``run_child`` waits for
    it); when it was cancelled, cancel its unsettled children."""
    if run.parent_run_id is not None:
        try:
            parent = await services.state.get_run(run.parent_run_id)
        except RunNotFoundError:
            parent = None
        if parent is not None:
            await wake(services, parent)
    if run.status is RunStatus.CANCELLED:
        await cancel_children(services, run.id)


async def cancel_children(services: Services, run_id: str) -> int:
    """Cancel every unsettled child of the run; return how many were asked to stop."""
    count = 0
    for _, _, child_id in child_run_ids(await services.state.get_step_states(run_id)):
        try:
            if await cancel_run(services, child_id):
                count += 1
        except RunNotFoundError:  # the step was recorded, the child not created (a crash)
            continue
    return count


async def cancel_run(services: Services, run_id: str) -> bool:
    """Request cancellation; a suspended run is cancelled at once, a running one at its next
    step boundary. Unsettled children are cancelled too. ``False`` when already settled."""
    state = services.state
    while True:
        run = await state.get_run(run_id)
        if run.status.is_settled:
            return False
        if run.status is RunStatus.SUSPENDED:
            done = await state.transition_run(
                run_id,
                (RunStatus.SUSPENDED,),
                RunChanges(status=RunStatus.CANCELLED, cancel_requested=True, wake_at=None),
            )
            if done is not None:
                _observe.run_settled(run.workflow, run_id, RunStatus.CANCELLED)
                services.on_settled(run_id)
                await enqueue_orchestrator(services.queue, run.workflow, run_id)
                await after_settled(services, done)
                return True
            continue
        marked = await state.transition_run(
            run_id, (RunStatus.RUNNING,), RunChanges(cancel_requested=True)
        )
        if marked is not None:
            await enqueue_orchestrator(services.queue, run.workflow, run_id)
            await cancel_children(services, run_id)
            return True
