"""``runtime.client("onboarding")`` and ``client.start(input)``.

``WorkflowRuntime.client`` with a literal name returns ``WorkflowClient[Input, Output]`` from the
map (``pikku-unknown-workflow`` for a name it does not know), so ``start``, ``get_run`` and
``result`` are typed by the generic class itself. ``WorkflowClient.start`` checks its input
against the client's input type under its own code (``pikku-workflow-input``): its signature
hook accepts any input and its method hook does the check with the precise message.
"""

from __future__ import annotations

from mypy.maptype import map_instance_to_supertype
from mypy.plugin import MethodContext, MethodSigContext
from mypy.subtypes import is_same_type
from mypy.types import (
    AnyType,
    FunctionLike,
    Instance,
    ProperType,
    Type,
    TypeOfAny,
    get_proper_type,
)

from pikku_typing.mypy import errorcodes, names
from pikku_typing.mypy.common import (
    PikkuContext,
    arg_expr,
    check_value,
    literal_str,
)

NAME_INDEX = 0
INPUT_INDEX = 0


def runtime_client_hook(pctx: PikkuContext, ctx: MethodContext) -> Type:
    workflow_name = literal_str(ctx, NAME_INDEX)
    if workflow_name is None:
        return ctx.default_return_type
    name_expr = arg_expr(ctx, NAME_INDEX) or ctx.context
    wmap = pctx.current_map(ctx.api, name_expr)
    if wmap is None:
        return ctx.default_return_type
    workflow = wmap.workflows.get(workflow_name)
    if workflow is None:
        message = pctx.unknown(wmap, "workflow", workflow_name)
        ctx.api.fail(message, name_expr, code=errorcodes.UNKNOWN_WORKFLOW)
        return ctx.default_return_type
    any_t = AnyType(TypeOfAny.special_form)
    input_t = pctx.resolve(workflow.input_type) or any_t
    output_t = pctx.resolve(workflow.output_type) or any_t
    return _with_client_args(ctx.default_return_type, input_t, output_t)


def _with_client_args(default: Type, input_t: Type, output_t: Type) -> Type:
    proper = get_proper_type(default)
    if isinstance(proper, Instance):
        if (
            proper.type.fullname in (names.WORKFLOW_CLIENT, names.STUB_WORKFLOW_CLIENT)
            and len(proper.args) == 2
        ):
            return proper.copy_modified(args=[input_t, output_t])
        if proper.type.fullname == names.COROUTINE and proper.args:  # an async client()
            inner = _with_client_args(proper.args[-1], input_t, output_t)
            return proper.copy_modified(args=[*proper.args[:-1], inner])
    return default


def client_input_type(receiver: ProperType) -> Type | None:
    """The ``InputT`` of a ``WorkflowClient[InputT, OutputT]`` (or subclass), unless ``Any``."""
    if not isinstance(receiver, Instance):
        return None
    base = next((i for i in receiver.type.mro if i.fullname == names.WORKFLOW_CLIENT), None)
    if base is None or len(base.defn.type_vars) != 2:
        return None
    input_t = map_instance_to_supertype(receiver, base).args[0]
    return None if isinstance(get_proper_type(input_t), AnyType) else input_t


def start_signature_hook(pctx: PikkuContext, ctx: MethodSigContext) -> FunctionLike:
    """Let any input through mypy's own check: ``start_hook`` checks it with its own code."""
    sig = ctx.default_signature
    if client_input_type(ctx.type) is None or not sig.arg_types:
        return sig
    relaxed = [AnyType(TypeOfAny.implementation_artifact), *sig.arg_types[1:]]
    return sig.copy_modified(arg_types=relaxed)


def start_hook(pctx: PikkuContext, ctx: MethodContext) -> Type:
    expected = client_input_type(ctx.type)
    input_expr = arg_expr(ctx, INPUT_INDEX)
    if expected is None or input_expr is None:
        return ctx.default_return_type
    check_value(
        ctx.api,
        input_expr,
        expected,
        subject=_subject(pctx, expected),
        code=errorcodes.WORKFLOW_INPUT,
    )
    return ctx.default_return_type


def _subject(pctx: PikkuContext, expected: Type) -> str:
    """Names the workflow when exactly one in the map has this input type."""
    loaded = pctx.store.get()
    if loaded.map is not None:
        matches = [
            w.name
            for w in loaded.map.workflows.values()
            if (t := pctx.resolve(w.input_type)) is not None and is_same_type(t, expected)
        ]
        if len(matches) == 1:
            return f"Input for workflow {matches[0]!r}"
    return "Workflow input"
