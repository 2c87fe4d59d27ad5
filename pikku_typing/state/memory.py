"""An in-process state store: for tests and the in-process default.

Runs and steps are kept as JSON text (pydantic ``model_dump_json``), exactly what a durable
store would keep: nothing handed out (or taken in) is an object the store holds, so callers
may mutate what they get, and a value that is not JSON fails here as it would in the file or
SQLite store (decoding JSON is also several times faster than ``copy.deepcopy``). Each
operation runs without awaiting, under a ``threading.Lock``, so it is atomic for asyncio
tasks and threads alike. ``lock_run`` is a
per-run lock that works across tasks, event loops and threads of one process (a process is
the whole world of this store).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

from pikku_typing.errors import RunAlreadyExistsError, RunNotFoundError
from pikku_typing.models import (
    ClaimOwner,
    ErrorInfo,
    RunStatus,
    StepState,
    WorkflowEvent,
    WorkflowRun,
)
from pikku_typing.state import _common as c
from pikku_typing.state.base import RunChanges, WorkflowStateService, validate_run_id


class _Record:
    __slots__ = ("created_us", "events", "run", "status", "steps", "stopped", "workflow")

    def __init__(self, run: WorkflowRun[Any, Any]) -> None:
        self.workflow = run.workflow
        self.created_us = c.to_micros(run.created_at)
        self.status = RunStatus(run.status)
        self.stopped = run.cancel_requested or self.status.is_settled
        """A step boundary stops here: the run has a cancel request or is settled."""
        self.run = run.model_dump_json()
        """The run as JSON."""
        self.steps: dict[str, str] = {}
        """Step key -> the step as JSON, in creation order."""
        self.events: list[str] = []
        """The run's events as JSON, in send order."""

    def set_run(self, run: WorkflowRun[Any, Any]) -> str:
        self.status = RunStatus(run.status)
        self.stopped = run.cancel_requested or self.status.is_settled
        self.run = run.model_dump_json()
        return self.run


def _run(doc: str) -> WorkflowRun[Any, Any]:
    return WorkflowRun.model_validate_json(doc)


def _step(doc: str) -> StepState:
    return StepState.model_validate_json(doc)


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

    # ------------------------------------------------------------------ runs
    async def create_run(
        self,
        workflow: str,
        input: Any,
        *,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        version: str | None = None,
    ) -> WorkflowRun[Any, Any]:
        run = c.new_run(workflow, input, run_id, parent_run_id, version)
        run_id = run.id
        record = _Record(run)
        with self._mutex:
            if run_id in self._records:
                raise RunAlreadyExistsError(f"a run with id {run_id!r} already exists")
            self._records[run_id] = record
        return _run(record.run)

    async def get_run(self, run_id: str) -> WorkflowRun[Any, Any]:
        with self._mutex:
            doc = self._record(run_id).run
        return _run(doc)

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
            matches = [
                (r.created_us, run_id, r.run)
                for run_id, r in self._records.items()
                if (workflow is None or r.workflow == workflow)
                and (statuses is None or r.status in statuses)
            ]
        matches.sort(reverse=True)
        if limit is not None:
            matches = matches[:limit]
        return [_run(doc) for _, _, doc in matches]

    async def _update_run(
        self,
        run_id: str,
        changes: RunChanges,
        expect_status: Collection[RunStatus] | None,
    ) -> WorkflowRun[Any, Any] | None:
        expect = c.expect_filter(expect_status)
        with self._mutex:
            record = self._record(run_id)
            if expect is not None and record.status not in expect:
                return None
            doc = record.set_run(changes.apply(_run(record.run), c.now_utc()))
        return _run(doc)

    # ----------------------------------------------------------------- steps
    async def get_step_states(self, run_id: str) -> dict[str, StepState]:
        with self._mutex:
            docs = list(self._record(run_id).steps.items())
        return {key: _step(doc) for key, doc in docs}

    async def get_step(self, run_id: str, key: str) -> StepState | None:
        with self._mutex:
            doc = self._record(run_id).steps.get(key)
        return None if doc is None else _step(doc)

    async def insert_step(self, run_id: str, step: StepState) -> StepState:
        new = step.model_dump_json()
        with self._mutex:
            steps = self._record(run_id).steps
            doc = steps.setdefault(step.key, new)
        return _step(doc)

    async def insert_step_at_boundary(self, run_id: str, step: StepState) -> StepState | None:
        new = step.model_dump_json()
        with self._mutex:
            record = self._record(run_id)
            if record.stopped:
                return None
            doc = record.steps.setdefault(step.key, new)
        return step if doc is new else _step(doc)

    def _transition(
        self, run_id: str, key: str, change: Callable[[StepState], bool]
    ) -> StepState | None:
        """Apply ``change`` to the step atomically; the changed step, or ``None``."""
        with self._mutex:
            steps = self._record(run_id).steps
            doc = steps.get(key)
            if doc is None:
                return None
            step = _step(doc)
            if not change(step):
                return None
            doc = steps[key] = step.model_dump_json()
        return _step(doc)

    async def schedule_step(self, run_id: str, key: str, *, at: datetime | None) -> StepState:
        now = c.now_utc()
        step = self._transition(run_id, key, lambda s: c.apply_schedule(s, at, now))
        if step is None:
            step = await self._require_step(run_id, key)
        return step

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
        return self._transition(
            run_id, key, lambda s: c.apply_claim(s, owner, lease_seconds, when)
        )

    async def heartbeat_step(
        self, run_id: str, key: str, *, token: str, lease_seconds: float
    ) -> bool:
        now = c.now_utc()
        changed = self._transition(
            run_id, key, lambda s: c.apply_heartbeat(s, token, lease_seconds, now)
        )
        return changed is not None

    async def complete_step(
        self, run_id: str, key: str, *, result: Any, token: str | None
    ) -> bool:
        now = c.now_utc()
        changed = self._transition(
            run_id, key, lambda s: c.apply_complete(s, result, token, now)
        )
        return changed is not None

    async def fail_step_attempt(
        self,
        run_id: str,
        key: str,
        *,
        token: str | None,
        error: ErrorInfo,
        retry_at: datetime | None,
    ) -> StepState | None:
        now = c.now_utc()
        return self._transition(
            run_id, key, lambda s: c.apply_fail(s, token, error, retry_at, now)
        )

    async def reset_step(
        self, run_id: str, key: str, *, attempts: int = 1, at: datetime | None = None
    ) -> StepState | None:
        now = c.now_utc()
        step = self._transition(run_id, key, lambda s: c.apply_reset(s, attempts, at, now))
        if step is None:
            await self._require_step(run_id, key)
        return step

    reset_step.__doc__ = c.RESET_DOC

    # ---------------------------------------------------------------- events
    async def send_event(
        self, run_id: str, name: str, payload: Any
    ) -> WorkflowEvent | None:
        validate_run_id(run_id)
        now = c.now_utc()
        with self._mutex:
            record = self._records.get(run_id)
            if record is None or record.status.is_settled:
                return None
            event = WorkflowEvent(
                seq=len(record.events) + 1, run_id=run_id, name=name, payload=payload, sent_at=now
            )
            doc = event.model_dump_json()
            record.events.append(doc)
            run = _run(record.run)
            if c.apply_wake_on_event(run, now):
                record.set_run(run)
        return WorkflowEvent.model_validate_json(doc)

    async def consume_event(
        self, run_id: str, name: str, step_key: str
    ) -> WorkflowEvent | None:
        now = c.now_utc()
        with self._mutex:
            record = self._record(run_id)
            events = [WorkflowEvent.model_validate_json(doc) for doc in record.events]
            index = c.pick_event(events, name, step_key)
            if index is None:
                return None
            event = events[index]
            if c.apply_consume(event, step_key, now):
                record.events[index] = event.model_dump_json()
        return event

    async def list_events(self, run_id: str) -> list[WorkflowEvent]:
        with self._mutex:
            docs = list(self._record(run_id).events)
        return [WorkflowEvent.model_validate_json(doc) for doc in docs]

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
