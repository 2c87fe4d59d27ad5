"""Placeholder: implemented by the stores work (issue 2)."""
from __future__ import annotations

from typing import Any


class InMemoryWorkflowStateService:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("InMemoryWorkflowStateService is not implemented yet")
