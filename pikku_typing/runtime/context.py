"""The run context: the :class:`~pikku_typing.interaction.Workflow` a workflow function gets.

:class:`RunContext` holds what every step kind shares during a pass:

* step keys in call order (``name``, ``name#1``...) and the step states recorded by earlier
  passes (read once per pass), checked against what the replay reaches
  (:meth:`RunContext.recorded`: same kind and target, else
  :class:`~pikku_typing.errors.WorkflowNonDeterminismError`);
* step boundaries (:meth:`RunContext.boundary`: a cancel request stops the run there;
  :meth:`RunContext.insert_at_boundary`: the same check folded into a new step's insert);
* parking (:meth:`RunContext.park`): a step that waits for something outside the pass (a
  remote attempt, a sleep, a retry delay, an event, a child run) parks; when the function is
  blocked only on parked steps, the pass ends (:meth:`RunContext.settle`) and the run is
  suspended. A parked step is resumed by the next pass in this process
  (:meth:`RunContext.resume`) or unwound (:meth:`RunContext.unwind`) for a replay.

Each step kind is one module of :mod:`pikku_typing.runtime.kinds` (``call``: ``do``;
``sleep``; ``event``: ``wait_for_event``; ``child``: ``run_child``/``start_child``; ``value``:
``now``/``uuid4``/``random``); the methods below only guard the call (:meth:`RunContext.guarded`) and
delegate. A new step kind is a new module there plus one method here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, ParamSpec, TypeVar

from pikku_typing import durations
from pikku_typing.errors import (
    NestedStepError,
    StoreUnavailableError,
    WorkflowNonDeterminismError,
)
from pikku_typing.interaction import Workflow
from pikku_typing.models import ClaimOwner, ErrorInfo, StepKind, StepState, WorkflowRun
from pikku_typing.runtime import attempt, steps
from pikku_typing.runtime.kinds import call, child, event, patch, sleep, value
from pikku_typing.runtime.services import Services, typed_run
from pikku_typing.runtime.signals import Cancelled, StepFailedError, Suspend, Unavailable
from pikku_typing.wiring import WorkflowDefinition

__all__ = ["Outcome", "RunContext", "StepFailedError"]

SHARE_LOOP_EVERY: Final = 0.005
"""Seconds a pass runs local steps without giving the event loop a turn (see
:meth:`RunContext.share_loop`)."""

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Outcome:
    """How a pass of the workflow function ended."""

    kind: Literal["completed", "failed", "cancelled", "suspended", "unwound"]
    output: Any = None
    error: ErrorInfo | None = None


@dataclass
class _Parked:
    future: asyncio.Future[StepState | None]
    wake_at: datetime | None
    ready: Callable[[], Awaitable[bool]] | None = None


class RunContext(Workflow):
    """The concrete :class:`Workflow` handed to a workflow function during its passes."""

    def __init__(
        self,
        services: Services,
        definition: WorkflowDefinition,
        run: WorkflowRun[Any, Any],
        recorded: dict[str, StepState],
        owner: ClaimOwner,
    ) -> None:
        self.services = services
        self.definition = definition
        self.owner = owner
        """The claim of the pass (it holds the first attempt of a local step)."""
        self._run_id = run.id
        self._recorded = recorded
        self._keys = steps.StepKeys()
        self.parked: dict[str, _Parked] = {}
        self.active = 0
        self.version = 0
        self.changed = asyncio.Event()
        self.fatal: BaseException | None = None
        self.infra: StoreUnavailableError | None = None
        """Set when a store call of this pass failed: the pass is abandoned (the job is
        delivered again), the run is never failed for it, even if the function caught it."""
        self.in_pass = True
        self._shared_at = time.monotonic()
        self.patches: dict[str, bool] = {}
        """``workflow.patched`` answers of this pass, by change id (kinds/patch.py)."""

    # ------------------------------------------------------------ Workflow API
    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def run_id(self) -> str:
        return self._run_id

    async def get_run(self) -> WorkflowRun[Any, Any]:
        try:
            run = await self.services.state.get_run(self._run_id)
        except StoreUnavailableError as exc:
            self.infra = exc
            raise Unavailable(exc) from exc
        return typed_run(run, self.definition)

    async def do(
        self,
        step_name: str,
        target: str | Callable[[], Any],
        data: Any = None,
        /,
        *,
        description: str | None = None,
        retries: int | None = None,
        retry_delay: durations.Duration | None = None,
        result_type: Any = None,
    ) -> Any:
        return await self.guarded(
            call.do, self, step_name, target, data, retries, retry_delay, result_type
        )

    async def sleep(
        self, step_name: str, duration: durations.Duration, *, description: str | None = None
    ) -> None:
        await self.guarded(sleep.sleep, self, step_name, duration)

    def patched(self, change_id: str) -> patch.PatchedCall:
        return patch.PatchedCall(change_id, lambda: self.guarded(patch.patched, self, change_id))

    async def wait_for_event(
        self,
        step_name: str,
        event_name: str,
        timeout: durations.Duration | None = None,
        *,
        description: str | None = None,
    ) -> Any:
        return await self.guarded(event.wait_for_event, self, step_name, event_name, timeout)

    async def run_child(
        self, step_name: str, workflow_name: str, input: Any, *, description: str | None = None
    ) -> Any:
        return await self.guarded(child.child, self, step_name, workflow_name, input, wait=True)

    async def start_child(
        self, step_name: str, workflow_name: str, input: Any, *, description: str | None = None
    ) -> str:
        child_id: str = await self.guarded(
            child.child, self, step_name, workflow_name, input, wait=False
        )
        return child_id

    async def now(self) -> datetime:
        return await self.guarded(value.now, self)

    async def uuid4(self) -> uuid.UUID:
        return await self.guarded(value.uuid4, self)

    async def random(self) -> float:
        return await self.guarded(value.random, self)

    # ------------------------------------------------- what step kinds share
    async def guarded(
        self, body: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a step kind's body as one step call of the workflow function: counted as
        active (the pass does not end while it runs). A store or queue failure never reaches
        the workflow's code: it unwinds the function with :class:`Unavailable` (no
        ``except`` catches it) and the pass is abandoned, to be delivered again. A step
        started inside another step's body is :class:`NestedStepError` (the run fails)."""
        outer = attempt.RUNNING_STEP.get()
        if outer is not None:
            inner = args[1] if len(args) > 1 and isinstance(args[1], str) else "?"
            error = NestedStepError(
                f"run {self._run_id!r} of workflow {self.name!r}: step {inner!r} was started "
                f"inside the body of step {outer!r}; a step cannot start steps: call it from "
                "the workflow function instead",
                outer=outer,
                inner=inner,
            )
            self.fatal = error
            raise error
        self._enter()
        try:
            return await body(*args, **kwargs)
        except StoreUnavailableError as exc:
            self.infra = exc
            raise Unavailable(exc) from exc
        finally:
            self._exit()

    def next_key(self, api: str, step_name: str) -> str:
        """The key of the next step named ``step_name`` (``workflow.<api>`` validates it)."""
        if not isinstance(step_name, str) or not step_name:
            raise ValueError(f"workflow.{api}: step name must be a non-empty string, got {step_name!r}")
        return self._keys.next(step_name)

    def recorded(self, key: str, kind: StepKind, target: str | None = None) -> StepState | None:
        """The step recorded under ``key`` by an earlier pass (``None`` when new), checked to
        be of the same kind and target (``rpc_name``) as what the replay reaches now."""
        step = self._recorded.pop(key, None)
        if step is not None and (step.kind is not kind or step.rpc_name != target):
            was = f"{step.kind.value}" + (f" {step.rpc_name!r}" if step.rpc_name else "")
            now = f"{kind.value}" + (f" {target!r}" if target else "")
            raise self.nondeterminism(
                f"step {step.key!r} was recorded as {was} but the replay reached it as {now}; "
                "the workflow code changed or is not deterministic"
            )
        return step

    def replaying(self) -> bool:
        """Whether steps recorded by earlier passes lie ahead of this point of the pass (not
        reached yet): the run's history goes on past here (``workflow.patched``)."""
        return any(not patch.is_marker(key) for key in self._recorded)

    def nondeterminism(self, detail: str) -> WorkflowNonDeterminismError:
        """A non-determinism error, recorded as fatal: the run fails with it even if the
        workflow function catches it."""
        error = WorkflowNonDeterminismError(
            f"run {self._run_id!r} of workflow {self.name!r}: {detail}"
        )
        self.fatal = error
        return error

    async def boundary(self) -> None:
        """A step boundary: stop here when the run was cancelled."""
        run = await self.services.state.get_run(self._run_id)
        if run.cancel_requested or run.status.is_settled:
            raise Cancelled()

    async def insert_at_boundary(self, step: StepState) -> StepState:
        """A step boundary and the insert of the new ``step``, in one store call
        (:meth:`~pikku_typing.state.base.WorkflowStateService.insert_step_at_boundary`): stop
        here when the run was cancelled, else return the stored step."""
        stored = await self.services.state.insert_step_at_boundary(self._run_id, step)
        if stored is None:
            raise Cancelled()
        return stored

    async def share_loop(self) -> None:
        """Give the event loop one turn when this pass has not for :data:`SHARE_LOOP_EVERY`
        seconds. Local steps on a store that never awaits (SQLite) with short attempts (no
        heartbeat task) would otherwise hold the loop for a whole run: other runs, timers
        and heartbeats of this process wait. A turn costs about as much as a tenth of a
        step, so it is taken every few milliseconds, not at every step."""
        now = time.monotonic()
        if now - self._shared_at >= SHARE_LOOP_EVERY:
            self._shared_at = now
            await asyncio.sleep(0)

    async def park(
        self,
        key: str,
        wake_at: datetime | None,
        *,
        ready: Callable[[], Awaitable[bool]] | None = None,
    ) -> StepState | None:
        """Wait until the next pass resumes this step (with its fresh state, or ``None``
        when it could not be read); ``wake_at`` is when the run must be woken for it.

        ``ready`` (for waits on something outside the run: an event, a child run) is asked
        once more after the run is suspended: when what it waits for came while the pass was
        still running (so nobody woke the suspended run), the run is woken at once."""
        future: asyncio.Future[StepState | None] = asyncio.get_running_loop().create_future()
        self.parked[key] = _Parked(future, wake_at, ready)
        self.active -= 1
        self.version += 1
        self.changed.set()
        try:
            return await future
        finally:
            self.parked.pop(key, None)
            self.active += 1
            self.version += 1

    async def park_for(self, key: str, wake_at: datetime | None) -> StepState:
        """:meth:`park`, then the step's current state."""
        fresh = await self.park(key, wake_at)
        if fresh is None:
            fresh = await self.services.state.get_step(self._run_id, key)
            assert fresh is not None
        return fresh

    # -------------------------------------------------- the pass (orchestrator)
    def _enter(self) -> None:
        if not self.in_pass:
            raise Suspend()
        self.active += 1
        self.version += 1

    def _exit(self) -> None:
        self.active -= 1
        self.version += 1
        if self.parked:  # only then can the function have become blocked on parked steps
            self.changed.set()

    async def resume(self, fresh: StepState | None = None) -> None:
        """Start a new pass of a live continuation: re-read only the parked steps (``fresh``:
        one of them as this process just stored it, not read again)."""
        self.in_pass = True
        for key, parked in list(self.parked.items()):
            if fresh is not None and fresh.key == key:
                step: StepState | None = fresh
            else:
                step = await self.services.state.get_step(self._run_id, key)
            if not parked.future.done():
                parked.future.set_result(step)

    def unwind(self) -> None:
        self.in_pass = False
        for parked in list(self.parked.values()):
            if not parked.future.done():
                parked.future.set_exception(Suspend())

    async def ready_now(self) -> bool:
        """Is a parked wait already satisfied (see :meth:`park`)?"""
        for parked in list(self.parked.values()):
            if parked.ready is not None and await parked.ready():
                return True
        return False

    def wake_at(self) -> datetime | None:
        times = [p.wake_at for p in self.parked.values() if p.wake_at is not None]
        return min(times) if times else None

    async def settle(self, task: asyncio.Task[Outcome]) -> Outcome:
        """Wait until the function returns, or is blocked only on parked steps."""
        while True:
            if task.done():
                return task.result()
            if self.parked and self.active <= 0:
                seen = self.version
                for _ in range(3):
                    await asyncio.sleep(0)
                if task.done():
                    return task.result()
                if self.version == seen and self.parked and self.active <= 0:
                    self.in_pass = False
                    return Outcome("suspended")
                continue
            self.changed.clear()
            waiter = asyncio.ensure_future(self.changed.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
