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

COROUTINE: Final = "typing.Coroutine"

ANY_NAMES: Final = frozenset({"typing.Any", "typing_extensions.Any", "Any"})
OPTIONAL_NAMES: Final = frozenset({"typing.Optional", "typing_extensions.Optional", "Optional"})
UNION_NAMES: Final = frozenset({"typing.Union", "typing_extensions.Union", "Union"})
LITERAL_NAMES: Final = frozenset({"typing.Literal", "typing_extensions.Literal", "Literal"})
NONE_NAMES: Final = frozenset({"None", "builtins.None", "types.NoneType", "NoneType"})
