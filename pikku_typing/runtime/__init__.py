"""The durable runtime."""

from pikku_typing.runtime.queues.base import Job, WorkflowQueue
from pikku_typing.runtime.queues.memory import InProcessQueue
from pikku_typing.runtime.queues.postgres import PostgresQueue
from pikku_typing.runtime.queues.store import StoreQueue
from pikku_typing.runtime.runtime import RunHandle, WorkflowClient, WorkflowRuntime

__all__ = [
    "InProcessQueue",
    "Job",
    "PostgresQueue",
    "RunHandle",
    "StoreQueue",
    "WorkflowClient",
    "WorkflowQueue",
    "WorkflowRuntime",
]
