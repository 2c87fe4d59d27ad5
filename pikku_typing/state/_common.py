"""Private helpers shared by the state stores.

The step transitions (claim, heartbeat, complete, fail, schedule) are written once here as
pure functions over a :class:`StepState` *copy*, so the memory and file stores (and the
SQLite store, which keeps each step as a JSON document with a few indexed columns) give
exactly the same answers. Each function mutates the step it is given in place and returns
whether it changed anything; callers own the copy and the persistence.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import time
import uuid
from collections.abc import AsyncIterator, Collection, Iterable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pikku_typing import _clock
from pikku_typing.errors import PikkuError, StorePathError, StoreUnavailableError
from pikku_typing.models import (
    ClaimOwner,
    ErrorInfo,
    RunStatus,
    StepAttempt,
    StepState,
    StepStatus,
    WorkflowEvent,
    WorkflowRun,
)
from pikku_typing.state.base import validate_run_id

CLAIMABLE: frozenset[StepStatus] = frozenset({StepStatus.PENDING, StepStatus.SCHEDULED})


def new_run_id() -> str:
    return uuid.uuid4().hex


def new_run(
    workflow: str,
    input: Any,
    run_id: str | None,
    parent_run_id: str | None = None,
    version: str | None = None,
) -> WorkflowRun[Any, Any]:
    """A new run in status ``running`` (a fresh id unless a valid ``run_id`` is given)."""
    now = now_utc()
    return WorkflowRun(
        id=new_run_id() if run_id is None else validate_run_id(run_id),
        workflow=workflow,
        status=RunStatus.RUNNING,
        input=input,
        created_at=now,
        updated_at=now,
        parent_run_id=None if parent_run_id is None else validate_run_id(parent_run_id),
        version=version,
    )


def aware(value: datetime) -> datetime:
    """Treat a naive datetime as UTC so comparisons never mix naive and aware values."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def now_utc() -> datetime:
    return _clock.now()  # the wall clock, or a test environment's fake clock


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch (an exact, sortable integer)."""
    delta = aware(value) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def status_filter(
    status: RunStatus | Collection[RunStatus] | None,
) -> frozenset[RunStatus] | None:
    if status is None:
        return None
    if isinstance(status, str):
        return frozenset({RunStatus(status)})
    return frozenset(RunStatus(s) for s in status)


def expect_filter(expect: Collection[RunStatus] | None) -> frozenset[RunStatus] | None:
    if expect is None:
        return None
    if isinstance(expect, str):
        return frozenset({RunStatus(expect)})
    return frozenset(RunStatus(s) for s in expect)


def sort_and_limit(
    runs: Iterable[WorkflowRun[Any, Any]], limit: int | None
) -> list[WorkflowRun[Any, Any]]:
    """Newest first (``created_at`` then id, both descending), at most ``limit``."""
    ordered = sorted(runs, key=lambda r: (to_micros(r.created_at), r.id), reverse=True)
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        ordered = ordered[:limit]
    return ordered


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


# --------------------------------------------------------------------- step transitions


def is_claimable(step: StepState, now: datetime) -> bool:
    if step.status not in CLAIMABLE:
        return False
    return step.next_attempt_at is None or aware(step.next_attempt_at) <= now


def apply_claim(step: StepState, owner: ClaimOwner, lease_seconds: float, now: datetime) -> bool:
    if not is_claimable(step, now):
        return False
    step.attempt_count += 1
    step.status = StepStatus.RUNNING
    step.attempts.append(
        StepAttempt(
            number=step.attempt_count,
            status=StepStatus.RUNNING,
            owner=owner,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
    )
    step.next_attempt_at = None
    if step.started_at is None:
        step.started_at = now
    step.updated_at = now
    return True


def running_attempt(step: StepState, token: str | None) -> StepAttempt | None:
    """The running attempt, if the step is running and (with a token) that token holds it."""
    if step.status is not StepStatus.RUNNING or not step.attempts:
        return None
    attempt = step.attempts[-1]
    if attempt.status is not StepStatus.RUNNING:
        return None
    if token is not None and (attempt.owner is None or attempt.owner.token != token):
        return None
    return attempt


def running_token(step: StepState) -> str | None:
    attempt = running_attempt(step, None)
    return attempt.owner.token if attempt is not None and attempt.owner is not None else None


def apply_heartbeat(step: StepState, token: str, lease_seconds: float, now: datetime) -> bool:
    attempt = running_attempt(step, token)
    if attempt is None:
        return False
    attempt.lease_expires_at = now + timedelta(seconds=lease_seconds)
    step.updated_at = now
    return True


def apply_complete(step: StepState, result: Any, token: str | None, now: datetime) -> bool:
    if token is not None:
        attempt = running_attempt(step, token)
        if attempt is None:
            return False
    else:
        if step.status is StepStatus.SUCCEEDED:
            return False
        attempt = running_attempt(step, None)
    if attempt is not None:
        attempt.status = StepStatus.SUCCEEDED
        attempt.finished_at = now
    step.status = StepStatus.SUCCEEDED
    step.result = result
    step.error = None
    step.next_attempt_at = None
    step.finished_at = now
    step.updated_at = now
    return True


def apply_fail(
    step: StepState,
    token: str | None,
    error: ErrorInfo,
    retry_at: datetime | None,
    now: datetime,
) -> bool:
    attempt = running_attempt(step, token)
    if attempt is None:
        return False
    attempt.status = StepStatus.FAILED
    attempt.finished_at = now
    attempt.error = error
    step.error = error
    step.updated_at = now
    if retry_at is not None:
        step.status = StepStatus.SCHEDULED
        step.next_attempt_at = aware(retry_at)
    else:
        step.status = StepStatus.FAILED
        step.next_attempt_at = None
        step.finished_at = now
    return True


def apply_schedule(step: StepState, at: datetime | None, now: datetime) -> bool:
    if step.status is not StepStatus.PENDING:
        return False
    step.status = StepStatus.SCHEDULED
    step.next_attempt_at = aware(at) if at is not None else None
    step.updated_at = now
    return True


def apply_reset(step: StepState, attempts: int, at: datetime | None, now: datetime) -> bool:
    """Give a failed step ``attempts`` more attempts, due at ``at`` (``pikku-runs resume``)."""
    if step.status is not StepStatus.FAILED:
        return False
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    step.status = StepStatus.SCHEDULED
    step.error = None
    step.next_attempt_at = aware(at) if at is not None else None
    step.finished_at = None
    step.max_attempts = step.attempt_count + attempts
    step.updated_at = now
    return True


# ------------------------------------------------------------------------ events


def apply_wake_on_event(run: WorkflowRun[Any, Any], now: datetime) -> bool:
    """A suspended run that receives an event is due now (``wake_at``); True if changed."""
    if run.status is not RunStatus.SUSPENDED:
        return False
    if run.wake_at is not None and aware(run.wake_at) <= now:
        return False
    run.wake_at = now
    run.updated_at = now
    return True


def pick_event(events: list[WorkflowEvent], name: str, step_key: str) -> int | None:
    """Index of the event ``step_key`` consumed already, else of the first unconsumed event
    named ``name`` (events are in send order); ``None`` if there is none."""
    first: int | None = None
    for index, event in enumerate(events):
        if event.consumed_by == step_key:
            return index
        if first is None and event.consumed_by is None and event.name == name:
            first = index
    return first


def apply_consume(event: WorkflowEvent, step_key: str, now: datetime) -> bool:
    """Mark ``event`` consumed by ``step_key``; False if it already was (by that step)."""
    if event.consumed_by is not None:
        return False
    event.consumed_by = step_key
    event.consumed_at = now
    return True


RESET_DOC = """Give a ``failed`` step ``attempts`` new attempts: it becomes ``scheduled`` (due at ``at``,
or at once), its error is cleared and ``max_attempts`` is ``attempt_count + attempts``; the
attempt history is kept. Returns the updated step, or ``None`` if the step is not failed.
Raises StepNotFoundError / RunNotFoundError (an operator action used by ``pikku-runs
resume``; see :meth:`WorkflowStateService.reset_step`)."""


# ------------------------------------------------------------------------ OS errors

PATH_ERRNOS: frozenset[int] = frozenset(
    {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.ENOENT, errno.EEXIST,
     errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG}
)  # fmt: skip
"""OS errors that mean "this path cannot be used" (a configuration problem, not transient)."""


def os_error(exc: OSError, store: str, action: str) -> PikkuError:
    """The store error for an OS error: :class:`StorePathError` when the path cannot be used
    (read-only, not a directory, no permission, missing parent...), else (disk full, I/O
    error, too many open files) :class:`StoreUnavailableError`, which the runtime retries."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in PATH_ERRNOS or isinstance(exc, PermissionError | NotADirectoryError):
        path_error = StorePathError(f"{store}: cannot {action}: {reason}{where}")
        path_error.errno = exc.errno
        error: PikkuError = path_error
    else:
        error = StoreUnavailableError(f"{store}: cannot {action}: {reason}{where}")
    return error


# ------------------------------------------------------------------------ file locks


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


async def acquire_flock(path: Path, timeout: float | None, what: str) -> int:
    """Open ``path`` (created if missing) and take an exclusive ``flock`` on it, polling with
    ``LOCK_NB`` and ``asyncio.sleep`` so the event loop is never blocked. Each call opens its
    own descriptor, so the lock also excludes other tasks and threads of this process.
    Returns the descriptor (release with :func:`release_flock`); raises ``TimeoutError``,
    and :func:`os_error` for a lock file that cannot be opened."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise os_error(exc, f"store lock directory {str(path.parent)!r}", f"take {what}") from exc
    try:
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        delay = 0.0005
        while not _try_flock(fd):
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
                await asyncio.sleep(min(delay, remaining))
            else:
                await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
    except BaseException:
        os.close(fd)
        raise
    return fd


def release_flock(fd: int) -> None:
    with suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@asynccontextmanager
async def flock_context(path: Path, timeout: float | None, what: str) -> AsyncIterator[None]:
    fd = await acquire_flock(path, timeout, what)
    try:
        yield
    finally:
        release_flock(fd)
