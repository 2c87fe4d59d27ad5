"""An in-process state store: for tests and the in-process default.

Every method works on copies: nothing handed out (or taken in) is the object the store keeps,
so callers may mutate what they get. Each operation runs without awaiting, under a
``threading.Lock``, so it is atomic for asyncio tasks and threads alike. ``lock_run`` is a
per-run lock that works across tasks, event loops and threads of one process (a process is
the whole world of this store).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

from pikku_typing.errors import RunAlreadyExistsError, RunNotFoundError, StepNotFoundError
from pikku_typing.models import ClaimOwner, ErrorInfo, RunStatus, StepState, WorkflowRun
from pikku_typing.state import _common as c
from pikku_typing.state.base import RunChanges, WorkflowStateService, validate_run_id


class _Record:
    __slots__ = ("run", "steps")

    def __init__(self, run: WorkflowRun[Any, Any]) -> None:
        self.run = run
        self.steps: dict[str, StepState] = {}


def _copy_run(run: WorkflowRun[Any, Any]) -> WorkflowRun[Any, Any]:
    return run.model_copy(deep=True)


def _copy_step(step: StepState) -> StepState:
    return step.model_copy(deep=True)


class InMemoryWorkflowStateService(WorkflowStateService):
    """Keeps runs and steps in memory; lost when the process ends."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._records: dict[str, _Record] = {}
        self._held: set[str] = set()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(runs={len(self._records)})"

    def _record(self, run_id: str) -> _Record:
        validate_run_id(run_id)
        record = self._records.get(run_id)
        if record is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return record

    def _step(self, run_id: str, key: str) -> StepState:
        step = self._record(run_id).steps.get(key)
        if step is None:
            raise StepNotFoundError(f"run {run_id!r} has no step {key!r}")
        return step

    # ------------------------------------------------------------------ runs
    async def create_run(
        self, workflow: str, input: Any, *, run_id: str | None = None
    ) -> WorkflowRun[Any, Any]:
        run_id = c.new_run_id() if run_id is None else validate_run_id(run_id)
        now = c.now_utc()
        run: WorkflowRun[Any, Any] = WorkflowRun(
            id=run_id,
            workflow=workflow,
            status=RunStatus.RUNNING,
            input=input,
            created_at=now,
            updated_at=now,
        )
        run = _copy_run(run)
        with self._mutex:
            if run_id in self._records:
                raise RunAlreadyExistsError(f"a run with id {run_id!r} already exists")
            self._records[run_id] = _Record(run)
            return _copy_run(run)

    async def get_run(self, run_id: str) -> WorkflowRun[Any, Any]:
        with self._mutex:
            return _copy_run(self._record(run_id).run)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        limit: int | None = None,
    ) -> list[WorkflowRun[Any, Any]]:
        c.check_limit(limit)
        statuses = c.status_filter(status)
        with self._mutex:
            runs = [
                r.run
                for r in self._records.values()
                if (workflow is None or r.run.workflow == workflow)
                and (statuses is None or r.run.status in statuses)
            ]
            return [_copy_run(r) for r in c.sort_and_limit(runs, limit)]

    async def _update_run(
        self,
        run_id: str,
        changes: RunChanges,
        expect_status: Collection[RunStatus] | None,
    ) -> WorkflowRun[Any, Any] | None:
        expect = c.expect_filter(expect_status)
        with self._mutex:
            record = self._record(run_id)
            if expect is not None and record.run.status not in expect:
                return None
            record.run = _copy_run(changes.apply(record.run, c.now_utc()))
            return _copy_run(record.run)

    # ----------------------------------------------------------------- steps
    async def get_step_states(self, run_id: str) -> dict[str, StepState]:
        with self._mutex:
            steps = self._record(run_id).steps
            return {key: _copy_step(step) for key, step in steps.items()}

    async def get_step(self, run_id: str, key: str) -> StepState | None:
        with self._mutex:
            step = self._record(run_id).steps.get(key)
            return None if step is None else _copy_step(step)

    async def insert_step(self, run_id: str, step: StepState) -> StepState:
        with self._mutex:
            record = self._record(run_id)
            existing = record.steps.get(step.key)
            if existing is None:
                existing = record.steps[step.key] = _copy_step(step)
            return _copy_step(existing)

    async def schedule_step(self, run_id: str, key: str, *, at: datetime | None) -> StepState:
        with self._mutex:
            step = self._step(run_id, key)
            c.apply_schedule(step, at, c.now_utc())
            return _copy_step(step)

    def _mutate(self, run_id: str, key: str) -> tuple[_Record, StepState] | None:
        record = self._record(run_id)
        step = record.steps.get(key)
        if step is None:
            return None
        return record, _copy_step(step)

    async def claim_step(
        self,
        run_id: str,
        key: str,
        *,
        owner: ClaimOwner,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> StepState | None:
        when = c.now_utc() if now is None else c.aware(now)
        with self._mutex:
            found = self._mutate(run_id, key)
            if found is None:
                return None
            record, step = found
            if not c.apply_claim(step, owner, lease_seconds, when):
                return None
            record.steps[key] = step
            return _copy_step(step)

    async def heartbeat_step(
        self, run_id: str, key: str, *, token: str, lease_seconds: float
    ) -> bool:
        with self._mutex:
            found = self._mutate(run_id, key)
            if found is None:
                return False
            record, step = found
            if not c.apply_heartbeat(step, token, lease_seconds, c.now_utc()):
                return False
            record.steps[key] = step
            return True

    async def complete_step(
        self, run_id: str, key: str, *, result: Any, token: str | None
    ) -> bool:
        with self._mutex:
            found = self._mutate(run_id, key)
            if found is None:
                return False
            record, step = found
            # Deep copy the result on the way in: the caller may mutate its own object later.
            if not c.apply_complete(step, result, token, c.now_utc()):
                return False
            record.steps[key] = _copy_step(step)
            return True

    async def fail_step_attempt(
        self,
        run_id: str,
        key: str,
        *,
        token: str | None,
        error: ErrorInfo,
        retry_at: datetime | None,
    ) -> StepState | None:
        with self._mutex:
            found = self._mutate(run_id, key)
            if found is None:
                return None
            record, step = found
            if not c.apply_fail(step, token, error, retry_at, c.now_utc()):
                return None
            record.steps[key] = step
            return _copy_step(step)

    # ------------------------------------------------------------- locking
    def lock_run(
        self, run_id: str, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        validate_run_id(run_id)
        return self._lock(run_id, timeout)

    @asynccontextmanager
    async def _lock(self, run_id: str, timeout: float | None) -> AsyncIterator[None]:
        await self._acquire(run_id, timeout)
        try:
            yield
        finally:
            self._release(run_id)

    async def _acquire(self, run_id: str, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        loop = asyncio.get_running_loop()
        while True:
            with self._mutex:
                if run_id not in self._held:
                    self._held.add(run_id)
                    return
                waiter: asyncio.Future[None] = loop.create_future()
                entry = (loop, waiter)
                self._waiters.setdefault(run_id, []).append(entry)
            try:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"timed out after {timeout}s waiting for the lock of run {run_id!r}"
                    )
                try:
                    await asyncio.wait_for(waiter, remaining)
                except TimeoutError:
                    raise TimeoutError(
                        f"timed out after {timeout}s waiting for the lock of run {run_id!r}"
                    ) from None
            finally:
                with self._mutex:
                    waiters = self._waiters.get(run_id)
                    if waiters is not None and entry in waiters:
                        waiters.remove(entry)
                        if not waiters:
                            del self._waiters[run_id]

    def _release(self, run_id: str) -> None:
        with self._mutex:
            self._held.discard(run_id)
            waiters = self._waiters.pop(run_id, [])
        # Wake every waiter; each retries the acquisition (a timed-out one simply doesn't).
        for loop, waiter in waiters:
            if loop.is_closed():
                continue
            loop.call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
