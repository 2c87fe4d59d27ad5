"""Pydantic models of the static metadata: the ONE schema that the analyzer, its reports,
the code generator, the mypy plugin and the runtime all read.

The JSON report of ``pikku-analyze --format json`` is ``AnalysisReport.model_dump(mode="json")``
(SPEC section 4); ``workflow_meta.json`` of the generated package holds the same models.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

DYNAMIC: Final = "<dynamic>"
"""Marker for a value the analyzer cannot know statically."""

REPORT_VERSION: Final = 1
"""``version`` of the JSON report (SPEC section 4)."""

META_VERSION: Final = 2
"""``version`` of the generated ``workflow_meta.json``: the report's layout plus the ``types``
table of field-level type shapes (version 1 had no ``types``; both are read)."""

ExecutionMode: TypeAlias = Literal["inline", "remote"]
Severity: TypeAlias = Literal["error", "warning"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RpcStepMeta(_Frozen):
    """``await workflow.do("createUser", "users.create", data, ...)``."""

    type: Literal["rpc"] = "rpc"
    step_name: str
    rpc_name: str
    description: str | None = None
    line: int
    column: int = 0
    retries: int | str | None = None
    retry_delay: str | float | None = None
    in_loop: bool = False


class InlineStepMeta(_Frozen):
    """``await workflow.do("calcTax", lambda: ...)``."""

    type: Literal["inline"] = "inline"
    step_name: str
    description: str | None = None
    line: int
    column: int = 0
    retries: int | str | None = None
    retry_delay: str | float | None = None
    in_loop: bool = False


class SleepStepMeta(_Frozen):
    """``await workflow.sleep("coolOff", "1d")``."""

    type: Literal["sleep"] = "sleep"
    step_name: str
    duration: str | float | None
    description: str | None = None
    line: int
    column: int = 0
    in_loop: bool = False


class EventStepMeta(_Frozen):
    """``await workflow.wait_for_event("awaitPayment", "payment.received", timeout="3d")``
    (SPEC section 8)."""

    type: Literal["event"] = "event"
    step_name: str
    event_name: str
    """The event's name (``<dynamic>`` when not known statically)."""
    timeout: str | float | None = None
    """The timeout as written (``"3d"``, seconds), ``None`` without one, ``<dynamic>``."""
    description: str | None = None
    line: int
    column: int = 0
    in_loop: bool = False


class ChildStepMeta(_Frozen):
    """``await workflow.run_child("bill", "billing", data)`` (``wait`` true) or
    ``await workflow.start_child("audit", "audit", data)`` (``wait`` false) (SPEC section 8)."""

    type: Literal["child"] = "child"
    step_name: str
    workflow_name: str
    """The child workflow's name (``<dynamic>`` when not known statically)."""
    wait: bool = True
    """True for ``run_child`` (suspends until the child settles), false for ``start_child``."""
    description: str | None = None
    line: int
    column: int = 0
    in_loop: bool = False


StepMeta: TypeAlias = Annotated[
    RpcStepMeta | InlineStepMeta | SleepStepMeta | EventStepMeta | ChildStepMeta,
    Field(discriminator="type"),
]


class WorkflowMeta(_Frozen):
    name: str
    description: str | None = None
    execution_mode: ExecutionMode | str = "remote"
    tags: list[str] = Field(default_factory=list)
    middleware: list[str] = Field(default_factory=list)
    docs: dict[str, object] | None = None
    func: str
    """``module.path:function`` of the workflow function."""
    file: str
    """Path relative to the analysed root, with forward slashes."""
    line: int
    input_type: str | None = None
    """Dotted, importable name of the input annotation (``app.types.OnboardingInput``)."""
    output_type: str | None = None
    steps: list[StepMeta] = Field(default_factory=list)


class RpcMeta(_Frozen):
    name: str
    func: str
    """``module.path:function``."""
    input_type: str | None = None
    output_type: str | None = None
    is_async: bool = True
    file: str | None = None
    line: int | None = None


class EventMeta(_Frozen):
    """``wire_event(name="payment.received", payload=PaymentReceived)`` (SPEC section 8)."""

    name: str
    payload_type: str | None = None
    """Dotted, importable name of the payload type (``app.types.PaymentReceived``), like
    ``RpcMeta.input_type``; ``None`` when the analyzer cannot name it."""
    file: str
    """Path relative to the analysed root, with forward slashes."""
    line: int
    module: str | None = None
    """Dotted module that calls ``wire_event`` (the generated wirings import it)."""


class Diagnostic(_Frozen):
    code: str
    severity: Severity
    file: str
    line: int
    column: int
    message: str
    hint: str | None = None


class AnalysisReport(_Frozen):
    """The JSON report (SPEC section 4) and the content of ``workflow_meta.json``."""

    version: int = REPORT_VERSION
    workflows: list[WorkflowMeta] = Field(default_factory=list)
    rpcs: list[RpcMeta] = Field(default_factory=list)
    events: list[EventMeta] = Field(default_factory=list)
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    types: dict[str, dict[str, object]] = Field(default_factory=dict, exclude=True)
    """Field-level shapes of the named types (``workflow_meta.json`` version 2 only, never in
    the JSON report; see ``pikku_analyzer.shapes``): what ``pikku-analyze --baseline``
    compares."""

    def workflow(self, name: str) -> WorkflowMeta | None:
        return next((w for w in self.workflows if w.name == name), None)

    def rpc(self, name: str) -> RpcMeta | None:
        return next((r for r in self.rpcs if r.name == name), None)

    def event(self, name: str) -> EventMeta | None:
        return next((e for e in self.events if e.name == name), None)


def structural_hash(workflow: WorkflowMeta) -> str:
    """The hash of a workflow's structure (``WorkflowRun.version``, SPEC section 9): its name,
    input and output type expressions, and per step (in source order) the kind, the step name,
    what it calls (RPC, event, child workflow) and whether it is in a loop. Lines, columns,
    descriptions, retries and durations are left out: moving code or editing a description
    keeps the version."""
    steps: list[dict[str, object]] = []
    for step in workflow.steps:
        target = getattr(step, "rpc_name", None) or getattr(step, "event_name", None) or getattr(
            step, "workflow_name", None
        )
        steps.append({"type": step.type, "name": step.step_name, "target": target, "loop": step.in_loop})
    document = {
        "name": workflow.name,
        "input": workflow.input_type,
        "output": workflow.output_type,
        "steps": steps,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
