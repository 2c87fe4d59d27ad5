"""The diagnostic codes: severity, a title, a help text (SARIF rule metadata) and a default hint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Code:
    code: str
    severity: Severity
    title: str
    help: str
    hint: str


_CODES: Final = (
    Code(
        "DYNAMIC_STEP_NAME",
        "warning",
        "Step name is not a literal",
        "A step name that is not a string literal cannot be checked statically and is shown "
        "as <dynamic> in reports; give the step a description= so it stays readable.",
        "use a string literal as step name, or add description=\"...\"",
    ),
    Code(
        "DUPLICATE_STEP_NAME",
        "error",
        "Two steps share one name",
        "Two steps of one workflow with the same literal name (not in a loop and not in "
        "exclusive branches) share one replay key: the second replays the first's result.",
        "give each step its own name",
    ),
    Code(
        "UNKNOWN_RPC",
        "error",
        "RPC step names an unknown RPC",
        "An RPC-form step names an RPC that no @pikku_func in the analysed sources defines.",
        "define it with @pikku_func(name=...) or fix the name",
    ),
    Code(
        "DUPLICATE_WORKFLOW_NAME",
        "error",
        "Workflow name wired twice",
        "Two wire_workflow(...) calls register the same workflow name.",
        "rename one of the workflows",
    ),
    Code(
        "DUPLICATE_RPC_NAME",
        "error",
        "RPC name defined twice",
        "Two @pikku_func functions register the same RPC name.",
        "rename one of the RPCs with @pikku_func(name=...)",
    ),
    Code(
        "MISSING_NAME",
        "error",
        "wire_workflow without name",
        "wire_workflow(...) needs name=\"...\".",
        "add name=\"my-workflow\"",
    ),
    Code(
        "MISSING_FUNC",
        "error",
        "wire_workflow without func",
        "wire_workflow(...) needs func=<the workflow function>.",
        "add func=my_workflow",
    ),
    Code(
        "NON_LITERAL_WORKFLOW_NAME",
        "error",
        "Workflow name is not a string literal",
        "The workflow name must be known statically: the generated WorkflowMap is keyed by it.",
        "use a string literal (or a module-level string constant) as name=",
    ),
    Code(
        "INVALID_EXECUTION_MODE",
        "error",
        "Invalid execution_mode",
        "execution_mode must be the literal \"inline\" or \"remote\".",
        "use execution_mode=\"remote\" (default) or execution_mode=\"inline\"",
    ),
    Code(
        "NON_LITERAL_EXECUTION_MODE",
        "warning",
        "execution_mode is not a literal",
        "execution_mode is computed at run time; the report records \"<dynamic>\" and the "
        "generated workers cover both modes.",
        "use execution_mode=\"remote\" or execution_mode=\"inline\" (or a module-level constant)",
    ),
    Code(
        "UNRESOLVED_STEP_KIND",
        "warning",
        "Step kind cannot be decided",
        "The second argument of workflow.do(...) is neither a string (RPC form) nor a "
        "lambda, a function or functools.partial (inline form) that the analyzer can see.",
        "pass a string literal RPC name, a lambda or a function defined in the workflow",
    ),
    Code(
        "NON_DETERMINISTIC_CALL",
        "warning",
        "Non-deterministic call in a workflow body",
        "A workflow function is re-run on every replay: time, randomness, environment, "
        "I/O and network calls outside a step give different values on each pass.",
        "move the call into a step: await workflow.do(\"name\", lambda: ...)",
    ),
    Code(
        "SYNTAX_ERROR",
        "error",
        "File does not parse",
        "A Python file of the analysed sources does not parse; it is skipped, the others are "
        "still analysed.",
        "fix the syntax error",
    ),
    Code(
        "UNREADABLE_FILE",
        "error",
        "File cannot be read",
        "A file of the analysed sources cannot be read (permissions, broken symlink, "
        "symlink loop).",
        "fix the file's permissions or exclude it with [tool.pikku] exclude",
    ),
    Code(
        "FILE_TOO_LARGE",
        "warning",
        "File too large to analyse",
        "A file that mentions pikku is larger than the analyzer's limit (8 MiB) and is skipped.",
        "split the file or exclude it with [tool.pikku] exclude",
    ),
    Code(
        "SYMLINK_LOOP",
        "warning",
        "Directory symlink loop",
        "A symlinked directory leads back to a directory already analysed; it is skipped.",
        "exclude the symlink with [tool.pikku] exclude",
    ),
    Code(
        "NON_LITERAL_RPC_NAME",
        "warning",
        "RPC name is not a string literal",
        "@pikku_func(name=...) is not a string literal, so steps cannot be checked against it.",
        "use a string literal (or a module-level string constant)",
    ),
    Code(
        "UNRESOLVED_WORKFLOW_FUNC",
        "warning",
        "Workflow function not found",
        "func= of wire_workflow does not resolve to a function of the analysed sources, so its "
        "steps are unknown.",
        "define the workflow function in an analysed module (see [tool.pikku] src)",
    ),
    Code(
        "NESTED_STEP",
        "error",
        "Step started inside an inline step",
        "workflow.do/sleep (or another step) is reached from the body of a function passed as "
        "an inline step; at run time this raises NestedStepError (SPEC section 4).",
        "call the inner step from the workflow body, not from inside another step",
    ),
    Code(
        "UNKNOWN_EVENT",
        "error",
        "Event name is not declared",
        "workflow.wait_for_event(...) or send_event(...) names an event that no "
        "wire_event(name=...) in the analysed sources declares (SPEC section 8).",
        "declare it with wire_event(name=..., payload=...) or fix the name",
    ),
    Code(
        "NON_LITERAL_EVENT_NAME",
        "error",
        "Event name is not static",
        "wire_event(...) has no name=, an empty one, or one that is not a string known "
        "statically (a literal or built from constants): waits and sends cannot be checked "
        "against it, and the generated stubs are keyed by event name (SPEC section 8).",
        "use wire_event(name=\"order.paid\", payload=...) with a string literal or constant",
    ),
    Code(
        "DUPLICATE_EVENT_NAME",
        "error",
        "Event name declared twice",
        "Two wire_event(...) calls declare the same event name.",
        "rename one of the events",
    ),
    Code(
        "UNKNOWN_WORKFLOW",
        "error",
        "Workflow name is not wired",
        "A child step (run_child/start_child) or a client (runtime.client(...), "
        "workflow_client(runtime, ...)) names a workflow that no wire_workflow wires.",
        "wire it with wire_workflow(name=..., func=...) or fix the name",
    ),
    Code(
        "WORKFLOW_REMOVED",
        "error",
        "Workflow removed while runs may be in flight",
        "pikku-analyze --baseline: a workflow of the baseline workflow_meta.json is no longer "
        "wired; its runs in flight can neither be resumed nor replayed (SPEC section 9).",
        "keep the workflow wired until its runs have settled (pikku-runs list --workflow NAME)",
    ),
    Code(
        "WORKFLOW_INPUT_CHANGED",
        "error",
        "Workflow input type changed incompatibly",
        "pikku-analyze --baseline: the stored input of a run in flight no longer rehydrates "
        "into the workflow's input type (a required field added, removed or retyped, a scalar "
        "type changed; see docs/deploys.md).",
        "make the new field optional (NotRequired / a default), or wire a new workflow name",
    ),
    Code(
        "STEP_TARGET_CHANGED",
        "error",
        "Step key now names another RPC or kind",
        "pikku-analyze --baseline: a step key recorded by runs in flight now names another RPC "
        "(or another kind of step); replaying them raises WorkflowNonDeterminismError.",
        "give the changed step a new name, or branch on workflow.patched(\"change-id\")",
    ),
    Code(
        "STEP_OUTPUT_CHANGED",
        "error",
        "RPC output type of a step changed incompatibly",
        "pikku-analyze --baseline: the stored result of an existing RPC step no longer "
        "rehydrates into the RPC's new output type on replay.",
        "keep the output compatible (add optional fields only), or call a new RPC name",
    ),
    Code(
        "STEP_RENAMED",
        "warning",
        "Step renamed",
        "pikku-analyze --baseline: a step disappeared and a new one calls the same target at the "
        "same place; runs in flight past it will run it again under the new name.",
        "keep the old step name, or make the step idempotent",
    ),
    Code(
        "STEP_INSERTED",
        "warning",
        "Step inserted before existing steps",
        "pikku-analyze --baseline: a new step comes before steps that runs in flight may have "
        "recorded; those runs run it late (after the steps they already passed).",
        "append new steps at the end, or branch on workflow.patched(\"change-id\")",
    ),
    Code(
        "ANALYZER_ERROR",
        "error",
        "Internal analyzer error",
        "The analyzer failed on this file; please report it. The other files are analysed.",
        "report this as a bug in pikku-analyze",
    ),
)

CODES: Final[dict[str, Code]] = {c.code: c for c in _CODES}
"""Every diagnostic code, in a stable order."""

SPEC_CODES: Final = (
    "DYNAMIC_STEP_NAME",
    "DUPLICATE_STEP_NAME",
    "UNKNOWN_RPC",
    "DUPLICATE_WORKFLOW_NAME",
    "DUPLICATE_RPC_NAME",
    "MISSING_NAME",
    "MISSING_FUNC",
    "NON_LITERAL_WORKFLOW_NAME",
    "INVALID_EXECUTION_MODE",
    "UNRESOLVED_STEP_KIND",
    "NON_DETERMINISTIC_CALL",
    "SYNTAX_ERROR",
)

COMPAT_CODES: Final = (
    "WORKFLOW_REMOVED",
    "WORKFLOW_INPUT_CHANGED",
    "STEP_TARGET_CHANGED",
    "STEP_OUTPUT_CHANGED",
    "STEP_RENAMED",
    "STEP_INSERTED",
)
"""The codes of ``pikku-analyze --baseline`` (SPEC section 9), reported only with it."""
