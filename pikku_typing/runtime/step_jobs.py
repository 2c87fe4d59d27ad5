"""Step jobs: the remote attempts of RPC steps (remote execution mode).

A pass that reaches a new RPC step of a ``remote`` workflow records it ``scheduled``, queues
a step job on the step's queue and parks. :func:`run_step` (what the step worker runs):

1. claims the step's due attempt at once where the store can do it in one statement while
   the run goes on (``claim_due_step``, PostgreSQL: then straight to 4), else reads the step
   and its run; a settled step, a settled run or a duplicate delivery does nothing; a
   cancel request wakes the orchestrator instead (a step boundary);
2. a running attempt held by a live holder is left to it (re-checked when its lease runs
   out); one held by a dead holder is abandoned;
3. a retry delay up to ``max_inline_wait`` is waited for here, a longer one is queued;
4. the attempt is claimed atomically and run by :func:`~pikku_typing.runtime.attempt.run_attempt`;
   the result (or the final error) is stored, THEN the orchestrator is woken: a pass is
   queued, or, when this process holds the run's live continuation and serves its
   orchestrator queue, the pass goes on right here ("continue in the step worker": no
   orchestrator job to queue and pick up again; the pass takes ``lock_run`` as always).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from pikku_typing.models import StepState, StepStatus
from pikku_typing.runtime import attempt, process, steps
from pikku_typing.runtime.queues.base import Job, step_queue
from pikku_typing.runtime.services import Services, enqueue_orchestrator, enqueue_step

__all__ = ["run_step"]


Wake = Callable[[str, str, StepState], Awaitable[None]]
"""What a step job does once it stored its step's outcome: ``wake(workflow, run_id, step)``
with the step as stored (the default queues an orchestrator pass)."""


async def _enqueue_pass(services: Services, workflow: str, run_id: str) -> None:
    await enqueue_orchestrator(services.queue, workflow, run_id)


async def run_step(
    services: Services, workflow: str, run_id: str, key: str, *, wake: Wake | None = None
) -> None:
    """Run a remote step's due attempt (a step job). Duplicate or stale deliveries do
    nothing: the attempt is claimed atomically. Once the outcome is stored, ``wake`` goes on
    with the run (the orchestrator continues the pass right here when it can, see
    :meth:`~pikku_typing.runtime.orchestrator.Orchestrator.run_step`); by default, and on
    every other path, an orchestrator pass is queued."""
    state = services.state
    # the common case in one statement where the store can (PostgreSQL): a due attempt of a
    # run that goes on is claimed at once, without reading the step and the run first
    if not await _attempt(services, workflow, run_id, key, wake, first=True):
        return
    while True:
        found = await state.get_step_and_run(run_id, key)  # one read on PostgreSQL
        if found is None:
            return
        step, run = found
        if run.status.is_settled:
            return
        if step.status in (StepStatus.SUCCEEDED, StepStatus.FAILED):
            # A redelivery of a job whose outcome was stored: the wake-up that followed may
            # have been lost (the queue or store failed right after). Waking is idempotent.
            await enqueue_orchestrator(services.queue, workflow, run_id)
            return
        if run.cancel_requested:  # a step boundary: let the orchestrator end the run
            await enqueue_orchestrator(services.queue, workflow, run_id)
            return
        t = steps.now()
        if step.status is StepStatus.RUNNING:
            if not steps.holder_abandoned(step, t):
                await _recheck_at_lease_end(services, workflow, run_id, step)
                return
            step = await steps.abandon(state, run_id, step)
            if step.status is not StepStatus.SCHEDULED:
                await enqueue_orchestrator(services.queue, workflow, run_id)
                return
        if step.next_attempt_at is not None and step.next_attempt_at > t:
            wait = (step.next_attempt_at - t).total_seconds()
            if wait <= services.max_inline_wait:
                await asyncio.sleep(wait)
                continue
            await enqueue_step(services.queue, workflow, run_id, step)
            return
        if not await _attempt(services, workflow, run_id, step.key, wake):
            return


async def _recheck_at_lease_end(
    services: Services, workflow: str, run_id: str, step: StepState
) -> None:
    """Re-check a running attempt when its lease runs out (the holder may be on another
    host), or within a second or two when a live process of this host holds it."""
    current = step.current_attempt
    at = steps.holder_recheck_at(step, steps.now())
    if current is None or at is None:
        return
    await services.queue.enqueue(
        Job(
            queue=step_queue(workflow, step.rpc_name or "?"),
            kind="step", workflow=workflow, run_id=run_id, step_key=step.key,
            attempt=step.attempt_count + 1,
            run_at=at + timedelta(milliseconds=10),
            dedupe_key=f"{run_id}:{step.key}:lease:{step.attempt_count}:{at.isoformat()}",
        )
    )


async def _attempt(
    services: Services,
    workflow: str,
    run_id: str,
    key: str,
    wake: Wake | None,
    *,
    first: bool = False,
) -> bool:
    """Claim and run one attempt; return True to try the next attempt in this job (the
    caller reads the step and decides). ``first``: the job's first move, a claim only while
    the run goes on (``claim_due_step``): not claimed that way (a store that cannot, or a
    step or run that needs a look) returns True as well."""
    owner = process.new_owner()
    with process.holding(owner.token):
        if first:
            claimed = await services.state.claim_due_step(
                run_id, key, owner=owner, lease_seconds=services.lease_seconds
            )
            if claimed is None:
                return True
        else:
            claimed = await services.state.claim_step(
                run_id, key, owner=owner, lease_seconds=services.lease_seconds
            )
            if claimed is None:
                return False  # another worker won, or a duplicate delivery
        rpc_name = claimed.rpc_name
        assert rpc_name is not None

        def work() -> attempt.Work:
            definition = services.registry.get_workflow(workflow)
            return attempt.rpc_work(
                services.registry, definition.middleware, rpc_name, claimed.data,
                data_is_json=True, what=f"workflow {workflow!r} run {run_id!r} step {claimed.key!r}",
            )

        outcome = await attempt.run_attempt(services, workflow, run_id, claimed, owner, work)
    if outcome.status == "lost":
        return False  # our claim was abandoned meanwhile
    if outcome.status == "failed" and outcome.retry_at is not None:
        return True  # the loop waits for the retry or queues it
    if wake is None:
        await _enqueue_pass(services, workflow, run_id)
        return False
    if outcome.status == "succeeded":
        t = steps.now()
        stored = claimed.model_copy(
            update={
                "status": StepStatus.SUCCEEDED, "result": outcome.result, "finished_at": t,
                "updated_at": t,
            }
        )
    else:
        assert outcome.step is not None
        stored = outcome.step
    await wake(workflow, run_id, stored)
    return False
