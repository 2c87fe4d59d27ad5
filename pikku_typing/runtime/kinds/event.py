"""``workflow.wait_for_event(step_name, event_name, timeout=None)``: a durable wait for an
event sent with ``send_event`` (SPEC section 8).

The step (kind ``event``, ``rpc_name`` = the event name, ``next_attempt_at`` = the deadline
of the timeout, if any) is recorded ``scheduled`` when the replay first reaches it. Then,
on every pass until it settles:

1. ``consume_event(run, name, step_key)`` takes the first unconsumed event of that name
   (in send order), atomically, for this step. It is idempotent by step key: a process
   killed after consuming but before recording the step gets the same event again on
   replay, so an event is never lost nor consumed twice;
2. the payload is recorded as the step's result (``{"seq", "payload"}``) and returned,
   rebuilt with the event's declared payload type;
3. without an event: past the deadline the step records ``{"timed_out": true}`` and returns
   ``None``; else it parks (the run is suspended, woken by ``send_event`` through the queue,
   or at the deadline like a sleep).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pikku_typing import durations
from pikku_typing.models import StepKind, StepState, StepStatus
from pikku_typing.runtime import codec, steps

if TYPE_CHECKING:
    from pikku_typing.runtime.context import RunContext


async def wait_for_event(
    ctx: RunContext, step_name: str, event_name: str, timeout: durations.Duration | None
) -> Any:
    definition = ctx.services.registry.get_event(event_name)
    seconds = None if timeout is None else durations.parse_duration(timeout)
    key = ctx.next_key("wait_for_event", step_name)
    step = ctx.recorded(key, StepKind.EVENT, event_name)
    state = ctx.services.state
    what = f"workflow {ctx.name!r} run {ctx.run_id!r} step {key!r}: event {event_name!r} payload"
    while True:
        if step is None:
            t = steps.now()
            step = await ctx.insert_at_boundary(
                StepState(
                    key=key,
                    step_name=step_name,
                    kind=StepKind.EVENT,
                    rpc_name=event_name,
                    status=StepStatus.SCHEDULED,
                    data={"event": event_name, "timeout": seconds},
                    next_attempt_at=None if seconds is None else t + timedelta(seconds=seconds),
                    created_at=t,
                    updated_at=t,
                    started_at=t,
                ),
            )
        if step.status is StepStatus.SUCCEEDED:
            result = step.result if isinstance(step.result, dict) else {}
            if result.get("timed_out"):
                return None
            return codec.decode(result.get("payload"), definition.payload_type, what=what)
        event = await state.consume_event(ctx.run_id, event_name, key)
        if event is not None:
            payload = codec.decode(event.payload, definition.payload_type, what=what)
            result = {"seq": event.seq, "payload": event.payload}
            if await state.complete_step(ctx.run_id, key, result=result, token=None):
                return payload
            step = await _reread(ctx, key)
            continue
        deadline = step.next_attempt_at
        if deadline is not None and deadline <= steps.now():
            if await state.complete_step(ctx.run_id, key, result={"timed_out": True}, token=None):
                return None
            step = await _reread(ctx, key)
            continue

        async def arrived() -> bool:
            return any(
                e.name == event_name and e.consumed_by is None
                for e in await state.list_events(ctx.run_id)
            )

        fresh = await ctx.park(key, deadline, ready=arrived)
        step = fresh if fresh is not None else step


async def _reread(ctx: RunContext, key: str) -> StepState:
    fresh = await ctx.services.state.get_step(ctx.run_id, key)
    assert fresh is not None
    return fresh
