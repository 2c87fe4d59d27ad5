"""Events and child runs (SPEC 8): ``wait_for_event``, ``send_event``, ``run_child``,
``start_child``.

* ``await workflow.wait_for_event(step, "payment.received")`` is the event's payload type; with
  a ``timeout`` (not the literal ``None``) it is ``Payload | None``. An event no ``wire_event``
  declares is ``pikku-unknown-event``.
* ``await client.send_event(run_id, name, payload)`` and ``runtime.send_event(...)``: the name
  is checked (``pikku-unknown-event``) and the payload against the declared type
  (``pikku-event-payload``).
* ``await workflow.run_child(step, "billing", input)`` is the child's output type;
  ``start_child`` returns the run id (``str``). The name is checked
  (``pikku-unknown-workflow``), the input against the child's input type
  (``pikku-workflow-input``).
"""

from __future__ import annotations

from mypy.nodes import NameExpr
from mypy.plugin import MethodContext
from mypy.types import AnyType, NoneType, Type, TypeOfAny, UnionType

from pikku_typing.mypy import errorcodes
from pikku_typing.mypy.common import (
    PikkuContext,
    arg_expr,
    check_value,
    literal_str,
    with_awaited_result,
)

WAIT_NAME_INDEX = 1
WAIT_TIMEOUT_INDEX = 2
SEND_NAME_INDEX = 1
SEND_PAYLOAD_INDEX = 2
CHILD_NAME_INDEX = 1
CHILD_INPUT_INDEX = 2


def wait_for_event_hook(pctx: PikkuContext, ctx: MethodContext) -> Type:
    name = literal_str(ctx, WAIT_NAME_INDEX)
    if name is None:
        return ctx.default_return_type
    name_expr = arg_expr(ctx, WAIT_NAME_INDEX) or ctx.context
    wmap = pctx.current_map(ctx.api, name_expr)
    if wmap is None:
        return ctx.default_return_type
    event = wmap.events.get(name)
    if event is None:
        ctx.api.fail(pctx.unknown(wmap, "event", name), name_expr, code=errorcodes.UNKNOWN_EVENT)
        return ctx.default_return_type
    payload: Type = pctx.resolve(event.input_type) or AnyType(TypeOfAny.special_form)
    if _has_timeout(ctx):
        payload = UnionType.make_union([payload, NoneType()])
    return with_awaited_result(ctx.default_return_type, payload)


def _has_timeout(ctx: MethodContext) -> bool:
    timeout = arg_expr(ctx, WAIT_TIMEOUT_INDEX)
    if timeout is None:
        return False
    return not (isinstance(timeout, NameExpr) and timeout.fullname == "builtins.None")


def send_event_hook(pctx: PikkuContext, ctx: MethodContext) -> Type:
    # ``bool`` (the stubs' overloads are relaxed to ``Any`` for the plugin: see stubs.py)
    result = with_awaited_result(
        ctx.default_return_type, ctx.api.named_generic_type("builtins.bool", [])
    )
    name = literal_str(ctx, SEND_NAME_INDEX)
    if name is None:
        return result
    name_expr = arg_expr(ctx, SEND_NAME_INDEX) or ctx.context
    wmap = pctx.current_map(ctx.api, name_expr)
    if wmap is None:
        return result
    event = wmap.events.get(name)
    if event is None:
        ctx.api.fail(pctx.unknown(wmap, "event", name), name_expr, code=errorcodes.UNKNOWN_EVENT)
        return result
    check_value(
        ctx.api,
        arg_expr(ctx, SEND_PAYLOAD_INDEX),
        pctx.resolve(event.input_type),
        subject=f"Payload of event {name!r}",
        code=errorcodes.EVENT_PAYLOAD,
    )
    return result


def run_child_hook(pctx: PikkuContext, ctx: MethodContext) -> Type:
    return _child(pctx, ctx, wait=True)


def start_child_hook(pctx: PikkuContext, ctx: MethodContext) -> Type:
    return _child(pctx, ctx, wait=False)


def _child(pctx: PikkuContext, ctx: MethodContext, *, wait: bool) -> Type:
    name = literal_str(ctx, CHILD_NAME_INDEX)
    if name is None:
        return ctx.default_return_type
    name_expr = arg_expr(ctx, CHILD_NAME_INDEX) or ctx.context
    wmap = pctx.current_map(ctx.api, name_expr)
    if wmap is None:
        return ctx.default_return_type
    workflow = wmap.workflows.get(name)
    if workflow is None:
        message = pctx.unknown(wmap, "workflow", name)
        ctx.api.fail(message, name_expr, code=errorcodes.UNKNOWN_WORKFLOW)
        return ctx.default_return_type
    check_value(
        ctx.api,
        arg_expr(ctx, CHILD_INPUT_INDEX),
        pctx.resolve(workflow.input_type),
        subject=f"Input for workflow {name!r}",
        code=errorcodes.WORKFLOW_INPUT,
    )
    if not wait:  # the child's run id
        return with_awaited_result(
            ctx.default_return_type, ctx.api.named_generic_type("builtins.str", [])
        )
    output = pctx.resolve(workflow.output_type)
    if output is None:
        return ctx.default_return_type
    return with_awaited_result(ctx.default_return_type, output)
