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
    "pikku-unknown-workflow",
    "Check that runtime.client(), run_child() and start_child() name a known workflow",
    CATEGORY,
)
WORKFLOW_INPUT: Final = ErrorCode(
    "pikku-workflow-input",
    "Check that client.start(), run_child() and start_child() get the workflow's input type",
    CATEGORY,
)
UNKNOWN_EVENT: Final = ErrorCode(
    "pikku-unknown-event",
    "Check that wait_for_event() and send_event() name an event declared with wire_event",
    CATEGORY,
)
EVENT_PAYLOAD: Final = ErrorCode(
    "pikku-event-payload",
    "Check that send_event() gets the event's payload type",
    CATEGORY,
)
NO_MAP: Final = ErrorCode(
    "pikku-no-map",
    "Note that the generated workflow map is missing, so names are not checked",
    CATEGORY,
)
