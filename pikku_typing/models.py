"""Pydantic models of runtime state: runs, steps, attempts and claims."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunStatus(StrEnum):
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_settled(self) -> bool:
        """A settled run is never replayed again."""
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SCHEDULED = "scheduled"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StepKind(StrEnum):
    RPC = "rpc"
    INLINE = "inline"
    SLEEP = "sleep"
    EVENT = "event"
    """``workflow.wait_for_event``: the result is the consumed event (or the timeout)."""
    CHILD = "child"
    """``workflow.run_child`` / ``start_child``: the data names the child run."""
    VALUE = "value"
    """``workflow.now()`` / ``uuid4()`` / ``random()``: a value recorded once."""


class ErrorInfo(BaseModel):
    """A stored error: never an exception object, only its description."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    step: str | None = None
    """Key of the step whose error failed the run, if any."""
    traceback: str | None = None


class ClaimOwner(BaseModel):
    """Who holds a claim: used to abandon attempts of dead processes."""

    model_config = ConfigDict(frozen=True)

    host: str
    pid: int
    token: str
    """Unique per claim, so a stale holder cannot complete a newer attempt."""


class StepAttempt(BaseModel):
    number: int
    """1 for the first attempt."""
    status: StepStatus
    owner: ClaimOwner | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_expires_at: datetime | None = None
    error: ErrorInfo | None = None


class StepState(BaseModel):
    """One step of a run, keyed by ``key`` (``name``, ``name#1``, ``name#2`` ...)."""

    key: str
    step_name: str
    kind: StepKind
    status: StepStatus = StepStatus.PENDING
    rpc_name: str | None = None
    data: Any = None
    """The RPC form's data (JSON), kept so a step worker or a recovery can run it."""
    data_digest: str | None = None
    result: Any = None
    """JSON of the step's result once it succeeded."""
    error: ErrorInfo | None = None
    attempt_count: int = 0
    """Number of attempts started so far."""
    max_attempts: int | None = None
    retry_delay: float | None = None
    """Fixed delay in seconds between attempts; ``None``: exponential from 1 s, capped at 5 min."""
    attempts: list[StepAttempt] = Field(default_factory=list)
    next_attempt_at: datetime | None = None
    """When a scheduled attempt (a retry, or a sleep's wake-up) is due."""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def current_attempt(self) -> StepAttempt | None:
        return self.attempts[-1] if self.attempts else None


class WorkflowRun(BaseModel, Generic[InputT, OutputT]):
    """A run of a workflow. ``output`` is typed by the workflow's output type when read
    through a typed client."""

    id: str
    workflow: str
    status: RunStatus
    input: InputT
    output: OutputT | None = None
    error: ErrorInfo | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    wake_at: datetime | None = None
    """When a suspended run is due again (durable sleep, retry delay)."""
    owner: ClaimOwner | None = None
    """Process that is running an orchestrator pass (``status == running``)."""
    cancel_requested: bool = False
    parent_run_id: str | None = None
    """The run that started this one as a child (``workflow.run_child``/``start_child``)."""
    version: str | None = None
    """Structural hash of the workflow when the run started (SPEC section 9): its steps'
    kinds, names and targets and its input/output types, from the generated
    ``workflow_meta.json`` (``pikku_typing.meta.structural_hash``); ``None`` when the
    generated package was not imported."""


class WorkflowEvent(BaseModel):
    """An event sent to a run (``send_event``), kept until a ``wait_for_event`` consumes it."""

    seq: int
    """Send order: events of one run are consumed in increasing ``seq``."""
    run_id: str
    name: str
    payload: Any = None
    """The payload as JSON (rehydrated to the declared payload type when consumed)."""
    sent_at: datetime = Field(default_factory=utcnow)
    consumed_by: str | None = None
    """Key of the ``wait_for_event`` step that consumed it (``None``: not consumed yet)."""
    consumed_at: datetime | None = None
