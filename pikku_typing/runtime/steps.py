"""Step keys, retry policy, claims, leases and abandonment of dead holders."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from pikku_typing import _clock
from pikku_typing._log import describe, fields, runtime_log
from pikku_typing.durations import parse_duration
from pikku_typing.errors import PikkuError
from pikku_typing.models import ErrorInfo, StepState, StepStatus
from pikku_typing.runtime import _observe, process
from pikku_typing.state.base import WorkflowStateService
from pikku_typing.wiring import StepCall, StepMiddleware

DEFAULT_RETRIES: Final = 5
DEFAULT_BASE_DELAY: Final = 1.0
MAX_DELAY: Final = 300.0
ABANDONED_ERROR: Final = "AbandonedAttempt"
STORE_OUTAGE_ERROR: Final = "StoreOutage"
"""The error of an attempt cut short by a store outage under its holder (see
:func:`abandon`): it does not count against the step's retries."""
OUTAGE_GRACE: Final = 10
"""At most this many attempts of a step cut short by store outages are free (do not count
against its retries): a store that fails under the same step more often than that is no
blip, and the step's code (run again each time) must not run forever."""
ABANDON_GRACE: Final = 3
"""An attempt abandoned by a dead holder is run again even when the step has no retries
left, at most this many extra times (a step that kills its process every time must end)."""


def now() -> datetime:
    """The runtime's clock (:func:`pikku_typing._clock.now`: a test environment's fake clock
    when one is installed, else the wall clock)."""
    return _clock.now()


class StepKeys:
    """Assigns step keys in call order: ``name``, then ``name#1``, ``name#2``... for repeats."""

    __slots__ = ("_counts", "_used")

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._used: set[str] = set()

    def next(self, name: str) -> str:
        n = self._counts.get(name, 0)
        key = name if n == 0 else f"{name}#{n}"
        while key in self._used:  # an explicit "name#1" already took it
            n += 1
            key = f"{name}#{n}"
        self._counts[name] = n + 1
        self._used.add(key)
        return key


def max_attempts(retries: int | None) -> int:
    if retries is None:
        return DEFAULT_RETRIES + 1
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative int, got {retries!r}")
    return retries + 1


def fixed_delay(retry_delay: object) -> float | None:
    """``None`` (exponential default) or the fixed delay in seconds."""
    return None if retry_delay is None else parse_duration(retry_delay)


def retry_delay_seconds(fixed: float | None, failed_attempt: int) -> float:
    """Delay before the attempt after ``failed_attempt`` (1-based)."""
    if fixed is not None:
        return fixed
    return float(min(DEFAULT_BASE_DELAY * (2 ** max(failed_attempt - 1, 0)), MAX_DELAY))


def error_info(exc: BaseException, *, step: str | None = None) -> ErrorInfo:
    if isinstance(exc, PikkuError) and getattr(exc, "error_type", None):
        type_name = str(getattr(exc, "error_type"))  # noqa: B009 - a failed step's original type
    else:
        type_name = type(exc).__qualname__
    return ErrorInfo(
        type=type_name,
        message=str(exc),
        step=step if step is not None else getattr(exc, "step", None),
        traceback="".join(traceback.format_exception(exc))[-8000:],
    )


def next_retry(step: StepState, failed_attempt: int, t: datetime) -> datetime | None:
    """When to retry after ``failed_attempt``, or ``None`` when the retries are exhausted."""
    if failed_attempt >= attempt_limit(step):
        return None
    return t + timedelta(seconds=retry_delay_seconds(step.retry_delay, failed_attempt))


def attempt_limit(step: StepState) -> int:
    """How many attempts the step may make: its ``max_attempts``, plus one per attempt that a
    store outage cut short (:data:`STORE_OUTAGE_ERROR`: the infrastructure's failure, not the
    step's, never uses up its retries)."""
    limit = step.max_attempts if step.max_attempts is not None else DEFAULT_RETRIES + 1
    return limit + min(_ended_with(step, STORE_OUTAGE_ERROR), OUTAGE_GRACE)


def _ended_with(step: StepState, error_type: str) -> int:
    """How many of the step's attempts ended with an error of ``error_type``."""
    return sum(1 for a in step.attempts if a.error is not None and a.error.type == error_type)


def holder_abandoned(step: StepState, t: datetime) -> bool:
    """Is the running attempt of ``step`` held by a dead process (same host) or past its lease?"""
    attempt = step.current_attempt
    if step.status is not StepStatus.RUNNING or attempt is None:
        return False
    if attempt.owner is None:
        return attempt.lease_expires_at is None or attempt.lease_expires_at <= t
    liveness = process.holder_liveness(attempt.owner)
    if liveness == "dead":
        return True
    if liveness == "alive":
        return False
    return attempt.lease_expires_at is not None and attempt.lease_expires_at <= t


LOCAL_HOLDER_RECHECK: float = 1.0
"""Seconds between two looks at a running attempt held by a live process of this host (this
one included: the wake-up it queues may be run by another process after it died): if the
holder dies, whoever waits on the step notices within about this long (SPEC 6: a same-host
dead holder is abandoned at once), not at the end of the lease. The cost: one more pass a
second for a run whose step runs on this host."""


def holder_recheck_at(step: StepState, t: datetime) -> datetime | None:
    """When a waiter should look at the running attempt of ``step`` again: at its lease end,
    or within :data:`LOCAL_HOLDER_RECHECK` seconds when a live process of this host holds
    it (its death is noticed by ``holder_abandoned`` at once)."""
    attempt = step.current_attempt
    lease = attempt.lease_expires_at if attempt is not None else None
    owner = attempt.owner if attempt is not None else None
    if owner is not None and process.holder_liveness(owner) == "alive":
        soon = t + timedelta(seconds=LOCAL_HOLDER_RECHECK)
        return soon if lease is None or soon < lease else lease
    return lease


async def abandon(state: WorkflowStateService, run_id: str, step: StepState) -> StepState:
    """End the dead holder's attempt; it is run again (see :data:`ABANDON_GRACE`). An attempt
    that this process gave up because the store failed under it (see
    :func:`~pikku_typing.runtime.process.mark_outage`) ends as :data:`STORE_OUTAGE_ERROR`:
    it runs again and does not count against the step's retries (a database blip never
    fails a workflow), up to :data:`OUTAGE_GRACE` times per step."""
    attempt = step.current_attempt
    owner = attempt.owner if attempt is not None else None
    t = now()
    who = f"pid {owner.pid} on {owner.host}" if owner else "an unknown holder"
    outage = (
        owner is not None and process.ended_by_outage(owner)
        and _ended_with(step, STORE_OUTAGE_ERROR) < OUTAGE_GRACE
    )
    if outage:
        again = True
        error = ErrorInfo(
            type=STORE_OUTAGE_ERROR,
            message=f"attempt {step.attempt_count} was cut short: the store failed under its "
            f"holder ({who}); it runs again and does not count against the step's retries",
            step=step.key,
        )
    else:
        again = step.attempt_count < attempt_limit(step) or _ended_with(step, ABANDONED_ERROR) < ABANDON_GRACE
        error = ErrorInfo(
            type=ABANDONED_ERROR,
            message=f"attempt {step.attempt_count} abandoned: its holder ({who}) is gone",
            step=step.key,
        )
    updated = await state.fail_step_attempt(
        run_id, step.key, token=owner.token if owner else None, error=error,
        retry_at=t if again else None,
    )
    if owner is not None:
        process.forget_outage(owner.token)
    if updated is None:
        fresh = await state.get_step(run_id, step.key)
        assert fresh is not None
        return fresh
    _observe.recovery(
        "attempt %d of step %s of run %s %s; %s",
        step.attempt_count, step.key, run_id,
        f"cut short by a store outage under its holder ({who})" if outage
        else f"abandoned: its holder ({who}) is gone",
        "it runs again" if again else "no attempt left",
        run_id=run_id, step_key=step.key, level=logging.WARNING,
    )
    return updated


def heartbeat(
    state: WorkflowStateService, run_id: str, key: str, token: str, lease_seconds: float
) -> contextlib.AbstractAsyncContextManager[None]:
    """Extend the lease of a running attempt every third of the lease while the body runs.

    Nothing runs for an attempt shorter than the first beat (most are): a timer of the event
    loop (``call_later``, no task) starts the beating task when the first beat is due, and
    is cancelled when the body ends first. A task per attempt, created and cancelled around
    every short step, cost more than the step's own bookkeeping (issue 16)."""
    return _Heartbeat(state, run_id, key, token, lease_seconds)


class _Heartbeat:
    __slots__ = ("interval", "key", "lease_seconds", "run_id", "state", "task", "timer", "token")

    def __init__(
        self, state: WorkflowStateService, run_id: str, key: str, token: str, lease_seconds: float
    ) -> None:
        self.state = state
        self.run_id = run_id
        self.key = key
        self.token = token
        self.lease_seconds = lease_seconds
        self.interval = max(lease_seconds / 3, 0.05)
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(self.interval, self._start)

    async def __aexit__(self, *exc_info: object) -> None:
        if self.timer is not None:
            self.timer.cancel()
        task = self.task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _start(self) -> None:
        self.task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        key, run_id, interval = self.key, self.run_id, self.interval
        while True:
            try:
                if not await self.state.heartbeat_step(
                    run_id, key, token=self.token, lease_seconds=self.lease_seconds
                ):
                    return  # the claim was taken away: our result will be refused
            except Exception as exc:  # a transient store error must not kill the step
                runtime_log.warning(
                    "heartbeat of step %s of run %s failed: %s (retried in %.1f s; the lease "
                    "expires if it keeps failing)", key, run_id, describe(exc), interval,
                    extra=fields(run_id=run_id, step_key=key),
                )
            await asyncio.sleep(interval)


async def call_with_middleware(
    middleware: Sequence[StepMiddleware],
    call: StepCall,
    execute: Callable[[], Awaitable[Any]],
) -> Any:
    """Run ``execute`` wrapped by ``middleware`` (the first is the outermost)."""
    if not middleware:
        return await execute()

    def wrap(index: int) -> Callable[[], Awaitable[Any]]:
        if index == len(middleware):
            return execute

        async def call_next() -> Any:
            return await middleware[index](call, wrap(index + 1))

        return call_next

    return await wrap(0)()
