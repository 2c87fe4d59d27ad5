"""Issue 10 / 12.7: the PostgreSQL queue never deletes a job because re-queueing it failed
for a reason other than "an identical job already waits"; a lost connection is
StoreUnavailableError (the rescue is tried again later)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("procrastinate")
import psycopg
from procrastinate.exceptions import ConnectorException, UniqueViolation

from pikku_typing.errors import StoreUnavailableError
from pikku_typing.runtime.queues.postgres import PostgresQueue


@dataclass
class _Job:
    id: int
    queue: str = "q"


@dataclass
class _Manager:
    error: BaseException | None
    deleted: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)

    async def get_stalled_jobs(self, **kwargs: Any) -> list[_Job]:
        return [_Job(1), _Job(2)]

    async def retry_job(self, job: _Job) -> None:
        if self.error is not None:
            raise self.error
        self.retried.append(job.id)

    async def finish_job_by_id_async(self, *, job_id: int, **kwargs: Any) -> None:
        self.deleted.append(job_id)

    async def prune_stalled_workers(self, seconds: float) -> None:
        return None


def _queue(manager: _Manager, monkeypatch: pytest.MonkeyPatch) -> PostgresQueue:
    queue = PostgresQueue("postgresql://nobody@127.0.0.1:1/none")

    class _App:
        job_manager = manager

    async def ensure_open() -> Any:
        return _App()

    monkeypatch.setattr(queue, "_ensure_open", ensure_open)
    return queue


def _lost() -> ConnectorException:
    try:
        try:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        except psycopg.OperationalError as cause:
            raise ConnectorException("connection lost") from cause
    except ConnectorException as exc:
        return exc


async def test_connection_lost_while_requeueing_keeps_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager = _Manager(_lost())
    with pytest.raises(StoreUnavailableError, match="server closed the connection"):
        await _queue(manager, monkeypatch).rescue_stalled_jobs()
    assert manager.deleted == []


async def test_another_failure_keeps_the_job_and_logs_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    manager = _Manager(ConnectorException("job 1 is not in doing status"))
    with caplog.at_level("INFO"):
        assert await _queue(manager, monkeypatch).rescue_stalled_jobs() == 0
    assert manager.deleted == []
    assert "not in doing status" in caplog.text


async def test_an_identical_waiting_job_makes_it_redundant(monkeypatch: pytest.MonkeyPatch) -> None:
    manager = _Manager(UniqueViolation("queueing lock", constraint_name="x", queueing_lock="x"))
    assert await _queue(manager, monkeypatch).rescue_stalled_jobs() == 0
    assert manager.deleted == [1, 2]


async def test_requeued(monkeypatch: pytest.MonkeyPatch) -> None:
    manager = _Manager(None)
    assert await _queue(manager, monkeypatch).rescue_stalled_jobs() == 2
    assert manager.retried == [1, 2] and manager.deleted == []


# --------------------------------------- PostgreSQL store: reads retried, bounded

from collections.abc import Iterator  # noqa: E402

from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn  # noqa: E402

from pikku_typing.state import open_store  # noqa: E402
from pikku_typing.state import postgres as pg_module  # noqa: E402


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    dsn = create_schema_dsn("pikku_retry_")
    try:
        yield dsn
    finally:
        drop_schema_dsn(dsn)


@pytest.mark.parametrize("outage", [pytest.param(n, marks=POSTGRES_MARKS) for n in (2, 9)])
async def test_postgres_reads_are_retried_with_bounded_backoff(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, outage: int
) -> None:
    """A lost connection: a read is tried again (3 retries, ~1 s in all) before
    StoreUnavailableError; a write is never sent twice by the store. Never a raw psycopg
    error."""
    monkeypatch.setattr(pg_module, "READ_RETRY_DELAYS", (0.001, 0.001, 0.001))
    store = open_store(f"postgres:{pg_dsn}")
    run = await store.create_run("wf", 1)
    pool = await store._ensure_open()  # type: ignore[attr-defined]
    real = pool.connection
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= outage:
            raise psycopg.OperationalError("connection refused (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(pool, "connection", flaky)
    if outage <= 3:
        assert (await store.get_run(run.id)).id == run.id
        assert len(calls) == outage + 1
    else:
        with pytest.raises(StoreUnavailableError, match="connection refused"):
            await store.get_run(run.id)
        assert len(calls) == 4  # the first try + 3 retries
    calls.clear()
    with pytest.raises(StoreUnavailableError):
        await store.create_run("wf", 2)  # a write: one try
    assert len(calls) == 1
    monkeypatch.setattr(pool, "connection", real)
    await store.close()
