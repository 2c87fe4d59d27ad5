"""The in-process queue: the embedded default.

Jobs live in this process's memory (a heap ordered by due time); nothing survives a restart,
which is fine because the state store is the source of truth: ``WorkflowRuntime.recover()``
rebuilds the queue from it. A job with a ``dedupe_key`` that is still queued is not queued
twice.

A job whose handler raises (the runtime raises only transient infrastructure errors such as
:class:`~pikku_typing.errors.StoreUnavailableError`: errors of user code are recorded as step
or run failures) is put back in the queue with an exponential backoff (``retry_backoff``,
doubled per failure, capped at ``max_retry_backoff``). A job is never dropped: after
``max_job_retries`` failures it is logged as an error and stays queued, retried every
``max_retry_backoff`` seconds by ``serve()`` (a long outage strands no run). ``drain()`` waits
for the backoff of jobs that failed at most ``max_job_retries`` times, so a short outage does
not end a drain early, and returns once only jobs past that bound (or due later) remain, so
it never spins forever on a job that always fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pikku_typing._log import fields, worker_log
from pikku_typing.runtime.queues.base import Job, JobHandler, WorkflowQueue, wait_for_work

log = worker_log


def _due(job: Job) -> float:
    if job.run_at is None:
        return 0.0
    run_at = job.run_at if job.run_at.tzinfo else job.run_at.replace(tzinfo=UTC)
    return run_at.timestamp()


_Entry = tuple[float, int, Job, int]
"""A heap entry: (due timestamp, sequence number, job, failures so far)."""


class InProcessQueue(WorkflowQueue):
    """Jobs in memory, run by this process's ``drain()``/``serve()``.

    ``max_job_retries``: how many failures ``drain()`` waits through (the job then stays
    queued, retried every ``max_retry_backoff`` s, and ``drain()`` no longer waits for it);
    ``retry_backoff``: seconds before the first redelivery, doubled per
    failure up to ``max_retry_backoff``. ``clock``: the wall clock jobs are due by (seconds
    since the epoch, default ``time.time``; tests inject a fake one)."""

    self_driving = True

    def __init__(
        self,
        *,
        max_job_retries: int = 5,
        retry_backoff: float = 0.05,
        max_retry_backoff: float = 2.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock: Callable[[], float] = clock if clock is not None else time.time
        self.max_job_retries = max(max_job_retries, 0)
        self.retry_backoff = max(retry_backoff, 0.0)
        self.max_retry_backoff = max(max_retry_backoff, self.retry_backoff)
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._queued_keys: set[str] = set()
        self._signal: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self._heap)} queued)"

    def __len__(self) -> int:
        return len(self._heap)

    def pending(self) -> list[Job]:
        """The queued jobs, in due order."""
        return [entry[2] for entry in sorted(self._heap)]

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
        self._push(job, _due(job), 0)

    def _push(self, job: Job, due: float, failures: int) -> bool:
        if job.dedupe_key is not None:
            if job.dedupe_key in self._queued_keys:
                return False
            self._queued_keys.add(job.dedupe_key)
        heapq.heappush(self._heap, (due, next(self._seq), job, failures))
        if self._signal is not None:
            self._signal[1].set()
        return True

    def _pop_due(self, queues: Sequence[str] | None) -> _Entry | None:
        now = self._clock()
        if queues is None:
            if self._heap and self._heap[0][0] <= now:
                entry = heapq.heappop(self._heap)
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
        return entry

    async def _handle(self, handler: JobHandler, entry: _Entry) -> None:
        """Run one job; when the handler raises, put the job back with a backoff (bounded)."""
        _, _, job, failures = entry
        try:
            await handler(job)
        except Exception as exc:
            failures += 1
            if failures > self.max_job_retries:
                if failures == self.max_job_retries + 1:
                    log.error(
                        "%s job of run %s (%s) failed %d times (%s: %s); kept, retried "
                        "every %.1fs",
                        job.kind, job.run_id, job.workflow, failures, type(exc).__name__, exc,
                        self.max_retry_backoff,
                        extra=fields(run_id=job.run_id, workflow=job.workflow),
                    )
                self._push(job, max(self._clock() + self.max_retry_backoff, _due(job)), failures)
                return
            delay = min(self.retry_backoff * 2 ** (failures - 1), self.max_retry_backoff)
            log.warning(
                "%s job of run %s (%s) failed (%s: %s); retry %d/%d in %.2fs",
                job.kind, job.run_id, job.workflow, type(exc).__name__, exc,
                failures, self.max_job_retries, delay,
                extra=fields(run_id=job.run_id, workflow=job.workflow, delay=delay),
            )
            self._push(job, max(self._clock() + delay, _due(job)), failures)

    def _retry_wait(self, queues: Sequence[str] | None) -> float | None:
        """Seconds until the earliest job put back after a failure is due (``None``: none)."""
        retrying = [
            e[0]
            for e in self._heap
            if 0 < e[3] <= self.max_job_retries and (queues is None or e[2].queue in queues)
        ]
        if not retrying:
            return None
        return max(min(retrying) - self._clock(), 0.0)

    def _next_wait(self, queues: Sequence[str] | None) -> float | None:
        entries = self._heap if queues is None else [e for e in self._heap if e[2].queue in queues]
        if not entries:
            return None
        return max(min(entries)[0] - self._clock(), 0.0)

    async def drain(self, handler: JobHandler, *, queues: Sequence[str] | None = None) -> int:
        """Run every due job until none is due; a job put back after a failure is waited for
        (its backoff is short and its retries bounded), a job due later (a sleep) is not."""
        count = 0
        while True:
            while (entry := self._pop_due(queues)) is not None:
                await self._handle(handler, entry)
                count += 1
            wait = self._retry_wait(queues)
            if wait is None:
                return count
            await asyncio.sleep(wait)

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
                while len(running) < concurrency and (entry := self._pop_due(queues)) is not None:
                    running.add(asyncio.create_task(self._run(handler, entry)))
                event.clear()
                timeout = self._next_wait(queues) if len(running) < concurrency else None
                running = await wait_for_work(running, event, stop, timeout)
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _run(self, handler: JobHandler, entry: _Entry) -> None:
        try:
            await self._handle(handler, entry)
        except Exception:  # pragma: no cover - _handle does not raise
            log.exception("job %s of run %s failed", entry[2].kind, entry[2].run_id)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._heap.clear()
            self._queued_keys.clear()
