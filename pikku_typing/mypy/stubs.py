"""The plugin and the generated partial stubs of ``pikku_typing`` together.

With ``mypy_path = "typings"`` and the plugin, ``from pikku_typing import Workflow`` is the
stubs' ``Workflow``, whose ``do`` has one overload per RPC. Left alone, mypy would answer with
the overloads' generic "No overload variant" before the plugin could give its precise message.
So the signature hook below gives every overload that names an RPC, workflow or event the
library's loose signature back (the name is a ``str``, the data ``Any``, the result ``Any``);
the method hooks then check the call and type its result, exactly as on the library's API.
The inline overloads of ``do`` (a callable) are left as they are.
"""

from __future__ import annotations

from mypy.plugin import MethodSigContext
from mypy.types import (
    AnyType,
    FunctionLike,
    Instance,
    LiteralType,
    Type,
    TypeOfAny,
    UninhabitedType,
    get_proper_type,
)

from pikku_typing.mypy import names

_AWAITABLES = frozenset({"typing.Coroutine", "typing.Awaitable", "collections.abc.Coroutine"})


def _is_name_type(t: Type) -> bool:
    proper = get_proper_type(t)
    if isinstance(proper, LiteralType):
        return isinstance(proper.value, str)
    return isinstance(proper, Instance) and proper.type.fullname in names.STUB_NAME_TYPES


def relax_signature_hook(ctx: MethodSigContext) -> FunctionLike:
    sig = ctx.default_signature
    index = next((i for i, t in enumerate(sig.arg_types) if _is_name_type(t)), None)
    if index is None:
        return sig
    any_t = AnyType(TypeOfAny.special_form)
    arg_types = list(sig.arg_types)
    arg_types[index] = ctx.api.named_generic_type("builtins.str", [])
    for i in range(index + 1, len(arg_types)):
        if sig.arg_kinds[i].is_positional():
            arg_types[i] = any_t  # the data, input, payload (or a timeout: checked by the hook)
    return sig.copy_modified(arg_types=arg_types, ret_type=_loose_result(ctx, sig.ret_type))


def _loose_result(ctx: MethodSigContext, ret: Type) -> Type:
    any_t = AnyType(TypeOfAny.special_form)
    proper = get_proper_type(ret)
    if isinstance(proper, Instance) and proper.type.fullname in _AWAITABLES and proper.args:
        return proper.copy_modified(args=[*proper.args[:-1], any_t])
    if isinstance(proper, Instance) and proper.type.fullname == names.STUB_WORKFLOW_CLIENT:
        return proper.copy_modified(args=[any_t, any_t])
    if isinstance(proper, UninhabitedType):  # the fallback of ``client``: NoReturn
        return ctx.api.named_generic_type(names.STUB_WORKFLOW_CLIENT, [any_t, any_t])
    return any_t
