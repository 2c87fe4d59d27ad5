"""The queue contract between the runtime and its job transports (in-process, PostgreSQL).

The runtime core knows only this interface: it never knows which queue (or store) it runs on.
Delivery is at-least-once; the runtime makes jobs idempotent (atomic step claims), so a queue
may deliver a job twice.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from pikku_typing import _otel

JobKind = Literal["orchestrate", "step"]


class Job(BaseModel):
    """One unit of work. JSON-serializable (stored by persistent queues)."""

    model_config = ConfigDict(frozen=True)

    queue: str
    """Queue name: ``orchestrator_queue(workflow)`` or ``step_queue(workflow, rpc_name)``."""
    kind: JobKind
    workflow: str
    run_id: str
    step_key: str | None = None
    """For ``step`` jobs: the step to run."""
    attempt: int | None = None
    run_at: datetime | None = None
    """Not before this time (sleeps, retry delays); ``None``: now."""
    dedupe_key: str | None = None
    """Jobs with the same key that are still queued are merged (best effort)."""
    trace: tuple[tuple[str, str], ...] | None = Field(default_factory=_otel.job_carrier)
    """The OpenTelemetry context of whoever queued the job (``(("traceparent", ...),)``), so
    the job's spans join that trace in any process; ``None`` when tracing is off (see
    :mod:`pikku_typing._otel`)."""


JobHandler = Callable[[Job], Awaitable[None]]


async def wait_for_work(
    running: set[asyncio.Task[None]],
    wake: asyncio.Event,
    stop: asyncio.Event | None,
    timeout: float | None,
) -> set[asyncio.Task[None]]:
    """What a serving queue does between two looks for due jobs: wait until one of the
    ``running`` jobs ends, ``wake`` or ``stop`` is set, or ``timeout`` seconds pass (``None``:
    no limit; ``<= 0``: no wait). Return the jobs still running."""
    if timeout is None or timeout > 0:
        signal = asyncio.ensure_future(wake.wait())
        stopper = None if stop is None else asyncio.ensure_future(stop.wait())
        waiters: set[asyncio.Future[Any]] = {*running, signal}
        if stopper is not None:
            waiters.add(stopper)
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signal.cancel()
            if stopper is not None:
                stopper.cancel()
    return {task for task in running if not task.done()}


def orchestrator_queue(workflow: str) -> str:
    """Queue of a workflow's orchestrator passes."""
    return f"pikku-workflow-{workflow}-orchestrator"


def step_queue(workflow: str, rpc_name: str) -> str:
    """Queue of a workflow's remote steps calling ``rpc_name``: one slow RPC cannot block
    another workflow's steps."""
    return f"pikku-workflow-{workflow}-rpc-{rpc_name}"


class WorkflowQueue(ABC):
    """A job transport."""

    self_driving: bool = False
    """``True``: this process can run the queue's jobs itself, so ``client.result()`` in a
    process that does not ``serve()`` drains the due jobs while it waits (the embedded
    queues); ``False``: other workers run them (``PostgresQueue``)."""

    @abstractmethod
    async def enqueue(self, job: Job) -> None:
        """Add a job (due at ``job.run_at``)."""

    @abstractmethod
    async def drain(self, handler: JobHandler, *, queues: Sequence[str] | None = None) -> int:
        """Run every job that is due, including jobs enqueued meanwhile, until none is due;
        return how many ran. Jobs due later stay queued."""

    @abstractmethod
    async def serve(
        self,
        handler: JobHandler,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 1,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Run jobs as they become due until ``stop`` is set (or the task is cancelled);
        in-flight jobs finish or are released on stop."""

    async def check(self) -> None:  # noqa: B027 - optional hook
        """Reach the backend (``pikku-worker`` calls it before serving, so a dead database
        fails at once): :class:`~pikku_typing.errors.StoreUnavailableError` when it cannot.
        Nothing to reach for an in-process queue."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
