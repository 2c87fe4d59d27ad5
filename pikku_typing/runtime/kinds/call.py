"""``workflow.do(step_name, rpc_name, data)`` and ``workflow.do(step_name, fn)``: a step
that calls code, with retries.

A recorded step returns its stored result rebuilt with its type (an RPC step reached with
other data than recorded is a non-determinism error). A new step runs *locally* (an inline
step, or any step of an ``inline`` workflow) or *remotely* (an RPC step of a ``remote``
workflow: recorded ``scheduled``, its step job queued, the pass parks until the job stored
the result, see :mod:`~pikku_typing.runtime.step_jobs`), unless it is *eager*: its queue is
served by this very process, so its first attempt is claimed and run in the pass like a local
one, see :func:`_run_remote`).

A local attempt is claimed before it runs: attempt 1 by the insert of the step itself
(``running``, held by the pass's owner), later ones (retries, abandoned attempts) by
``claim_step``; :func:`~pikku_typing.runtime.attempt.run_attempt` runs it and records the
outcome. A retry delay up to ``max_inline_wait`` is waited for in the pass; a longer one
parks the step (the run is suspended until then).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pikku_typing import durations
from pikku_typing.models import ErrorInfo, StepAttempt, StepKind, StepState, StepStatus
from pikku_typing.runtime import attempt, codec, process, steps
from pikku_typing.runtime.queues.base import step_queue
from pikku_typing.runtime.services import enqueue_step
from pikku_typing.runtime.signals import StepFailedError

if TYPE_CHECKING:
    from pikku_typing.runtime.context import RunContext


@dataclass
class Spec:
    """A ``do`` call as the replay reaches it."""

    key: str
    name: str
    kind: StepKind
    rpc_name: str | None = None
    data: Any = None
    data_json: Any = None
    digest: str | None = None
    fn: Callable[[], Any] | None = None
    result_type: Any = None
    max_attempts: int = steps.DEFAULT_RETRIES + 1
    retry_delay: float | None = None

    def new_state(self, t: datetime, **fields: Any) -> StepState:
        return StepState(
            key=self.key,
            step_name=self.name,
            kind=self.kind,
            rpc_name=self.rpc_name,
            data=self.data_json,
            data_digest=self.digest,
            max_attempts=self.max_attempts,
            retry_delay=self.retry_delay,
            created_at=t,
            updated_at=t,
            **fields,
        )


class _Nothing:
    pass


_NOTHING: Any = _Nothing()


async def do(
    ctx: RunContext,
    step_name: str,
    target: str | Callable[[], Any],
    data: Any,
    retries: int | None,
    retry_delay: durations.Duration | None,
    result_type: Any,
) -> Any:
    spec = _spec(ctx, step_name, target, data, retries, retry_delay, result_type)
    step = ctx.recorded(spec.key, spec.kind, spec.rpc_name)
    if step is not None:
        _check_digest(ctx, step, spec)
    local = spec.kind is StepKind.INLINE or ctx.definition.execution_mode == "inline"
    return await (_run_local(ctx, spec, step) if local else _run_remote(ctx, spec, step))


def _spec(
    ctx: RunContext,
    step_name: str,
    target: str | Callable[[], Any],
    data: Any,
    retries: int | None,
    retry_delay: durations.Duration | None,
    result_type: Any,
) -> Spec:
    key = ctx.next_key("do", step_name)
    spec = Spec(
        key=key,
        name=step_name,
        kind=StepKind.RPC if isinstance(target, str) else StepKind.INLINE,
        max_attempts=steps.max_attempts(retries),
        retry_delay=steps.fixed_delay(retry_delay),
    )
    what = f"workflow {ctx.name!r} run {ctx.run_id!r} step {key!r}"
    if isinstance(target, str):
        rpc = ctx.services.registry.get_rpc(target)
        spec.rpc_name = target
        spec.data, spec.data_json = codec.coerce(data, rpc.input_type, what=f"{what} data")
        spec.digest = codec.digest(spec.data_json)
        spec.result_type = result_type if result_type is not None else rpc.output_type
    elif callable(target):
        if data is not None:
            raise TypeError(
                f"workflow.do({step_name!r}, fn): the inline form takes no data argument "
                "(close over it in the callable)"
            )
        spec.fn = target
        spec.result_type = (
            result_type if result_type is not None else codec.callable_return_type(target)
        )
    else:
        raise TypeError(
            f"workflow.do({step_name!r}, ...): the second argument must be an RPC name "
            f"or a zero-argument callable, got {target!r}"
        )
    return spec


def _check_digest(ctx: RunContext, step: StepState, spec: Spec) -> None:
    if step.kind is StepKind.RPC and step.data_digest is not None and step.data_digest != spec.digest:
        raise ctx.nondeterminism(
            f"step {step.key!r} (rpc {spec.rpc_name!r}) was recorded with other data (digest "
            f"{step.data_digest}) than the replay passes now (digest {spec.digest}); a "
            "cached result is never attached to other input"
        )


def _settled(ctx: RunContext, spec: Spec, step: StepState) -> Any:
    """The result of a settled step (``_NOTHING`` when it is not settled)."""
    if step.status is StepStatus.SUCCEEDED:
        return codec.decode(
            step.result,
            spec.result_type,
            what=f"workflow {ctx.name!r} run {ctx.run_id!r} step {spec.key!r} result",
        )
    if step.status is StepStatus.FAILED:
        info = step.error or ErrorInfo(type="StepFailed", message="the step failed", step=step.key)
        raise StepFailedError(info, step.key, step.attempt_count)
    return _NOTHING


async def _wait_for_holder(ctx: RunContext, spec: Spec, step: StepState) -> tuple[StepState, bool]:
    """A running attempt: abandon it when its holder is gone (return the step and
    ``True``), else park until the next pass or its lease end (return the fresh step)."""
    if steps.holder_abandoned(step, steps.now()):
        return await steps.abandon(ctx.services.state, ctx.run_id, step), True
    return await ctx.park_for(spec.key, steps.holder_recheck_at(step, steps.now())), False


async def _run_remote(ctx: RunContext, spec: Spec, step: StepState | None) -> Any:
    """A remote RPC step. A new step is *eager* when this process serves the step's queue
    (with the default handler) and has a free slot (``Services.eager``): attempt 1 is
    claimed by the insert (at the step boundary) and run here like a local first attempt,
    and the pass goes on with its result. Otherwise, and for every later attempt, it is
    recorded ``scheduled``, its step job is queued and the pass parks."""
    queue, eager = ctx.services.queue, ctx.services.eager
    queued: tuple[int, datetime | None] | None = None  # the attempt whose job this pass queued
    while True:
        if step is None:
            assert spec.rpc_name is not None
            if eager.take(step_queue(ctx.name, spec.rpc_name)):
                try:
                    step, value = await _attempt(ctx, spec, None)
                finally:
                    eager.release()
                if value is not _NOTHING:
                    return value
                continue  # failed (a retry goes through the queue), or recorded elsewhere
            # scheduled: the loop below queues its step job and parks
            step = await ctx.insert_at_boundary(spec.new_state(steps.now(), status=StepStatus.SCHEDULED))
            continue
        value = _settled(ctx, spec, step)
        if value is not _NOTHING:
            return value
        if step.status is StepStatus.RUNNING:
            step, abandoned = await _wait_for_holder(ctx, spec, step)
            if abandoned and step.status is StepStatus.SCHEDULED:
                await enqueue_step(queue, ctx.name, ctx.run_id, step)
            continue
        # pending or scheduled: its job is queued once per attempt (a live continuation
        # resumed while the job still waits does not queue it again)
        attempt_due = (step.attempt_count, step.next_attempt_at)
        if attempt_due != queued:
            await enqueue_step(queue, ctx.name, ctx.run_id, step)
            queued = attempt_due
        step = await ctx.park_for(spec.key, None)


async def _run_local(ctx: RunContext, spec: Spec, step: StepState | None) -> Any:
    state = ctx.services.state
    while True:
        if step is None:  # the boundary is checked by the insert (_insert_claimed)
            step, value = await _attempt(ctx, spec, None)
            if value is not _NOTHING:
                return value
            continue
        value = _settled(ctx, spec, step)
        if value is not _NOTHING:
            return value
        if step.status is StepStatus.RUNNING:
            step, _ = await _wait_for_holder(ctx, spec, step)
            continue
        # pending or scheduled: wait for a retry delay, then claim the next attempt
        due = step.next_attempt_at
        t = steps.now()
        if due is not None and due > t:
            wait = (due - t).total_seconds()
            if wait <= ctx.services.max_inline_wait:
                await asyncio.sleep(wait)
                step = await state.get_step(ctx.run_id, spec.key)
            else:
                step = await ctx.park_for(spec.key, due)
            continue
        await ctx.boundary()
        step, value = await _attempt(ctx, spec, step)
        if value is not _NOTHING:
            return value


async def _attempt(
    ctx: RunContext, spec: Spec, step: StepState | None
) -> tuple[StepState | None, Any]:
    """Claim and run one local attempt: attempt 1 when ``step`` is ``None`` (claimed by the
    insert of the step, held by the pass's owner), else the step's next attempt (claimed
    with ``claim_step`` by a new owner). Return ``(None, value)`` when this attempt stored
    the value, else ``(step as it is after the attempt, _NOTHING)``."""
    state = ctx.services.state
    held: contextlib.AbstractContextManager[None]
    if step is None:
        owner = ctx.owner  # held by the pass (Orchestrator.run_pass)
        claimed: StepState | None = await _insert_claimed(ctx, spec)
        held = contextlib.nullcontext()
    else:
        owner = process.new_owner()
        held = process.holding(owner.token)
    with held:
        if step is not None:
            claimed = await state.claim_step(
                ctx.run_id, spec.key, owner=owner, lease_seconds=ctx.services.lease_seconds
            )
        if (
            claimed is None
            or claimed.status is not StepStatus.RUNNING
            or claimed.current_attempt is None
            or (claimed.current_attempt.owner is not owner and claimed.current_attempt.owner != owner)
        ):
            # somebody else recorded or claimed it: the caller's loop handles its state
            return claimed or await _reread(ctx, spec), _NOTHING

        def work() -> attempt.Work:
            if spec.rpc_name is not None:
                return attempt.rpc_work(
                    ctx.services.registry, ctx.definition.middleware, spec.rpc_name, spec.data,
                    result_type=spec.result_type,
                )
            assert spec.fn is not None
            return attempt.Work(spec.fn, spec.result_type, ctx.definition.middleware)

        # the pass's own first attempt: its result may be written behind, with the pass's
        # next statement (the store's complete_step_later)
        outcome = await attempt.run_attempt(
            ctx.services, ctx.name, ctx.run_id, claimed, owner, work, write_behind=step is None
        )
    if outcome.status == "succeeded":
        await ctx.share_loop()
        return None, outcome.value
    if outcome.status == "failed" and outcome.step is not None:
        return outcome.step, _NOTHING
    return await _reread(ctx, spec), _NOTHING  # our claim was abandoned meanwhile


async def _insert_claimed(ctx: RunContext, spec: Spec) -> StepState:
    started = steps.now()
    claim = StepAttempt(
        number=1, status=StepStatus.RUNNING, owner=ctx.owner, started_at=started,
        lease_expires_at=started + timedelta(seconds=ctx.services.lease_seconds),
    )
    return await ctx.insert_at_boundary(
        spec.new_state(
            started, status=StepStatus.RUNNING, attempt_count=1, attempts=[claim],
            started_at=started,
        )
    )


async def _reread(ctx: RunContext, spec: Spec) -> StepState:
    fresh = await ctx.services.state.get_step(ctx.run_id, spec.key)
    assert fresh is not None
    return fresh
