"""The in-process queue: the embedded default.

Jobs live in this process's memory (a heap ordered by due time); nothing survives a restart,
which is fine because the state store is the source of truth: ``WorkflowRuntime.recover()``
rebuilds the queue from it. A job with a ``dedupe_key`` that is still queued is not queued
twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from pikku_typing.runtime.queues.base import Job, JobHandler, WorkflowQueue

log = logging.getLogger("pikku_typing.runtime")


def _due(job: Job) -> float:
    if job.run_at is None:
        return 0.0
    run_at = job.run_at if job.run_at.tzinfo else job.run_at.replace(tzinfo=UTC)
    return run_at.timestamp()


class InProcessQueue(WorkflowQueue):
    """Jobs in memory, run by this process's ``drain()``/``serve()``."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._queued_keys: set[str] = set()
        self._signal: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def pending(self) -> list[Job]:
        """The queued jobs, in due order."""
        return [job for _, _, job in sorted(self._heap)]

    def next_due(self) -> datetime | None:
        """When the earliest queued job is due (``None`` if the queue is empty)."""
        if not self._heap:
            return None
        return datetime.fromtimestamp(self._heap[0][0], UTC)

    def _event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._signal is None or self._signal[0] is not loop:
            self._signal = (loop, asyncio.Event())
        return self._signal[1]

    async def enqueue(self, job: Job) -> None:
        if job.dedupe_key is not None:
            if job.dedupe_key in self._queued_keys:
                return
            self._queued_keys.add(job.dedupe_key)
        heapq.heappush(self._heap, (_due(job), next(self._seq), job))
        if self._signal is not None:
            self._signal[1].set()

    def _pop_due(self, queues: Sequence[str] | None) -> Job | None:
        now = time.time()
        if queues is None:
            if self._heap and self._heap[0][0] <= now:
                job = heapq.heappop(self._heap)[2]
            else:
                return None
        else:
            wanted = set(queues)
            candidates = [e for e in self._heap if e[0] <= now and e[2].queue in wanted]
            if not candidates:
                return None
            entry = min(candidates)
            self._heap.remove(entry)
            heapq.heapify(self._heap)
            job = entry[2]
        if job.dedupe_key is not None:
            self._queued_keys.discard(job.dedupe_key)
        return job

    def _next_wait(self, queues: Sequence[str] | None) -> float | None:
        entries = self._heap if queues is None else [e for e in self._heap if e[2].queue in queues]
        if not entries:
            return None
        return max(min(entries)[0] - time.time(), 0.0)

    async def drain(self, handler: JobHandler, *, queues: Sequence[str] | None = None) -> int:
        count = 0
        while (job := self._pop_due(queues)) is not None:
            await handler(job)
            count += 1
        return count

    async def serve(
        self,
        handler: JobHandler,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 1,
        stop: asyncio.Event | None = None,
    ) -> None:
        concurrency = max(concurrency, 1)
        running: set[asyncio.Task[None]] = set()
        event = self._event()
        try:
            while stop is None or not stop.is_set():
                while len(running) < concurrency and (job := self._pop_due(queues)) is not None:
                    running.add(asyncio.create_task(self._run(handler, job)))
                event.clear()
                waiters: set[asyncio.Future[object]] = set(running)  # type: ignore[arg-type]
                signal = asyncio.ensure_future(event.wait())
                waiters.add(signal)  # type: ignore[arg-type]
                stopper = None
                if stop is not None:
                    stopper = asyncio.ensure_future(stop.wait())
                    waiters.add(stopper)  # type: ignore[arg-type]
                timeout = self._next_wait(queues) if len(running) < concurrency else None
                try:
                    await asyncio.wait(
                        waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    signal.cancel()
                    if stopper is not None:
                        stopper.cancel()
                running = {t for t in running if not t.done()}
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    @staticmethod
    async def _run(handler: JobHandler, job: Job) -> None:
        try:
            await handler(job)
        except Exception:
            log.exception("job %s of run %s failed", job.kind, job.run_id)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._heap.clear()
            self._queued_keys.clear()
