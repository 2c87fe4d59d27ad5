"""pikku_typing: durable, statically typed workflows.

The public API (SPEC section 3). ``tests/test_public_api.py`` pins this list.
"""

from pikku_typing.durations import Duration, parse_duration
from pikku_typing.errors import (
    InvalidDurationError,
    InvalidRunIdError,
    PikkuError,
    RPCNotFoundError,
    RunAlreadyExistsError,
    RunNotFoundError,
    StateCorruptedError,
    StepNotFoundError,
    StepSerializationError,
    StoreUnavailableError,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowInputError,
    WorkflowNonDeterminismError,
    WorkflowNotFoundError,
    WorkflowRegistrationError,
)
from pikku_typing.interaction import Workflow, rpc
from pikku_typing.models import (
    ErrorInfo,
    RunStatus,
    StepAttempt,
    StepKind,
    StepState,
    StepStatus,
    WorkflowRun,
)
from pikku_typing.runtime import (
    InProcessQueue,
    PostgresQueue,
    RunHandle,
    WorkflowClient,
    WorkflowQueue,
    WorkflowRuntime,
)
from pikku_typing.state import (
    FileWorkflowStateService,
    InMemoryWorkflowStateService,
    PostgresWorkflowStateService,
    SqliteWorkflowStateService,
    WorkflowStateService,
)
from pikku_typing.wiring import StepCall, StepMiddleware, pikku_func, wire_workflow

__version__ = "0.1.0"

__all__ = [
    "Duration",
    "ErrorInfo",
    "FileWorkflowStateService",
    "InMemoryWorkflowStateService",
    "InProcessQueue",
    "InvalidDurationError",
    "InvalidRunIdError",
    "PikkuError",
    "PostgresQueue",
    "PostgresWorkflowStateService",
    "RPCNotFoundError",
    "RunAlreadyExistsError",
    "RunHandle",
    "RunNotFoundError",
    "RunStatus",
    "SqliteWorkflowStateService",
    "StateCorruptedError",
    "StepAttempt",
    "StepCall",
    "StepKind",
    "StepMiddleware",
    "StepNotFoundError",
    "StepSerializationError",
    "StepState",
    "StepStatus",
    "StoreUnavailableError",
    "Workflow",
    "WorkflowCancelledError",
    "WorkflowClient",
    "WorkflowFailedError",
    "WorkflowInputError",
    "WorkflowNonDeterminismError",
    "WorkflowNotFoundError",
    "WorkflowQueue",
    "WorkflowRegistrationError",
    "WorkflowRun",
    "WorkflowRuntime",
    "WorkflowStateService",
    "parse_duration",
    "pikku_func",
    "rpc",
    "wire_workflow",
]
