"""``workflow.sleep(step_name, duration)``: a durable sleep (a ``sleep`` step whose
``next_attempt_at`` is the wake-up time; the run is suspended until then)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from pikku_typing import durations
from pikku_typing.models import StepKind, StepState, StepStatus
from pikku_typing.runtime import steps

if TYPE_CHECKING:
    from pikku_typing.runtime.context import RunContext


async def sleep(ctx: RunContext, step_name: str, duration: durations.Duration) -> None:
    seconds = durations.parse_duration(duration)
    key = ctx.next_key("sleep", step_name)
    step = ctx.recorded(key, StepKind.SLEEP)
    state = ctx.services.state
    while True:
        if step is None:
            t = steps.now()
            step = await ctx.insert_at_boundary(
                StepState(
                    key=key,
                    step_name=step_name,
                    kind=StepKind.SLEEP,
                    status=StepStatus.SCHEDULED,
                    next_attempt_at=t + timedelta(seconds=seconds),
                    created_at=t,
                    updated_at=t,
                ),
            )
        if step.status is StepStatus.SUCCEEDED:
            return
        wake = step.next_attempt_at
        if wake is None or wake <= steps.now():
            await state.complete_step(ctx.run_id, key, result=None, token=None)
            return
        fresh = await ctx.park(key, wake)
        step = fresh if fresh is not None else step
