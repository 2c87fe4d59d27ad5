"""The PostgreSQL state store: workers on many machines share one database.

Needs the ``postgres`` extra (``pip install 'pikku-workflows[postgres]'``): psycopg 3 and
psycopg-pool are imported lazily, on first use, so ``import pikku_typing`` works without them.

Design:

* Two async connection pools (plus the bookkeeping pool below), opened lazily on first use (constructing the store needs
  no event loop): one for data operations (autocommit, one statement per operation), and one
  whose connections only ever hold **run locks**. A lock is a session-level advisory lock,
  ``pg_advisory_lock(hashtextextended(run_id, seed))`` (``seed`` derives from the schema the
  tables live in, so two apps in two schemas never share locks). The connection that holds it
  is taken out of the lock pool for the whole ``async with`` block and is only given back
  after ``pg_advisory_unlock_all()`` succeeded; if releasing fails in any way the connection
  is closed instead (the server drops a session's advisory locks with the session), so a
  pooled connection never goes back while it holds a lock. Data operations never wait for a
  lock connection, so a lock holder can always make progress. While this process holds a
  run's lock, the run's own statements (``params["run_id"]``, except the bookkeeping ones)
  run on that lock's session: a pass makes no pool checkout per statement (issue 16); if
  that session is lost, so is the lock: the run's statements fail (StoreUnavailableError,
  reads too: no retry elsewhere lets a pass go on without its lock), and so does the
  lock's release, after the session went back to its pool closed.
* Bookkeeping statements run on a third pool, whose sessions ``SET synchronous_commit = off``
  once when they connect (no extra round trip per statement): an attempt's start
  (``insert_step`` of a running step), claim and heartbeat, and a pass marking its run
  running or suspended (``update_run`` changing only status RUNNING/SUSPENDED, wake time,
  owner). Everything else (a new run, a step's result or final failure, a scheduled step or
  sleep, a run's settlement or cancel request, an event, the migration) commits with the
  server's own ``synchronous_commit`` (``on`` by default): the server returns once the
  commit is flushed. An asynchronous commit is visible to every session at once and survives
  a *client* crash (a crash mid-attempt is still counted); it reaches the disk within
  ``wal_writer_delay`` (200 ms by default) or with the next synchronous commit, which flushes
  the WAL in order up to itself, so whatever depends on a bookkeeping commit and is durable
  makes it durable too. A *server* crash (or power loss) may lose the last few bookkeeping
  commits and nothing else: an attempt then runs again uncounted, a run marked running is
  recovered as before. That saves one WAL flush per step (an inline step: one flush instead
  of two; ``benchmarks/floor.py``). ``synchronous_every_commit=True`` sends every statement
  through the data pool (the old behaviour, one flush per commit).
* A pass's step results are written behind (:meth:`PostgresWorkflowStateService.complete_step_later`):
  while this process holds the run's lock, the result of an attempt the pass ran itself is
  held back and sent with the run's next statement. The next step's insert carries it in
  the same statement (``complete_then_insert_step_at_boundary``: one round trip and one
  synchronous commit per inline step, the attempt's start included), and so does a durable
  update of the run (``complete_then_update_run``: its settlement); any other statement of
  the run sends it first, the lock's release at the latest. So the result is durable before
  the next step's code runs and before the run settles; only the workflow's own code
  between two steps runs before it (a crash there runs the step again, as a crash just
  before the result was stored does). A completion whose claim was taken over meanwhile
  fails the statement that carries it (``StepCompletionLostError``, nothing of it applies)
  and the pass is replayed. ``write_behind=False`` stores each result at once.
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
* The statements and the DDL are package resources: ``sql/postgres/queries.sql`` (named
  statements) and ``sql/postgres/migrations/NNNN_*.sql`` (schema version NNNN). Rows are read
  by column name (psycopg's ``dict_row``).
* Every driver failure passes through ONE translation, :meth:`_unavailable` (raised by
  :meth:`_unavailable_on_error` and by the statement path, :meth:`_execute_once`): a
  connection failure is a :class:`~pikku_typing.errors.StoreUnavailableError` naming the
  server (never the password). A stored row that does not decode is a
  :class:`~pikku_typing.errors.StateCorruptedError` naming the run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pikku_typing._pool_guard import PoolGuard, close_on_loop_shutdown
from pikku_typing.errors import (
    RunAlreadyExistsError,
    RunNotFoundError,
    StateCorruptedError,
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
    WorkflowEvent,
    WorkflowRun,
)
from pikku_typing.state import _common as c
from pikku_typing.state import _sql
from pikku_typing.state._pg_listen import SettleListener
from pikku_typing.state.base import (
    UNSET,
    DamagedRun,
    RunChanges,
    StepCompletionLostError,
    WorkflowStateService,
    validate_run_id,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection, AsyncCursor
    from psycopg_pool import AsyncConnectionPool

__all__ = [
    "SCHEMA_VERSION",
    "PostgresWorkflowStateService",
    "describe_dsn",
    "require_postgres_extra",
]

_MIGRATIONS: Final = _sql.migrations("postgres")
"""``{version: DDL}``: ``pikku_typing/state/sql/postgres/migrations/NNNN_*.sql``."""

SCHEMA_VERSION: Final = max(_MIGRATIONS)
"""Latest schema version this code knows (``pikku_schema_version``)."""

_DONE_NAMES: Final = ("result", "now", "now_iso", "token", "key")
"""The parameters of ``complete_step`` that ``complete_then_insert_step_at_boundary`` takes
prefixed ``done_`` (``run_id`` is the same run's)."""


_DONE_PARAMS: Final = re.compile(r"%\((" + "|".join(_DONE_NAMES) + r")\)s")


def _once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:  # pragma: no cover - queries.sql and this code disagree
        raise RuntimeError(f"pikku_typing's PostgreSQL statements: {old!r} is not found once")
    return text.replace(old, new)


def _compose(queries: dict[str, str]) -> dict[str, str]:
    """The named statements, and two derived ones that carry a held-back completion
    (``complete_step``, its parameters prefixed ``done_``, as the CTE ``done``; see
    :meth:`PostgresWorkflowStateService._carrying`), so each statement has one text:

    * ``complete_then_insert_step_at_boundary``: ``insert_step_at_boundary`` committed
      synchronously, inserting only with the completion, and saying ``completed``;
    * ``complete_then_update_run``: ``update_run`` that applies only with the completion and
      always returns one row: ``completed``, then the run's columns (NULL when the run's
      update did not apply)."""
    composed = dict(queries)
    done = _DONE_PARAMS.sub(r"%(done_\1)s", queries["complete_step"])
    insert = _once(
        queries["insert_step_at_boundary"], "WITH commit_mode AS (",
        f"WITH done AS (\n{done}\n), commit_mode AS (",
    )
    insert = _once(insert, "CASE WHEN %(asynchronous)s THEN", "CASE WHEN false THEN")
    insert = _once(insert, "FROM run WHERE goes_on", "FROM run, done WHERE goes_on")
    composed["complete_then_insert_step_at_boundary"] = _once(
        insert, "AS inserted FROM run", "AS inserted,\n    EXISTS (SELECT 1 FROM done) AS completed FROM run"
    )
    update = _once(queries["update_run"], "WITH updated AS (", f"WITH done AS (\n{done}\n), updated AS (")
    update = _once(update, "RETURNING *\n)", "    AND EXISTS (SELECT 1 FROM done)\nRETURNING *\n)")
    update = _once(update, "SELECT updated.*,", "SELECT EXISTS (SELECT 1 FROM done) AS completed, updated.*,")
    composed["complete_then_update_run"] = _once(
        update, "FROM updated", "FROM (SELECT 1) AS one LEFT JOIN updated ON true"
    )
    return composed


_Q: Final = _compose(_sql.queries("postgres"))
"""The named statements of ``pikku_typing/state/sql/postgres/queries.sql``."""

# A fixed key for the transaction-level advisory lock that serialises migrations.
_MIGRATION_LOCK_KEY: Final = 0x70696B6B75_01  # "pikku" + 1

_STEP_COLUMNS: Final = frozenset(
    {
        "key", "step_name", "kind", "status", "rpc_name", "data", "data_digest", "result",
        "error", "attempt_count", "max_attempts", "attempts", "next_attempt_at", "created_at",
        "updated_at", "started_at", "finished_at",
    }
)  # fmt: skip
"""StepState fields kept in their own columns; any other field (added to the model later, e.g.
``retry_delay``) is kept in the ``extra`` jsonb column, written at insert and never changed."""

_TRANSIENT_SQLSTATE_CLASSES: Final = ("08", "53", "57", "58")
"""connection exception, insufficient resources, operator intervention, system error."""


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


_JSON: Final = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
"""What ``json.dumps(value, allow_nan=False, separators=(",", ":"))`` uses, made once
(``json.dumps`` with arguments builds a new encoder per call)."""


def _dumps(value: Any, what: str) -> str:
    try:
        return _JSON.encode(value)
    except (TypeError, ValueError) as exc:
        raise StepSerializationError(f"{what} is not a JSON value: {exc}") from exc


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _ts(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    if value.tzinfo is UTC:
        return value.isoformat()
    return c.aware(value).astimezone(UTC).isoformat()


def _bookkeeping(changes: RunChanges) -> bool:
    """A pass marking its run running or suspended (owner, wake-up time): no output, error
    or cancel request, no settled status."""
    return (
        changes.status in (RunStatus.RUNNING, RunStatus.SUSPENDED, UNSET)
        and changes.output is UNSET
        and changes.error is UNSET
        and changes.cancel_requested is UNSET
    )


async def _asynchronous_commits(conn: AsyncConnection[Any]) -> None:
    """``configure`` of the bookkeeping pool: once per session, when it connects."""
    await conn.execute("SET synchronous_commit = off")


def _row_to_run(row: Mapping[str, Any]) -> WorkflowRun[Any, Any]:
    return WorkflowRun(
        id=row["id"],
        workflow=row["workflow"],
        status=RunStatus(row["status"]),
        input=_loads(row["input"]),
        output=_loads(row["output"]),
        error=None if row["error"] is None else ErrorInfo.model_validate(row["error"]),
        created_at=row["created_at"].astimezone(UTC),
        updated_at=row["updated_at"].astimezone(UTC),
        wake_at=_ts(row["wake_at"]),
        owner=None if row["owner"] is None else ClaimOwner.model_validate(row["owner"]),
        cancel_requested=row["cancel_requested"],
        parent_run_id=row.get("parent_run_id"),
        version=row.get("version"),
    )


def _row_to_event(row: Mapping[str, Any]) -> WorkflowEvent:
    return WorkflowEvent(
        seq=row["seq"],
        run_id=row["run_id"],
        name=row["name"],
        payload=_loads(row["payload"]),
        sent_at=row["sent_at"].astimezone(UTC),
        consumed_by=row["consumed_by"],
        consumed_at=_ts(row["consumed_at"]),
    )


def _row_to_step(row: Mapping[str, Any]) -> StepState:
    return StepState(
        key=row["key"],
        step_name=row["step_name"],
        kind=StepKind(row["kind"]),
        status=StepStatus(row["status"]),
        rpc_name=row["rpc_name"],
        data=_loads(row["data"]),
        data_digest=row["data_digest"],
        result=_loads(row["result"]),
        error=None if row["error"] is None else ErrorInfo.model_validate(row["error"]),
        attempt_count=row["attempt_count"],
        max_attempts=row["max_attempts"],
        attempts=[StepAttempt.model_validate(a) for a in row["attempts"]],
        next_attempt_at=_ts(row["next_attempt_at"]),
        created_at=row["created_at"].astimezone(UTC),
        updated_at=row["updated_at"].astimezone(UTC),
        started_at=_ts(row["started_at"]),
        finished_at=_ts(row["finished_at"]),
        **(row["extra"] or {}),
    )


_STEP_TIMES: Final = ("next_attempt_at", "created_at", "updated_at", "started_at", "finished_at")


def _utc(value: datetime | None) -> datetime | None:
    """A timestamp as PostgreSQL gives it back: aware, in UTC (a naive one is taken as UTC,
    as everywhere in pikku)."""
    if value is None or value.tzinfo is UTC:
        return value
    return c.aware(value).astimezone(UTC)


_EXTRA_FIELDS: Final = set(StepState.model_fields) - _STEP_COLUMNS
"""The StepState fields kept in the ``extra`` column."""


_PLAIN: Final = (str, int, bool, type(None))


def _extra(step: StepState) -> dict[str, Any]:
    """The fields of the ``extra`` column as JSON values (what ``model_dump(mode="json")``
    gives, without its cost when they are plain JSON scalars, e.g. ``retry_delay``)."""
    values = {name: getattr(step, name) for name in _EXTRA_FIELDS}
    for value in values.values():
        if not (isinstance(value, _PLAIN) or (isinstance(value, float) and math.isfinite(value))):
            return step.model_dump(mode="json", include=_EXTRA_FIELDS)
    return values


_EXTRA_DEFAULTS: Final = {name: StepState.model_fields[name].default for name in _EXTRA_FIELDS}
"""The defaults of the ``extra`` fields: a step whose extra fields all hold them stores NULL
(reading it back gives the same defaults), without building and dumping the dict."""

_ATTEMPT_JSON: Final = StepAttempt.__pydantic_serializer__.to_json
"""What ``StepAttempt.model_dump_json()`` returns (as bytes), without its Python layer."""


def _insert_step_params(run_id: str, step: StepState) -> dict[str, Any]:
    running = c.running_attempt(step, None)
    extra = (
        _extra(step)
        if any(getattr(step, name) != default for name, default in _EXTRA_DEFAULTS.items())
        else None
    )
    return {
        "run_id": run_id,
        "key": step.key,
        "step_name": step.step_name,
        "kind": StepKind(step.kind).value,
        "status": StepStatus(step.status).value,
        "rpc_name": step.rpc_name,
        "data": None if step.data is None else _dumps(step.data, f"the data of step {step.key!r}"),
        "data_digest": step.data_digest,
        "result": None
        if step.result is None
        else _dumps(step.result, f"the result of step {step.key!r}"),
        "error": None if step.error is None else step.error.model_dump_json(),
        "attempt_count": step.attempt_count,
        "max_attempts": step.max_attempts,
        # the same JSON as json.dumps([a.model_dump(mode="json") ...]), in a third of the time
        "attempts": "[" + ",".join(_ATTEMPT_JSON(a).decode() for a in step.attempts) + "]",
        "next_attempt_at": _utc(step.next_attempt_at),
        "lease_token": running.owner.token if running is not None and running.owner else None,
        "lease_expires_at": running.lease_expires_at if running is not None else None,
        "created_at": _utc(step.created_at),
        "updated_at": _utc(step.updated_at),
        "started_at": _utc(step.started_at),
        "finished_at": _utc(step.finished_at),
        "extra": json.dumps(extra) if extra else None,
    }


def _as_stored(step: StepState, params: Mapping[str, Any]) -> StepState:
    """The step a successful ``insert_step`` stored, as reading its row back would give it,
    without reading it back: the JSON values decoded from the text that was stored (so they
    are copies, and round trip as stored: tuples become lists...), timestamps in UTC; the
    attempts, error and extra fields are the given ones (stored as their JSON dump, they
    decode to equal values). The given ``step`` itself when nothing differs (no data, no
    result, UTC timestamps: an attempt's start), as ``insert_step_at_boundary`` allows."""
    update: dict[str, Any] = {}
    if params["data"] is not None:
        update["data"] = _loads(params["data"])
    if params["result"] is not None:
        update["result"] = _loads(params["result"])
    for name in _STEP_TIMES:
        if params[name] is not getattr(step, name):
            update[name] = params[name]
    return step.model_copy(update=update) if update else step


def _complete_params(run_id: str, key: str, result: Any, token: str | None) -> dict[str, Any]:
    now = c.now_utc()
    return {
        "result": _dumps(result, f"the result of step {key!r}"),
        "now": now,
        "now_iso": _iso(now),
        "token": token,
        "run_id": run_id,
        "key": key,
    }


READ_RETRY_DELAYS: Final = (0.05, 0.2, 0.8)
"""Backoff (seconds) of the retries of a read whose connection failed: bounded, ~1 s."""

_READS: Final = frozenset(
    {"run_exists", "get_run", "get_step_states", "get_step", "get_step_and_run", "list_events",
     "all_runs", "all_steps", "all_events"}
)  # fmt: skip
"""Named statements that only read: safe to send again after a lost connection."""

_DECODE_ERRORS: Final = (ValueError, TypeError, KeyError, AttributeError)
"""What decoding a damaged row raises (JSONDecodeError and pydantic's ValidationError are
ValueErrors)."""


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
    attempt may take before :class:`StoreUnavailableError`. Bookkeeping commits (an
    attempt's start, claim, heartbeat; a pass marking its run running/suspended) are
    asynchronous (``synchronous_commit = off``, see the module's docstring);
    ``synchronous_every_commit=True`` commits them like everything else. A pass's step
    result is written behind (:meth:`complete_step_later`: sent with the run's next
    statement, one round trip per inline step); ``write_behind=False`` commits it before
    the workflow's code goes on (two round trips per inline step).
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        lock_pool_size: int = 64,
        connect_timeout: float = 10.0,
        synchronous_every_commit: bool = False,
        write_behind: bool = True,
    ) -> None:
        if not isinstance(dsn, str) or not dsn.strip():
            raise ValueError("PostgresWorkflowStateService needs a DSN, e.g. postgresql://host/db")
        self._dsn = dsn
        self._where = describe_dsn(dsn)
        self._pool_size = max(1, pool_size)
        self._lock_pool_size = max(1, lock_pool_size)
        self._connect_timeout = connect_timeout
        self.synchronous_every_commit = synchronous_every_commit
        self.write_behind = write_behind
        self._pool: AsyncConnectionPool[Any] | None = None
        self._book_pool: AsyncConnectionPool[Any] | None = None
        self._lock_pool: AsyncConnectionPool[Any] | None = None
        self._guards: list[PoolGuard] = []
        self._held: dict[str, AsyncCursor[Any]] = {}
        """A cursor on each session holding one of this process's run locks, by run: the
        statements of a locked run go through its lock's session (see :meth:`_execute_once`)."""
        self._pending: dict[str, list[dict[str, Any]]] = {}
        """Write-behind completions of locked runs, by run (``complete_step`` parameters):
        sent with or before the run's next statement (see :meth:`complete_step_later`)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_lock: asyncio.Lock | None = None
        self._seed = 0
        self._listener = SettleListener(lambda: self._connect(autocommit=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where!r})"

    @property
    def dsn(self) -> str:
        return self._dsn

    # ------------------------------------------------------------ errors
    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return StoreUnavailableError(f"PostgreSQL at {self._where} is unavailable: {detail}")

    @contextmanager
    def _unavailable_on_error(self) -> Iterator[None]:
        """The one translation of driver failures: a lost or refused connection, a server
        shutting down, a pool with no connection to give (``psycopg.OperationalError``,
        ``InterfaceError``, ``PoolTimeout``) becomes :class:`StoreUnavailableError`.
        (:meth:`_execute_once`, the path of every statement, catches the same two classes
        itself and raises the same :meth:`_unavailable`: no context manager per statement.)"""
        import psycopg

        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from None

    def _damaged(self, what: str, exc: BaseException) -> StateCorruptedError:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return StateCorruptedError(
            f"PostgreSQL at {self._where}: {what} is damaged and cannot be read "
            f"({type(exc).__name__}: {detail}); it was left untouched"
        )

    def _run(self, row: Mapping[str, Any]) -> WorkflowRun[Any, Any]:
        try:
            return _row_to_run(row)
        except _DECODE_ERRORS as exc:
            raise self._damaged(f"the row of run {row.get('id')!r}", exc) from exc

    def _step(self, run_id: str, row: Mapping[str, Any]) -> StepState:
        try:
            return _row_to_step(row)
        except _DECODE_ERRORS as exc:
            raise self._damaged(f"step {row.get('key')!r} of run {run_id!r}", exc) from exc

    # ------------------------------------------------------------ connections
    async def _connect(self, **kwargs: Any) -> AsyncConnection[Any]:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "PostgresWorkflowStateService needs psycopg: "
                "pip install 'pikku-workflows[postgres]'"
            ) from exc
        with self._unavailable_on_error():
            return await psycopg.AsyncConnection.connect(
                self._dsn,
                connect_timeout=max(1, round(self._connect_timeout)),
                row_factory=dict_row,
                **kwargs,
            )

    async def migrate(self) -> int:
        """Create or upgrade the schema; return the schema version now in the database."""
        conn = await self._connect(autocommit=False)
        try:
            return await self._migrate(conn)
        finally:
            await conn.close()

    async def _migrate(self, conn: AsyncConnection[Any]) -> int:
        with self._unavailable_on_error():
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
                row = await (await conn.execute("SELECT current_schema() AS name")).fetchone()
                schema = None if row is None else row["name"]
                if schema is None:
                    raise StoreUnavailableError(
                        f"PostgreSQL at {self._where}: no schema to create tables in "
                        "(the first schema of search_path does not exist)"
                    )
                self._seed = _schema_seed(schema)
                await conn.execute(_Q["create_version_table"])
                got = await (await conn.execute(_Q["current_version"])).fetchone()
                current = 0 if got is None else int(got["version"])
                if current > SCHEMA_VERSION:
                    raise StoreUnavailableError(
                        f"PostgreSQL at {self._where} has pikku schema version {current}, "
                        f"newer than this pikku-workflows supports ({SCHEMA_VERSION}): "
                        "upgrade pikku-workflows"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    await conn.execute(_MIGRATIONS[version])
                    await conn.execute(_Q["record_version"], {"version": version})
                return SCHEMA_VERSION

    async def _ensure_open(self) -> AsyncConnectionPool[Any]:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is not None and self._loop is loop:
            return pool
        if self._open_lock is None or self._loop is not loop:
            # First use, or a new event loop (the old pools belong to a loop that is gone).
            self._open_lock = asyncio.Lock()
            self._pool = self._lock_pool = self._book_pool = None
            self._loop = loop
        async with self._open_lock:
            if self._pool is not None:
                return self._pool
            require_postgres_extra("PostgresWorkflowStateService", "psycopg", "psycopg_pool")
            from psycopg.rows import dict_row

            await self.migrate()
            timeout = max(1, round(self._connect_timeout))
            kwargs = {"autocommit": True, "connect_timeout": timeout, "row_factory": dict_row}
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
            pools = [data_pool, lock_pool]
            book_pool = data_pool
            if not self.synchronous_every_commit:
                book_pool = AsyncConnectionPool(
                    self._dsn,
                    min_size=0,
                    max_size=self._pool_size,
                    kwargs=kwargs,
                    configure=_asynchronous_commits,
                    open=False,
                    timeout=self._connect_timeout + 20,
                    name="pikku-bookkeeping",
                )
                pools.append(book_pool)
            for pool in pools:
                await pool.open(wait=False)
            # a store that is never closed must still let asyncio.run() return
            self._guards = [close_on_loop_shutdown(pool) for pool in pools]
            self._lock_pool = lock_pool
            self._book_pool = book_pool
            self._pool = data_pool
            return data_pool

    async def _execute(
        self,
        query: str,
        params: Mapping[str, Any],
        *,
        many: bool,
        read: bool = False,
        bookkeeping: bool = False,
    ) -> Any:
        """One statement on a pooled connection (of the bookkeeping pool when
        ``bookkeeping``: an asynchronous commit). A pooled session that the server ended
        while it was idle (a restart: ``admin_shutdown``...) failed before running anything,
        so the statement is sent again on another connection (the pool drops the dead ones).
        A ``read`` (the named statements of :data:`_READS`) that fails on a lost connection is
        retried with a bounded backoff (:data:`READ_RETRY_DELAYS`) before
        :class:`StoreUnavailableError`; a write is not (its outcome is unknown: the runtime's
        redelivery of the job decides)."""
        if self._pending:
            await self._flush(params.get("run_id"))
        try:
            return await self._execute_once(query, params, many=many, bookkeeping=bookkeeping)
        except StoreUnavailableError as exc:
            if not read:
                raise
            error = exc
        for delay in READ_RETRY_DELAYS:
            _log.debug("read failed (%s); retried in %.2fs", error, delay)
            await asyncio.sleep(delay)
            try:
                return await self._execute_once(
                    query, params, many=many, bookkeeping=bookkeeping
                )
            except StoreUnavailableError as exc:
                error = exc
        raise error

    async def _execute_once(
        self, query: str, params: Mapping[str, Any], *, many: bool, bookkeeping: bool = False
    ) -> Any:
        import psycopg

        pool = self._pool
        if pool is None or self._loop is not asyncio.get_running_loop():
            pool = await self._ensure_open()
        if bookkeeping and self._book_pool is not None:
            pool = self._book_pool
        elif self._held and (held := self._held_cursor(params)) is not None:
            return await self._on_lock_session(held, query, params, many=many)
        for attempt in range(self._pool_size + 1):
            try:
                async with pool.connection() as conn:
                    cur = await conn.execute(query, params)
                    return await cur.fetchall() if many else await cur.fetchone()
            except psycopg.OperationalError as exc:  # see _unavailable_on_error
                if _ended_while_idle(exc) and attempt < self._pool_size:
                    continue
                raise self._unavailable(exc) from None
            except psycopg.InterfaceError as exc:
                raise self._unavailable(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _held_cursor(self, params: Mapping[str, Any]) -> AsyncCursor[Any] | None:
        """The cursor on the lock session of the statement's run, while this process holds
        that run's lock and the session is open."""
        held = self._held.get(params.get("run_id"))  # type: ignore[arg-type]
        return held if held is not None and not held.connection.closed else None

    async def _on_lock_session(
        self, held: AsyncCursor[Any], query: str, params: Mapping[str, Any], *, many: bool
    ) -> Any:
        """A statement of a locked run on its lock's session (no pool checkout): the pass
        that holds the lock sends its statements here; a lost session lost the lock too, so
        there is no retry elsewhere. One cursor for them all (none made per statement):
        concurrent statements wait for the session's lock inside execute(), and nothing can
        run between a statement's execute() and its fetch (no await suspends in between)."""
        import psycopg

        try:
            await held.execute(query, params)
            return await held.fetchall() if many else await held.fetchone()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from None

    async def _fetchone(
        self, name: str, params: Mapping[str, Any], *, bookkeeping: bool = False
    ) -> dict[str, Any] | None:
        if self._held and self._loop is asyncio.get_running_loop():
            if self._pending:  # a held-back completion of the run goes first
                await self._flush(params.get("run_id"))
            # a statement of a locked run (the hot path: every statement of a pass), on its
            # lock's session without the two frames of _execute/_execute_once
            held = None if bookkeeping else self._held_cursor(params)
            if held is not None:
                found: dict[str, Any] | None = await self._on_lock_session(
                    held, _Q[name], params, many=False
                )
                return found
        row: dict[str, Any] | None = await self._execute(
            _Q[name], params, many=False, read=name in _READS, bookkeeping=bookkeeping
        )
        return row

    async def _fetchall(self, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._execute(
            _Q[name], params, many=True, read=name in _READS
        )
        return rows

    async def _require_run(self, run_id: str) -> None:
        if await self._fetchone("run_exists", {"run_id": run_id}) is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")

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
        run_id = c.new_run_id() if run_id is None else validate_run_id(run_id)
        params = {
            "run_id": run_id,
            "workflow": workflow,
            "input": _dumps(input, "the run input"),
            "now": c.now_utc(),
            "parent_run_id": None if parent_run_id is None else validate_run_id(parent_run_id),
            "version": version,
        }
        row = await self._fetchone("insert_run", params)
        if row is None:
            raise RunAlreadyExistsError(f"a run with id {run_id!r} already exists")
        return self._run(row)

    async def get_run(self, run_id: str) -> WorkflowRun[Any, Any]:
        validate_run_id(run_id)
        row = await self._fetchone("get_run", {"run_id": run_id})
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return self._run(row)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        limit: int | None = None,
    ) -> list[WorkflowRun[Any, Any]]:
        c.check_limit(limit)
        statuses = c.status_filter(status)
        # Built here (not one static statement) so each filter can use its own index.
        where: list[str] = []
        params: dict[str, Any] = {}
        if workflow is not None:
            where.append("workflow = %(workflow)s")
            params["workflow"] = workflow
        if statuses is not None:
            where.append("status = ANY(%(statuses)s)")
            params["statuses"] = sorted(s.value for s in statuses)
        query = "SELECT * FROM pikku_runs"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            query += " LIMIT %(limit)s"
            params["limit"] = limit
        rows: list[dict[str, Any]] = await self._execute(query, params, many=True, read=True)
        runs: list[WorkflowRun[Any, Any]] = []
        for row in rows:
            try:
                runs.append(self._run(row))
            except StateCorruptedError as exc:  # one damaged row never hides the others
                _log.warning("list_runs skipped a damaged run: %s", exc)
        return runs

    async def list_damaged(self) -> list[DamagedRun]:
        problems: dict[str, DamagedRun] = {}
        headers: dict[str, tuple[str | None, RunStatus | None]] = {}
        for row in await self._fetchall("all_runs", {}):
            run_id = str(row["id"])
            try:
                status: RunStatus | None = RunStatus(row["status"])
            except ValueError:
                status = None
            headers[run_id] = (row.get("workflow"), status)
            try:
                self._run(row)
            except StateCorruptedError as exc:
                problems[run_id] = DamagedRun(run_id, str(exc), *headers[run_id])
        for row in await self._fetchall("all_steps", {}):
            run_id = str(row["run_id"])
            if run_id not in problems:
                try:
                    self._step(run_id, row)
                except StateCorruptedError as exc:
                    problems[run_id] = DamagedRun(
                        run_id, str(exc), *headers.get(run_id, (None, None))
                    )
        for row in await self._fetchall("all_events", {}):
            run_id = str(row["run_id"])
            if run_id not in problems:
                try:
                    self._event(row)
                except StateCorruptedError as exc:
                    problems[run_id] = DamagedRun(
                        run_id, str(exc), *headers.get(run_id, (None, None))
                    )
        return [problems[k] for k in sorted(problems)]

    async def _update_run(
        self,
        run_id: str,
        changes: RunChanges,
        expect_status: Collection[RunStatus] | None,
    ) -> WorkflowRun[Any, Any] | None:
        validate_run_id(run_id)
        expect = c.expect_filter(expect_status)
        status, output, error = changes.status, changes.output, changes.error
        wake_at, owner, cancel = changes.wake_at, changes.owner, changes.cancel_requested
        params = {
            "run_id": run_id,
            "now": c.now_utc(),
            "expect": None if expect is None else sorted(s.value for s in expect),
            "set_status": isinstance(status, RunStatus),
            "status": RunStatus(status).value if isinstance(status, RunStatus) else None,
            "set_output": output is not UNSET,
            "output": None if output is UNSET else _dumps(output, "the run output"),
            "set_error": error is None or isinstance(error, ErrorInfo),
            "error": error.model_dump_json() if isinstance(error, ErrorInfo) else None,
            "set_wake_at": wake_at is None or isinstance(wake_at, datetime),
            "wake_at": wake_at if isinstance(wake_at, datetime) else None,
            "set_owner": owner is None or isinstance(owner, ClaimOwner),
            "owner": owner.model_dump_json() if isinstance(owner, ClaimOwner) else None,
            "set_cancel_requested": cancel is not UNSET,
            "cancel_requested": bool(cancel) if cancel is not UNSET else None,
        }
        bookkeeping = _bookkeeping(changes)
        # a held-back step result rides on the run's durable write (its settlement...)
        carried, row = (False, None) if bookkeeping else await self._carrying("update_run", params)
        if not carried:
            row = await self._fetchone("update_run", params, bookkeeping=bookkeeping)
        elif row is not None and row["id"] is None:
            row = None  # the run's update did not apply (another status)
        if row is None:
            await self._require_run(run_id)
            return None
        return self._run(row)

    # ----------------------------------------------------------------- steps
    async def get_step_states(self, run_id: str) -> dict[str, StepState]:
        validate_run_id(run_id)
        rows = await self._fetchall("get_step_states", {"run_id": run_id})
        if not rows:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return {row["key"]: self._step(run_id, row) for row in rows if row["key"] is not None}

    async def get_step(self, run_id: str, key: str) -> StepState | None:
        validate_run_id(run_id)
        row = await self._fetchone("get_step", {"run_id": run_id, "key": key})
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return None if row["key"] is None else self._step(run_id, row)

    async def get_step_and_run(
        self, run_id: str, key: str
    ) -> tuple[StepState, WorkflowRun[Any, Any]] | None:
        """One statement (the step joined with its run)."""
        validate_run_id(run_id)
        row = await self._fetchone("get_step_and_run", {"run_id": run_id, "key": key})
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        if row["key"] is None:
            return None
        run = self._run({name[2:]: value for name, value in row.items() if name.startswith("r_")})
        return self._step(run_id, row), run

    async def insert_step(self, run_id: str, step: StepState) -> StepState:
        validate_run_id(run_id)
        params = _insert_step_params(run_id, step)
        # an attempt's start is bookkeeping; a recorded result or schedule is not
        row = await self._fetchone(
            "insert_step", params, bookkeeping=step.status is StepStatus.RUNNING
        )
        if row is not None:
            return _as_stored(step, params)
        # a step with that key exists, or the run does not (get_step raises RunNotFoundError)
        existing = await self.get_step(run_id, step.key)
        if existing is None:  # deleted meanwhile (never by this store)
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return existing

    async def insert_step_at_boundary(self, run_id: str, step: StepState) -> StepState | None:
        """One statement (``INSERT ... SELECT ... FROM pikku_runs WHERE`` the run goes on):
        the run's check and the step's insert, committed asynchronously for an attempt's
        start like :meth:`insert_step`; only a miss on an existing step reads more. With a
        held-back completion of the run (:meth:`complete_step_later`), that completion too,
        in the same statement, committed synchronously."""
        validate_run_id(run_id)
        params = _insert_step_params(run_id, step)
        carried, row = await self._carrying("insert_step_at_boundary", params)
        if not carried:
            # the statement sets its own transaction's synchronous_commit: any session will do
            params["asynchronous"] = (
                step.status is StepStatus.RUNNING and not self.synchronous_every_commit
            )
            row = await self._fetchone("insert_step_at_boundary", params)
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        if not row["goes_on"]:
            return None
        if row["inserted"]:
            return _as_stored(step, params)
        existing = await self.get_step(run_id, step.key)
        if existing is None:  # deleted meanwhile (never by this store)
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return existing

    async def _step_update(
        self,
        name: str,
        run_id: str,
        key: str,
        params: dict[str, Any],
        *,
        bookkeeping: bool = False,
    ) -> StepState | None:
        """Run the guarded ``UPDATE pikku_steps ... RETURNING`` named ``name``; ``None`` when
        the guard did not match (RunNotFoundError when the run does not exist at all)."""
        validate_run_id(run_id)
        row = await self._fetchone(
            name, {**params, "run_id": run_id, "key": key}, bookkeeping=bookkeeping
        )
        if row is None:
            await self._require_run(run_id)
            return None
        return self._step(run_id, row)

    async def schedule_step(self, run_id: str, key: str, *, at: datetime | None) -> StepState:
        params = {"at": None if at is None else c.aware(at), "now": c.now_utc()}
        step = await self._step_update("schedule_step", run_id, key, params)
        return step if step is not None else await self._require_step(run_id, key)

    async def claim_due_step(
        self, run_id: str, key: str, *, owner: ClaimOwner, lease_seconds: float
    ) -> StepState | None:
        validate_run_id(run_id)
        params = self._claim_params(owner, lease_seconds, None, run_goes_on=True)
        row = await self._fetchone(
            "claim_step", {**params, "run_id": run_id, "key": key}, bookkeeping=True
        )
        return None if row is None else self._step(run_id, row)  # a miss: the caller reads

    async def claim_step(
        self,
        run_id: str,
        key: str,
        *,
        owner: ClaimOwner,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> StepState | None:
        params = self._claim_params(owner, lease_seconds, now, run_goes_on=False)
        return await self._step_update("claim_step", run_id, key, params, bookkeeping=True)

    @staticmethod
    def _claim_params(
        owner: ClaimOwner, lease_seconds: float, now: datetime | None, *, run_goes_on: bool
    ) -> dict[str, Any]:
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
        return {
            "attempt": attempt, "token": owner.token, "lease": lease, "now": when,
            "run_goes_on": run_goes_on,
        }

    async def heartbeat_step(
        self, run_id: str, key: str, *, token: str, lease_seconds: float
    ) -> bool:
        now = c.now_utc()
        lease = now + timedelta(seconds=lease_seconds)
        params = {"lease_iso": _iso(lease), "lease": lease, "now": now, "token": token}
        step = await self._step_update("heartbeat_step", run_id, key, params, bookkeeping=True)
        return step is not None

    async def complete_step(
        self, run_id: str, key: str, *, result: Any, token: str | None
    ) -> bool:
        validate_run_id(run_id)
        params = _complete_params(run_id, key, result, token)
        # RETURNING a flag only: the caller needs whether it applied, not the row
        if await self._fetchone("complete_step", params):
            return True
        await self._require_run(run_id)
        return False

    async def complete_step_later(
        self, run_id: str, key: str, *, result: Any, token: str
    ) -> bool:
        """Write-behind, while this process holds the run's lock: the completion is held back
        and sent with the run's next statement. A step's insert carries it in the same
        statement and one synchronous commit (``complete_then_insert_step_at_boundary``: one
        round trip per step instead of two); any other statement of the run sends it first;
        the lock's release sends it at the latest. Without the lock, or with
        ``write_behind=False``: :meth:`complete_step`."""
        validate_run_id(run_id)
        if not self.write_behind or self._held_cursor({"run_id": run_id}) is None:
            return await self.complete_step(run_id, key, result=result, token=token)
        self._pending.setdefault(run_id, []).append(_complete_params(run_id, key, result, token))
        return True

    async def _carrying(
        self, name: str, params: dict[str, Any]
    ) -> tuple[bool, dict[str, Any] | None]:
        """Statement ``name`` of a locked run with its last held-back completion, as ONE
        statement and one synchronous commit (``complete_then_<name>``, see :func:`_compose`)
        on the lock's session: ``(True, row)``; :meth:`_lost` when the completion no longer
        applies (then nothing of it did). ``(False, None)`` when the run has none held back
        (or its lock's session is gone: the caller's statement sends them first)."""
        run_id = params["run_id"]
        held = self._held_cursor(params) if self._pending.get(run_id) else None
        if held is None:
            return False, None
        done = await self._take_last_pending(run_id)
        params.update({f"done_{name}": done[name] for name in _DONE_NAMES})
        row = await self._on_lock_session(held, _Q[f"complete_then_{name}"], params, many=False)
        if row is not None and not row["completed"]:
            raise self._lost(done)
        return True, row

    async def _take_last_pending(self, run_id: str) -> dict[str, Any]:
        """The run's last held-back completion, after the others (if any) were sent."""
        pending = self._pending.pop(run_id)
        done = pending.pop()
        if pending:
            self._pending[run_id] = pending
            await self._flush(run_id)
        return done

    async def _flush(self, run_id: str | None) -> None:
        """Send the held-back completions of ``run_id`` (none: nothing to do), each a
        synchronous commit; :meth:`_lost` when one no longer applies."""
        pending = self._pending.pop(run_id, None) if run_id is not None else None
        for params in pending or ():
            held = self._held_cursor(params)
            if held is not None:
                row = await self._on_lock_session(held, _Q["complete_step"], params, many=False)
            else:
                row = await self._execute_once(_Q["complete_step"], params, many=False)
            if not row:
                raise self._lost(params)

    def _lost(self, params: Mapping[str, Any]) -> StepCompletionLostError:
        return StepCompletionLostError(
            f"PostgreSQL at {self._where}: the result of step {params['key']!r} of run "
            f"{params['run_id']!r} was not stored: its attempt's claim no longer held "
            "(taken over meanwhile); the pass is abandoned and runs again"
        )

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
        params = {
            "now": now,
            "now_iso": _iso(now),
            "error": error.model_dump_json(),
            "retry_at": None if retry_at is None else c.aware(retry_at),
            "token": token,
        }
        return await self._step_update("fail_step_attempt", run_id, key, params)

    async def reset_step(
        self, run_id: str, key: str, *, attempts: int = 1, at: datetime | None = None
    ) -> StepState | None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        params = {
            "at": None if at is None else c.aware(at),
            "attempts": attempts,
            "now": c.now_utc(),
        }
        step = await self._step_update("reset_step", run_id, key, params)
        if step is None:
            await self._require_step(run_id, key)
        return step

    reset_step.__doc__ = c.RESET_DOC

    # ---------------------------------------------------------------- events
    def _event(self, row: Mapping[str, Any]) -> WorkflowEvent:
        try:
            return _row_to_event(row)
        except _DECODE_ERRORS as exc:
            what = f"event {row.get('seq')!r} of run {row.get('run_id')!r}"
            raise self._damaged(what, exc) from exc

    async def send_event(
        self, run_id: str, name: str, payload: Any
    ) -> WorkflowEvent | None:
        validate_run_id(run_id)
        params = {
            "run_id": run_id,
            "name": name,
            "payload": _dumps(payload, f"the payload of event {name!r}"),
            "now": c.now_utc(),
        }
        row = await self._fetchone("send_event", params)
        return None if row is None else self._event(row)

    async def consume_event(
        self, run_id: str, name: str, step_key: str
    ) -> WorkflowEvent | None:
        validate_run_id(run_id)
        params = {"run_id": run_id, "name": name, "key": step_key, "now": c.now_utc()}
        row = await self._fetchone("consume_event", params)
        if row is None:
            await self._require_run(run_id)
            return None
        return self._event(row)

    async def list_events(self, run_id: str) -> list[WorkflowEvent]:
        validate_run_id(run_id)
        rows = await self._fetchall("list_events", {"run_id": run_id})
        if not rows:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return [self._event(row) for row in rows if row["seq"] is not None]

    # ------------------------------------------------------------- locking
    def lock_run(
        self, run_id: str, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        validate_run_id(run_id)
        return self._lock(run_id, timeout)

    @asynccontextmanager
    async def _lock(self, run_id: str, timeout: float | None) -> AsyncIterator[None]:
        from psycopg_pool import PoolTimeout

        await self._ensure_open()
        lock_pool = self._lock_pool
        assert lock_pool is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(timeout, 0.0)
        what = f"the lock of run {run_id!r}"
        for attempt in range(self._lock_pool_size + 1):
            with self._unavailable_on_error():
                try:
                    conn = await lock_pool.getconn(
                        timeout=None if deadline is None else max(deadline - loop.time(), 0.001)
                    )
                except PoolTimeout:
                    if deadline is not None and loop.time() >= deadline:
                        raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from None
                    raise self._unavailable(Exception("no connection for a run lock")) from None
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
            self._held[run_id] = conn.cursor()
            try:
                yield
            finally:
                if run_id in self._pending:
                    await self._flush_at_release(run_id)
        finally:
            held = self._held.get(run_id)
            if held is not None and held.connection is conn:
                del self._held[run_id]
            if locked:
                try:
                    await conn.execute("SELECT pg_advisory_unlock_all()")
                except BaseException as exc:
                    await _close_quietly(conn)
                    await lock_pool.putconn(conn)
                    if _driver_failure(exc):  # the session was lost: so was the lock
                        raise self._unavailable(exc) from None
                    raise
            await lock_pool.putconn(conn)

    async def _flush_at_release(self, run_id: str) -> None:
        """The last chance of a held-back completion: a pass that ended without another
        statement of its run (an error, a cancellation). Best effort: when it cannot be
        stored, its attempt stays running and is taken over like a crashed one."""
        try:
            await self._flush(run_id)
        except (StoreUnavailableError, RunNotFoundError) as exc:
            self._pending.pop(run_id, None)
            _log.warning("a step result of run %s was not stored before its lock was "
                         "released: %s", run_id, exc)

    async def _acquire(
        self,
        conn: AsyncConnection[Any],
        run_id: str,
        deadline: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> bool:
        """Wait for the run's advisory lock on ``conn`` until ``deadline``: whether it was
        taken. ``_SessionEnded`` when the pooled session had been ended by the server."""
        import psycopg
        from psycopg import sql

        with self._unavailable_on_error():
            try:
                if deadline is not None and deadline - loop.time() <= 0:
                    cur = await conn.execute(
                        "SELECT pg_try_advisory_lock(hashtextextended(%s, %s)) AS locked",
                        (run_id, self._seed),
                    )
                    row = await cur.fetchone()
                    return bool(row and row["locked"])
                # lock_timeout 0: wait forever
                wait_ms = 0 if deadline is None else max(1, int((deadline - loop.time()) * 1000))
                # One round trip: set this session's lock_timeout, wait for the lock, and
                # set it back (the run's statements run on this session while it holds it).
                query = sql.SQL(
                    "SET lock_timeout = {}; SELECT pg_advisory_lock(hashtextextended({}, {}));"
                    " RESET lock_timeout"
                ).format(sql.Literal(wait_ms), sql.Literal(run_id), sql.Literal(self._seed))
                await conn.execute(query)
                return True
            except psycopg.errors.LockNotAvailable:
                return False
            except psycopg.OperationalError as exc:
                if _ended_while_idle(exc):
                    raise _SessionEnded() from exc
                raise

    # ------------------------------------------------------------ lifecycle
    # ------------------------------------------------------- settle notices
    pushes_settled = True

    async def wait_settled(self, run_id: str, timeout: float) -> None:
        """Wait for the NOTIFY the ``update_run`` statement sends when run ``run_id`` settles
        (in any process), at most ``timeout`` seconds; see :mod:`pikku_typing.state._pg_listen`."""
        validate_run_id(run_id)
        await self._listener.wait(run_id, timeout)

    async def close(self) -> None:
        await self._listener.close()
        guards, self._guards = self._guards, []
        self._pool = self._lock_pool = self._book_pool = None
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


def _driver_failure(exc: BaseException) -> bool:
    """A lost or refused connection (what :meth:`PostgresWorkflowStateService._unavailable`
    translates)."""
    import psycopg

    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


def _ended_while_idle(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in _ENDED_WHILE_IDLE


async def _close_quietly(conn: AsyncConnection[Any]) -> None:
    with suppress(Exception):
        await conn.close()
