"""``await workflow.patched("change-id")`` (SPEC section 9): which side of a code change a run
takes, recorded once as a durable marker so that every later replay takes the same side.

The first time a run reaches ``patched(id)``:

* when the run's history goes on past this point (steps recorded by earlier passes that this
  pass has not reached yet), the run was recorded by the code *before* the patch: the answer
  is ``False`` and the run keeps the old branch;
* otherwise the run is at the head of its history, running the new code: ``True``.

The answer is stored as a marker step (key ``patched:<id>``, kind ``value``, result the
boolean) and read back on every later pass, so a run never changes sides. Calling it again
with the same id in a pass returns the same answer. Runs that start after the patch was
deployed always get ``True``; once no run recorded before the patch is in flight, the
``patched`` branch can be made unconditional (keep the call until then).

``workflow.patched(...)`` must be awaited; using the call itself as a condition raises
``TypeError`` (it would always be true).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Final

from pikku_typing.models import StepKind, StepState, StepStatus
from pikku_typing.runtime import steps

if TYPE_CHECKING:
    from pikku_typing.runtime.context import RunContext

MARKER_PREFIX: Final = "patched:"
"""Step key of a marker: ``patched:<change-id>``."""


def marker_key(change_id: str) -> str:
    if not isinstance(change_id, str) or not change_id:
        raise ValueError(f"workflow.patched: the change id must be a non-empty string, got {change_id!r}")
    return MARKER_PREFIX + change_id


def is_marker(key: str) -> bool:
    return key.startswith(MARKER_PREFIX)


class PatchedCall:
    """What ``workflow.patched(id)`` returns: awaitable (``bool``), never a condition itself."""

    __slots__ = ("_change_id", "_make")

    def __init__(self, change_id: str, make: Callable[[], Awaitable[bool]]) -> None:
        self._change_id = change_id
        self._make = make

    def __await__(self) -> Generator[Any, None, bool]:
        return self._make().__await__()

    def __bool__(self) -> bool:
        raise TypeError(
            f"workflow.patched({self._change_id!r}) must be awaited: "
            f"`if await workflow.patched({self._change_id!r}):`"
        )


async def patched(ctx: RunContext, change_id: str) -> bool:
    key = marker_key(change_id)
    known = ctx.patches.get(change_id)
    if known is not None:
        return known
    step = ctx.recorded(key, StepKind.VALUE)
    if step is None:
        value = not ctx.replaying()
        t = steps.now()
        step = await ctx.services.state.insert_step(
            ctx.run_id,
            StepState(
                key=key,
                step_name=key,
                kind=StepKind.VALUE,
                status=StepStatus.SUCCEEDED,
                result=value,
                created_at=t,
                updated_at=t,
                started_at=t,
                finished_at=t,
            ),
        )  # an existing marker (a racing pass) is returned unchanged: its answer wins
    answer = step.result is True
    ctx.patches[change_id] = answer
    return answer
