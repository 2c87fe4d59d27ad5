"""Placeholder: implemented by the scale-out work (issue 6)."""
from __future__ import annotations

from typing import Any


class PostgresWorkflowStateService:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("PostgresWorkflowStateService is not implemented yet")
