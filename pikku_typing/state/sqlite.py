"""Placeholder: implemented by the runtime work (issue 5)."""
from __future__ import annotations

from typing import Any


class SqliteWorkflowStateService:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("SqliteWorkflowStateService is not implemented yet")
