"""``workflow.now()``, ``workflow.uuid4()``, ``workflow.random()``: a value recorded once
(SPEC section 8).

The first pass that reaches the call makes the value and records it as a ``value`` step
(``step_name`` and ``rpc_name`` = the helper's name, keys ``now``, ``now#1``... in call
order, already ``succeeded`` with the value as its result: one write); every replay returns
the recorded value, rebuilt with its type.
"""

from __future__ import annotations

import random as _random
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from pikku_typing.models import StepKind, StepState, StepStatus
from pikku_typing.runtime import codec, steps

if TYPE_CHECKING:
    from pikku_typing.runtime.context import RunContext

T = TypeVar("T")


async def recorded_value(ctx: RunContext, helper: str, make: Callable[[], T], type_: type[T]) -> T:
    key = ctx.next_key(helper, helper)
    step = ctx.recorded(key, StepKind.VALUE, helper)
    what = f"workflow {ctx.name!r} run {ctx.run_id!r} step {key!r} ({helper}())"
    if step is None:
        encoded, value = codec.encode(make(), type_, what=what)
        t = steps.now()
        step = await ctx.insert_at_boundary(
            StepState(
                key=key,
                step_name=helper,
                kind=StepKind.VALUE,
                rpc_name=helper,
                status=StepStatus.SUCCEEDED,
                result=encoded,
                created_at=t,
                updated_at=t,
                started_at=t,
                finished_at=t,
            ),
        )
        if step.result == encoded:
            return value  # type: ignore[no-any-return]
    return codec.decode(step.result, type_, what=what)  # type: ignore[no-any-return]


async def now(ctx: RunContext) -> datetime:
    return await recorded_value(ctx, "now", steps.now, datetime)


async def uuid4(ctx: RunContext) -> uuid.UUID:
    return await recorded_value(ctx, "uuid4", uuid.uuid4, uuid.UUID)


async def random(ctx: RunContext) -> float:
    return await recorded_value(ctx, "random", _random.random, float)
