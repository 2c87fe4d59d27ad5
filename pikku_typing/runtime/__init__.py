"""The durable runtime."""

from pikku_typing.runtime.queues.base import Job, WorkflowQueue
from pikku_typing.runtime.queues.postgres import PostgresQueue
from pikku_typing.runtime.runtime import WorkflowClient, WorkflowRuntime

__all__ = ["Job", "PostgresQueue", "WorkflowClient", "WorkflowQueue", "WorkflowRuntime"]
