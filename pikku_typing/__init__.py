"""pikku_typing: durable, statically typed workflows.

The public API (SPEC section 3). ``tests/test_public_api.py`` pins this list.

Names are imported lazily (PEP 562): ``import pikku_typing`` (and so loading the mypy plugin,
``pikku_typing.mypy``) does not import the runtime, the stores or pydantic until they are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pikku_typing import _log as _log  # the NullHandler of the "pikku" logger (SPEC 10)

if TYPE_CHECKING:
    from pikku_typing.durations import Duration, parse_duration
    from pikku_typing.errors import (
        ChildWorkflowFailedError,
        EventNotFoundError,
        EventPayloadError,
        InvalidDurationError,
        InvalidRunIdError,
        NestedStepError,
        PikkuError,
        RPCNotFoundError,
        RunAlreadyExistsError,
        RunExistsError,
        RunNotFoundError,
        StateCorruptedError,
        StepNotFoundError,
        StepSerializationError,
        StorePathError,
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
        WorkflowEvent,
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
    from pikku_typing.wiring import (
        StepCall,
        StepMiddleware,
        pikku_func,
        wire_event,
        wire_workflow,
    )

_LAZY: dict[str, str] = {
    "Duration": "pikku_typing.durations",
    "parse_duration": "pikku_typing.durations",
    "ChildWorkflowFailedError": "pikku_typing.errors",
    "EventNotFoundError": "pikku_typing.errors",
    "EventPayloadError": "pikku_typing.errors",
    "InvalidDurationError": "pikku_typing.errors",
    "InvalidRunIdError": "pikku_typing.errors",
    "NestedStepError": "pikku_typing.errors",
    "PikkuError": "pikku_typing.errors",
    "RPCNotFoundError": "pikku_typing.errors",
    "RunAlreadyExistsError": "pikku_typing.errors",
    "RunExistsError": "pikku_typing.errors",
    "RunNotFoundError": "pikku_typing.errors",
    "StateCorruptedError": "pikku_typing.errors",
    "StepNotFoundError": "pikku_typing.errors",
    "StepSerializationError": "pikku_typing.errors",
    "StorePathError": "pikku_typing.errors",
    "StoreUnavailableError": "pikku_typing.errors",
    "WorkflowCancelledError": "pikku_typing.errors",
    "WorkflowFailedError": "pikku_typing.errors",
    "WorkflowInputError": "pikku_typing.errors",
    "WorkflowNonDeterminismError": "pikku_typing.errors",
    "WorkflowNotFoundError": "pikku_typing.errors",
    "WorkflowRegistrationError": "pikku_typing.errors",
    "Workflow": "pikku_typing.interaction",
    "rpc": "pikku_typing.interaction",
    "ErrorInfo": "pikku_typing.models",
    "RunStatus": "pikku_typing.models",
    "StepAttempt": "pikku_typing.models",
    "StepKind": "pikku_typing.models",
    "StepState": "pikku_typing.models",
    "StepStatus": "pikku_typing.models",
    "WorkflowEvent": "pikku_typing.models",
    "WorkflowRun": "pikku_typing.models",
    "InProcessQueue": "pikku_typing.runtime",
    "PostgresQueue": "pikku_typing.runtime",
    "RunHandle": "pikku_typing.runtime",
    "WorkflowClient": "pikku_typing.runtime",
    "WorkflowQueue": "pikku_typing.runtime",
    "WorkflowRuntime": "pikku_typing.runtime",
    "FileWorkflowStateService": "pikku_typing.state",
    "InMemoryWorkflowStateService": "pikku_typing.state",
    "PostgresWorkflowStateService": "pikku_typing.state",
    "SqliteWorkflowStateService": "pikku_typing.state",
    "WorkflowStateService": "pikku_typing.state",
    "StepCall": "pikku_typing.wiring",
    "StepMiddleware": "pikku_typing.wiring",
    "pikku_func": "pikku_typing.wiring",
    "wire_event": "pikku_typing.wiring",
    "wire_workflow": "pikku_typing.wiring",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pikku_typing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__version__ = "0.1.0"

__all__ = [
    "ChildWorkflowFailedError",
    "Duration",
    "ErrorInfo",
    "EventNotFoundError",
    "EventPayloadError",
    "FileWorkflowStateService",
    "InMemoryWorkflowStateService",
    "InProcessQueue",
    "InvalidDurationError",
    "InvalidRunIdError",
    "NestedStepError",
    "PikkuError",
    "PostgresQueue",
    "PostgresWorkflowStateService",
    "RPCNotFoundError",
    "RunAlreadyExistsError",
    "RunExistsError",
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
    "StorePathError",
    "StoreUnavailableError",
    "Workflow",
    "WorkflowCancelledError",
    "WorkflowClient",
    "WorkflowEvent",
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
    "wire_event",
    "wire_workflow",
]
