"""``PostgresQueue``: the distributed queue, built on procrastinate (a maintained PostgreSQL job
queue), so workers on many machines share one database.

Needs the ``postgres`` extra (``pip install 'pikku-workflows[postgres]'``); procrastinate and
psycopg are imported on first use, so ``import pikku_typing`` works without them.

How the :class:`~pikku_typing.runtime.queues.base.WorkflowQueue` contract maps onto
procrastinate:

* One generic procrastinate task (``pikku_workflows.job``) carries every :class:`Job` as its
  JSON argument; the handler given to ``drain()``/``serve()`` reaches it through the worker's
  ``additional_context``, so one app serves any runtime.
* ``Job.queue`` (``orchestrator_queue(workflow)``, ``step_queue(workflow, rpc)``) is the
  procrastinate queue: a worker can be pointed at some queues only, and one slow workflow or
  RPC never blocks another. PostgreSQL limits ``LISTEN`` channel names to 63 bytes, so a long
  queue name is shortened to a readable prefix plus a hash (:func:`procrastinate_queue_name`).
* ``Job.run_at`` is procrastinate's ``schedule_at`` (durable sleeps, retry delays, lease
  re-checks): a delayed job is a row, not a blocked process.
* ``Job.dedupe_key`` is procrastinate's ``queueing_lock``: a second job with the key while
  the first still waits is dropped (``AlreadyEnqueued``).
* Delivery is at least once. A job whose worker died (its procrastinate heartbeat is older
  than ``stalled_after`` seconds) is put back in its queue by the other workers; a job whose
  handler raised is retried with a backoff (``retry_backoff``, doubled per failure up to
  ``max_retry_backoff``) and never dropped, as on the other queues: after ``max_job_retries``
  failures it is logged as an error and retried every ``max_retry_backoff`` seconds (a store
  outage longer than the retries would otherwise strand the run whose step job it was; see
  :func:`_retry_strategy`). The runtime's atomic step claims make a second delivery harmless.
* Graceful shutdown: when ``stop`` is set, the worker takes no new job, waits up to
  ``shutdown_timeout`` seconds for the in-flight ones, then cancels them, and procrastinate
  puts them back in the queue (released, to be run by another worker).
* ``drain()`` runs a procrastinate worker with ``wait=False``: every job that is due, including
  jobs queued meanwhile, until none is due. ``serve()`` runs one with LISTEN/NOTIFY (a new job
  is picked up at once) and polls every ``poll_interval`` seconds for jobs that became due.
* The procrastinate schema is applied on first use if its tables are missing
  (:meth:`PostgresQueue.migrate`, also run by ``pikku-worker migrate``).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from pikku_typing._log import fields, worker_log
from pikku_typing._pool_guard import PoolGuard, close_on_loop_shutdown
from pikku_typing.errors import StoreUnavailableError
from pikku_typing.runtime.queues.base import Job, JobHandler, WorkflowQueue

if TYPE_CHECKING:
    from procrastinate import App, JobContext
    from psycopg_pool import AsyncConnectionPool

__all__ = ["TASK_NAME", "PostgresQueue", "procrastinate_queue_name"]

log = worker_log

TASK_NAME: Final = "pikku_workflows.job"
"""The one procrastinate task every pikku job runs as."""

_CHANNEL_PREFIX_BYTES: Final = len("procrastinate_queue_v1#")
_MAX_QUEUE_BYTES: Final = 63 - _CHANNEL_PREFIX_BYTES  # PostgreSQL NAMEDATALEN - 1
_SCHEMA_LOCK_KEY: Final = 0x70696B6B75_02  # "pikku" + 2
_CONTEXT_KEY: Final = "pikku_workflows"


def procrastinate_queue_name(queue: str) -> str:
    """The procrastinate queue name of a pikku queue name: the name itself when it fits in a
    PostgreSQL ``LISTEN`` channel, else a readable prefix and a hash of the full name."""
    raw = queue.encode()
    if len(raw) <= _MAX_QUEUE_BYTES:
        return queue
    digest = hashlib.blake2b(raw, digest_size=6).hexdigest()
    short = queue.removeprefix("pikku-workflow-").encode()[: _MAX_QUEUE_BYTES - len(digest) - 1]
    return f"{short.decode('utf-8', 'ignore')}~{digest}"


_Retry = Callable[["JobContext", dict[str, Any], int, BaseException], Awaitable[bool]]


@dataclass
class _Dispatch:
    """What a procrastinate worker run hands to the task: the handler and a job counter."""

    handler: JobHandler
    retry: _Retry
    count: int = 0
    running: set[asyncio.Task[Any]] = field(default_factory=set)

    def release_all(self) -> None:
        """Cancel every in-flight job: procrastinate puts each back in its queue."""
        for task in list(self.running):
            task.cancel()


class PostgresQueue(WorkflowQueue):
    """Jobs in PostgreSQL (procrastinate), run by any process that serves the same database.

    ``dsn``: libpq connection string or URL. ``pool_size``: connections of this process's
    queue pool (the LISTEN connection is separate). ``poll_interval``: seconds between polls
    for jobs that became due (delayed jobs; new jobs arrive through NOTIFY at once, except
    that procrastinate's worker can miss a notification that arrives while it fetches, so the
    poll also bounds that latency: 0.2 s costs an idle worker 5 small queries a second).
    ``heartbeat_interval`` / ``stalled_after``: a worker heartbeats every
    ``heartbeat_interval`` s; jobs held by a worker silent for ``stalled_after`` s are put
    back in the queue. ``shutdown_timeout``: how long a stopping worker waits for in-flight
    jobs before cancelling (releasing) them (``None``: wait for them). A job whose handler
    raised is retried after ``retry_backoff`` seconds, doubled per failure up to
    ``max_retry_backoff``; it is never dropped: after ``max_job_retries`` failures it is
    logged as an error and retried every ``max_retry_backoff`` seconds.
    ``keep_finished``: keep finished jobs in ``procrastinate_jobs`` (default: delete
    successful ones at once).
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        poll_interval: float = 0.2,
        heartbeat_interval: float = 10.0,
        stalled_after: float = 30.0,
        shutdown_timeout: float | None = 30.0,
        max_job_retries: int = 10,
        retry_backoff: float = 2.0,
        max_retry_backoff: float = 60.0,
        keep_finished: bool = False,
        connect_timeout: float = 10.0,
    ) -> None:
        if not isinstance(dsn, str) or not dsn.strip():
            raise ValueError("PostgresQueue needs a DSN, e.g. postgresql://host/db")
        from pikku_typing.state.postgres import describe_dsn

        self._dsn = dsn
        self._where = describe_dsn(dsn)
        self._pool_size = max(2, pool_size)
        self._poll_interval = poll_interval
        self._heartbeat_interval = heartbeat_interval
        self._stalled_after = stalled_after
        self._shutdown_timeout = shutdown_timeout
        self._backoff = _Backoff(
            max(max_job_retries, 0), max(retry_backoff, 0.0),
            max(max_retry_backoff, retry_backoff, 0.0),
        )
        self._keep_finished = keep_finished
        self._connect_timeout = connect_timeout
        self._app: App | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._pool_guard: PoolGuard | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where!r})"

    # ------------------------------------------------------------- connections
    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        cause: BaseException = exc
        while cause.__cause__ is not None and not str(cause):
            cause = cause.__cause__
        if cause.__cause__ is not None and type(cause).__module__.startswith("procrastinate"):
            cause = cause.__cause__
        detail = " ".join(str(cause).split()) or type(cause).__name__
        return StoreUnavailableError(f"PostgreSQL queue at {self._where} is unavailable: {detail}")

    async def migrate(self) -> None:
        """Apply procrastinate's schema unless its tables exist (idempotent, safe to run from
        several processes at once)."""
        import psycopg
        from procrastinate.schema import SchemaManager

        try:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, connect_timeout=max(1, round(self._connect_timeout))
            )
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
                row = await cur.fetchone()
                if not (row and row[0]):
                    await conn.execute(SchemaManager.get_schema())
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None
        finally:
            await conn.close()

    async def _ensure_open(self) -> App:
        loop = asyncio.get_running_loop()
        if self._app is not None and self._loop is loop:
            return self._app
        if self._open_lock is None or self._loop is not loop:
            self._open_lock = asyncio.Lock()
            self._app = None
            self._pool = None
            self._loop = loop
        async with self._open_lock:
            if self._app is not None:
                return self._app
            from pikku_typing.state.postgres import require_postgres_extra

            require_postgres_extra("PostgresQueue", "psycopg", "psycopg_pool", "procrastinate")
            import procrastinate
            from psycopg_pool import AsyncConnectionPool

            await self.migrate()
            # Our own pool: autocommit (procrastinate's statements are single function calls,
            # so this saves a COMMIT round trip per query) and no liveness check per checkout.
            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                # autocommit through ``configure``: procrastinate opens its LISTEN connection
                # with these kwargs plus its own ``autocommit=True``.
                kwargs={"connect_timeout": max(1, round(self._connect_timeout))},
                configure=_autocommit,
                open=False,
                timeout=self._connect_timeout + 20,
                name="pikku-queue",
            )
            await pool.open(wait=False)
            # a runtime that is never closed must still let asyncio.run() return
            guard = close_on_loop_shutdown(pool)
            app = procrastinate.App(connector=procrastinate.PsycopgConnector())
            app.task(
                name=TASK_NAME,
                pass_context=True,
                retry=_retry_strategy(self._backoff),
            )(_run_job)
            try:
                await app.open_async(pool)
            except BaseException:
                await guard.close()
                raise
            self._pool = pool
            self._pool_guard = guard
            self._app = app
            return app

    async def check(self) -> None:
        """Connect (and apply the schema if needed); :class:`StoreUnavailableError` when the
        database cannot be reached. ``pikku-worker`` calls it before serving."""
        await self._ensure_open()

    # ------------------------------------------------------------------ retries
    async def _retry_later(
        self, context: JobContext, payload: dict[str, Any], failures: int, exc: BaseException
    ) -> bool:
        """A job's handler raised (its ``failures``-th failure): queue it again after the
        backoff, as a new job with the same queueing lock; ``True`` when done, and the failed
        job is then finished. When an identical job already waits (the same ``dedupe_key``),
        the retry is merged into it, as :meth:`enqueue` merges: procrastinate's own retry
        (``retry_job``) would crash on the queueing lock and leave the failed job ``doing``
        for good. ``False`` when the database cannot take the new job: procrastinate's retry
        strategy (:func:`_retry_strategy`) then keeps the job."""
        from procrastinate.exceptions import AlreadyEnqueued, ConnectorException

        held = context.job
        delay = self._backoff.failed(held.id, held.queue, failures, exc)
        deferrer = context.app.configure_task(
            TASK_NAME,
            queue=held.queue,
            schedule_at=datetime.now(UTC) + timedelta(seconds=delay),
            queueing_lock=held.queueing_lock,
        )
        try:
            await deferrer.defer_async(job=payload, failures=failures)
        except AlreadyEnqueued:
            log.info("job %s (%s): an identical job waits; the retry is merged into it",
                     held.id, held.queue)
        except ConnectorException as error:
            log.warning("job %s (%s) could not be queued again (%s); procrastinate retries it",
                        held.id, held.queue, error)
            return False
        return True

    # ------------------------------------------------------------------ enqueue
    async def enqueue(self, job: Job) -> None:
        from procrastinate.exceptions import AlreadyEnqueued, ConnectorException

        app = await self._ensure_open()
        run_at = job.run_at
        if run_at is not None and run_at.tzinfo is None:
            run_at = run_at.replace(tzinfo=UTC)
        deferrer = app.configure_task(
            TASK_NAME,
            queue=procrastinate_queue_name(job.queue),
            schedule_at=run_at,
            queueing_lock=job.dedupe_key,
        )
        try:
            await deferrer.defer_async(job=job.model_dump(mode="json"))
        except AlreadyEnqueued:
            pass  # the same job is still waiting: merged
        except ConnectorException as exc:
            raise self._unavailable(exc) from None

    # -------------------------------------------------------------------- run
    def _worker_options(self, queues: Sequence[str] | None) -> dict[str, Any]:
        options: dict[str, Any] = {
            "install_signal_handlers": False,
            "delete_jobs": "never" if self._keep_finished else "successful",
            "update_heartbeat_interval": self._heartbeat_interval,
            "stalled_worker_timeout": self._stalled_after,
            "shutdown_graceful_timeout": self._shutdown_timeout,
        }
        if queues is not None:  # procrastinate: no ``queues`` = every queue
            options["queues"] = [procrastinate_queue_name(q) for q in queues]
        return options

    async def drain(self, handler: JobHandler, *, queues: Sequence[str] | None = None) -> int:
        from procrastinate.exceptions import ConnectorException

        app = await self._ensure_open()
        dispatch = _Dispatch(handler, self._retry_later)
        try:
            await self.rescue_stalled_jobs()
            await app.run_worker_async(
                name="pikku-drain",
                concurrency=1,
                wait=False,
                listen_notify=False,
                additional_context={_CONTEXT_KEY: dispatch},
                **self._worker_options(queues),
            )
        except ConnectorException as exc:
            raise self._unavailable(exc) from None
        return dispatch.count

    async def serve(
        self,
        handler: JobHandler,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 1,
        stop: asyncio.Event | None = None,
    ) -> None:
        from procrastinate.exceptions import ConnectorException

        app = await self._ensure_open()
        dispatch = _Dispatch(handler, self._retry_later)
        stop = stop if stop is not None else asyncio.Event()
        stopper = asyncio.ensure_future(stop.wait())
        rescuer = asyncio.ensure_future(self._rescue_loop())
        backoff = 1.0
        try:
            while not stop.is_set():
                worker = asyncio.ensure_future(
                    app.run_worker_async(
                        name="pikku-worker",
                        concurrency=max(1, concurrency),
                        wait=True,
                        listen_notify=True,
                        fetch_job_polling_interval=self._poll_interval,
                        abort_job_polling_interval=max(self._poll_interval, 5.0),
                        additional_context={_CONTEXT_KEY: dispatch},
                        **self._worker_options(queues),
                    )
                )
                try:
                    await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    await self._stop_worker(worker, dispatch)
                if stop.is_set():
                    break
                # The worker ended by itself: the database went away (or a side task died).
                exc = worker.exception() if not worker.cancelled() else None
                reason = self._unavailable(exc) if exc is not None else "worker stopped"
                log.warning("queue worker stopped (%s); restarting in %.0fs", reason, backoff)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 30.0)
        except ConnectorException as exc:
            raise self._unavailable(exc) from None
        finally:
            stopper.cancel()
            rescuer.cancel()
            with suppress(asyncio.CancelledError):  # the loop handles its own errors
                await rescuer

    @staticmethod
    async def _stop_worker(worker: asyncio.Future[None], dispatch: _Dispatch) -> None:
        """Graceful stop: procrastinate stops fetching and waits for the in-flight jobs (up to
        ``shutdown_timeout``, then cancels them; cancelled jobs go back to their queue). If
        our own task is cancelled meanwhile (a second Ctrl-C), release the jobs at once."""
        if worker.done():
            return
        worker.cancel()
        try:
            await asyncio.shield(worker)
        except asyncio.CancelledError:
            if worker.done():
                return  # the worker's own cancellation, after its graceful stop
            dispatch.release_all()
            with suppress(BaseException):
                await worker
            raise

    async def _rescue_loop(self) -> None:
        interval = max(min(self._heartbeat_interval, self._stalled_after / 2), 0.1)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.rescue_stalled_jobs()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the DB may be briefly away: try again later
                log.warning("rescuing stalled jobs failed (retried in %.1fs): %s", interval, exc)

    async def rescue_stalled_jobs(self) -> int:
        """Put back in their queue the jobs held by workers whose heartbeat is older than
        ``stalled_after`` seconds (their process died); return how many."""
        from procrastinate import jobs as pjobs
        from procrastinate.exceptions import ConnectorException, UniqueViolation

        app = await self._ensure_open()
        manager = app.job_manager
        try:
            stalled = await manager.get_stalled_jobs(
                task_name=TASK_NAME, seconds_since_heartbeat=self._stalled_after
            )
        except ConnectorException as exc:
            raise self._unavailable(exc) from None
        count = 0
        for job in stalled:
            assert job.id is not None
            try:
                await manager.retry_job(job)
                count += 1
                log.info("re-queued job %s of a stalled worker (%s)", job.id, job.queue)
            except UniqueViolation:
                # an identical job (same queueing lock) already waits: this one is redundant
                log.info(
                    "job %s of a stalled worker (%s) not re-queued: an identical job waits; "
                    "deleting it", job.id, job.queue,
                )
                try:
                    await manager.finish_job_by_id_async(
                        job_id=job.id, status=pjobs.Status.ABORTED, delete_job=True
                    )
                except ConnectorException as exc:
                    log.warning("could not delete redundant job %s: %s", job.id, exc)
            except ConnectorException as exc:
                if _connection_lost(exc):  # never delete a job because the DB went away
                    raise self._unavailable(exc) from None
                # e.g. another worker rescued it first (it is no longer 'doing'): keep it
                log.info("job %s of a stalled worker left as it is: %s", job.id, exc)
        if stalled:
            try:
                await manager.prune_stalled_workers(self._stalled_after)
            except ConnectorException as exc:
                log.info("pruning stalled workers failed (done on a later rescue): %s", exc)
        return count

    async def pending_jobs(self) -> int:
        """How many jobs wait in the queue (due or not) or run: for tests and monitoring."""
        import psycopg

        await self._ensure_open()
        assert self._pool is not None
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM procrastinate_jobs"
                    " WHERE task_name = %s AND status IN ('todo', 'doing')",
                    (TASK_NAME,),
                )
                row = await cur.fetchone()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from None
        return int(row[0]) if row else 0

    # -------------------------------------------------------------- lifecycle
    async def close(self) -> None:
        app, guard = self._app, self._pool_guard
        self._app = None
        self._pool = None
        self._pool_guard = None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover
            running = None
        if running is not self._loop:
            return
        if app is not None:
            try:
                await app.close_async()
            except Exception as exc:  # closing is best effort: the pool is closed below
                log.debug("closing the procrastinate app failed: %s", exc)
        if guard is not None:
            await guard.close(timeout=5)


def _connection_lost(exc: BaseException) -> bool:
    """Whether a procrastinate error was caused by a lost or refused connection."""
    import psycopg

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError | OSError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


@dataclass(frozen=True)
class _Backoff:
    """When a failed job runs again: ``first`` seconds after its first failure, doubled per
    failure up to ``cap``; never given up (after ``max_job_retries`` failures it is logged
    once as an error and retried every ``cap`` seconds)."""

    max_job_retries: int
    first: float
    cap: float

    def failed(self, job_id: int | None, queue: str, failures: int, exc: BaseException) -> float:
        """Log the ``failures``-th failure of a job; return the seconds until its retry."""
        delay = min(self.first * 2.0 ** (failures - 1), self.cap)
        if failures == self.max_job_retries + 1:
            log.error(
                "job %s (%s) failed %d times (%s: %s); kept, retried every %gs",
                job_id, queue, failures, type(exc).__name__, exc, self.cap,
            )
        elif failures <= self.max_job_retries:
            log.warning(
                "job %s (%s) failed (%s: %s); retry %d/%d in %gs",
                job_id, queue, type(exc).__name__, exc, failures, self.max_job_retries, delay,
            )
        return delay


def _retry_strategy(backoff: _Backoff) -> Any:
    """procrastinate's retry decision for a job that failed without being queued again by
    :meth:`PostgresQueue._retry_later` (the database was away, or the worker is being
    interrupted): the same ``backoff``, never given up. Only errors of the infrastructure
    reach the queue (a step's own error is recorded as its attempt's), so a job that keeps
    failing waits for the store to come back; dropping it would strand its run (a suspended
    run whose step job is gone is woken by nothing, not even the sweep)."""
    from procrastinate.retry import BaseRetryStrategy, RetryDecision

    class _KeepRetrying(BaseRetryStrategy):
        def get_retry_decision(
            self, *, exception: BaseException, job: Any
        ) -> RetryDecision | None:
            failures = int(job.task_kwargs.get("failures", 0)) + int(job.attempts) + 1
            delay = backoff.failed(job.id, job.queue, failures, exception)
            return RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=delay))

    return _KeepRetrying()


async def _autocommit(conn: Any) -> None:
    await conn.set_autocommit(True)


async def _run_job(context: JobContext, job: dict[str, Any], failures: int = 0) -> None:
    """The procrastinate task: decode the :class:`Job` and give it to the handler. When the
    handler raises, the job is queued again with a backoff (``failures``: how many times it
    failed before, see :meth:`PostgresQueue._retry_later`)."""
    dispatch = (context.additional_context or {}).get(_CONTEXT_KEY)
    if not isinstance(dispatch, _Dispatch):
        raise RuntimeError(
            f"{TASK_NAME} jobs must be run by pikku-worker / PostgresQueue, not a plain "
            "procrastinate worker"
        )
    try:
        parsed = Job.model_validate(job)
    except ValidationError as exc:
        log.error("dropped an unreadable job %r: %s", job, exc)
        return
    started = time.perf_counter()
    status = "ok"
    current = asyncio.current_task()
    if current is not None:
        dispatch.running.add(current)
    try:
        await dispatch.handler(parsed)
    except asyncio.CancelledError:
        status = "released"
        raise
    except Exception as exc:
        status = f"error {type(exc).__name__}: {exc}"
        if not await dispatch.retry(context, job, failures + 1, exc):
            raise
    except BaseException as exc:  # an interrupt: the worker stops, procrastinate keeps it
        status = f"error {type(exc).__name__}: {exc}"
        raise
    finally:
        if current is not None:
            dispatch.running.discard(current)
        dispatch.count += 1
        elapsed = (time.perf_counter() - started) * 1000
        target = f" step={parsed.step_key}" if parsed.step_key else ""
        log.info(
            "%s %s run=%s%s %.1fms %s",
            parsed.kind,
            parsed.workflow,
            parsed.run_id,
            target,
            elapsed,
            status,
            extra=fields(
                run_id=parsed.run_id, workflow=parsed.workflow, step_key=parsed.step_key,
                status=status,
            ),
        )
