"""``await workflow.do(step_name, "users.create", data)``: the RPC form of a step.

Checks the RPC name against the map (``pikku-unknown-rpc``) and the data against the RPC's
input type (``pikku-rpc-data``); the step's value is the RPC's output type. The inline form
(``workflow.do(step_name, fn)``) is typed by the overloads and left alone.
"""

from __future__ import annotations

from mypy.plugin import MethodContext
from mypy.types import Type

from pikku_typing.mypy.common import PikkuContext
from pikku_typing.mypy.rpc_invoke import check_rpc_call

RPC_NAME_INDEX = 1
DATA_INDEX = 2


def workflow_do_hook(pctx: PikkuContext, ctx: MethodContext) -> Type:
    return check_rpc_call(pctx, ctx, name_index=RPC_NAME_INDEX, data_index=DATA_INDEX)
