"""State stores."""

from pikku_typing.state.base import RunChanges, WorkflowStateService, validate_run_id
from pikku_typing.state.file import FileWorkflowStateService
from pikku_typing.state.memory import InMemoryWorkflowStateService
from pikku_typing.state.postgres import PostgresWorkflowStateService
from pikku_typing.state.sqlite import SqliteWorkflowStateService

__all__ = [
    "FileWorkflowStateService",
    "InMemoryWorkflowStateService",
    "PostgresWorkflowStateService",
    "RunChanges",
    "SqliteWorkflowStateService",
    "WorkflowStateService",
    "validate_run_id",
]
