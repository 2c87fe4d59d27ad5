"""The abstract state store. Every backend (memory, file, SQLite, PostgreSQL) implements the
same contract, checked by ``tests/test_state_contract.py``.

Design rules the runtime relies on:

* ``get_step_states`` returns every step of a run in ONE read (replay reads it once per pass).
* ``claim_step`` is atomic across processes: of N concurrent claimers of the same attempt,
  exactly one gets the step back, the others get ``None``.
* ``complete_step`` / ``fail_step_attempt`` take the claim ``token``: a holder whose claim was
  abandoned (its lease expired, its process died) cannot overwrite the newer attempt.
* ``lock_run`` is a per-run mutual exclusion that holds across processes (and across tasks of
  one process).
* All values (``input``, ``output``, step ``data`` and ``result``) are JSON values.

Damaged records: one run whose stored record cannot be read (a truncated or garbage file, an
unreadable file, a missing steps document, a row that does not decode) never stops the
others. ``list_runs`` skips it (and logs a warning on the ``pikku.state`` logger);
:meth:`WorkflowStateService.list_damaged` reports it as a :class:`DamagedRun` saying what is
wrong; every operation on that run itself raises :class:`StateCorruptedError` (a damaged
record is never overwritten). ``pikku-runs list`` shows damaged runs, ``pikku-runs show``
explains them and ``WorkflowRuntime.recover()`` logs and skips them.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Final, Self, final

from pikku_typing.errors import InvalidRunIdError, StepNotFoundError, StoreUnavailableError
from pikku_typing.models import (
    ClaimOwner,
    ErrorInfo,
    RunStatus,
    StepState,
    WorkflowEvent,
    WorkflowRun,
)

RUN_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def validate_run_id(run_id: object) -> str:
    """Return ``run_id`` if it is a safe id (letters, digits, ``_ . -``; no path separators,
    not ``.``/``..``), else raise :class:`InvalidRunIdError`."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id) or ".." in run_id:
        raise InvalidRunIdError(
            f"invalid run id {run_id!r}: use 1-128 letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, no '..')"
        )
    return run_id


class StepCompletionLostError(StoreUnavailableError):
    """A write-behind completion (:meth:`WorkflowStateService.complete_step_later`) did not
    apply when the store sent it: the attempt's claim no longer held. The pass went on with
    a result that is not recorded, so it is abandoned like one the store failed under (the
    job runs again and replays the run from what is recorded)."""


@dataclass(frozen=True)
class DamagedRun:
    """A run whose stored record cannot be read (see "Damaged records" above)."""

    run_id: str
    """The run's id (from the file name or the row's key column)."""
    problem: str
    """What is wrong, in one line, naming the file or row (the StateCorruptedError text)."""
    workflow: str | None = None
    """The run's workflow, when it can still be read (its header or an indexed column)."""
    status: RunStatus | None = None
    """The run's status, when it can still be read."""

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "problem": self.problem,
            "workflow": self.workflow,
            "status": None if self.status is None else self.status.value,
            "damaged": True,
        }


@final
class _Unset:
    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset()


@dataclass(frozen=True)
class RunChanges:
    """Fields to change on a run; ``UNSET`` leaves a field as it is."""

    status: RunStatus | _Unset = UNSET
    output: Any = UNSET
    error: ErrorInfo | _Unset | None = UNSET
    wake_at: datetime | _Unset | None = UNSET
    owner: ClaimOwner | _Unset | None = UNSET
    cancel_requested: bool | _Unset = UNSET

    def apply(self, run: WorkflowRun[Any, Any], now: datetime) -> WorkflowRun[Any, Any]:
        """Return a copy of ``run`` with the changes applied (used by document stores)."""
        update: dict[str, Any] = {"updated_at": now}
        for name in ("status", "output", "error", "wake_at", "owner", "cancel_requested"):
            value = getattr(self, name)
            if value is not UNSET:
                update[name] = value
        return run.model_copy(update=update)


class WorkflowStateService(ABC):
    """Abstract durable state of workflow runs and their steps."""

    # ------------------------------------------------------------------ runs
    @abstractmethod
    async def create_run(
        self,
        workflow: str,
        input: Any,
        *,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        version: str | None = None,
    ) -> WorkflowRun[Any, Any]:
        """Create a run in status ``running`` (a new uuid4 hex id unless ``run_id`` is given;
        a given id is validated and must not exist yet: one atomic insert, else
        :class:`RunAlreadyExistsError`). ``parent_run_id`` records the run that started it
        as a child; ``version`` the workflow's structural hash (``WorkflowRun.version``)."""

    @abstractmethod
    async def get_run(self, run_id: str) -> WorkflowRun[Any, Any]:
        """Return the run or raise :class:`RunNotFoundError` (``InvalidRunIdError`` for a bad id)."""

    @abstractmethod
    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        limit: int | None = None,
    ) -> list[WorkflowRun[Any, Any]]:
        """Runs matching the filters, newest first (by ``created_at``, then id). A damaged
        run record is skipped (and logged), never raised: see :meth:`list_damaged`."""

    async def list_damaged(self) -> list[DamagedRun]:
        """Every run whose stored record (run, steps or events) cannot be read, with what
        is wrong; ``[]`` when none is. It reads every record of the store (an operator's
        and ``recover()``'s check, not a hot path). Stores that keep no serialized records
        (memory) have none."""
        return []

    @abstractmethod
    async def _update_run(
        self,
        run_id: str,
        changes: RunChanges,
        expect_status: Collection[RunStatus] | None,
    ) -> WorkflowRun[Any, Any] | None:
        """Apply ``changes`` atomically; when ``expect_status`` is given, only if the run's
        current status is one of them (else return ``None``). Raise RunNotFoundError."""

    async def update_run(self, run_id: str, changes: RunChanges) -> WorkflowRun[Any, Any]:
        """Apply ``changes`` unconditionally and return the updated run."""
        run = await self._update_run(run_id, changes, None)
        assert run is not None
        return run

    async def transition_run(
        self,
        run_id: str,
        expect_status: Collection[RunStatus],
        changes: RunChanges,
    ) -> WorkflowRun[Any, Any] | None:
        """Compare-and-set: apply ``changes`` only if the status is in ``expect_status``."""
        return await self._update_run(run_id, changes, expect_status)

    # ----------------------------------------------------------------- steps
    @abstractmethod
    async def get_step_states(self, run_id: str) -> dict[str, StepState]:
        """Every step of the run, keyed by step key, in creation order: ONE read."""

    @abstractmethod
    async def get_step(self, run_id: str, key: str) -> StepState | None:
        """One step, or ``None``."""

    async def get_step_and_run(
        self, run_id: str, key: str
    ) -> tuple[StepState, WorkflowRun[Any, Any]] | None:
        """A step and its run (what a step job reads first), or ``None`` without the step.
        Two reads by default; a store may answer in one (PostgreSQL: one statement)."""
        step = await self.get_step(run_id, key)
        if step is None:
            return None
        return step, await self.get_run(run_id)

    @abstractmethod
    async def insert_step(self, run_id: str, step: StepState) -> StepState:
        """Insert ``step`` if no step has its key; return the stored step either way (an
        existing step is never overwritten). Raise RunNotFoundError for an unknown run."""

    async def insert_step_at_boundary(self, run_id: str, step: StepState) -> StepState | None:
        """A step boundary and the insert of a new step, in one call: what a pass does when
        the replay reaches a step it has no record of.

        ``None`` (nothing inserted) when the run has a cancel request or is settled
        (completed, failed, cancelled): the pass stops at this boundary. Else exactly
        :meth:`insert_step`: insert ``step`` if no step has its key and return the stored
        step either way (an existing step is never overwritten; a store may return the given
        ``step`` object itself when it inserted it). Raise :class:`RunNotFoundError` for an
        unknown run.

        The check and the insert are atomic in the stores of this package (SQLite and
        PostgreSQL: one statement; memory: one critical section; file: under the run's
        state lock), so a cancel request committed before the insert is never missed. The default reads the run, then inserts
        (two calls, what the runtime did before this method existed): a cancel request
        committed between them is seen at the next boundary, as before."""
        run = await self.get_run(run_id)
        if run.cancel_requested or run.status.is_settled:
            return None
        return await self.insert_step(run_id, step)

    @abstractmethod
    async def schedule_step(self, run_id: str, key: str, *, at: datetime | None) -> StepState:
        """Mark a pending step ``scheduled`` (a remote step was enqueued, or a sleep's wake-up
        time ``at`` was set). A step that is not pending is returned unchanged."""

    @abstractmethod
    async def claim_step(
        self,
        run_id: str,
        key: str,
        *,
        owner: ClaimOwner,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> StepState | None:
        """Atomically start a new attempt: only if the step is ``pending`` or ``scheduled`` and
        its ``next_attempt_at`` (if any) is not after ``now``. Sets ``running``, increments
        ``attempt_count``, appends a running :class:`StepAttempt` held by ``owner`` with
        ``lease_expires_at = now + lease_seconds``. Returns the updated step, or ``None`` when
        another claimer won or the step is not claimable."""

    async def claim_due_step(
        self, run_id: str, key: str, *, owner: ClaimOwner, lease_seconds: float
    ) -> StepState | None:
        """A step job's first move where a store can make it in one statement: claim the
        step's next attempt as :meth:`claim_step` does (now), but only while its run goes on
        (no cancel request, not settled). ``None``: not claimed this way, and the caller
        reads the step and its run and decides, as without it (a settled step, a held
        attempt, a retry not due, a cancel request...). The default never claims (two reads
        and a claim are no slower than one of each on an embedded store); PostgreSQL
        claims in one statement (a step job's read saved)."""
        return None

    @abstractmethod
    async def heartbeat_step(
        self, run_id: str, key: str, *, token: str, lease_seconds: float
    ) -> bool:
        """Extend the lease of the running attempt held by ``token``; False if it is not held."""

    @abstractmethod
    async def complete_step(
        self, run_id: str, key: str, *, result: Any, token: str | None
    ) -> bool:
        """Store the result and mark the step ``succeeded``. With a ``token``, only if that
        token holds the running attempt; with ``None`` (sleeps), only if the step has not
        succeeded yet. Returns whether the result was stored."""

    async def complete_step_later(
        self, run_id: str, key: str, *, result: Any, token: str
    ) -> bool:
        """:meth:`complete_step` as a pass stores the result of an attempt it ran itself,
        while it holds the run's lock (``lock_run``). A store may hold the completion back
        (write-behind) and send it with the run's next statement, in the same transaction,
        or before it, and at the latest when the lock is released: the result is durable
        before anything else of the run is stored (the next step's claim, before that step's
        code runs; the run's settlement), and only the workflow's own code between two steps
        runs before that. A crash in between re-runs the attempt, as a crash just before
        :meth:`complete_step` does. When a held-back completion no longer applies (its claim
        was taken over), the statement that sends it raises
        :class:`StepCompletionLostError`. ``True``: stored, or held back. The default stores
        it at once (PostgreSQL holds it back: one round trip per step instead of two)."""
        return await self.complete_step(run_id, key, result=result, token=token)

    @abstractmethod
    async def fail_step_attempt(
        self,
        run_id: str,
        key: str,
        *,
        token: str | None,
        error: ErrorInfo,
        retry_at: datetime | None,
    ) -> StepState | None:
        """End the running attempt held by ``token`` with ``error`` (``token=None``: whatever
        attempt is running, used to abandon dead holders). With ``retry_at`` the step becomes
        ``scheduled`` with ``next_attempt_at = retry_at``; without, it becomes ``failed`` with
        ``error``. Returns the updated step, or ``None`` if the token did not hold it."""

    @abstractmethod
    async def reset_step(
        self, run_id: str, key: str, *, attempts: int = 1, at: datetime | None = None
    ) -> StepState | None:
        """Give a ``failed`` step ``attempts`` new attempts (an operator action: ``pikku-runs
        resume``). Atomically, and only if the step is ``failed``: it becomes ``scheduled``
        with ``next_attempt_at = at`` (``None``: due at once), its ``error`` and
        ``finished_at`` are cleared, ``max_attempts`` becomes ``attempt_count + attempts``;
        ``attempt_count`` and the attempt history are kept. Returns the updated step, or
        ``None`` when the step is not ``failed`` (nothing changed). Raises ``ValueError`` when
        ``attempts < 1``, :class:`StepNotFoundError` for an unknown step and
        :class:`RunNotFoundError` for an unknown run."""

    async def _require_step(self, run_id: str, key: str) -> StepState:
        """The stored step, or :class:`StepNotFoundError`: what a guarded transition that did
        not apply falls back to (the step exists in another status, or not at all)."""
        step = await self.get_step(run_id, key)
        if step is None:
            raise StepNotFoundError(f"run {run_id!r} has no step {key!r}")
        return step

    # ---------------------------------------------------------------- events
    async def send_event(
        self, run_id: str, name: str, payload: Any
    ) -> WorkflowEvent | None:
        """Append an event (``payload`` is JSON) to the run's events, atomically with a check
        of the run's status: ``None`` (nothing stored) when the run does not exist or is
        settled. When the run is ``suspended``, its ``wake_at`` becomes the send time (if it
        was later or unset), so a poller of due runs wakes it. Concurrent senders (tasks or
        processes) never lose an event; ``seq`` gives the send order."""
        raise NotImplementedError(f"{type(self).__name__} does not store events")

    async def consume_event(
        self, run_id: str, name: str, step_key: str
    ) -> WorkflowEvent | None:
        """Atomically give step ``step_key`` the first unconsumed event named ``name`` (lowest
        ``seq``) and mark it consumed by that step. Idempotent by step key: if an event is
        already consumed by ``step_key``, that event is returned again (a crash between the
        consumption and the step's result never loses or double-consumes an event). ``None``
        when there is no such event. Raises :class:`RunNotFoundError`."""
        raise NotImplementedError(f"{type(self).__name__} does not store events")

    async def list_events(self, run_id: str) -> list[WorkflowEvent]:
        """Every event of the run (consumed or not), in send order. Raises
        :class:`RunNotFoundError`."""
        raise NotImplementedError(f"{type(self).__name__} does not store events")

    # ------------------------------------------------------------- locking
    @abstractmethod
    def lock_run(
        self, run_id: str, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Exclusive per-run lock across processes and tasks. Waits at most ``timeout``
        seconds (forever if ``None``), then raises ``TimeoutError``."""

    # ------------------------------------------------------- settle notices
    #: True when :meth:`wait_settled` returns as soon as a run settles in any process (a push
    #: from the store, e.g. PostgreSQL's LISTEN/NOTIFY); False when it only sleeps, and
    #: ``result()`` polls.
    pushes_settled: ClassVar[bool] = False

    async def wait_settled(self, run_id: str, timeout: float) -> None:
        """Return when run ``run_id`` may have settled (completed, failed or cancelled) in any
        process, or after ``timeout`` seconds, whichever is first. A hint, not a guarantee:
        the caller reads the run again. The default sleeps for ``timeout``."""
        await asyncio.sleep(timeout)

    # ------------------------------------------------------------ lifecycle
    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and handles. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
