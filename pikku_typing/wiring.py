"""Runtime registration: ``@pikku_func`` and ``wire_workflow``, and the registry they fill."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, get_type_hints, overload

from pikku_typing.errors import (
    EventNotFoundError,
    RPCNotFoundError,
    WorkflowNotFoundError,
    WorkflowRegistrationError,
)
from pikku_typing.meta import ExecutionMode

F = TypeVar("F", bound=Callable[..., Any])

EXECUTION_MODES: Final = ("inline", "remote")

StepMiddleware = Callable[["StepCall", Callable[[], Awaitable[Any]]], Awaitable[Any]]
"""``async def mw(call: StepCall, call_next) -> Any``: wraps each step execution."""


@dataclass(frozen=True)
class StepCall:
    """What a step middleware sees about the step it wraps."""

    workflow: str
    run_id: str
    step_key: str
    step_name: str
    kind: str
    rpc_name: str | None
    attempt: int


@dataclass(frozen=True)
class RPCDefinition:
    name: str
    func: Callable[[Any], Any]
    is_async: bool
    input_type: Any = None
    """The annotation of the data parameter (``None`` when absent)."""
    output_type: Any = None
    """The return annotation (``None`` when absent)."""


@dataclass(frozen=True)
class WorkflowDefinition:
    name: str
    func: Callable[[Any, Any], Awaitable[Any]]
    description: str | None = None
    execution_mode: ExecutionMode = "remote"
    middleware: tuple[StepMiddleware, ...] = ()
    tags: tuple[str, ...] = ()
    docs: Mapping[str, Any] | None = None
    input_type: Any = None
    output_type: Any = None


@dataclass(frozen=True)
class EventDefinition:
    """An event declared with ``wire_event``: its name and the type of its payload."""

    name: str
    payload_type: Any = None
    """The declared payload type (``None``: an untyped JSON payload)."""


@dataclass
class Registry:
    """Workflows, RPCs and events registered in this process."""

    workflows: dict[str, WorkflowDefinition] = field(default_factory=dict)
    rpcs: dict[str, RPCDefinition] = field(default_factory=dict)
    events: dict[str, EventDefinition] = field(default_factory=dict)

    def get_workflow(self, name: str) -> WorkflowDefinition:
        try:
            return self.workflows[name]
        except KeyError:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise WorkflowNotFoundError(
                f"no workflow named {name!r} is registered (registered: {known}); "
                "import the module that calls wire_workflow, or all of them at once with the "
                "generated package's workflow_wirings (`import pikku_gen.workflow_wirings`)"
            ) from None

    def get_rpc(self, name: str) -> RPCDefinition:
        try:
            return self.rpcs[name]
        except KeyError:
            known = ", ".join(sorted(self.rpcs)) or "none"
            raise RPCNotFoundError(
                f"no RPC named {name!r} is registered (registered: {known}); import the module "
                "that defines it with @pikku_func, or all of them at once with the generated "
                "package's workflow_wirings (`import pikku_gen.workflow_wirings`)"
            ) from None

    def get_event(self, name: str) -> EventDefinition:
        try:
            return self.events[name]
        except KeyError:
            known = ", ".join(sorted(self.events)) or "none"
            raise EventNotFoundError(
                f"no event named {name!r} is declared (declared: {known}); declare it with "
                "wire_event(name=..., payload=...) in a module this process imports"
            ) from None

    def clear(self) -> None:
        self.workflows.clear()
        self.rpcs.clear()
        self.events.clear()


registry: Final = Registry()

_workflow_versions: dict[str, str] = {}


def set_workflow_versions(versions: Mapping[str, str]) -> None:
    """Record the structural hash of each workflow (SPEC section 9): the generated
    ``workflow_wirings`` module calls it with the hashes of ``workflow_meta.json``; a run
    records its workflow's hash when it starts (``WorkflowRun.version``)."""
    _workflow_versions.update(versions)


def workflow_version(name: str) -> str | None:
    """The structural hash of workflow ``name`` (``None``: not known, the generated package
    was not imported)."""
    return _workflow_versions.get(name)
"""The process-wide registry filled by ``wire_workflow`` and ``@pikku_func``."""


def _identity(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}"


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return get_type_hints(func)
    except Exception:  # unresolved forward references: keep the raw annotations
        return dict(getattr(func, "__annotations__", {}))


def _positional_params(func: Callable[..., Any]) -> list[inspect.Parameter]:
    sig = inspect.signature(func)
    return [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]


def _register_rpc(func: F, name: str | None) -> F:
    if not callable(func):
        raise WorkflowRegistrationError(f"@pikku_func needs a function, got {func!r}")
    rpc_name = name if name is not None else getattr(func, "__name__", None)
    if not isinstance(rpc_name, str) or not rpc_name:
        raise WorkflowRegistrationError(f"@pikku_func: invalid RPC name {rpc_name!r}")
    params = _positional_params(func)
    if len(params) != 1:
        raise WorkflowRegistrationError(
            f"@pikku_func {rpc_name!r}: an RPC function takes exactly one data argument, "
            f"{_identity(func)} takes {len(params)} required positional arguments"
        )
    existing = registry.rpcs.get(rpc_name)
    if existing is not None and _identity(existing.func) != _identity(func):
        raise WorkflowRegistrationError(
            f"@pikku_func: RPC name {rpc_name!r} is registered twice "
            f"({_identity(existing.func)} and {_identity(func)})"
        )
    hints = _hints(func)
    registry.rpcs[rpc_name] = RPCDefinition(
        name=rpc_name,
        func=func,
        is_async=inspect.iscoroutinefunction(func),
        input_type=hints.get(params[0].name),
        output_type=hints.get("return"),
    )
    return func


@overload
def pikku_func(func: F, /) -> F: ...
@overload
def pikku_func(*, name: str | None = None) -> Callable[[F], F]: ...
def pikku_func(func: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
    """Register an RPC function (one data argument, sync or async).

    ``@pikku_func`` uses the function's name; ``@pikku_func(name="users.create")`` sets it.
    The function is returned unchanged.
    """
    if func is not None:
        return _register_rpc(func, name)

    def decorator(f: F) -> F:
        return _register_rpc(f, name)

    return decorator


def wire_workflow(
    *,
    name: str,
    func: Callable[[Any, Any], Awaitable[Any]],
    description: str | None = None,
    execution_mode: ExecutionMode = "remote",
    middleware: Sequence[StepMiddleware] | None = None,
    tags: Sequence[str] | None = None,
    docs: Mapping[str, Any] | None = None,
) -> WorkflowDefinition:
    """Register ``func`` (``async def f(workflow: Workflow, data: In) -> Out``) as workflow ``name``."""
    if not isinstance(name, str) or not name:
        raise WorkflowRegistrationError(f"wire_workflow: name must be a non-empty string, got {name!r}")
    if execution_mode not in EXECUTION_MODES:
        raise WorkflowRegistrationError(
            f"wire_workflow {name!r}: invalid execution_mode {execution_mode!r} "
            "(expected 'inline' or 'remote')"
        )
    if not callable(func) or not inspect.iscoroutinefunction(func):
        raise WorkflowRegistrationError(
            f"wire_workflow {name!r}: func must be an 'async def' function taking "
            f"(workflow, data), got {func!r}"
        )
    params = _positional_params(func)
    if len(params) != 2:
        raise WorkflowRegistrationError(
            f"wire_workflow {name!r}: func {_identity(func)} must take exactly two arguments "
            f"(workflow, data), it takes {len(params)}"
        )
    if isinstance(tags, str):
        raise WorkflowRegistrationError(f"wire_workflow {name!r}: tags must be a list of strings")
    for mw in middleware or ():
        if not callable(mw):
            raise WorkflowRegistrationError(
                f"wire_workflow {name!r}: middleware {mw!r} is not callable"
            )
    existing = registry.workflows.get(name)
    if existing is not None and _identity(existing.func) != _identity(func):
        raise WorkflowRegistrationError(
            f"wire_workflow: workflow name {name!r} is registered twice "
            f"({_identity(existing.func)} and {_identity(func)})"
        )
    hints = _hints(func)
    output = hints.get("return")
    definition = WorkflowDefinition(
        name=name,
        func=func,
        description=description,
        execution_mode=execution_mode,
        middleware=tuple(middleware or ()),
        tags=tuple(tags or ()),
        docs=docs,
        input_type=hints.get(params[1].name),
        output_type=output,
    )
    registry.workflows[name] = definition
    return definition


def _type_identity(tp: Any) -> str:
    if isinstance(tp, type):
        return f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp)


def wire_event(*, name: str, payload: Any = None) -> EventDefinition:
    """Declare event ``name`` whose payload has type ``payload`` (module level, like
    ``wire_workflow``). ``workflow.wait_for_event(step, name)`` returns the payload rebuilt
    with that type; ``send_event(run_id, name, payload)`` validates it against that type.
    Declaring one name twice with another payload type is a :class:`WorkflowRegistrationError`
    (the same declaration again, e.g. on a module reload, is allowed)."""
    if not isinstance(name, str) or not name:
        raise WorkflowRegistrationError(f"wire_event: name must be a non-empty string, got {name!r}")
    existing = registry.events.get(name)
    if existing is not None and _type_identity(existing.payload_type) != _type_identity(payload):
        raise WorkflowRegistrationError(
            f"wire_event: event name {name!r} is declared twice with different payload types "
            f"({_type_identity(existing.payload_type)} and {_type_identity(payload)})"
        )
    definition = EventDefinition(name=name, payload_type=payload)
    registry.events[name] = definition
    return definition


__all__ = [
    "EventDefinition",
    "RPCDefinition",
    "Registry",
    "StepCall",
    "StepMiddleware",
    "WorkflowDefinition",
    "pikku_func",
    "registry",
    "set_workflow_versions",
    "wire_event",
    "wire_workflow",
    "workflow_version",
]
