"""The SQLite state store: the fast embedded store, safe for several processes on one host.

* stdlib ``sqlite3``, one connection per service (created on first use, guarded by a
  ``threading.Lock``; reopened after a ``fork``). Calls are made synchronously from the
  async methods: each is one short transaction, cheaper than a hop to a thread.
* WAL journal; ``synchronous=FULL`` by default: every commit that something depends on is
  fsynced and survives a power loss, not only a process crash: a new run, a step's result or
  final failure, a scheduled step or sleep, a run's settlement or cancel request, an event.
  The bookkeeping commits (an attempt's start, claim and heartbeat; a pass marking its run
  running or suspended) are committed with ``synchronous=NORMAL``: they survive a process
  crash (a crash mid-attempt is still counted) and reach the disk with the next fsynced
  commit (the WAL is written in order, so a power loss can only drop a tail of bookkeeping
  commits, after which an attempt runs again uncounted and a run is recovered).
  ``fsync_every_commit=True`` fsyncs them too.
  ``synchronous="NORMAL"`` trades all fsyncs for speed (a commit then survives a process
  crash, and a power loss may roll back the last transactions, never corrupting the
  database).
* Write-behind step results: a pass's step result (``complete_step_later``, while this
  store holds the run's lock) is held back and sent with the run's next statement: the
  next step's insert carries it in ONE write transaction (``BEGIN IMMEDIATE``, the
  completion, the insert, ``COMMIT``), fsynced once, so the result is durable before the
  next step's code runs and the attempt's start rides on that commit; any other durable
  write of the run (its settlement...) carries it in its transaction too; any other
  statement sends it first, in a transaction of its own; the lock's release at the latest.
  An inline step: one commit, one fsync (instead of the attempt's start, unfsynced, and the
  result, fsynced; see ``benchmarks/floor.py``); a crash before the next statement runs the
  step again, as a crash before its result was stored. ``write_behind=False`` stores each
  result at once.
* ``busy_timeout`` (default 30 s): a writer waits for another process's transaction.
* Every write is ONE transaction, begun with ``BEGIN IMMEDIATE`` (the write lock is taken
  up front, so a read-modify-write never races another process), or ONE statement that is
  its own transaction (a new step with its boundary check, the completion of a held
  attempt), or, the hot path of a step, a held-back result and the next step's insert in
  one transaction. Step transitions are additionally written as ``UPDATE ... WHERE status
  IN (...) AND token = ...`` and the row count is checked, so a claim can only succeed once
  per attempt.
* Each run and each step is a JSON document (``doc``) plus the few columns that queries
  filter on (``status``, ``workflow``, ``created_us``, ``next_attempt_us``, ``token``).
* The schema is versioned with ``PRAGMA user_version``.
* ``lock_run`` uses ``fcntl.flock`` on ``<path>.locks/<run_id>.lock``: the kernel releases it
  when the holder dies, which a lock row in the database would not.
* A row whose document does not decode is :class:`StateCorruptedError` naming the run, for
  that run only: ``list_runs`` skips it (logging it) and ``list_damaged`` reports it.
* A path that cannot be used (a directory, a read-only file or directory, a parent that is a
  file) is :class:`~pikku_typing.errors.StorePathError` naming the path, at first use.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import ValidationError

from pikku_typing.errors import (
    RunAlreadyExistsError,
    RunNotFoundError,
    StateCorruptedError,
    StorePathError,
    StoreUnavailableError,
)
from pikku_typing.models import (
    ClaimOwner,
    ErrorInfo,
    RunStatus,
    StepState,
    StepStatus,
    WorkflowEvent,
    WorkflowRun,
)
from pikku_typing.state import _common as c
from pikku_typing.state.base import (
    UNSET,
    DamagedRun,
    RunChanges,
    StepCompletionLostError,
    WorkflowStateService,
    validate_run_id,
)

log = logging.getLogger("pikku.state")

SCHEMA_VERSION: Final = 2

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    workflow    TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_us  INTEGER NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow, created_us DESC, id DESC);
CREATE TABLE IF NOT EXISTS steps (
    seq              INTEGER PRIMARY KEY,
    run_id           TEXT NOT NULL,
    key              TEXT NOT NULL,
    status           TEXT NOT NULL,
    next_attempt_us  INTEGER,
    token            TEXT,
    doc              TEXT NOT NULL,
    UNIQUE (run_id, key)
);
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY,
    run_id       TEXT NOT NULL,
    name         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    sent_us      INTEGER NOT NULL,
    consumed_by  TEXT,
    consumed_us  INTEGER
);
CREATE INDEX IF NOT EXISTS events_by_name ON events (run_id, name, seq);
CREATE INDEX IF NOT EXISTS events_by_consumer ON events (run_id, consumed_by);
"""
# Version 2 added the events table (every statement above is idempotent, so a version-1
# database is migrated by running them again).

_EVENT_COLS: Final = "seq, run_id, name, payload, sent_us, consumed_by, consumed_us"

_CLAIMABLE_SQL: Final = (
    "status IN ('pending', 'scheduled') AND (next_attempt_us IS NULL OR next_attempt_us <= ?)"
)

_GOES_ON_SQL: Final = (
    "status NOT IN ('completed', 'failed', 'cancelled') "
    "AND coalesce(json_extract(doc, '$.cancel_requested'), 0) = 0"
)
"""A run row past which a step boundary goes on: not settled, no cancel request."""

_INSERT_AT_BOUNDARY_SQL: Final = (
    "INSERT INTO steps (run_id, key, status, next_attempt_us, token, doc) "
    "SELECT ?1, ?2, ?3, ?4, ?5, ?6 FROM runs WHERE id = ?1 "
    f"AND {_GOES_ON_SQL} ON CONFLICT (run_id, key) DO NOTHING"
)
"""A new step at its boundary (parameters: run id, key, status, next attempt, token, doc):
inserted only when its run goes on; one statement, the hot path of a step."""

_AFTER_A_MISS_SQL: Final = (
    f"SELECT {_GOES_ON_SQL}, (SELECT doc FROM steps WHERE run_id = ?1 AND key = ?2) "
    "FROM runs WHERE id = ?1"
)
"""Why :data:`_INSERT_AT_BOUNDARY_SQL` inserted nothing (parameters: run id, key): no row
(no run), or whether the run goes on and the step already stored."""

_COMPLETE_HELD_SQL: Final = (
    "UPDATE steps SET status = 'succeeded', next_attempt_us = NULL, token = NULL, "
    "doc = json_set(doc, '$.attempts[#-1].status', 'succeeded', "
    "'$.attempts[#-1].finished_at', ?4, '$.status', 'succeeded', "
    "'$.result', json(?3), '$.error', NULL, '$.next_attempt_at', NULL, "
    "'$.finished_at', ?4, '$.updated_at', ?4) "
    "WHERE run_id = ?1 AND key = ?2 AND status = 'running' AND token = ?5"
)
"""``complete_step`` of the running attempt held by a token (parameters: run id, key, the
result's JSON text, the finish time as a document writes it, the token): the document is
changed in SQL (``json_set``, the same fields as ``apply_complete``)."""

_Completion = tuple[str, str, str, str, str]
"""A held-back completion: the parameters of :data:`_COMPLETE_HELD_SQL`."""

Synchronous = Literal["FULL", "NORMAL", "EXTRA"]


def _bookkeeping(changes: RunChanges) -> bool:
    """A pass marking its run running or suspended (owner, wake-up time): no output, error
    or cancel request, no settled status."""
    return (
        changes.status in (RunStatus.RUNNING, RunStatus.SUSPENDED, UNSET)
        and changes.output is UNSET
        and changes.error is UNSET
        and changes.cancel_requested is UNSET
    )


class SqliteWorkflowStateService(WorkflowStateService):
    """Runs and steps in one SQLite database file (WAL), shared by several processes.

    ``synchronous`` is the level of every commit something depends on (``FULL``: fsynced);
    bookkeeping commits are not fsynced unless ``fsync_every_commit=True`` (see the
    module's docstring). A pass's step result is written behind (:meth:`complete_step_later`:
    sent with the run's next statement, an inline step is one transaction and one fsync);
    ``write_behind=False`` commits it before the workflow's code goes on (an inline step:
    two commits, the result's fsynced).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 30.0,
        fsync_every_commit: bool = False,
        write_behind: bool = True,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.fsync_every_commit = fsync_every_commit
        self.write_behind = write_behind
        self._locked: set[str] = set()
        """The runs whose lock (``lock_run``) this store holds in this process."""
        self._pending: dict[str, list[_Completion]] = {}
        """Write-behind completions of locked runs, by run: sent with or before the run's
        next statement (see :meth:`complete_step_later`)."""
        self._lock_dir = self.path.with_name(self.path.name + ".locks")
        self._mutex = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    # ------------------------------------------------------------ connection
    def _connection(self) -> sqlite3.Connection:
        """The connection (caller holds ``_mutex``); opened and migrated on first use."""
        conn = self._conn
        if conn is not None and self._pid == os.getpid():
            return conn
        self._conn = None  # never reuse a connection inherited through fork()
        if self._pid and self._pid != os.getpid():
            # nor the held-back results and run locks of the parent: it sends them itself
            self._pending, self._locked = {}, set()
        name = f"SQLite store {str(self.path)!r}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise c.os_error(exc, name, "create its directory") from exc
        if self.path.is_dir():
            raise StorePathError(f"{name}: cannot open it: the path is a directory, not a file")
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            # Switching a fresh database to WAL takes an exclusive lock for which SQLite does
            # not always call the busy handler ("database is locked" when several processes
            # open a new store at once): serialize set-up with a kernel lock, released on exit.
            with self._init_lock():
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreUnavailableError(
                        f"SQLite store {str(self.path)!r}: cannot enable WAL (journal mode {mode})"
                    )
                self._migrate(conn)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise self._open_error(exc) from exc
            raise StateCorruptedError(
                f"SQLite store {str(self.path)!r} cannot be read ({exc}); it was left untouched"
            ) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._pid = os.getpid()
        return conn

    def _open_error(self, exc: sqlite3.Error) -> Exception:
        """A path SQLite cannot open or write (read-only, no permission) is StorePathError;
        anything else (locked...) StoreUnavailableError."""
        text = str(exc)
        if "readonly" in text or "unable to open" in text or "read-only" in text:
            return StorePathError(
                f"SQLite store {str(self.path)!r}: cannot open it for writing ({text}): check "
                "that the file and its directory exist and are writable"
            )
        return StoreUnavailableError(f"cannot open SQLite store {str(self.path)!r}: {text}")

    @contextmanager
    def _init_lock(self) -> Iterator[None]:
        """Exclusive ``flock`` on ``<path>.locks/.init.lock`` (no run id starts with '.')."""
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_dir / ".init.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateCorruptedError(
                    f"SQLite store {str(self.path)!r} has schema version {version}; this "
                    f"pikku_typing knows versions up to {SCHEMA_VERSION}: upgrade pikku-workflows"
                )
            if version < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _open(self, run_id: str | None) -> sqlite3.Connection:
        """The connection (caller holds ``_mutex``) for a statement of run ``run_id`` (``None``:
        of no run in particular): the run's held-back completions are sent first (see
        :meth:`complete_step_later`)."""
        conn = self._connection()
        if self._pending and run_id in self._pending:
            self._send(conn, run_id, self._pending.pop(run_id))
        return conn

    @contextmanager
    def _read(self, run_id: str | None = None) -> Iterator[sqlite3.Connection]:
        """The connection for reads of run ``run_id`` (``None``: of no run in particular)."""
        with self._mutex:
            try:
                yield self._open(run_id)
            except sqlite3.OperationalError as exc:
                raise StoreUnavailableError(f"SQLite store {str(self.path)!r}: {exc}") from exc

    @contextmanager
    def _tx(
        self, run_id: str | None = None, *, durable: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) of run ``run_id``
        (``None``: of no run in particular). A bookkeeping one (``durable=False``) commits
        without an fsync (see the module's docstring). A durable one carries the run's
        held-back completions (one fsync for both; one that no longer applies is
        :class:`StepCompletionLostError`: the others are committed, the block does not run)."""
        with self._mutex:
            if durable and self._pending and run_id in self._pending:
                conn = self._connection()
                pending = self._pending.pop(run_id)
                with self._tx_on(conn):
                    try:
                        lost = self._apply(conn, run_id, pending)
                    except sqlite3.OperationalError as exc:
                        raise StoreUnavailableError(
                            f"SQLite store {str(self.path)!r}: {exc}"
                        ) from exc
                    if lost is not None:
                        conn.execute("COMMIT")  # the ones that applied, as _send does
                        raise lost
                    try:
                        yield conn
                    except BaseException:
                        self._hold_again(run_id, pending)  # rolled back with the block
                        raise
                    if not conn.in_transaction:  # the block rolled back
                        self._hold_again(run_id, pending)
                return
            with self._synchronous(durable, run_id) as conn, self._tx_on(conn):
                yield conn

    def _hold_again(self, run_id: str, pending: list[_Completion]) -> None:
        """Completions whose transaction rolled back (caller holds ``_mutex``): held back
        again, before any held back since."""
        self._pending[run_id] = pending + self._pending.get(run_id, [])

    @contextmanager
    def _statement(
        self, run_id: str, *, durable: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """The connection for a write of ONE statement of run ``run_id``: no BEGIN/COMMIT,
        the statement is its own (autocommit) transaction, taken with the same busy timeout.
        A bookkeeping one (``durable=False``) commits without an fsync."""
        with self._mutex, self._synchronous(durable, run_id) as conn:
            try:
                yield conn
            except sqlite3.OperationalError as exc:
                raise StoreUnavailableError(f"SQLite store {str(self.path)!r}: {exc}") from exc

    @contextmanager
    def _synchronous(self, durable: bool, run_id: str | None) -> Iterator[sqlite3.Connection]:
        """The connection (caller holds ``_mutex``), at ``synchronous=NORMAL`` for a
        bookkeeping commit (``durable=False``) unless every commit is fsynced or none is.

        The level is per connection: a second connection kept at NORMAL would save the two
        PRAGMA statements, but each connection's page cache is thrown away whenever the
        other one wrote (WAL), and re-reading it costs more (measured: ~12 more ``pread`` per
        inline step, more CPU time than the PRAGMAs). The run's held-back completions are
        sent before the switch, fsynced."""
        conn = self._open(run_id)
        if durable or self.fsync_every_commit or self.synchronous == "NORMAL":
            yield conn
            return
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            yield conn
        finally:
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")

    @contextmanager
    def _tx_on(self, conn: sqlite3.Connection) -> Iterator[None]:
        """A write transaction on ``conn`` (caller holds ``_mutex``): ``BEGIN IMMEDIATE``,
        ``COMMIT`` unless the block rolled back, ``ROLLBACK`` when it raises."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"SQLite store {str(self.path)!r}: {exc}") from exc
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if not conn.in_transaction:  # the body rolled back
            return
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailableError(f"SQLite store {str(self.path)!r}: {exc}") from exc

    async def close(self) -> None:
        with self._mutex:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()

    # ------------------------------------------------------------- decoding
    def _corrupt(self, what: str, exc: Exception) -> StateCorruptedError:
        return StateCorruptedError(f"SQLite store {str(self.path)!r}: {what} is corrupt ({exc})")

    def _load_run(self, doc: str, run_id: str | None = None) -> WorkflowRun[Any, Any]:
        try:
            return WorkflowRun.model_validate_json(doc)
        except (ValidationError, ValueError, TypeError) as exc:
            what = "a run document" if run_id is None else f"the row of run {run_id!r}"
            raise self._corrupt(what, exc) from exc

    def _load_step(self, doc: str, run_id: str | None = None) -> StepState:
        try:
            return StepState.model_validate_json(doc)
        except (ValidationError, ValueError, TypeError) as exc:
            what = "a step document" if run_id is None else f"a step row of run {run_id!r}"
            raise self._corrupt(what, exc) from exc

    @contextmanager
    def _json_errors(self, what: str) -> Iterator[None]:
        """SQL reading a document with SQLite's JSON functions: a document that is not JSON
        is :class:`StateCorruptedError` of ``what`` (as parsing it would say), not a store
        error."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "JSON" not in str(exc):
                raise
            raise self._corrupt(what, exc) from exc

    @staticmethod
    def _run_exists(conn: sqlite3.Connection, run_id: str) -> bool:
        return conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def _require_run(self, conn: sqlite3.Connection, run_id: str) -> None:
        if not self._run_exists(conn, run_id):
            raise RunNotFoundError(f"no run with id {run_id!r} in {str(self.path)!r}")

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
        doc = run.model_dump_json()
        # a child run: the parent's held-back results go first
        with self._tx(parent_run_id) as conn:
            try:
                conn.execute(
                    "INSERT INTO runs (id, workflow, status, created_us, doc) VALUES (?, ?, ?, ?, ?)",
                    (run_id, workflow, RunStatus.RUNNING.value, c.to_micros(run.created_at), doc),
                )
            except sqlite3.IntegrityError:
                raise RunAlreadyExistsError(
                    f"a run with id {run_id!r} already exists in {str(self.path)!r}"
                ) from None
        return self._load_run(doc)

    async def get_run(self, run_id: str) -> WorkflowRun[Any, Any]:
        validate_run_id(run_id)
        with self._read(run_id) as conn:
            row = conn.execute("SELECT doc FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {str(self.path)!r}")
        return self._load_run(row[0], run_id)

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
            where.append("workflow = ?")
            params.append(workflow)
        if statuses is not None:
            if not statuses:
                return []
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(sorted(s.value for s in statuses))
        sql = "SELECT id, doc FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_us DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        runs: list[WorkflowRun[Any, Any]] = []
        for run_id, doc in rows:
            try:
                runs.append(self._load_run(doc, run_id))
            except StateCorruptedError as exc:
                log.warning("list_runs skipped a damaged run: %s", exc)
        return runs

    async def list_damaged(self) -> list[DamagedRun]:
        with self._read() as conn:
            runs = conn.execute("SELECT id, workflow, status, doc FROM runs ORDER BY id").fetchall()
            steps = conn.execute("SELECT run_id, doc FROM steps ORDER BY seq").fetchall()
            events = conn.execute(f"SELECT {_EVENT_COLS} FROM events ORDER BY seq").fetchall()
        headers: dict[str, tuple[str | None, RunStatus | None]] = {}
        problems: dict[str, str] = {}
        for run_id, workflow, status, doc in runs:
            try:
                known: RunStatus | None = RunStatus(status)
            except ValueError:
                known = None
            headers[run_id] = (workflow, known)
            try:
                self._load_run(doc, run_id)
            except StateCorruptedError as exc:
                problems.setdefault(run_id, str(exc))
        for run_id, doc in steps:
            if run_id not in problems:
                try:
                    self._load_step(doc, run_id)
                except StateCorruptedError as exc:
                    problems[run_id] = str(exc)
        for row in events:
            if row[1] not in problems:
                try:
                    self._load_event(row)
                except StateCorruptedError as exc:
                    problems[row[1]] = str(exc)
        return [
            DamagedRun(run_id, problem, *headers.get(run_id, (None, None)))
            for run_id, problem in sorted(problems.items())
        ]

    async def _update_run(
        self,
        run_id: str,
        changes: RunChanges,
        expect_status: Collection[RunStatus] | None,
    ) -> WorkflowRun[Any, Any] | None:
        validate_run_id(run_id)
        expect = c.expect_filter(expect_status)
        with self._tx(run_id, durable=not _bookkeeping(changes)) as conn:
            row = conn.execute("SELECT doc FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {str(self.path)!r}")
            run = self._load_run(row[0], run_id)
            if expect is not None and run.status not in expect:
                return None
            updated = changes.apply(run, c.now_utc())
            doc = updated.model_dump_json()
            conn.execute(
                "UPDATE runs SET status = ?, doc = ? WHERE id = ?",
                (RunStatus(updated.status).value, doc, run_id),
            )
        return self._load_run(doc)

    # ----------------------------------------------------------------- steps
    async def get_step_states(self, run_id: str) -> dict[str, StepState]:
        validate_run_id(run_id)
        with self._read(run_id) as conn:
            rows = conn.execute(
                "SELECT doc FROM steps WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
            if not rows:
                self._require_run(conn, run_id)
        steps = [self._load_step(doc, run_id) for (doc,) in rows]
        return {s.key: s for s in steps}

    async def get_step(self, run_id: str, key: str) -> StepState | None:
        validate_run_id(run_id)
        with self._read(run_id) as conn:
            row = conn.execute(
                "SELECT doc FROM steps WHERE run_id = ? AND key = ?", (run_id, key)
            ).fetchone()
            if row is None:
                self._require_run(conn, run_id)
                return None
        return self._load_step(row[0], run_id)

    async def insert_step(self, run_id: str, step: StepState) -> StepState:
        validate_run_id(run_id)
        doc = step.model_dump_json()
        next_us = None if step.next_attempt_at is None else c.to_micros(step.next_attempt_at)
        # an attempt's start is bookkeeping; a recorded result or schedule is not
        with self._tx(run_id, durable=step.status is not StepStatus.RUNNING) as conn:
            inserted = conn.execute(
                "INSERT INTO steps (run_id, key, status, next_attempt_us, token, doc) "
                "SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?) "
                "ON CONFLICT (run_id, key) DO NOTHING",
                (
                    run_id,
                    step.key,
                    StepStatus(step.status).value,
                    next_us,
                    c.running_token(step),
                    doc,
                    run_id,
                ),
            ).rowcount
            if inserted != 1:
                row = conn.execute(
                    "SELECT doc FROM steps WHERE run_id = ? AND key = ?", (run_id, step.key)
                ).fetchone()
                if row is None:
                    raise RunNotFoundError(f"no run with id {run_id!r} in {str(self.path)!r}")
                doc = row[0]
        return self._load_step(doc)

    async def insert_step_at_boundary(self, run_id: str, step: StepState) -> StepState | None:
        # ONE statement (its own transaction): the run's check (status column, cancel request
        # in its document) and the step's insert; only a miss (a stop, an existing step)
        # reads more. With held-back completions of the run (complete_step_later): they and
        # the insert in ONE write transaction, fsynced (a durable _tx carries them)
        validate_run_id(run_id)
        doc = step.model_dump_json()
        next_us = None if step.next_attempt_at is None else c.to_micros(step.next_attempt_at)
        # an attempt's start is bookkeeping; a recorded result or schedule is not
        durable = step.status is not StepStatus.RUNNING
        values = (
            run_id, step.key, StepStatus(step.status).value, next_us, c.running_token(step), doc,
        )
        corrupt = f"the row of run {run_id!r}"
        while True:
            if self._pending and run_id in self._pending:
                with self._tx(run_id) as conn, self._json_errors(corrupt):
                    if conn.execute(_INSERT_AT_BOUNDARY_SQL, values).rowcount == 1:
                        return step
                    row = conn.execute(_AFTER_A_MISS_SQL, values[:2]).fetchone()
            else:
                with self._statement(run_id, durable=durable) as conn, self._json_errors(corrupt):
                    if conn.execute(_INSERT_AT_BOUNDARY_SQL, values).rowcount == 1:
                        return step
                with self._read(run_id) as conn, self._json_errors(corrupt):
                    row = conn.execute(_AFTER_A_MISS_SQL, values[:2]).fetchone()
            if row is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {str(self.path)!r}")
            goes_on, existing = row
            if not goes_on:
                return None
            if existing is not None:
                return self._load_step(existing, run_id)
            # the run was stopped at the insert and goes on now (resumed): insert again

    def _transition(
        self,
        run_id: str,
        key: str,
        condition: str,
        params: tuple[Any, ...],
        change: Callable[[StepState], bool],
        *,
        durable: bool = True,
    ) -> StepState | None:
        """In one transaction: read the step if ``condition`` holds, apply ``change``, write it
        back with the same condition (checking the row count). ``None`` if nothing changed;
        RunNotFoundError for an unknown run."""
        validate_run_id(run_id)
        with self._tx(run_id, durable=durable) as conn:
            row = conn.execute(
                f"SELECT doc FROM steps WHERE run_id = ? AND key = ? AND {condition}",
                (run_id, key, *params),
            ).fetchone()
            if row is None:
                self._require_run(conn, run_id)
                return None
            step = self._load_step(row[0], run_id)
            if not change(step):
                return None
            updated = conn.execute(
                "UPDATE steps SET status = ?, next_attempt_us = ?, token = ?, doc = ? "
                f"WHERE run_id = ? AND key = ? AND {condition}",
                (
                    StepStatus(step.status).value,
                    None if step.next_attempt_at is None else c.to_micros(step.next_attempt_at),
                    c.running_token(step),
                    step.model_dump_json(),
                    run_id,
                    key,
                    *params,
                ),
            ).rowcount
            if updated != 1:  # pragma: no cover - the write lock is held since BEGIN IMMEDIATE
                conn.execute("ROLLBACK")
                return None
        return step

    async def schedule_step(self, run_id: str, key: str, *, at: datetime | None) -> StepState:
        now = c.now_utc()
        step = self._transition(
            run_id, key, "status = 'pending'", (), lambda s: c.apply_schedule(s, at, now)
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
        return self._transition(
            run_id,
            key,
            _CLAIMABLE_SQL,
            (c.to_micros(when),),
            lambda s: c.apply_claim(s, owner, lease_seconds, when),
            durable=False,
        )

    async def heartbeat_step(
        self, run_id: str, key: str, *, token: str, lease_seconds: float
    ) -> bool:
        now = c.now_utc()
        step = self._transition(
            run_id,
            key,
            "status = 'running' AND token = ?",
            (token,),
            lambda s: c.apply_heartbeat(s, token, lease_seconds, now),
            durable=False,
        )
        return step is not None

    async def complete_step(
        self, run_id: str, key: str, *, result: Any, token: str | None
    ) -> bool:
        now = c.now_utc()
        if token is not None:
            text = _plain_json(result)
            if text is not None:
                return self._complete_held(run_id, key, text, token, now)
        params: tuple[Any, ...] = ()
        if token is None:
            condition = "status != 'succeeded'"
        else:
            condition, params = "status = 'running' AND token = ?", (token,)
        step = self._transition(
            run_id, key, condition, params, lambda s: c.apply_complete(s, result, token, now)
        )
        return step is not None

    def _complete_held(self, run_id: str, key: str, result: str, token: str, now: datetime) -> bool:
        """``complete_step`` of the running attempt held by ``token`` as ONE statement (its own
        transaction, fsynced): the document is changed in SQL (``json_set``, the same fields
        as ``apply_complete``), never read and parsed here; the row count is the answer."""
        validate_run_id(run_id)
        completion = (run_id, key, result, _iso(now), token)
        with self._statement(run_id) as conn, self._json_errors(f"a step row of run {run_id!r}"):
            updated = conn.execute(_COMPLETE_HELD_SQL, completion).rowcount
            if updated != 1:
                self._require_run(conn, run_id)
        return updated == 1

    async def complete_step_later(
        self, run_id: str, key: str, *, result: Any, token: str
    ) -> bool:
        """Write-behind, while this store holds the run's lock (``lock_run``): the completion
        is held back and sent with the run's next statement. The next step's insert
        (:meth:`insert_step_at_boundary`) carries it in the same write transaction, one
        fsync for both (instead of two commits, the completion's fsynced); any other durable
        write of the run (its settlement...) carries it in its transaction too; any other
        statement of the run sends it first, in a transaction of its own; the lock's release
        sends it at the latest. Without the lock, with ``write_behind=False`` or a
        result that is not plain JSON: :meth:`complete_step`, at once."""
        validate_run_id(run_id)
        if self.write_behind and token is not None and run_id in self._locked:
            text = _plain_json(result)
            if text is not None:
                completion = (run_id, key, text, _iso(c.now_utc()), token)
                with self._mutex:
                    self._pending.setdefault(run_id, []).append(completion)
                return True
        return await self.complete_step(run_id, key, result=result, token=token)

    def _send(self, conn: sqlite3.Connection, run_id: str, pending: list[_Completion]) -> None:
        """Send held-back completions of a run (caller holds ``_mutex``) in ONE write
        transaction at the store's own level (fsynced); a completion that no longer applies
        is :class:`StepCompletionLostError`, after the others were committed."""
        try:
            with self._tx_on(conn):
                lost = self._apply(conn, run_id, pending)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"SQLite store {str(self.path)!r}: {exc}") from exc
        if lost is not None:
            raise lost

    def _apply(
        self, conn: sqlite3.Connection, run_id: str, pending: list[_Completion]
    ) -> StepCompletionLostError | None:
        """The held-back completions of a run, in the caller's transaction: the error of the
        first that did not apply (its claim no longer held), if any; RunNotFoundError when the
        run is gone."""
        lost = None
        with self._json_errors(f"a step row of run {run_id!r}"):
            for completion in pending:
                if conn.execute(_COMPLETE_HELD_SQL, completion).rowcount != 1 and lost is None:
                    self._require_run(conn, run_id)
                    lost = StepCompletionLostError(
                        f"SQLite store {str(self.path)!r}: the result of step "
                        f"{completion[1]!r} of run {run_id!r} was not stored: its attempt's "
                        "claim no longer held (taken over meanwhile); the pass is abandoned "
                        "and runs again"
                    )
        return lost

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
        params: tuple[Any, ...] = ()
        if token is None:
            condition = "status = 'running'"
        else:
            condition, params = "status = 'running' AND token = ?", (token,)
        return self._transition(
            run_id, key, condition, params, lambda s: c.apply_fail(s, token, error, retry_at, now)
        )

    async def reset_step(
        self, run_id: str, key: str, *, attempts: int = 1, at: datetime | None = None
    ) -> StepState | None:
        now = c.now_utc()
        step = self._transition(
            run_id, key, "status = 'failed'", (), lambda s: c.apply_reset(s, attempts, at, now)
        )
        if step is None:
            await self._require_step(run_id, key)
        return step

    reset_step.__doc__ = c.RESET_DOC

    # ---------------------------------------------------------------- events
    def _load_event(self, row: tuple[Any, ...]) -> WorkflowEvent:
        try:
            return WorkflowEvent(
                seq=row[0],
                run_id=row[1],
                name=row[2],
                payload=json.loads(row[3]),
                sent_at=_from_micros(row[4]),
                consumed_by=row[5],
                consumed_at=None if row[6] is None else _from_micros(row[6]),
            )
        except (ValueError, TypeError, ValidationError) as exc:
            raise self._corrupt(f"an event row of run {row[1]!r}", exc) from exc

    async def send_event(
        self, run_id: str, name: str, payload: Any
    ) -> WorkflowEvent | None:
        validate_run_id(run_id)
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        now = c.now_utc()
        with self._tx(run_id) as conn:
            row = conn.execute("SELECT doc FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            run = self._load_run(row[0], run_id)
            if run.status.is_settled:
                return None
            seq = conn.execute(
                "INSERT INTO events (run_id, name, payload, sent_us) VALUES (?, ?, ?, ?)",
                (run_id, name, text, c.to_micros(now)),
            ).lastrowid
            if c.apply_wake_on_event(run, now):
                conn.execute(
                    "UPDATE runs SET doc = ? WHERE id = ?", (run.model_dump_json(), run_id)
                )
        assert seq is not None
        return WorkflowEvent(
            seq=seq, run_id=run_id, name=name, payload=json.loads(text), sent_at=now
        )

    async def consume_event(
        self, run_id: str, name: str, step_key: str
    ) -> WorkflowEvent | None:
        validate_run_id(run_id)
        now_us = c.to_micros(c.now_utc())
        with self._tx(run_id) as conn:
            row = conn.execute(
                f"SELECT {_EVENT_COLS} FROM events WHERE run_id = ? AND consumed_by = ? "
                "ORDER BY seq LIMIT 1",
                (run_id, step_key),
            ).fetchone()
            if row is None:
                row = conn.execute(
                    f"SELECT {_EVENT_COLS} FROM events WHERE run_id = ? AND name = ? "
                    "AND consumed_by IS NULL ORDER BY seq LIMIT 1",
                    (run_id, name),
                ).fetchone()
                if row is None:
                    self._require_run(conn, run_id)
                    return None
                conn.execute(
                    "UPDATE events SET consumed_by = ?, consumed_us = ? WHERE seq = ?",
                    (step_key, now_us, row[0]),
                )
                row = (*row[:5], step_key, now_us)
        return self._load_event(row)

    async def list_events(self, run_id: str) -> list[WorkflowEvent]:
        validate_run_id(run_id)
        with self._read(run_id) as conn:
            rows = conn.execute(
                f"SELECT {_EVENT_COLS} FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
            if not rows:
                self._require_run(conn, run_id)
        return [self._load_event(row) for row in rows]

    # ------------------------------------------------------------- locking
    def lock_run(
        self, run_id: str, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        validate_run_id(run_id)
        try:
            self._lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise c.os_error(exc, f"SQLite store {str(self.path)!r}", "create its lock directory") from exc
        return self._holding(run_id, c.flock_context(
            self._lock_dir / f"{run_id}.lock", timeout, f"the lock of run {run_id!r}"
        ))

    @asynccontextmanager
    async def _holding(
        self, run_id: str, flock: AbstractAsyncContextManager[None]
    ) -> AsyncIterator[None]:
        """The run's ``flock`` held: meanwhile its step results may be held back
        (:meth:`complete_step_later`); the ones still held back are sent before the flock is
        released (a pass that ended without another statement of its run: an error, a
        cancellation). Best effort: one that cannot be stored is logged and dropped, its
        attempt stays running and is taken over like a crashed one. Sending them is
        synchronous: a cancellation cannot cut it short or skip the release."""
        async with flock:
            self._locked.add(run_id)
            try:
                yield
            finally:
                self._locked.discard(run_id)
                if run_id in self._pending:
                    try:
                        with self._read(run_id):  # sends them
                            pass
                    except (StoreUnavailableError, RunNotFoundError, StateCorruptedError) as exc:
                        with self._mutex:
                            self._pending.pop(run_id, None)
                        log.warning("a step result of run %s was not stored before its lock "
                                    "was released: %s", run_id, exc)


def _plain_json(value: Any) -> str | None:
    """``value`` as the JSON text a step document holds; ``None`` when it is not plain JSON
    (``complete_step``'s general path says what is wrong)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None


def _iso(value: datetime) -> str:
    """A datetime as pydantic writes it in a document (``Z`` for UTC)."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


__all__ = ["SqliteWorkflowStateService"]
