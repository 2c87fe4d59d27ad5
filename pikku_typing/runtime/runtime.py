"""Placeholder: implemented by the runtime work (issue 5)."""
from __future__ import annotations

from typing import Any


class WorkflowRuntime:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("WorkflowRuntime is not implemented yet")


class WorkflowClient:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("WorkflowClient is not implemented yet")
