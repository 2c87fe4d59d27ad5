"""``PostgresQueue`` (procrastinate) against the ``WorkflowQueue`` contract: drain semantics,
delayed jobs, dedupe, queue selection, stalled-worker rescue, graceful shutdown that releases
in-flight jobs, retries of failed handlers, unreachable server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn, eventually

from pikku_typing.errors import StoreUnavailableError
from pikku_typing.runtime.queues.base import Job, orchestrator_queue, step_queue
from pikku_typing.runtime.queues.postgres import PostgresQueue, procrastinate_queue_name


def test_queue_names_fit_a_listen_channel() -> None:
    short = orchestrator_queue("onboarding")
    assert procrastinate_queue_name(short) == short
    long_a = step_queue("onboarding", "users.create.with.a.long.name")
    long_b = step_queue("onboarding", "users.create.with.a.long.nam3")
    for name in (long_a, long_b, step_queue("é" * 40, "ü" * 40)):
        mapped = procrastinate_queue_name(name)
        assert len(("procrastinate_queue_v1#" + mapped).encode()) <= 63
        assert procrastinate_queue_name(name) == mapped  # deterministic
    assert procrastinate_queue_name(long_a) != procrastinate_queue_name(long_b)
    assert procrastinate_queue_name(long_a).startswith("onboarding-rpc-")


async def test_unreachable_server_is_store_unavailable() -> None:
    queue = PostgresQueue("postgresql://u:pw@127.0.0.1:9/nope", connect_timeout=2)
    with pytest.raises(StoreUnavailableError, match=r"queue at 127\.0\.0\.1:9/nope is unavailable"):
        await queue.enqueue(Job(queue="q", kind="orchestrate", workflow="w", run_id="r"))
    await queue.close()


def job(run_id: str, queue: str = "pikku-workflow-w-orchestrator", **kw: Any) -> Job:
    return Job(queue=queue, kind="orchestrate", workflow="w", run_id=run_id, **kw)


@pytest.fixture
def dsn() -> Iterator[str]:
    value = create_schema_dsn()
    yield value
    drop_schema_dsn(value)


@pytest.fixture
async def queue(dsn: str) -> AsyncIterator[PostgresQueue]:
    q = PostgresQueue(dsn, poll_interval=0.05, heartbeat_interval=0.2, stalled_after=1.0)
    yield q
    await q.close()


class Recorder:
    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def __call__(self, job: Job) -> None:
        self.jobs.append(job)


@pytest.mark.postgres
class TestOnServer:
    pytestmark = list(POSTGRES_MARKS)

    async def test_drain_runs_due_jobs_and_jobs_enqueued_meanwhile(
        self, queue: PostgresQueue
    ) -> None:
        seen: list[str] = []

        async def handler(j: Job) -> None:
            seen.append(j.run_id)
            if j.run_id == "a":
                await queue.enqueue(job("a-child"))

        await queue.enqueue(job("a", step_key="k", attempt=2))
        later = datetime.now(UTC) + timedelta(hours=1)
        await queue.enqueue(job("later", run_at=later))
        assert await queue.drain(handler) == 2
        assert seen == ["a", "a-child"]
        assert await queue.drain(handler) == 0
        assert await queue.pending_jobs() == 1  # the delayed job waits

    async def test_job_round_trips_and_delayed_job_runs_when_due(
        self, queue: PostgresQueue
    ) -> None:
        rec = Recorder()
        due = datetime.now(UTC) + timedelta(seconds=2)
        original = job("r", queue=step_queue("w", "x.y"), step_key="s#1", attempt=3, run_at=due,
                       dedupe_key="r:s#1:3")
        await queue.enqueue(original)
        ran = await queue.drain(rec)
        assert ran == 0 or datetime.now(UTC) >= due  # (a very slow machine may pass 2 s)
        while datetime.now(UTC) < due + timedelta(milliseconds=20):
            await asyncio.sleep(0.05)
        assert ran + await queue.drain(rec) == 1
        assert rec.jobs == [original]

    async def test_dedupe_key_merges_waiting_jobs(self, queue: PostgresQueue) -> None:
        rec = Recorder()
        for _ in range(3):
            await queue.enqueue(job("r", dedupe_key="r:orchestrate:now"))
        await queue.enqueue(job("r", dedupe_key="other"))
        assert await queue.drain(rec) == 2
        # once run, the key is free again
        await queue.enqueue(job("r", dedupe_key="r:orchestrate:now"))
        assert await queue.drain(rec) == 1

    async def test_drain_and_serve_select_queues(self, queue: PostgresQueue) -> None:
        rec = Recorder()
        a, b = orchestrator_queue("a"), step_queue("b", "some.rather.long.rpc.name.here")
        await queue.enqueue(job("in-a", queue=a))
        await queue.enqueue(job("in-b", queue=b))
        assert await queue.drain(rec, queues=[b]) == 1
        assert [j.run_id for j in rec.jobs] == ["in-b"]
        stop = asyncio.Event()
        server = asyncio.create_task(queue.serve(rec, queues=[a], concurrency=2, stop=stop))
        await eventually(lambda: len(rec.jobs) == 2)
        stop.set()
        await asyncio.wait_for(server, 30)
        assert [j.run_id for j in rec.jobs] == ["in-b", "in-a"]

    async def test_serve_picks_up_new_jobs_until_stopped(self, queue: PostgresQueue) -> None:
        rec = Recorder()
        stop = asyncio.Event()
        server = asyncio.create_task(queue.serve(rec, concurrency=4, stop=stop))
        for i in range(10):
            await queue.enqueue(job(f"r{i}"))
        await eventually(lambda: len(rec.jobs) == 10)
        stop.set()
        await asyncio.wait_for(server, 30)
        assert sorted(j.run_id for j in rec.jobs) == sorted(f"r{i}" for i in range(10))

    async def test_stop_releases_in_flight_jobs_after_the_grace_period(self, dsn: str) -> None:
        q = PostgresQueue(dsn, poll_interval=0.05, shutdown_timeout=0.2)
        started = asyncio.Event()
        try:
            async def stuck(j: Job) -> None:
                started.set()
                await asyncio.Event().wait()

            await q.enqueue(job("stuck"))
            stop = asyncio.Event()
            server = asyncio.create_task(q.serve(stuck, stop=stop))
            await asyncio.wait_for(started.wait(), 30)
            stop.set()
            await asyncio.wait_for(server, 30)
            rec = Recorder()
            # released: back in the queue, due at once, run by the next worker
            await eventually(lambda: q.drain(rec), interval=0.05)
            assert [j.run_id for j in rec.jobs] == ["stuck"]
        finally:
            await q.close()

    async def test_in_flight_job_finishes_when_stopped_within_grace(self, queue: PostgresQueue) -> None:
        done: list[str] = []
        started = asyncio.Event()

        async def slow(j: Job) -> None:
            started.set()
            await asyncio.sleep(0.3)
            done.append(j.run_id)

        await queue.enqueue(job("slow"))
        stop = asyncio.Event()
        server = asyncio.create_task(queue.serve(slow, stop=stop))
        await asyncio.wait_for(started.wait(), 30)
        stop.set()
        await asyncio.wait_for(server, 30)
        assert done == ["slow"]
        assert await queue.pending_jobs() == 0

    async def test_failing_handler_is_retried_later(self, queue: PostgresQueue) -> None:
        calls: list[int] = []

        async def flaky(j: Job) -> None:
            calls.append(1)
            raise RuntimeError("transient")

        await queue.enqueue(job("flaky"))
        before = datetime.now(UTC)
        assert await queue.drain(flaky) == 1
        assert calls == [1]
        assert await queue.pending_jobs() == 1  # scheduled again, with a backoff
        assert queue._pool is not None
        async with queue._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT scheduled_at FROM procrastinate_jobs WHERE status = 'todo'"
            )
            [(retry_at,)] = await cur.fetchall()
        assert retry_at >= before + timedelta(seconds=1)  # a backoff, stored with the job
        ran = await queue.drain(flaky)
        # not before its backoff (a machine slow enough to pass it may run it: then it is due)
        assert ran == 0 or datetime.now(UTC) >= retry_at

    async def test_a_job_that_keeps_failing_is_never_dropped(
        self, dsn: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Past ``max_job_retries`` failures (a long store outage) the job stays queued and
        is retried every ``max_retry_backoff`` seconds, logged once as an error: dropping it
        would strand its run. procrastinate's own strategy gave up after max_job_retries."""
        q = PostgresQueue(
            dsn, poll_interval=0.05, max_job_retries=2, retry_backoff=0.01, max_retry_backoff=0.05
        )
        calls: list[int] = []

        async def outage(j: Job) -> None:
            calls.append(1)
            if len(calls) <= 5:
                raise StoreUnavailableError("injected: the store is away")

        try:
            await q.enqueue(job("outage"))
            async def drained() -> bool:
                await q.drain(outage)
                return len(calls) > 5

            with caplog.at_level("WARNING", logger="pikku.worker"):
                await eventually(drained, interval=0.02)
            assert len(calls) == 6  # 5 failures, then it ran
            assert await q.pending_jobs() == 0
            errors = [r for r in caplog.records if r.levelname == "ERROR"]
            assert len(errors) == 1 and "failed 3 times" in errors[0].getMessage()
            assert "kept, retried every 0.05s" in errors[0].getMessage()
        finally:
            await q.close()

    async def test_a_failed_job_whose_twin_waits_is_merged_into_it(
        self, dsn: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A job fails while an identical job (same ``dedupe_key``) waits: its retry is that
        job (merged, as ``enqueue`` merges), not a crash of procrastinate's retry on the
        queueing lock that left the failed job ``doing`` for good and logged "Task exception
        was never retrieved"."""
        q = PostgresQueue(dsn, poll_interval=0.05, retry_backoff=0.01, max_retry_backoff=0.05)
        calls: list[str] = []

        async def handler(j: Job) -> None:
            calls.append(j.run_id)
            if len(calls) == 1:
                # waits meanwhile (due a little later: nobody fetches it before the retry)
                later = datetime.now(UTC) + timedelta(seconds=0.3)
                await q.enqueue(job("twin", dedupe_key="twin:now", run_at=later))
                raise StoreUnavailableError("injected: the store is away")

        try:
            await q.enqueue(job("twin", dedupe_key="twin:now"))
            with caplog.at_level("INFO"):

                async def done() -> bool:
                    await q.drain(handler)
                    return await q.pending_jobs() == 0 and len(calls) >= 2

                assert await eventually(done, interval=0.02)
            assert calls == ["twin", "twin"]  # the failed one ran again as its twin, once
            assert q._pool is not None
            async with q._pool.connection() as conn:
                cur = await conn.execute("SELECT status FROM procrastinate_jobs")
                assert await cur.fetchall() == []
            assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
        finally:
            await q.close()

    async def test_jobs_of_a_dead_worker_are_put_back(self, queue: PostgresQueue) -> None:
        await queue.enqueue(job("orphan"))
        app = await queue._ensure_open()
        manager = app.job_manager
        worker_id = await manager.register_worker()
        fetched = await manager.fetch_job(queues=None, worker_id=worker_id)
        assert fetched is not None  # now "doing", held by a worker that will never finish it
        rec = Recorder()
        assert await queue.drain(rec) == 0
        assert await queue.rescue_stalled_jobs() == 0  # its heartbeat is fresh
        assert queue._pool is not None
        async with queue._pool.connection() as conn:
            await conn.execute(
                "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'"
                " WHERE id = %s",
                (worker_id,),
            )
        assert await queue.drain(rec) == 1  # drain rescues, then runs it
        assert [j.run_id for j in rec.jobs] == ["orphan"]

    async def test_cancelling_a_stopping_serve_releases_in_flight_jobs_at_once(
        self, dsn: str
    ) -> None:
        """stop waits for in-flight jobs (no grace limit here); cancelling serve() meanwhile
        (pikku-worker's second Ctrl-C) releases them to the queue at once."""
        q = PostgresQueue(dsn, poll_interval=0.05, shutdown_timeout=None)
        started = asyncio.Event()
        try:
            async def stuck(j: Job) -> None:
                started.set()
                await asyncio.Event().wait()

            await q.enqueue(job("stuck"))
            stop = asyncio.Event()
            server = asyncio.create_task(q.serve(stuck, stop=stop))
            await asyncio.wait_for(started.wait(), 30)
            stop.set()
            await asyncio.sleep(0.3)
            assert not server.done()  # waiting for the in-flight job
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(server, 30)
            assert await q.pending_jobs() == 1  # back in the queue (with a short backoff)
            rec = Recorder()
            await eventually(lambda: q.drain(rec), interval=0.05)
            assert [j.run_id for j in rec.jobs] == ["stuck"]
        finally:
            await q.close()
