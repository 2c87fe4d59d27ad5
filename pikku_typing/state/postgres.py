"""The PostgreSQL state store: workers on many machines share one database.

Needs the ``postgres`` extra (``pip install 'pikku-workflows[postgres]'``): psycopg 3 and
psycopg-pool are imported lazily, on first use, so ``import pikku_typing`` works without them.

Design:

* Two async connection pools, both opened lazily on first use (constructing the store needs
  no event loop): one for data operations (autocommit, one statement per operation), and one
  whose connections only ever hold **run locks**. A lock is a session-level advisory lock,
  ``pg_advisory_lock(hashtextextended(run_id, seed))`` (``seed`` derives from the schema the
  tables live in, so two apps in two schemas never share locks). The connection that holds it
  is taken out of the lock pool for the whole ``async with`` block and is only given back
  after ``pg_advisory_unlock_all()`` succeeded; if releasing fails in any way the connection
  is closed instead (the server drops a session's advisory locks with the session), so a
  pooled connection never goes back while it holds a lock. Data operations never wait for a
  lock connection, so a lock holder can always make progress.
* Every step transition is ONE conditional ``UPDATE ... WHERE <state guard> RETURNING``:
  claims are atomic across processes (of N concurrent claimers exactly one matches the
  ``status IN ('pending', 'scheduled')`` guard), and a completion or failure only applies when
  the claim ``token`` still holds the running attempt. Attempts are kept as a ``jsonb`` array
  on the step row; the running attempt's token and lease are mirrored in indexed columns.
* User values (run input/output, step data/result) are stored as JSON *text*, so they round
  trip exactly (key order, big integers, floats) like the file store.
* The schema is versioned (``pikku_schema_version``) and migrated on first use, under a
  transaction-level advisory lock so concurrent workers do not race; ``pikku-worker migrate
  --dsn DSN`` applies it ahead of time. Tables go to the first schema of the connection's
  ``search_path`` (``public`` by default; e.g. ``?options=-csearch_path%3Dmyapp`` in the DSN).
* A connection failure is a :class:`~pikku_typing.errors.StoreUnavailableError` naming the
  server (never the password).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pikku_typing._pool_guard import PoolGuard, close_on_loop_shutdown
from pikku_typing.errors import (
    RunAlreadyExistsError,
    RunNotFoundError,
    StepSerializationError,
    StoreUnavailableError,
)
from pikku_typing.models import (
    ClaimOwner,
    ErrorInfo,
    RunStatus,
    StepAttempt,
    StepKind,
    StepState,
    StepStatus,
    WorkflowRun,
)
from pikku_typing.state import _common as c
from pikku_typing.state.base import UNSET, RunChanges, WorkflowStateService, validate_run_id

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

__all__ = [
    "SCHEMA_VERSION",
    "PostgresWorkflowStateService",
    "describe_dsn",
    "require_postgres_extra",
]

SCHEMA_VERSION: Final = 1
"""Latest schema version this code knows (``pikku_schema_version``)."""

# A fixed key for the transaction-level advisory lock that serialises migrations.
_MIGRATION_LOCK_KEY: Final = 0x70696B6B75_01  # "pikku" + 1

_MIGRATIONS: Final[dict[int, str]] = {
    1: """
CREATE TABLE pikku_runs (
    id text PRIMARY KEY,
    workflow text NOT NULL,
    status text NOT NULL,
    input text NOT NULL,
    output text,
    error jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    wake_at timestamptz,
    owner jsonb,
    cancel_requested boolean NOT NULL DEFAULT false,
    extra jsonb
);
CREATE INDEX pikku_runs_created_idx ON pikku_runs (created_at DESC, id DESC);
CREATE INDEX pikku_runs_workflow_idx ON pikku_runs (workflow, created_at DESC, id DESC);
CREATE INDEX pikku_runs_status_idx ON pikku_runs (status, created_at DESC, id DESC);
CREATE TABLE pikku_steps (
    run_id text NOT NULL REFERENCES pikku_runs (id) ON DELETE CASCADE,
    key text NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    step_name text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    rpc_name text,
    data text,
    data_digest text,
    result text,
    error jsonb,
    attempt_count integer NOT NULL DEFAULT 0,
    max_attempts integer,
    attempts jsonb NOT NULL DEFAULT '[]'::jsonb,
    next_attempt_at timestamptz,
    lease_token text,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    extra jsonb,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX pikku_steps_run_seq_idx ON pikku_steps (run_id, seq);
CREATE INDEX pikku_steps_active_idx ON pikku_steps (status, next_attempt_at)
    WHERE status IN ('running', 'scheduled');
""",
}

_RUN_COLS: Final = (
    "id, workflow, status, input, output, error, created_at, updated_at, wake_at, owner, "
    "cancel_requested"
)
_STEP_COLS: Final = (
    "key, step_name, kind, status, rpc_name, data, data_digest, result, error, attempt_count, "
    "max_attempts, attempts, next_attempt_at, created_at, updated_at, started_at, finished_at,"
    " extra"
)
_STEP_FIELDS: Final = frozenset(
    {col.strip() for col in _STEP_COLS.split(",")} - {"extra"} | {"attempts"}
)
"""StepState fields kept in their own columns; any other field (added to the model later, e.g.
``retry_delay``) is kept in the ``extra`` jsonb column, written at insert and never changed."""


def require_postgres_extra(what: str, *modules: str) -> None:
    """Import ``modules`` or raise an ImportError that says which extra to install."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f"{what} needs {name}: pip install 'pikku-workflows[postgres]' ({exc})"
            ) from exc


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a DSN (never the password), for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable DSN>"
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = str(params.get("port") or "5432")
    dbname = str(params.get("dbname") or params.get("user") or "")
    return f"{host}:{port}/{dbname}"


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StepSerializationError(f"{what} is not a JSON value: {exc}") from exc


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _ts(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _ts_req(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return c.aware(value).astimezone(UTC).isoformat()


def _row_to_run(row: Sequence[Any]) -> WorkflowRun[Any, Any]:
    return WorkflowRun(
        id=row[0],
        workflow=row[1],
        status=RunStatus(row[2]),
        input=_loads(row[3]),
        output=_loads(row[4]),
        error=None if row[5] is None else ErrorInfo.model_validate(row[5]),
        created_at=_ts_req(row[6]),
        updated_at=_ts_req(row[7]),
        wake_at=_ts(row[8]),
        owner=None if row[9] is None else ClaimOwner.model_validate(row[9]),
        cancel_requested=row[10],
    )


def _row_to_step(row: Sequence[Any]) -> StepState:
    return StepState(
        key=row[0],
        step_name=row[1],
        kind=StepKind(row[2]),
        status=StepStatus(row[3]),
        rpc_name=row[4],
        data=_loads(row[5]),
        data_digest=row[6],
        result=_loads(row[7]),
        error=None if row[8] is None else ErrorInfo.model_validate(row[8]),
        attempt_count=row[9],
        max_attempts=row[10],
        attempts=[StepAttempt.model_validate(a) for a in row[11]],
        next_attempt_at=_ts(row[12]),
        created_at=_ts_req(row[13]),
        updated_at=_ts_req(row[14]),
        started_at=_ts(row[15]),
        finished_at=_ts(row[16]),
        **(row[17] or {}),
    )


def _schema_seed(schema: str) -> int:
    """A stable signed 64-bit seed for ``hashtextextended`` derived from the schema name."""
    if schema == "public":
        return 0
    digest = hashlib.blake2b(schema.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_log = logging.getLogger("pikku.state.postgres")


class PostgresWorkflowStateService(WorkflowStateService):
    """Durable state in PostgreSQL, shared by every worker process on every machine.

    ``dsn`` is a libpq connection string or URL (``postgresql://user@host:5432/db``).
    ``pool_size`` bounds the data pool, ``lock_pool_size`` the number of run locks this
    process can hold at once; ``connect_timeout`` (seconds) bounds how long a connection
    attempt may take before :class:`StoreUnavailableError`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        lock_pool_size: int = 64,
        connect_timeout: float = 10.0,
    ) -> None:
        if not isinstance(dsn, str) or not dsn.strip():
            raise ValueError("PostgresWorkflowStateService needs a DSN, e.g. postgresql://host/db")
        self._dsn = dsn
        self._where = describe_dsn(dsn)
        self._pool_size = max(1, pool_size)
        self._lock_pool_size = max(1, lock_pool_size)
        self._connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[Any] | None = None
        self._lock_pool: AsyncConnectionPool[Any] | None = None
        self._guards: list[PoolGuard] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_lock: asyncio.Lock | None = None
        self._seed = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where!r})"

    @property
    def dsn(self) -> str:
        return self._dsn

    # ------------------------------------------------------------ connections
    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return StoreUnavailableError(f"PostgreSQL at {self._where} is unavailable: {detail}")

    async def _connect(self, **kwargs: Any) -> AsyncConnection[Any]:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "PostgresWorkflowStateService needs psycopg: "
                "pip install 'pikku-workflows[postgres]'"
            ) from exc
        try:
            return await psycopg.AsyncConnection.connect(
                self._dsn, connect_timeout=max(1, round(self._connect_timeout)), **kwargs
            )
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None

    async def migrate(self) -> int:
        """Create or upgrade the schema; return the schema version now in the database."""
        conn = await self._connect(autocommit=False)
        try:
            return await self._migrate(conn)
        finally:
            await conn.close()

    async def _migrate(self, conn: AsyncConnection[Any]) -> int:
        import psycopg

        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
                row = await (await conn.execute("SELECT current_schema()")).fetchone()
                schema = None if row is None else row[0]
                if schema is None:
                    raise StoreUnavailableError(
                        f"PostgreSQL at {self._where}: no schema to create tables in "
                        "(the first schema of search_path does not exist)"
                    )
                self._seed = _schema_seed(schema)
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS pikku_schema_version ("
                    " version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur = await conn.execute("SELECT coalesce(max(version), 0) FROM pikku_schema_version")
                got = await cur.fetchone()
                current = 0 if got is None else int(got[0])
                if current > SCHEMA_VERSION:
                    raise StoreUnavailableError(
                        f"PostgreSQL at {self._where} has pikku schema version {current}, "
                        f"newer than this pikku-workflows supports ({SCHEMA_VERSION}): "
                        "upgrade pikku-workflows"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    await conn.execute(_MIGRATIONS[version])
                    await conn.execute(
                        "INSERT INTO pikku_schema_version (version) VALUES (%s)", (version,)
                    )
                return SCHEMA_VERSION
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None

    async def _ensure_open(self) -> AsyncConnectionPool[Any]:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is not None and self._loop is loop:
            return pool
        if self._open_lock is None or self._loop is not loop:
            # First use, or a new event loop (the old pools belong to a loop that is gone).
            self._open_lock = asyncio.Lock()
            self._pool = self._lock_pool = None
            self._loop = loop
        async with self._open_lock:
            if self._pool is not None:
                return self._pool
            require_postgres_extra("PostgresWorkflowStateService", "psycopg", "psycopg_pool")
            await self.migrate()
            timeout = max(1, round(self._connect_timeout))
            kwargs = {"autocommit": True, "connect_timeout": timeout}
            from psycopg_pool import AsyncConnectionPool

            data_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                kwargs=kwargs,
                open=False,
                timeout=self._connect_timeout + 20,
                name="pikku-state",
            )
            lock_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                self._dsn,
                min_size=0,
                max_size=self._lock_pool_size,
                kwargs=kwargs,
                open=False,
                timeout=self._connect_timeout + 20,
                name="pikku-locks",
            )
            await data_pool.open(wait=False)
            await lock_pool.open(wait=False)
            # a store that is never closed must still let asyncio.run() return
            self._guards = [close_on_loop_shutdown(data_pool), close_on_loop_shutdown(lock_pool)]
            self._lock_pool = lock_pool
            self._pool = data_pool
            self._closed = False
            return data_pool

    async def _query(
        self, query: str, params: Sequence[Any] | dict[str, Any], *, many: bool
    ) -> Any:
        """One statement on a pooled connection. A pooled session that the server ended while
        it was idle (a restart: ``admin_shutdown``...) failed before running anything, so the
        statement is sent again on another connection (the pool drops the dead ones)."""
        import psycopg

        pool = await self._ensure_open()
        for attempt in range(self._pool_size + 1):
            try:
                async with pool.connection() as conn:
                    cur = await conn.execute(query, params)
                    return await cur.fetchall() if many else await cur.fetchone()
            except psycopg.OperationalError as exc:
                if _ended_while_idle(exc) and attempt < self._pool_size:
                    continue
                raise self._unavailable(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetchone(self, query: str, params: Sequence[Any] | dict[str, Any]) -> Any:
        return await self._query(query, params, many=False)

    async def _fetchall(self, query: str, params: Sequence[Any] | dict[str, Any]) -> list[Any]:
        rows: list[Any] = await self._query(query, params, many=True)
        return rows

    async def _run_exists(self, run_id: str) -> bool:
        row = await self._fetchone("SELECT 1 FROM pikku_runs WHERE id = %s", (run_id,))
        return row is not None

    async def _require_run(self, run_id: str) -> None:
        if not await self._run_exists(run_id):
            raise RunNotFoundError(f"no run with id {run_id!r}")

    # ------------------------------------------------------------------ runs
    async def create_run(
        self,
        workflow: str,
        input: Any,
        *,
        run_id: str | None = None,
        parent_run_id: str | None = None,
    ) -> WorkflowRun[Any, Any]:
        if parent_run_id is not None:
            raise NotImplementedError("child runs are not stored by PostgreSQL yet")
        run_id = c.new_run_id() if run_id is None else validate_run_id(run_id)
        text = _dumps(input, "the run input")
        now = c.now_utc()
        row = await self._fetchone(
            f"INSERT INTO pikku_runs (id, workflow, status, input, created_at, updated_at)"
            f" VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING {_RUN_COLS}",
            (run_id, workflow, RunStatus.RUNNING.value, text, now, now),
        )
        if row is None:
            raise RunAlreadyExistsError(f"a run with id {run_id!r} already exists")
        return _row_to_run(row)

    async def get_run(self, run_id: str) -> WorkflowRun[Any, Any]:
        validate_run_id(run_id)
        row = await self._fetchone(f"SELECT {_RUN_COLS} FROM pikku_runs WHERE id = %s", (run_id,))
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return _row_to_run(row)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        limit: int | None = None,
    ) -> list[WorkflowRun[Any, Any]]:
        c.check_limit(limit)
        statuses = c.status_filter(status)
        where: list[str] = []
        params: list[Any] = []
        if workflow is not None:
            where.append("workflow = %s")
            params.append(workflow)
        if statuses is not None:
            where.append("status = ANY(%s)")
            params.append(sorted(s.value for s in statuses))
        query = f"SELECT {_RUN_COLS} FROM pikku_runs"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        return [_row_to_run(row) for row in await self._fetchall(query, params)]

    async def _update_run(
        self,
        run_id: str,
        changes: RunChanges,
        expect_status: Collection[RunStatus] | None,
    ) -> WorkflowRun[Any, Any] | None:
        validate_run_id(run_id)
        expect = c.expect_filter(expect_status)
        sets = ["updated_at = %s"]
        params: list[Any] = [c.now_utc()]
        if isinstance(changes.status, RunStatus):
            sets.append("status = %s")
            params.append(changes.status.value)
        if changes.output is not UNSET:
            sets.append("output = %s")
            params.append(_dumps(changes.output, "the run output"))
        if changes.error is None or isinstance(changes.error, ErrorInfo):
            sets.append("error = %s::jsonb")
            params.append(None if changes.error is None else _model_json(changes.error))
        if changes.wake_at is not UNSET:
            sets.append("wake_at = %s")
            params.append(changes.wake_at)
        if changes.owner is None or isinstance(changes.owner, ClaimOwner):
            sets.append("owner = %s::jsonb")
            params.append(None if changes.owner is None else _model_json(changes.owner))
        if changes.cancel_requested is not UNSET:
            sets.append("cancel_requested = %s")
            params.append(bool(changes.cancel_requested))
        query = f"UPDATE pikku_runs SET {', '.join(sets)} WHERE id = %s"
        params.append(run_id)
        if expect is not None:
            query += " AND status = ANY(%s)"
            params.append(sorted(s.value for s in expect))
        query += f" RETURNING {_RUN_COLS}"
        row = await self._fetchone(query, params)
        if row is None:
            await self._require_run(run_id)
            return None
        return _row_to_run(row)

    # ----------------------------------------------------------------- steps
    async def get_step_states(self, run_id: str) -> dict[str, StepState]:
        validate_run_id(run_id)
        cols = ", ".join(f"s.{col.strip()}" for col in _STEP_COLS.split(","))
        rows = await self._fetchall(
            f"SELECT {cols} FROM pikku_runs r LEFT JOIN pikku_steps s ON s.run_id = r.id"
            " WHERE r.id = %s ORDER BY s.seq",
            (run_id,),
        )
        if not rows:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return {row[0]: _row_to_step(row) for row in rows if row[0] is not None}

    async def get_step(self, run_id: str, key: str) -> StepState | None:
        validate_run_id(run_id)
        cols = ", ".join(f"s.{col.strip()}" for col in _STEP_COLS.split(","))
        row = await self._fetchone(
            f"SELECT {cols} FROM pikku_runs r LEFT JOIN pikku_steps s"
            " ON s.run_id = r.id AND s.key = %s WHERE r.id = %s",
            (key, run_id),
        )
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return None if row[0] is None else _row_to_step(row)

    async def insert_step(self, run_id: str, step: StepState) -> StepState:
        import psycopg

        validate_run_id(run_id)
        data = None if step.data is None else _dumps(step.data, f"the data of step {step.key!r}")
        result = (
            None if step.result is None else _dumps(step.result, f"the result of step {step.key!r}")
        )
        attempts = json.dumps([a.model_dump(mode="json") for a in step.attempts])
        running = c.running_attempt(step, None)
        token = running.owner.token if running is not None and running.owner else None
        lease = running.lease_expires_at if running is not None else None
        extra_fields = set(StepState.model_fields) - _STEP_FIELDS
        extra = step.model_dump(mode="json", include=extra_fields) if extra_fields else {}
        try:
            row = await self._fetchone(
                f"INSERT INTO pikku_steps (run_id, key, step_name, kind, status, rpc_name, data,"
                " data_digest, result, error, attempt_count, max_attempts, attempts,"
                " next_attempt_at, lease_token, lease_expires_at, created_at, updated_at,"
                " started_at, finished_at, extra)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s::jsonb,"
                " %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
                f" ON CONFLICT (run_id, key) DO NOTHING RETURNING {_STEP_COLS}",
                (
                    run_id,
                    step.key,
                    step.step_name,
                    StepKind(step.kind).value,
                    StepStatus(step.status).value,
                    step.rpc_name,
                    data,
                    step.data_digest,
                    result,
                    None if step.error is None else _model_json(step.error),
                    step.attempt_count,
                    step.max_attempts,
                    attempts,
                    step.next_attempt_at,
                    token,
                    lease,
                    step.created_at,
                    step.updated_at,
                    step.started_at,
                    step.finished_at,
                    json.dumps(extra) if extra else None,
                ),
            )
        except psycopg.errors.ForeignKeyViolation:
            raise RunNotFoundError(f"no run with id {run_id!r}") from None
        if row is not None:
            return _row_to_step(row)
        existing = await self.get_step(run_id, step.key)
        if existing is None:  # deleted meanwhile (never by this store)
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return existing

    async def _step_update(
        self, run_id: str, key: str, query: str, params: dict[str, Any]
    ) -> StepState | None:
        """Run a guarded ``UPDATE pikku_steps ... RETURNING``; ``None`` when the guard did not
        match (RunNotFoundError when the run does not exist at all)."""
        validate_run_id(run_id)
        params = {**params, "run_id": run_id, "key": key}
        row = await self._fetchone(query + f" RETURNING {_STEP_COLS}", params)
        if row is None:
            await self._require_run(run_id)
            return None
        return _row_to_step(row)

    async def schedule_step(self, run_id: str, key: str, *, at: datetime | None) -> StepState:
        step = await self._step_update(
            run_id,
            key,
            "UPDATE pikku_steps SET status = 'scheduled', next_attempt_at = %(at)s,"
            " updated_at = %(now)s"
            " WHERE run_id = %(run_id)s AND key = %(key)s AND status = 'pending'",
            {"at": None if at is None else c.aware(at), "now": c.now_utc()},
        )
        return step if step is not None else await self._require_step(run_id, key)

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
        lease = when + timedelta(seconds=lease_seconds)
        attempt = json.dumps(
            {
                "status": StepStatus.RUNNING.value,
                "owner": owner.model_dump(mode="json"),
                "started_at": _iso(when),
                "finished_at": None,
                "lease_expires_at": _iso(lease),
                "error": None,
            }
        )
        return await self._step_update(
            run_id,
            key,
            "UPDATE pikku_steps SET status = 'running', attempt_count = attempt_count + 1,"
            " attempts = attempts || jsonb_build_array("
            "   jsonb_build_object('number', attempt_count + 1) || %(attempt)s::jsonb),"
            " next_attempt_at = NULL, lease_token = %(token)s, lease_expires_at = %(lease)s,"
            " started_at = coalesce(started_at, %(now)s), updated_at = %(now)s"
            " WHERE run_id = %(run_id)s AND key = %(key)s"
            " AND status IN ('pending', 'scheduled')"
            " AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)",
            {"attempt": attempt, "token": owner.token, "lease": lease, "now": when},
        )

    async def heartbeat_step(
        self, run_id: str, key: str, *, token: str, lease_seconds: float
    ) -> bool:
        now = c.now_utc()
        lease = now + timedelta(seconds=lease_seconds)
        step = await self._step_update(
            run_id,
            key,
            "UPDATE pikku_steps SET"
            " attempts = jsonb_set(attempts, '{-1,lease_expires_at}', to_jsonb(%(lease_iso)s::text)),"
            " lease_expires_at = %(lease)s, updated_at = %(now)s"
            " WHERE run_id = %(run_id)s AND key = %(key)s AND status = 'running'"
            " AND lease_token = %(token)s AND attempts->-1->>'status' = 'running'",
            {"lease_iso": _iso(lease), "lease": lease, "now": now, "token": token},
        )
        return step is not None

    async def complete_step(
        self, run_id: str, key: str, *, result: Any, token: str | None
    ) -> bool:
        now = c.now_utc()
        finish_attempt = (
            "jsonb_set(jsonb_set(attempts, '{-1,status}', '\"succeeded\"'),"
            " '{-1,finished_at}', to_jsonb(%(now_iso)s::text))"
        )
        if token is not None:
            attempts_expr = finish_attempt
            guard = (
                "status = 'running' AND lease_token = %(token)s"
                " AND attempts->-1->>'status' = 'running'"
            )
        else:
            attempts_expr = (
                "CASE WHEN status = 'running' AND attempts->-1->>'status' = 'running'"
                f" THEN {finish_attempt} ELSE attempts END"
            )
            guard = "status <> 'succeeded'"
        step = await self._step_update(
            run_id,
            key,
            f"UPDATE pikku_steps SET attempts = {attempts_expr}, status = 'succeeded',"
            " result = %(result)s, error = NULL, next_attempt_at = NULL,"
            " lease_token = NULL, lease_expires_at = NULL,"
            " finished_at = %(now)s, updated_at = %(now)s"
            f" WHERE run_id = %(run_id)s AND key = %(key)s AND {guard}",
            {
                "result": _dumps(result, f"the result of step {key!r}"),
                "now": now,
                "now_iso": _iso(now),
                "token": token,
            },
        )
        return step is not None

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
        if retry_at is not None:
            outcome = "status = 'scheduled', next_attempt_at = %(retry_at)s"
        else:
            outcome = "status = 'failed', next_attempt_at = NULL, finished_at = %(now)s"
        guard = "status = 'running' AND attempts->-1->>'status' = 'running'"
        if token is not None:
            guard += " AND lease_token = %(token)s"
        return await self._step_update(
            run_id,
            key,
            "UPDATE pikku_steps SET attempts = jsonb_set(jsonb_set(jsonb_set(attempts,"
            " '{-1,status}', '\"failed\"'), '{-1,finished_at}', to_jsonb(%(now_iso)s::text)),"
            " '{-1,error}', %(error)s::jsonb),"
            f" error = %(error)s::jsonb, {outcome}, lease_token = NULL, lease_expires_at = NULL,"
            " updated_at = %(now)s"
            f" WHERE run_id = %(run_id)s AND key = %(key)s AND {guard}",
            {
                "now": now,
                "now_iso": _iso(now),
                "error": _model_json(error),
                "retry_at": None if retry_at is None else c.aware(retry_at),
                "token": token,
            },
        )

    async def reset_step(
        self, run_id: str, key: str, *, attempts: int = 1, at: datetime | None = None
    ) -> StepState | None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        step = await self._step_update(
            run_id,
            key,
            "UPDATE pikku_steps SET status = 'scheduled', error = NULL,"
            " next_attempt_at = %(at)s, finished_at = NULL,"
            " max_attempts = attempt_count + %(attempts)s, updated_at = %(now)s"
            " WHERE run_id = %(run_id)s AND key = %(key)s AND status = 'failed'",
            {"at": None if at is None else c.aware(at), "attempts": attempts, "now": c.now_utc()},
        )
        if step is None:
            await self._require_step(run_id, key)
        return step

    reset_step.__doc__ = c.RESET_DOC

    # ------------------------------------------------------------- locking
    def lock_run(
        self, run_id: str, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        validate_run_id(run_id)
        return self._lock(run_id, timeout)

    @asynccontextmanager
    async def _lock(self, run_id: str, timeout: float | None) -> AsyncIterator[None]:
        import psycopg
        from psycopg_pool import PoolTimeout

        await self._ensure_open()
        lock_pool = self._lock_pool
        assert lock_pool is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(timeout, 0.0)
        what = f"the lock of run {run_id!r}"
        for attempt in range(self._lock_pool_size + 1):
            try:
                conn = await lock_pool.getconn(
                    timeout=None if deadline is None else max(deadline - loop.time(), 0.001)
                )
            except PoolTimeout:
                if deadline is not None and loop.time() >= deadline:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from None
                raise self._unavailable(Exception("no connection for a run lock")) from None
            except psycopg.OperationalError as exc:
                raise self._unavailable(exc) from None
            try:
                locked = await self._acquire(conn, run_id, deadline, loop)
                break
            except _SessionEnded as ended:
                # an idle pooled session the server ended (restart): it held nothing
                await _close_quietly(conn)
                await lock_pool.putconn(conn)
                if attempt >= self._lock_pool_size:
                    raise self._unavailable(ended.__cause__ or ended) from None
            except BaseException:
                # Whatever happened (cancelled, timed out mid-wait, connection lost), this
                # session might hold or be waiting for the lock: cancel the wait and drop the
                # session instead of returning it.
                with suppress(Exception):
                    await conn.cancel_safe(timeout=2)
                await _close_quietly(conn)
                await lock_pool.putconn(conn)
                raise
        try:
            if not locked:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            yield
        finally:
            if locked:
                try:
                    await conn.execute("SELECT pg_advisory_unlock_all()")
                except BaseException:
                    await _close_quietly(conn)
                    raise
            await lock_pool.putconn(conn)

    async def _acquire(
        self,
        conn: AsyncConnection[Any],
        run_id: str,
        deadline: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> bool:
        import psycopg
        from psycopg import sql

        if deadline is None:
            wait_ms = 0  # lock_timeout 0: wait forever
        else:
            remaining = deadline - loop.time()
            if remaining <= 0:
                try:
                    cur = await conn.execute(
                        "SELECT pg_try_advisory_lock(hashtextextended(%s, %s))",
                        (run_id, self._seed),
                    )
                    row = await cur.fetchone()
                except psycopg.OperationalError as exc:
                    if _ended_while_idle(exc):
                        raise _SessionEnded() from exc
                    raise self._unavailable(exc) from None
                return bool(row and row[0])
            wait_ms = max(1, int(remaining * 1000))
        # One round trip: set this session's lock_timeout and wait for the lock.
        query = sql.SQL(
            "SET lock_timeout = {}; SELECT pg_advisory_lock(hashtextextended({}, {}))"
        ).format(sql.Literal(wait_ms), sql.Literal(run_id), sql.Literal(self._seed))
        try:
            await conn.execute(query)
        except psycopg.errors.LockNotAvailable:
            return False
        except psycopg.OperationalError as exc:
            if _ended_while_idle(exc):
                raise _SessionEnded() from exc
            raise self._unavailable(exc) from None
        return True

    # ------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        guards, self._guards = self._guards, []
        self._pool = self._lock_pool = None
        self._closed = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - close() is async
            running = None
        if running is not self._loop:
            return  # pools of a loop that is gone: nothing to await on this one
        for guard in guards:
            await guard.close(timeout=5)


class _SessionEnded(Exception):
    """A pooled lock session had been ended by the server before we used it."""


_ENDED_WHILE_IDLE: Final = frozenset({"57P01", "57P02", "57P03"})
"""admin_shutdown, crash_shutdown, cannot_connect_now: the server ended the session."""


def _ended_while_idle(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in _ENDED_WHILE_IDLE


def _model_json(model: ErrorInfo | ClaimOwner) -> str:
    return model.model_dump_json()


async def _close_quietly(conn: AsyncConnection[Any]) -> None:
    with suppress(Exception):
        await conn.close()
