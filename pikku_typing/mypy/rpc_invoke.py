"""``await rpc.invoke("users.get", data)`` (and the shared RPC-call check used by ``do``)."""

from __future__ import annotations

from mypy.plugin import MethodContext
from mypy.types import Type

from pikku_typing.mypy import errorcodes
from pikku_typing.mypy.common import (
    PikkuContext,
    arg_expr,
    check_value,
    literal_str,
    with_awaited_result,
)

RPC_NAME_INDEX = 0
DATA_INDEX = 1


def rpc_invoke_hook(pctx: PikkuContext, ctx: MethodContext) -> Type:
    return check_rpc_call(pctx, ctx, name_index=RPC_NAME_INDEX, data_index=DATA_INDEX)


def check_rpc_call(
    pctx: PikkuContext, ctx: MethodContext, *, name_index: int, data_index: int
) -> Type:
    """Check a call naming an RPC; its awaited value becomes the RPC's output type.

    A name that is not a literal, a missing map, or a type the map names but mypy cannot find
    all leave the call as the library declares it (``Any``): never a wrong verdict.
    """
    rpc_name = literal_str(ctx, name_index)
    if rpc_name is None:
        return ctx.default_return_type
    name_expr = arg_expr(ctx, name_index) or ctx.context
    wmap = pctx.current_map(ctx.api, name_expr)
    if wmap is None:
        return ctx.default_return_type
    rpc = wmap.rpcs.get(rpc_name)
    if rpc is None:
        message = pctx.unknown(wmap, "rpc", rpc_name)
        ctx.api.fail(message, name_expr, code=errorcodes.UNKNOWN_RPC)
        return ctx.default_return_type

    check_value(
        ctx.api,
        arg_expr(ctx, data_index),
        pctx.resolve(rpc.input_type),
        subject=f"Data for RPC {rpc_name!r}",
        code=errorcodes.RPC_DATA,
    )
    output = pctx.resolve(rpc.output_type)
    if output is None:
        return ctx.default_return_type
    return with_awaited_result(ctx.default_return_type, output)
