"""The plugin's error codes.

Creating an ``ErrorCode`` registers it with mypy, so ``--disable-error-code pikku-unknown-rpc``,
``disable_error_code = pikku-rpc-data`` and ``# type: ignore[pikku-unknown-rpc]`` accept them.
"""

from __future__ import annotations

from typing import Final

from mypy.errorcodes import ErrorCode

CATEGORY: Final = "pikku"

UNKNOWN_RPC: Final = ErrorCode(
    "pikku-unknown-rpc", "Check that an RPC-form step or rpc.invoke names a known RPC", CATEGORY
)
RPC_DATA: Final = ErrorCode(
    "pikku-rpc-data", "Check that the data passed to an RPC matches its input type", CATEGORY
)
UNKNOWN_WORKFLOW: Final = ErrorCode(
    "pikku-unknown-workflow", "Check that runtime.client() names a known workflow", CATEGORY
)
WORKFLOW_INPUT: Final = ErrorCode(
    "pikku-workflow-input",
    "Check that client.start() gets the workflow's input type",
    CATEGORY,
)
NO_MAP: Final = ErrorCode(
    "pikku-no-map",
    "Note that the generated workflow map is missing, so names are not checked",
    CATEGORY,
)
