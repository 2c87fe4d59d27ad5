"""``StoreQueue``: the job queue of the embedded stores, shared by every process on the host.

With the file or SQLite store, ``WorkflowRuntime(state)`` uses this queue by default (see
:func:`default_queue_for`): a web process that starts runs, sends events or cancels, and a
``pikku-worker`` serving the same store, see each other's jobs at once, with no restart.

Design (decided for issue 15, see README "Deployment shapes"):

* The jobs are rows of a small SQLite database next to the store (stdlib ``sqlite3``, WAL):
  ``<dir>/queue.db`` for ``FileWorkflowStateService(dir)`` and ``<path>.jobs`` for
  ``SqliteWorkflowStateService(path)``. A separate database, not a table of the store, so
  job claims never wait for the store's write lock (SQLite has one writer per database), and
  so the queue can commit with ``synchronous=NORMAL``: the jobs are a cache of the store
  (``WorkflowRuntime.recover()`` rebuilds them from the runs), the store keeps its own
  durability.
* Atomic claim: ``BEGIN IMMEDIATE`` (the database's write lock), pick the due unclaimed jobs,
  mark them claimed by this queue's token (host, pid, process start time), ``COMMIT``. Two
  workers never get the same job; the runtime's step claims are atomic too, so a step runs
  at most once per attempt even when a job is delivered twice.
* A finished job is deleted; a job whose handler raised (a transient error of the store) is
  put back with an exponential backoff; after ``max_job_retries`` failures it is logged as an
  error and stays queued, retried every ``max_retry_backoff`` seconds (never dropped: a long
  outage strands no run), as :class:`~pikku_typing.runtime.queues.memory.InProcessQueue`
  does.
* A serving queue polls every ``poll_interval`` seconds (one indexed read; 0.1 s costs an
  idle worker 10 tiny reads a second) and is woken at once by jobs enqueued in its own
  process, so the single-process path has no poll latency. Jobs held by a process of this
  host that died are put back at once (the kernel tells); jobs held by a process of another
  host (a store on a shared disk) when their lease (``lease_seconds``, renewed while they
  run) runs out.
* Runs made due in the store without a job (``pikku-runs resume``, ``store.send_event``
  called directly) are found by a sweep of suspended runs whose ``wake_at`` has passed,
  every ``sweep_interval`` seconds (longer when a sweep is slow: at most about 5% of the
  time is spent sweeping), when the queue was made for a store.
* Polling, not a filesystem watch: a watch of the database's WAL file (watchfiles) fires on
  every write of any process, including the queue's own, and still needs the read to know
  whether a job is due; the poll read is cheaper than the watch's thread and portable.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from pydantic import ValidationError

from pikku_typing._log import fields, worker_log
from pikku_typing.errors import StateCorruptedError, StoreUnavailableError
from pikku_typing.runtime import process
from pikku_typing.runtime.queues.base import Job, JobHandler, WorkflowQueue, wait_for_work

if TYPE_CHECKING:
    from pikku_typing.state.base import WorkflowStateService

__all__ = ["StoreQueue", "default_queue_for", "queue_path_for"]

log = worker_log

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY,
    queue       TEXT NOT NULL,
    due_us      INTEGER NOT NULL,
    dedupe_key  TEXT,
    job         TEXT NOT NULL,
    failures    INTEGER NOT NULL DEFAULT 0,
    claim_token TEXT,
    claim_host  TEXT,
    claim_pid   INTEGER,
    lease_us    INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (due_us, id) WHERE claim_token IS NULL;
CREATE INDEX IF NOT EXISTS jobs_claimed ON jobs (claim_token) WHERE claim_token IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_dedupe ON jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND claim_token IS NULL;
"""

Synchronous = Literal["OFF", "NORMAL", "FULL"]

_Claimed = tuple[int, Job, int]
"""A claimed job: (row id, job, failures so far)."""


def queue_path_for(state: WorkflowStateService) -> Path | None:
    """Where the :class:`StoreQueue` of an embedded store lives (``None``: not an embedded
    store shared through the filesystem: memory, PostgreSQL)."""
    from pikku_typing.state.file import FileWorkflowStateService
    from pikku_typing.state.sqlite import SqliteWorkflowStateService

    if isinstance(state, FileWorkflowStateService):
        return Path(state.directory) / "queue.db"
    if isinstance(state, SqliteWorkflowStateService):
        return state.path.with_name(state.path.name + ".jobs")
    return None


def default_queue_for(state: WorkflowStateService) -> WorkflowQueue:
    """The queue ``WorkflowRuntime(state)`` uses when none is given: a :class:`StoreQueue`
    for the file and SQLite stores (shared by the processes on the store), else an
    :class:`~pikku_typing.runtime.queues.memory.InProcessQueue`."""
    path = queue_path_for(state)
    if path is None:
        from pikku_typing.runtime.queues.memory import InProcessQueue

        return InProcessQueue()
    return StoreQueue(path, state=state)


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


class StoreQueue(WorkflowQueue):
    """Jobs in a SQLite database shared by the processes of one host (see the module doc).

    ``path``: the queue database. ``state``: the store it serves (enables the sweep of due
    suspended runs). ``poll_interval``: seconds between polls for jobs of other processes.
    ``sweep_interval``: seconds between sweeps of due suspended runs (``0``: never).
    ``lease_seconds``: how long a claim of a process on another host lasts without renewal.
    ``max_job_retries`` / ``retry_backoff`` / ``max_retry_backoff``: as ``InProcessQueue``.
    ``self_driving``: ``client.result()`` in a process that does not serve runs the due jobs
    itself (set ``False`` in a web process that must never run workflow code).
    ``clock``: seconds since the epoch (tests)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        state: WorkflowStateService | None = None,
        poll_interval: float = 0.1,
        sweep_interval: float = 2.0,
        lease_seconds: float = 60.0,
        max_job_retries: int = 5,
        retry_backoff: float = 0.05,
        max_retry_backoff: float = 2.0,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 30.0,
        self_driving: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL"):
            raise ValueError(f"synchronous must be OFF, NORMAL or FULL, got {synchronous!r}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval!r}")
        self.path = Path(path)
        self.state = state
        self.poll_interval = poll_interval
        self.sweep_interval = max(sweep_interval, 0.0)
        self.lease_seconds = max(lease_seconds, 1.0)
        self.max_job_retries = max(max_job_retries, 0)
        self.retry_backoff = max(retry_backoff, 0.0)
        self.max_retry_backoff = max(max_retry_backoff, self.retry_backoff)
        self.synchronous: Synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.self_driving = self_driving
        self._clock: Callable[[], float] = clock if clock is not None else time.time
        self._mutex = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._owner = process.new_owner()
        self._signal: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    # ------------------------------------------------------------ connection
    def _connection(self) -> sqlite3.Connection:
        """The connection (caller holds ``_mutex``); opened and migrated on first use, and
        reopened in a forked child (with a new claim token: the child is another holder)."""
        conn = self._conn
        if conn is not None and self._pid == os.getpid():
            return conn
        if self._pid and self._pid != os.getpid():
            self._owner = process.new_owner()
        self._conn = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open job queue {str(self.path)!r}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            with self._init_lock():
                conn.execute("PRAGMA journal_mode = WAL")
                if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        version = conn.execute("PRAGMA user_version").fetchone()[0]
                        if version > SCHEMA_VERSION:
                            raise StoreUnavailableError(
                                f"job queue {str(self.path)!r} has schema version {version}; "
                                f"this pikku_typing knows up to {SCHEMA_VERSION}: upgrade it"
                            )
                        for statement in _SCHEMA.split(";"):
                            if statement.strip():
                                conn.execute(statement)
                        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.Error as exc:
            conn.close()
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.OperationalError
            ):
                raise StateCorruptedError(
                    f"job queue {str(self.path)!r} cannot be read ({exc}); it only holds "
                    "queued jobs: move it away and start the worker with --recover (the runs "
                    "are in the store, untouched)"
                ) from exc
            raise StoreUnavailableError(f"cannot open job queue {str(self.path)!r}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._pid = os.getpid()
        process.mark_active(self._owner.token)
        return conn

    @contextlib.contextmanager
    def _init_lock(self) -> Iterator[None]:
        """Serialize the set-up of a new database across processes (switching to WAL takes
        an exclusive lock for which SQLite does not always wait)."""
        fd = os.open(self.path.with_name(self.path.name + ".init-lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            try:
                yield self._connection()
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"job queue {str(self.path)!r}: {exc}") from exc

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"job queue {str(self.path)!r}: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreUnavailableError(f"job queue {str(self.path)!r}: {exc}") from exc
                raise

    async def check(self) -> None:
        """Open (and create) the queue database: :class:`StoreUnavailableError` when it
        cannot be opened, :class:`StateCorruptedError` when it is damaged. ``pikku-worker``
        calls it before serving."""
        with self._read():
            pass

    # --------------------------------------------------------------- signals
    def _event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._signal is None or self._signal[0] is not loop:
            self._signal = (loop, asyncio.Event())
        return self._signal[1]

    def _wake_local(self) -> None:
        if self._signal is not None:
            self._signal[1].set()

    # ------------------------------------------------------------------ jobs
    def _due_us(self, job: Job) -> int:
        if job.run_at is None:
            return 0
        run_at = job.run_at if job.run_at.tzinfo else job.run_at.replace(tzinfo=UTC)
        return _micros(run_at.timestamp())

    async def enqueue(self, job: Job) -> None:
        text = job.model_dump_json()
        with self._tx() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO jobs (queue, due_us, dedupe_key, job) VALUES (?, ?, ?, ?)",
                (job.queue, self._due_us(job), job.dedupe_key, text),
            )
        self._wake_local()

    @staticmethod
    def _queue_filter(queues: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
        if queues is None:
            return "", ()
        wanted = tuple(dict.fromkeys(queues))
        return f" AND queue IN ({', '.join('?' * len(wanted))})", wanted

    def _claim(
        self, queues: Sequence[str] | None, limit: int, *, done: int | None = None
    ) -> list[_Claimed]:
        """Claim up to ``limit`` due jobs (oldest due first): one write transaction, entered
        only after a read saw a due job (an idle poll takes no lock). ``done``: a finished
        job of ours to delete in the same transaction (one commit per job on a busy queue)."""
        if limit < 1:
            if done is not None:
                self._done(done)
            return []
        where, params = self._queue_filter(queues)
        now_us = _micros(self._clock())
        select = (
            "SELECT id, job, failures FROM jobs WHERE claim_token IS NULL AND due_us <= ?"
            f"{where} ORDER BY due_us, id LIMIT ?"
        )
        if done is None:
            with self._read() as conn:
                if conn.execute(select, (now_us, *params, 1)).fetchone() is None:
                    return []
        owner = self._owner
        claimed: list[_Claimed] = []
        bad: list[int] = []
        with self._tx() as conn:
            if done is not None:
                conn.execute(
                    "DELETE FROM jobs WHERE id = ? AND claim_token = ?", (done, owner.token)
                )
            rows = conn.execute(select, (now_us, *params, limit)).fetchall()
            for row_id, text, failures in rows:
                try:
                    claimed.append((row_id, Job.model_validate_json(text), failures))
                except ValidationError as exc:
                    log.error("dropped an unreadable job %d of %s: %s", row_id, self.path, exc)
                    bad.append(row_id)
            if claimed:
                ids = [c[0] for c in claimed]
                conn.execute(
                    "UPDATE jobs SET claim_token = ?, claim_host = ?, claim_pid = ?, lease_us = ?"
                    f" WHERE id IN ({', '.join('?' * len(ids))})",
                    (
                        owner.token,
                        owner.host,
                        owner.pid,
                        now_us + _micros(self.lease_seconds),
                        *ids,
                    ),
                )
            for row_id in bad:
                conn.execute("DELETE FROM jobs WHERE id = ?", (row_id,))
        return claimed

    def _done(self, row_id: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM jobs WHERE id = ? AND claim_token = ?", (row_id, self._owner.token)
            )

    def _release(self, row_id: int, due: float, failures: int) -> None:
        """Put a claimed job back (due at ``due``); when an identical job (same dedupe key)
        was queued meanwhile, this one is merged into it (deleted)."""
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE OR IGNORE jobs SET claim_token = NULL, claim_host = NULL, "
                "claim_pid = NULL, lease_us = NULL, due_us = ?, failures = ? "
                "WHERE id = ? AND claim_token = ?",
                (_micros(due), failures, row_id, self._owner.token),
            ).rowcount
            if changed == 0:
                conn.execute(
                    "DELETE FROM jobs WHERE id = ? AND claim_token = ?",
                    (row_id, self._owner.token),
                )

    def _renew(self) -> None:
        """Extend the lease of every job this queue holds."""
        lease = _micros(self._clock() + self.lease_seconds)
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET lease_us = ? WHERE claim_token = ?", (lease, self._owner.token)
            )

    def rescue(self) -> int:
        """Put back the jobs held by dead processes of this host (at once) and by processes
        of other hosts whose lease ran out; return how many."""
        from pikku_typing.models import ClaimOwner

        now_us = _micros(self._clock())
        with self._read() as conn:
            holders = conn.execute(
                "SELECT DISTINCT claim_token, claim_host, claim_pid, min(lease_us) FROM jobs "
                "WHERE claim_token IS NOT NULL GROUP BY claim_token"
            ).fetchall()
        dead: list[str] = []
        for token, host, pid, lease_us in holders:
            if token == self._owner.token:
                continue
            liveness = process.holder_liveness(ClaimOwner(host=host, pid=pid, token=token))
            if liveness == "dead" or (liveness == "unknown" and lease_us < now_us):
                dead.append(token)
        count = 0
        for token in dead:
            with self._tx() as conn:
                rows = conn.execute(
                    "SELECT id FROM jobs WHERE claim_token = ?", (token,)
                ).fetchall()
                for (row_id,) in rows:
                    changed = conn.execute(
                        "UPDATE OR IGNORE jobs SET claim_token = NULL, claim_host = NULL, "
                        "claim_pid = NULL, lease_us = NULL WHERE id = ?",
                        (row_id,),
                    ).rowcount
                    if changed == 0:  # an identical job is queued: merged
                        conn.execute("DELETE FROM jobs WHERE id = ?", (row_id,))
                    count += 1
            log.info("re-queued %d job(s) of a dead worker (%s)", len(rows), token)
        return count

    def _next_due(self, queues: Sequence[str] | None) -> float | None:
        where, params = self._queue_filter(queues)
        with self._read() as conn:
            row = conn.execute(
                f"SELECT min(due_us) FROM jobs WHERE claim_token IS NULL{where}", params
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0]) / 1_000_000

    def pending(self) -> list[Job]:
        """Every job in the queue (queued or claimed), in due order: tests and monitoring."""
        with self._read() as conn:
            rows = conn.execute("SELECT job FROM jobs ORDER BY due_us, id").fetchall()
        return [Job.model_validate_json(text) for (text,) in rows]

    def __len__(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])

    async def sweep(self) -> int:
        """Queue a pass for every suspended run of the store whose ``wake_at`` has passed
        (made due without a job, e.g. by ``pikku-runs resume``); return how many."""
        if self.state is None:
            return 0
        from pikku_typing._clock import now
        from pikku_typing.models import RunStatus
        from pikku_typing.runtime.queues.base import orchestrator_queue

        current = now()
        count = 0
        for run in await self.state.list_runs(status=RunStatus.SUSPENDED):
            if run.wake_at is not None and run.wake_at <= current:
                await self.enqueue(
                    Job(
                        queue=orchestrator_queue(run.workflow),
                        kind="orchestrate",
                        workflow=run.workflow,
                        run_id=run.id,
                        dedupe_key=f"{run.id}:orchestrate:now",
                    )
                )
                count += 1
        return count

    # ------------------------------------------------------------------- run
    async def _handle(self, handler: JobHandler, claimed: _Claimed) -> None:
        if await self._execute(handler, claimed):
            self._done(claimed[0])

    async def _execute(self, handler: JobHandler, claimed: _Claimed) -> bool:
        """Run one claimed job; ``True`` when it ran and must be deleted, ``False`` when it
        was put back."""
        row_id, job, failures = claimed
        try:
            await handler(job)
        except asyncio.CancelledError:
            self._release(row_id, self._clock(), failures)  # another worker takes it
            raise
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
                self._release(row_id, self._clock() + self.max_retry_backoff, failures)
                return False
            delay = min(self.retry_backoff * 2 ** (failures - 1), self.max_retry_backoff)
            log.warning(
                "%s job of run %s (%s) failed (%s: %s); retry %d/%d in %.2fs",
                job.kind, job.run_id, job.workflow, type(exc).__name__, exc,
                failures, self.max_job_retries, delay,
                extra=fields(run_id=job.run_id, workflow=job.workflow),
            )
            self._release(row_id, self._clock() + delay, failures)
            return False
        return True

    async def drain(self, handler: JobHandler, *, queues: Sequence[str] | None = None) -> int:
        """Run every due job (of any process) until none is due; a job put back after a
        failure is waited for (short, bounded backoff) until it failed ``max_job_retries``
        times, a job due later (a sleep) is not."""
        count = 0
        while True:
            claimed = self._claim(queues, 1)
            while claimed:
                finished = await self._execute(handler, claimed[0])
                count += 1
                claimed = self._claim(queues, 1, done=claimed[0][0] if finished else None)
            wait = self._retry_wait(queues)
            if wait is None:
                return count
            await asyncio.sleep(wait)

    def _retry_wait(self, queues: Sequence[str] | None) -> float | None:
        where, params = self._queue_filter(queues)
        with self._read() as conn:
            row = conn.execute(
                "SELECT min(due_us) FROM jobs WHERE claim_token IS NULL AND failures > 0"
                f" AND failures <= ?{where}",
                (self.max_job_retries, *params),
            ).fetchone()
        if row is None or row[0] is None:
            return None
        return max(float(row[0]) / 1_000_000 - self._clock(), 0.0)

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
        renew_every = self.lease_seconds / 3
        last_renew = last_rescue = last_sweep = time.monotonic()
        sweep_every = self.sweep_interval
        self.rescue()
        try:
            while stop is None or not stop.is_set():
                event.clear()
                free = concurrency - len(running)
                for claimed in self._claim(queues, free):
                    running.add(asyncio.create_task(self._run(handler, claimed)))
                tick = time.monotonic()
                if running and tick - last_renew >= renew_every:
                    self._renew()
                    last_renew = tick
                if tick - last_rescue >= 1.0:
                    self.rescue()
                    last_rescue = tick
                if sweep_every and tick - last_sweep >= sweep_every:
                    try:
                        await self.sweep()
                    except Exception as exc:  # the store may be briefly away
                        log.warning("sweeping due runs failed: %s: %s", type(exc).__name__, exc)
                    last_sweep = time.monotonic()
                    # a store with many suspended runs: at most ~5% of the time sweeping
                    sweep_every = max(self.sweep_interval, 20 * (last_sweep - tick))
                timeout = self.poll_interval
                if len(running) < concurrency:
                    due = self._next_due(queues)
                    if due is not None:
                        timeout = min(timeout, max(due - self._clock(), 0.0))
                running = await wait_for_work(running, event, stop, timeout)
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _run(self, handler: JobHandler, claimed: _Claimed) -> None:
        try:
            await self._handle(handler, claimed)
        except asyncio.CancelledError:
            raise
        except Exception:  # the queue database went away while finishing the job
            log.exception("job %s of run %s could not be finished", claimed[1].kind, claimed[1].run_id)

    async def close(self) -> None:
        with self._mutex:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()
                process.mark_inactive(self._owner.token)
