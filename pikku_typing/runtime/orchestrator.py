"""The orchestrator pass: replay of a workflow function with step-result caching.

A pass (one orchestrator job) holds the run's lock (``lock_run``) from start to end:

1. read the run; a settled run is never replayed; a cancel request ends it;
2. mark it ``running`` with this process as owner;
3. either **resume** the run's live continuation (see below), or **replay**: read all step
   states ONCE (``get_step_states``) and call the workflow function again from the top;
4. every ``workflow.do`` / ``workflow.sleep`` computes its step key (``name``, ``name#1``...),
   checks the recorded step (same kind, same RPC name, same data digest, else
   :class:`WorkflowNonDeterminismError`), returns a succeeded step's stored result rebuilt
   with its type, runs a new inline step (or schedules a remote one), and *parks* when the
   step is scheduled elsewhere, sleeping, or waiting for a retry delay;
5. when the function is blocked only on parked steps, the pass ends: the run becomes
   ``suspended`` (``wake_at`` = the earliest sleep/retry) and a wake-up job is queued.

**Live continuations.** A parked workflow function is not thrown away: its task stays in
memory, awaiting its parked step. The next pass of that run in this process resumes it after
re-reading only the parked steps, if no other process ran a pass in between (the run's
``owner.token`` is still the one this continuation wrote). Otherwise — another process, a
restart, eviction (``live_runs``) — the continuation is unwound by raising the private
:class:`_Suspend` from its parked ``do``/``sleep`` and the run is replayed from the store.
This keeps a remote-mode run linear in its number of steps instead of quadratic.

Every attempt of a local step is claimed before it runs and holds a lease kept by a heartbeat.
The first attempt is claimed by the insert of the step itself (``running``, attempt 1 held by
the pass's owner), later ones (retries, abandoned attempts) by ``claim_step``; one more write
records the result or the error. So a crash mid-attempt is counted: recovery abandons the
attempt of the dead holder (at once on the same host, after the lease elsewhere), the step
runs again (at least once), and the retry limit applies, so a step that always kills its
process ends ``failed`` instead of looping. The cost is a second write per inline step:
``benchmarks/runtime.py`` section 1 (1000 inline steps, SQLite, 2 CPUs) measured 437 us/step
with first attempts written only when they ended, 847 us/step with the claim, against DBOS at
about 3400-3750 us/step: 0.12x -> 0.25x DBOS, within the <= 0.5x target.

Errors of the store (:class:`StoreUnavailableError`) are never a workflow's failure: a pass
or step job that hits one is abandoned and raised to the queue, which delivers it again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pikku_typing import durations
from pikku_typing.errors import (
    StepSerializationError,
    StoreUnavailableError,
    WorkflowFailedError,
    WorkflowNonDeterminismError,
)
from pikku_typing.interaction import Workflow
from pikku_typing.models import (
    ClaimOwner,
    ErrorInfo,
    RunStatus,
    StepAttempt,
    StepKind,
    StepState,
    StepStatus,
    WorkflowRun,
)
from pikku_typing.runtime import codec, process, steps
from pikku_typing.runtime.queues.base import Job, WorkflowQueue, orchestrator_queue, step_queue
from pikku_typing.state.base import RunChanges, WorkflowStateService
from pikku_typing.wiring import Registry, StepCall, WorkflowDefinition

log = logging.getLogger("pikku_typing.runtime")


class _Suspend(BaseException):
    """Unwinds a workflow function whose continuation is dropped."""


class _Cancelled(BaseException):
    """Unwinds a workflow function whose run was cancelled (at a step boundary)."""


class StepFailedError(WorkflowFailedError):
    """Raised by ``workflow.do`` when a step failed for good (retries exhausted); uncaught,
    it fails the run with the step's error."""

    def __init__(self, info: ErrorInfo, key: str, attempts: int) -> None:
        super().__init__(
            f"step {key!r} failed after {attempts} attempt(s): {info.type}: {info.message}",
            error_type=info.type,
            step=key,
        )
        self.info = info.model_copy(update={"step": key})


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


@dataclass
class Outcome:
    kind: Literal["completed", "failed", "cancelled", "suspended", "unwound"]
    output: Any = None
    error: ErrorInfo | None = None


async def enqueue_orchestrator(
    queue: WorkflowQueue, workflow: str, run_id: str, at: datetime | None = None
) -> None:
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


@dataclass
class _Parked:
    future: asyncio.Future[StepState | None]
    wake_at: datetime | None


@dataclass
class _Spec:
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


@dataclass
class _Live:
    ctx: RunContext
    task: asyncio.Task[Outcome]
    owner: ClaimOwner


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
        self._s = services
        self._definition = definition
        self._run_id = run.id
        self._recorded = recorded
        self._owner = owner
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

    # ------------------------------------------------------------ Workflow API
    @property
    def name(self) -> str:
        return self._definition.name

    @property
    def run_id(self) -> str:
        return self._run_id

    async def get_run(self) -> WorkflowRun[Any, Any]:
        run = await self._s.state.get_run(self._run_id)
        return typed_run(run, self._definition)

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
        self._enter()
        try:
            spec = self._spec(step_name, target, data, retries, retry_delay, result_type)
            return await self._run_step(spec)
        except StoreUnavailableError as exc:
            self.infra = exc
            raise
        finally:
            self._exit()

    async def sleep(
        self, step_name: str, duration: durations.Duration, *, description: str | None = None
    ) -> None:
        self._enter()
        try:
            seconds = durations.parse_duration(duration)
            if not isinstance(step_name, str) or not step_name:
                raise ValueError(f"workflow.sleep: step name must be a non-empty string, got {step_name!r}")
            key = self._keys.next(step_name)
            step = self._recorded.pop(key, None)
            if step is not None:
                self._check_kind(step, StepKind.SLEEP, None)
            while True:
                if step is None:
                    await self._boundary()
                    t = steps.now()
                    step = await self._s.state.insert_step(
                        self._run_id,
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
                    await self._s.state.complete_step(self._run_id, key, result=None, token=None)
                    return
                fresh = await self._park(key, wake)
                step = fresh if fresh is not None else step
        except StoreUnavailableError as exc:
            self.infra = exc
            raise
        finally:
            self._exit()

    # --------------------------------------------------------------- plumbing
    def _enter(self) -> None:
        if not self.in_pass:
            raise _Suspend()
        self.active += 1
        self.version += 1

    def _exit(self) -> None:
        self.active -= 1
        self.version += 1
        if self.parked:  # only then can the function have become blocked on parked steps
            self.changed.set()

    async def _park(self, key: str, wake_at: datetime | None) -> StepState | None:
        future: asyncio.Future[StepState | None] = asyncio.get_running_loop().create_future()
        self.parked[key] = _Parked(future, wake_at)
        self.active -= 1
        self.version += 1
        self.changed.set()
        try:
            return await future
        finally:
            self.parked.pop(key, None)
            self.active += 1
            self.version += 1

    async def resume(self) -> None:
        """Start a new pass of a live continuation: re-read only the parked steps."""
        self.in_pass = True
        for key, parked in list(self.parked.items()):
            step = await self._s.state.get_step(self._run_id, key)
            if not parked.future.done():
                parked.future.set_result(step)

    def unwind(self) -> None:
        self.in_pass = False
        for parked in list(self.parked.values()):
            if not parked.future.done():
                parked.future.set_exception(_Suspend())

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

    async def _boundary(self) -> None:
        """A step boundary: stop here when the run was cancelled."""
        run = await self._s.state.get_run(self._run_id)
        if run.cancel_requested or run.status.is_settled:
            raise _Cancelled()

    def _spec(
        self,
        step_name: str,
        target: str | Callable[[], Any],
        data: Any,
        retries: int | None,
        retry_delay: durations.Duration | None,
        result_type: Any,
    ) -> _Spec:
        if not isinstance(step_name, str) or not step_name:
            raise ValueError(f"workflow.do: step name must be a non-empty string, got {step_name!r}")
        key = self._keys.next(step_name)
        spec = _Spec(
            key=key,
            name=step_name,
            kind=StepKind.RPC if isinstance(target, str) else StepKind.INLINE,
            max_attempts=steps.max_attempts(retries),
            retry_delay=steps.fixed_delay(retry_delay),
        )
        what = f"workflow {self.name!r} run {self._run_id!r} step {key!r}"
        if isinstance(target, str):
            rpc = self._s.registry.get_rpc(target)
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

    def _check_kind(self, step: StepState, kind: StepKind, rpc_name: str | None) -> None:
        if step.kind is kind and step.rpc_name == rpc_name:
            return
        recorded = f"{step.kind.value}" + (f" {step.rpc_name!r}" if step.rpc_name else "")
        now = f"{kind.value}" + (f" {rpc_name!r}" if rpc_name else "")
        error = WorkflowNonDeterminismError(
            f"run {self._run_id!r} of workflow {self.name!r}: step {step.key!r} was recorded "
            f"as {recorded} but the replay reached it as {now}; the workflow code changed or "
            "is not deterministic"
        )
        self.fatal = error
        raise error

    def _check_digest(self, step: StepState, spec: _Spec) -> None:
        if step.kind is StepKind.RPC and step.data_digest is not None and step.data_digest != spec.digest:
            error = WorkflowNonDeterminismError(
                f"run {self._run_id!r} of workflow {self.name!r}: step {step.key!r} "
                f"(rpc {spec.rpc_name!r}) was recorded with other data (digest "
                f"{step.data_digest}) than the replay passes now (digest {spec.digest}); a "
                "cached result is never attached to other input"
            )
            self.fatal = error
            raise error

    def _call(self, spec: _Spec, attempt: int) -> StepCall:
        return StepCall(
            workflow=self.name,
            run_id=self._run_id,
            step_key=spec.key,
            step_name=spec.name,
            kind=spec.kind.value,
            rpc_name=spec.rpc_name,
            attempt=attempt,
        )

    async def _execute(self, spec: _Spec, attempt: int) -> tuple[Any, Any]:
        """Run one attempt in this process; return ``(json, value)``."""
        registry = self._s.registry

        async def execute() -> Any:
            if spec.rpc_name is not None:
                result = registry.get_rpc(spec.rpc_name).func(spec.data)
            else:
                assert spec.fn is not None
                result = spec.fn()
            if inspect.isawaitable(result):
                result = await result
            return result

        value = await steps.call_with_middleware(
            self._definition.middleware, self._call(spec, attempt), execute
        )
        return codec.encode(
            value,
            spec.result_type,
            what=f"workflow {self.name!r} run {self._run_id!r} step {spec.key!r} result",
        )

    def _new_state(self, spec: _Spec, t: datetime, **fields: Any) -> StepState:
        return StepState(
            key=spec.key,
            step_name=spec.name,
            kind=spec.kind,
            rpc_name=spec.rpc_name,
            data=spec.data_json,
            data_digest=spec.digest,
            max_attempts=spec.max_attempts,
            retry_delay=spec.retry_delay,
            created_at=t,
            updated_at=t,
            **fields,
        )

    def _failed(self, step: StepState) -> StepFailedError:
        info = step.error or ErrorInfo(type="StepFailed", message="the step failed", step=step.key)
        return StepFailedError(info, step.key, step.attempt_count)

    def _decode(self, spec: _Spec, step: StepState) -> Any:
        return codec.decode(
            step.result,
            spec.result_type,
            what=f"workflow {self.name!r} run {self._run_id!r} step {spec.key!r} result",
        )

    async def _run_step(self, spec: _Spec) -> Any:
        state = self._s.state
        step = self._recorded.pop(spec.key, None)
        if step is not None:
            self._check_kind(step, spec.kind, spec.rpc_name)
            self._check_digest(step, spec)
        local = spec.kind is StepKind.INLINE or self._definition.execution_mode == "inline"
        while True:
            if step is None:
                await self._boundary()
                if local:
                    step, value = await self._first_attempt(spec)
                    if step.status is StepStatus.SUCCEEDED and value is not _NOTHING:
                        return value
                else:
                    t = steps.now()
                    # scheduled: the loop below queues its step job and parks
                    step = await state.insert_step(
                        self._run_id, self._new_state(spec, t, status=StepStatus.SCHEDULED)
                    )
                continue
            if step.status is StepStatus.SUCCEEDED:
                return self._decode(spec, step)
            if step.status is StepStatus.FAILED:
                raise self._failed(step)
            t = steps.now()
            if step.status is StepStatus.RUNNING:
                if steps.holder_abandoned(step, t):
                    step = await steps.abandon(state, self._run_id, step)
                    if not local and step.status is StepStatus.SCHEDULED:
                        await enqueue_step(self._s.queue, self.name, self._run_id, step)
                    continue
                attempt = step.current_attempt
                lease = attempt.lease_expires_at if attempt else None
                fresh = await self._park(spec.key, lease)
                step = fresh if fresh is not None else await state.get_step(self._run_id, spec.key)
                continue
            # pending or scheduled
            due = step.next_attempt_at
            if not local:
                await enqueue_step(self._s.queue, self.name, self._run_id, step)
                fresh = await self._park(spec.key, None)
                step = fresh if fresh is not None else await state.get_step(self._run_id, spec.key)
                continue
            if due is not None and due > t:
                wait = (due - t).total_seconds()
                if wait <= self._s.max_inline_wait:
                    await asyncio.sleep(wait)
                    step = await state.get_step(self._run_id, spec.key)
                else:
                    fresh = await self._park(spec.key, due)
                    step = fresh if fresh is not None else await state.get_step(self._run_id, spec.key)
                continue
            await self._boundary()
            step, value = await self._claimed_attempt(spec, step)
            if step.status is StepStatus.SUCCEEDED and value is not _NOTHING:
                return value

    async def _first_attempt(self, spec: _Spec) -> tuple[StepState, Any]:
        """Run attempt 1 of a local step. The step is inserted already claimed (``running``,
        attempt 1 held by this pass's owner, with a lease kept by a heartbeat), so a crash
        mid-attempt is counted: recovery abandons the attempt and the retry limit applies.
        Then one more write records the result or the error."""
        state = self._s.state
        owner = self._owner
        started = steps.now()
        claim = StepAttempt(
            number=1, status=StepStatus.RUNNING, owner=owner, started_at=started,
            lease_expires_at=started + timedelta(seconds=self._s.lease_seconds),
        )
        step = await state.insert_step(
            self._run_id,
            self._new_state(
                spec, started, status=StepStatus.RUNNING, attempt_count=1, attempts=[claim],
                started_at=started,
            ),
        )
        if step.status is not StepStatus.RUNNING or not step.attempts or step.attempts[0].owner != owner:
            return step, _NOTHING  # somebody else recorded it: the loop handles its state
        try:
            async with steps.heartbeat(
                state, self._run_id, spec.key, owner.token, self._s.lease_seconds
            ):
                encoded, value = await self._execute(spec, 1)
        except (asyncio.CancelledError, _Suspend, _Cancelled):
            raise
        except Exception as exc:
            t = steps.now()
            retry_at = (
                None if isinstance(exc, StepSerializationError)
                else steps.next_retry(step, 1, t)
            )
            updated = await state.fail_step_attempt(
                self._run_id, spec.key, token=owner.token,
                error=steps.error_info(exc, step=spec.key), retry_at=retry_at,
            )
            if updated is None:
                updated = await state.get_step(self._run_id, spec.key)
                assert updated is not None
            return updated, _NOTHING
        if await state.complete_step(self._run_id, spec.key, result=encoded, token=owner.token):
            t = steps.now()
            done = claim.model_copy(update={"status": StepStatus.SUCCEEDED, "finished_at": t})
            return step.model_copy(
                update={
                    "status": StepStatus.SUCCEEDED, "result": encoded, "attempts": [done],
                    "finished_at": t, "updated_at": t,
                }
            ), value
        fresh = await state.get_step(self._run_id, spec.key)  # our claim was abandoned
        assert fresh is not None
        return fresh, _NOTHING

    async def _claimed_attempt(self, spec: _Spec, step: StepState) -> tuple[StepState, Any]:
        """Claim and run a later attempt of a local step."""
        state = self._s.state
        owner = steps.claim_owner()
        try:
            claimed = await state.claim_step(
                self._run_id, spec.key, owner=owner, lease_seconds=self._s.lease_seconds
            )
            if claimed is None:
                fresh = await state.get_step(self._run_id, spec.key)
                assert fresh is not None
                return fresh, _NOTHING
            attempt = claimed.attempt_count
            try:
                async with steps.heartbeat(
                    state, self._run_id, spec.key, owner.token, self._s.lease_seconds
                ):
                    encoded, value = await self._execute(spec, attempt)
            except (asyncio.CancelledError, _Suspend, _Cancelled):
                raise
            except Exception as exc:
                t = steps.now()
                retry_at = (
                    None if isinstance(exc, StepSerializationError)
                    else steps.next_retry(claimed, attempt, t)
                )
                updated = await state.fail_step_attempt(
                    self._run_id, spec.key, token=owner.token,
                    error=steps.error_info(exc, step=spec.key), retry_at=retry_at,
                )
                if updated is None:
                    updated = await state.get_step(self._run_id, spec.key)
                    assert updated is not None
                return updated, _NOTHING
            stored = await state.complete_step(
                self._run_id, spec.key, result=encoded, token=owner.token
            )
            fresh = await state.get_step(self._run_id, spec.key)
            assert fresh is not None
            return fresh, value if stored else _NOTHING
        finally:
            process.mark_inactive(owner.token)


class _Nothing:
    pass


_NOTHING: Any = _Nothing()


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


class Orchestrator:
    """Runs orchestrator passes and step jobs; holds this process's live continuations."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self._live: OrderedDict[str, _Live] = OrderedDict()

    # ---------------------------------------------------------------- passes
    async def run_pass(self, run_id: str) -> None:
        state = self.s.state
        async with state.lock_run(run_id):
            run = await state.get_run(run_id)
            live = self._live.pop(run_id, None)
            if live is not None and (
                live.task.done() or live.task.get_loop() is not asyncio.get_running_loop()
            ):
                live = None  # its event loop is gone (another asyncio.run): replay instead
            if run.status.is_settled:
                await self._discard(live)
                self.s.on_settled(run_id)
                return
            if run.cancel_requested:
                await self._discard(live)
                await self._settle(run_id, RunStatus.CANCELLED)
                return
            try:
                definition = self.s.registry.get_workflow(run.workflow)
            except BaseException:
                await self._discard(live)
                raise
            if live is not None and not (
                run.status is RunStatus.SUSPENDED
                and run.owner is not None
                and run.owner.token == live.owner.token
            ):
                await self._discard(live)
                live = None
            owner = live.owner if live is not None else process.new_owner()
            process.mark_active(owner.token)
            try:
                started = await state.transition_run(
                    run_id,
                    (RunStatus.RUNNING, RunStatus.SUSPENDED),
                    RunChanges(status=RunStatus.RUNNING, owner=owner, wake_at=None),
                )
                if started is None:  # settled meanwhile
                    await self._discard(live)
                    self.s.on_settled(run_id)
                    return
                if live is None:
                    live = await self._start(started, definition, owner)
                    if live is None:
                        return
                else:
                    await live.ctx.resume()
                outcome = await live.ctx.settle(live.task)
                await self._finish_pass(run_id, definition, live, outcome)
            except BaseException:
                # e.g. the store went away: drop the continuation (the redelivered job
                # replays the run from the store)
                if live is not None:
                    if self._live.get(run_id) is live:
                        del self._live[run_id]
                    await self._discard(live)
                raise
            finally:
                process.mark_inactive(owner.token)

    async def _start(
        self, run: WorkflowRun[Any, Any], definition: WorkflowDefinition, owner: ClaimOwner
    ) -> _Live | None:
        recorded = await self.s.state.get_step_states(run.id)
        ctx = RunContext(self.s, definition, run, recorded, owner)
        try:
            data = codec.decode(run.input, definition.input_type, what=f"run {run.id!r} input")
        except Exception as exc:
            await self._settle(run.id, RunStatus.FAILED, error=steps.error_info(exc))
            return None
        task = asyncio.create_task(self._body(ctx, definition, data))
        return _Live(ctx, task, owner)

    async def _body(self, ctx: RunContext, definition: WorkflowDefinition, data: Any) -> Outcome:
        try:
            outcome = await self._call_workflow(ctx, definition, data)
        except StoreUnavailableError as exc:
            ctx.infra = ctx.infra or exc
        if ctx.infra is not None:
            # the store failed under the pass: not the workflow's fault, the job runs again
            raise ctx.infra
        return outcome

    async def _call_workflow(
        self, ctx: RunContext, definition: WorkflowDefinition, data: Any
    ) -> Outcome:
        try:
            result = await definition.func(ctx, data)
        except _Cancelled:
            return Outcome("cancelled")
        except _Suspend:
            return Outcome("unwound")
        except StoreUnavailableError:
            raise
        except StepFailedError as exc:
            if ctx.fatal is not None:
                return Outcome("failed", error=steps.error_info(ctx.fatal))
            return Outcome("failed", error=exc.info)
        except Exception as exc:
            if ctx.fatal is not None and ctx.fatal is not exc:
                return Outcome("failed", error=steps.error_info(ctx.fatal))
            return Outcome("failed", error=steps.error_info(exc))
        if ctx.fatal is not None:
            return Outcome("failed", error=steps.error_info(ctx.fatal))
        try:
            encoded, _ = codec.encode(
                result, definition.output_type,
                what=f"workflow {definition.name!r} run {ctx.run_id!r} output",
            )
        except StepSerializationError as exc:
            return Outcome("failed", error=steps.error_info(exc))
        return Outcome("completed", output=encoded)

    async def _finish_pass(
        self, run_id: str, definition: WorkflowDefinition, live: _Live, outcome: Outcome
    ) -> None:
        if outcome.kind == "suspended":
            wake_at = live.ctx.wake_at()
            updated = await self.s.state.transition_run(
                run_id, (RunStatus.RUNNING,), RunChanges(status=RunStatus.SUSPENDED, wake_at=wake_at)
            )
            if updated is None:
                await self._discard(live)
                return
            self._keep(run_id, live)
            if wake_at is not None:
                await enqueue_orchestrator(self.s.queue, definition.name, run_id, wake_at)
            return
        await self._discard(live)
        if outcome.kind == "completed":
            await self._settle(run_id, RunStatus.COMPLETED, output=outcome.output)
        elif outcome.kind == "failed":
            await self._settle(run_id, RunStatus.FAILED, error=outcome.error)
        elif outcome.kind == "cancelled":
            await self._settle(run_id, RunStatus.CANCELLED)
        else:  # unwound without being asked to: replay it
            await enqueue_orchestrator(self.s.queue, definition.name, run_id)

    async def _settle(
        self, run_id: str, status: RunStatus, *, output: Any = None, error: ErrorInfo | None = None
    ) -> None:
        changes = RunChanges(status=status, wake_at=None)
        if status is RunStatus.COMPLETED:
            changes = RunChanges(status=status, output=output, wake_at=None)
        elif error is not None:
            changes = RunChanges(status=status, error=error, wake_at=None)
        await self.s.state.transition_run(run_id, (RunStatus.RUNNING, RunStatus.SUSPENDED), changes)
        self.s.on_settled(run_id)

    def _keep(self, run_id: str, live: _Live) -> None:
        self._live[run_id] = live
        self._live.move_to_end(run_id)
        while len(self._live) > max(self.s.live_runs, 0):
            _, oldest = self._live.popitem(last=False)
            oldest.ctx.unwind()

    async def _discard(self, live: _Live | None) -> None:
        if live is None:
            return
        busy = not live.ctx.parked
        live.ctx.unwind()
        if not live.task.done():
            if busy:
                live.task.cancel()
            await asyncio.wait({live.task})

    # ------------------------------------------------------------ step jobs
    async def run_step(self, workflow: str, run_id: str, key: str) -> None:
        """Run a remote step's due attempt (a step job). Duplicate or stale deliveries do
        nothing: the attempt is claimed atomically."""
        state = self.s.state
        while True:
            step = await state.get_step(run_id, key)
            if step is None or step.status in (StepStatus.SUCCEEDED, StepStatus.FAILED):
                return
            run = await state.get_run(run_id)
            if run.status.is_settled:
                return
            if run.cancel_requested:  # a step boundary: let the orchestrator end the run
                await enqueue_orchestrator(self.s.queue, workflow, run_id)
                return
            t = steps.now()
            if step.status is StepStatus.RUNNING:
                if not steps.holder_abandoned(step, t):
                    attempt = step.current_attempt
                    if attempt is not None and attempt.lease_expires_at is not None:
                        # re-check when the lease runs out (the holder may be on another host)
                        await self.s.queue.enqueue(
                            Job(
                                queue=step_queue(workflow, step.rpc_name or "?"),
                                kind="step", workflow=workflow, run_id=run_id, step_key=key,
                                attempt=step.attempt_count + 1,
                                run_at=attempt.lease_expires_at + timedelta(milliseconds=10),
                                dedupe_key=f"{run_id}:{key}:lease:{step.attempt_count}",
                            )
                        )
                    return
                step = await steps.abandon(state, run_id, step)
                if step.status is not StepStatus.SCHEDULED:
                    await enqueue_orchestrator(self.s.queue, workflow, run_id)
                    return
            if step.next_attempt_at is not None and step.next_attempt_at > t:
                wait = (step.next_attempt_at - t).total_seconds()
                if wait <= self.s.max_inline_wait:
                    await asyncio.sleep(wait)
                    continue
                await enqueue_step(self.s.queue, workflow, run_id, step)
                return
            again = await self._attempt_remote(workflow, run_id, step)
            if not again:
                return

    async def _attempt_remote(self, workflow: str, run_id: str, step: StepState) -> bool:
        """Claim and run one attempt; return True to try the next attempt in this job."""
        state = self.s.state
        owner = steps.claim_owner()
        try:
            claimed = await state.claim_step(
                run_id, step.key, owner=owner, lease_seconds=self.s.lease_seconds
            )
            if claimed is None:
                return False  # another worker won, or a duplicate delivery
            assert claimed.rpc_name is not None
            rpc_name = claimed.rpc_name
            call = StepCall(
                workflow=workflow, run_id=run_id, step_key=claimed.key,
                step_name=claimed.step_name, kind=claimed.kind.value, rpc_name=claimed.rpc_name,
                attempt=claimed.attempt_count,
            )
            what = f"workflow {workflow!r} run {run_id!r} step {claimed.key!r}"

            try:
                definition = self.s.registry.get_workflow(workflow)
                rpc = self.s.registry.get_rpc(rpc_name)

                async def execute() -> Any:
                    data = codec.decode(claimed.data, rpc.input_type, what=f"{what} data")
                    result = rpc.func(data)
                    if inspect.isawaitable(result):
                        result = await result
                    return result

                async with steps.heartbeat(
                    state, run_id, claimed.key, owner.token, self.s.lease_seconds
                ):
                    value = await steps.call_with_middleware(definition.middleware, call, execute)
                    encoded, _ = codec.encode(value, rpc.output_type, what=f"{what} result")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                t = steps.now()
                retry_at = (
                    None if isinstance(exc, StepSerializationError)
                    else steps.next_retry(claimed, claimed.attempt_count, t)
                )
                updated = await state.fail_step_attempt(
                    run_id, claimed.key, token=owner.token,
                    error=steps.error_info(exc, step=claimed.key), retry_at=retry_at,
                )
                if updated is None:
                    return False  # our claim was abandoned meanwhile
                if retry_at is None:
                    await enqueue_orchestrator(self.s.queue, workflow, run_id)
                    return False
                return True  # the loop waits for the retry or queues it
            stored = await state.complete_step(
                run_id, claimed.key, result=encoded, token=owner.token
            )
            if stored:
                await enqueue_orchestrator(self.s.queue, workflow, run_id)
            return False
        finally:
            process.mark_inactive(owner.token)

    async def close(self) -> None:
        """Unwind every live continuation (they are replayed from the store if needed)."""
        lives = list(self._live.values())
        self._live.clear()
        loop = asyncio.get_running_loop()
        for live in lives:
            if live.task.get_loop() is loop:
                await self._discard(live)
