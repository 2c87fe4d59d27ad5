"""Placeholder: implemented by the stores work (issue 2)."""
from __future__ import annotations

from typing import Any


class FileWorkflowStateService:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("FileWorkflowStateService is not implemented yet")
