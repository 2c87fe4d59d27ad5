"""One attempt of a step: the only place a step's code runs and its outcome is recorded.

Both execution modes use :func:`run_attempt`: the run context for local steps (inline
steps, and RPC steps of an ``inline`` workflow) and the step jobs for remote RPC steps.
The caller claims the attempt first (the insert of a new ``running`` step, or
``claim_step``); :func:`run_attempt` then

1. builds the :class:`~pikku_typing.wiring.StepCall` the workflow's middleware sees,
2. runs the step's code wrapped by that middleware, while a heartbeat keeps the lease,
3. encodes the result with its type (what cannot round-trip fails the attempt for good),
4. records the result (``complete_step``) or the error with the retry policy
   (``fail_step_attempt``: a retry time, or ``None`` when the retries are exhausted or the
   result cannot be stored).

Every write is guarded by the claim's token: when the claim was taken away meanwhile (its
holder was considered dead), nothing is recorded and the outcome is ``"lost"``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pikku_typing._log import runtime_log
from pikku_typing.errors import NestedStepError, StepSerializationError, StoreUnavailableError
from pikku_typing.models import ClaimOwner, ErrorInfo, StepState
from pikku_typing.runtime import _observe, codec, steps
from pikku_typing.runtime.services import Services
from pikku_typing.runtime.signals import Interrupted
from pikku_typing.wiring import Registry, StepCall, StepMiddleware

__all__ = ["RUNNING_STEP", "Attempt", "Work", "rpc_work", "run_attempt"]

RUNNING_STEP: ContextVar[str | None] = ContextVar("pikku_running_step", default=None)
"""The key of the step whose code runs in this context (``None`` outside step bodies): a
``workflow.do``/``sleep`` reached while it is set is a :class:`NestedStepError`."""

_NOT_RETRIED: tuple[type[Exception], ...] = (StepSerializationError, NestedStepError)
"""Errors of an attempt that no retry can fix: the step fails at once."""


@dataclass(frozen=True)
class Work:
    """What an attempt runs: ``call()`` returns the value or an awaitable of it; the value is
    encoded with ``result_type``; ``middleware`` wraps the call (the first is outermost)."""

    call: Callable[[], Any]
    result_type: Any
    middleware: Sequence[StepMiddleware] = ()


def rpc_work(
    registry: Registry,
    middleware: Sequence[StepMiddleware],
    rpc_name: str,
    data: Any,
    *,
    result_type: Any = None,
    data_is_json: bool = False,
    what: str = "",
) -> Work:
    """The work of an RPC step: call ``rpc_name`` with ``data`` (typed data, or stored JSON
    rebuilt with the RPC's input type when ``data_is_json``)."""
    rpc = registry.get_rpc(rpc_name)

    def call() -> Any:
        arg = codec.decode(data, rpc.input_type, what=f"{what} data") if data_is_json else data
        return rpc.func(arg)

    return Work(call, rpc.output_type if result_type is None else result_type, middleware)


@dataclass(frozen=True)
class Attempt:
    """The outcome of one attempt.

    * ``"succeeded"``: this attempt stored the result; ``value`` is the typed value.
    * ``"failed"``: the error was recorded; ``step`` is the updated step (``scheduled`` with
      ``retry_at`` for a retry, ``failed`` when ``retry_at`` is ``None``).
    * ``"lost"``: the claim was taken away meanwhile; nothing was recorded.
    """

    status: Literal["succeeded", "failed", "lost"]
    value: Any = None
    step: StepState | None = None
    retry_at: datetime | None = None
    result: Any = field(default=None, repr=False)


def step_call(workflow: str, run_id: str, step: StepState) -> StepCall:
    """What the middleware sees of the attempt ``step.attempt_count`` of ``step``."""
    return StepCall(
        workflow=workflow,
        run_id=run_id,
        step_key=step.key,
        step_name=step.step_name,
        kind=step.kind.value,
        rpc_name=step.rpc_name,
        attempt=step.attempt_count,
    )


async def run_attempt(
    services: Services,
    workflow: str,
    run_id: str,
    step: StepState,
    owner: ClaimOwner,
    work: Callable[[], Work],
    *,
    write_behind: bool = False,
) -> Attempt:
    """Run the claimed attempt ``step.attempt_count`` of ``step`` (held by ``owner``) and
    record its outcome. ``work`` is resolved inside the attempt: an error resolving it (an
    RPC no longer registered) is the attempt's error, like an error of the step's code.
    ``write_behind``: a pass that holds the run's lock ran it, so its result is stored with
    ``complete_step_later`` (the store may send it with the pass's next statement)."""
    state = services.state
    what = f"workflow {workflow!r} run {run_id!r} step {step.key!r}"
    # logs "started" now and succeeded/failed below; a span while OpenTelemetry is on
    observed = _observe.StepAttempt(
        workflow=workflow, run_id=run_id, step_key=step.key, attempt=step.attempt_count,
        rpc=step.rpc_name,
    )
    try:
        with observed.current():
            async with steps.heartbeat(
                state, run_id, step.key, owner.token, services.lease_seconds
            ):
                todo = work()

                async def execute() -> Any:
                    running = RUNNING_STEP.set(step.key)
                    try:
                        result = todo.call()
                        if inspect.isawaitable(result):
                            result = await result
                        return result
                    finally:
                        RUNNING_STEP.reset(running)

                if todo.middleware:
                    value = await steps.call_with_middleware(
                        todo.middleware, step_call(workflow, run_id, step), execute
                    )
                else:
                    value = await execute()
                encoded, value = codec.encode(value, todo.result_type, what=f"{what} result")
    except (KeyboardInterrupt, SystemExit) as exc:
        await _abandon_interrupted(services, run_id, step, owner, exc)
        raise Interrupted(exc) from exc
    except Exception as exc:
        t = steps.now()
        retry_at = (
            None
            if isinstance(exc, _NOT_RETRIED)
            else steps.next_retry(step, step.attempt_count, t)
        )
        updated = await state.fail_step_attempt(
            run_id, step.key, token=owner.token,
            error=steps.error_info(exc, step=step.key), retry_at=retry_at,
        )
        if updated is None:
            observed.abandoned()
            return Attempt("lost")
        observed.failed(exc, retry_at, t)
        return Attempt("failed", step=updated, retry_at=retry_at)
    complete = state.complete_step_later if write_behind else state.complete_step
    if not await complete(run_id, step.key, result=encoded, token=owner.token):
        observed.abandoned()
        return Attempt("lost")
    observed.succeeded()
    return Attempt("succeeded", value=value, result=encoded)


async def _abandon_interrupted(
    services: Services, run_id: str, step: StepState, owner: ClaimOwner, exc: BaseException
) -> None:
    """End an attempt whose code raised ``KeyboardInterrupt``/``SystemExit``: due again at
    once (another worker runs it). If the store is away, the attempt stays held by this
    process, which is stopping: a dead holder, abandoned by the next worker that looks."""
    try:
        await services.state.fail_step_attempt(
            run_id, step.key, token=owner.token,
            error=ErrorInfo(
                type=type(exc).__name__,
                message="the worker was interrupted during this attempt; it runs again",
                step=step.key,
            ),
            retry_at=steps.now(),
        )
    except (StoreUnavailableError, TimeoutError) as error:
        runtime_log.warning(
            "could not abandon the interrupted attempt of step %r of run %s: %s",
            step.key, run_id, error,
        )
