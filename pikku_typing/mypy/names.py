"""Fully qualified names the plugin hooks or looks up, in one place."""

from __future__ import annotations

from typing import Final

PACKAGE: Final = "pikku_typing"

WORKFLOW_DO: Final = "pikku_typing.interaction.Workflow.do"
"""``await workflow.do(step_name, rpc_name, data)``: checked and typed per RPC."""

RPC_INVOKE: Final = "pikku_typing.interaction.RPCInvoker.invoke"
"""``await rpc.invoke(rpc_name, data)``: checked and typed per RPC."""

RUNTIME_CLIENT: Final = "pikku_typing.runtime.runtime.WorkflowRuntime.client"
"""``runtime.client("onboarding")``: returns ``WorkflowClient[Input, Output]``."""

WORKFLOW_CLIENT: Final = "pikku_typing.runtime.runtime.WorkflowClient"
CLIENT_START: Final = "pikku_typing.runtime.runtime.WorkflowClient.start"
"""``client.start(input)``: the input is checked against the workflow's input type."""

WORKFLOW_WAIT_FOR_EVENT: Final = "pikku_typing.interaction.Workflow.wait_for_event"
"""``await workflow.wait_for_event(step, "payment.received", timeout=...)``: the payload type."""
WORKFLOW_RUN_CHILD: Final = "pikku_typing.interaction.Workflow.run_child"
WORKFLOW_START_CHILD: Final = "pikku_typing.interaction.Workflow.start_child"
"""``await workflow.run_child(step, "billing", input)``: the child's name and input."""
CLIENT_SEND_EVENT: Final = "pikku_typing.runtime.runtime.WorkflowClient.send_event"
RUNTIME_SEND_EVENT: Final = "pikku_typing.runtime.runtime.WorkflowRuntime.send_event"
"""``await client.send_event(run_id, "payment.received", payload)``: name and payload."""

STUBS: Final = "pikku_typing"
"""The generated partial stubs of ``pikku_typing`` (``<stub_dir>/pikku_typing/__init__.pyi``)
define ``Workflow``, ``RPCInvoker``, ``WorkflowClient`` and ``WorkflowRuntime`` in the package
itself; their methods are hooked too, with the library's (relaxed) signature."""
STUB_WORKFLOW_CLIENT: Final = "pikku_typing.WorkflowClient"
STUB_METHODS: Final = {
    "pikku_typing.Workflow.do": WORKFLOW_DO,
    "pikku_typing.Workflow.wait_for_event": WORKFLOW_WAIT_FOR_EVENT,
    "pikku_typing.Workflow.run_child": WORKFLOW_RUN_CHILD,
    "pikku_typing.Workflow.start_child": WORKFLOW_START_CHILD,
    "pikku_typing.RPCInvoker.invoke": RPC_INVOKE,
    "pikku_typing.WorkflowRuntime.client": RUNTIME_CLIENT,
    "pikku_typing.WorkflowRuntime.send_event": RUNTIME_SEND_EVENT,
    "pikku_typing.WorkflowClient.send_event": CLIENT_SEND_EVENT,
}
"""A method of the partial stubs -> the library method it narrows (the same hook handles both)."""
STUB_CLIENT_START: Final = "pikku_typing.WorkflowClient.start"
"""``start`` called on the stubs' ``WorkflowClient`` (inherited from the library's)."""
STUB_NAME_TYPES: Final = frozenset(
    {
        "pikku_typing.KnownRPCName",
        "pikku_typing.KnownWorkflowName",
        "pikku_typing.KnownEventName",
    }
)

COROUTINE: Final = "typing.Coroutine"

ANY_NAMES: Final = frozenset({"typing.Any", "typing_extensions.Any", "Any"})
OPTIONAL_NAMES: Final = frozenset({"typing.Optional", "typing_extensions.Optional", "Optional"})
UNION_NAMES: Final = frozenset({"typing.Union", "typing_extensions.Union", "Union"})
LITERAL_NAMES: Final = frozenset({"typing.Literal", "typing_extensions.Literal", "Literal"})
NONE_NAMES: Final = frozenset({"None", "builtins.None", "types.NoneType", "NoneType"})
