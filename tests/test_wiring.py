"""Registration: ``@pikku_func`` and ``wire_workflow`` accept the right shapes and name the
problem otherwise."""

from collections.abc import Iterator
from typing import Any, TypedDict

import pytest
from registry_support import isolated_registry

from pikku_typing import Workflow, WorkflowRegistrationError, pikku_func, rpc, wire_workflow
from pikku_typing.errors import RPCNotFoundError, WorkflowNotFoundError
from pikku_typing.wiring import registry


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    with isolated_registry():
        yield


class In(TypedDict):
    x: int


def test_bare_pikku_func_uses_function_name() -> None:
    @pikku_func
    async def double(data: In) -> int:
        return data["x"] * 2

    definition = registry.get_rpc("double")
    assert definition.func is double
    assert definition.is_async
    assert definition.input_type is In
    assert definition.output_type is int


def test_named_pikku_func_and_sync_function() -> None:
    @pikku_func(name="math.triple")
    def triple(data: int) -> int:
        return data * 3

    assert triple(2) == 6  # returned unchanged
    definition = registry.get_rpc("math.triple")
    assert not definition.is_async
    assert "triple" not in registry.rpcs


async def test_rpc_invoke_sync_and_async() -> None:
    @pikku_func(name="a")
    async def a(data: int) -> int:
        return data + 1

    @pikku_func(name="b")
    def b(data: int) -> int:
        return data + 2

    assert await rpc.invoke("a", 1) == 2
    assert await rpc.invoke("b", 1) == 3
    with pytest.raises(RPCNotFoundError, match=r"'nope'.*registered: a, b"):
        await rpc.invoke("nope", 1)


def test_not_registered_says_which_module_to_import() -> None:
    """Issue 11: "(registered: none)" tells which module registers them."""
    from pikku_typing.wiring import Registry

    empty = Registry()
    with pytest.raises(
        RPCNotFoundError, match=r"registered: none.*import pikku_gen\.workflow_wirings"
    ):
        empty.get_rpc("users.create")
    with pytest.raises(
        WorkflowNotFoundError, match=r"registered: none.*import pikku_gen\.workflow_wirings"
    ):
        empty.get_workflow("onboarding")


def test_duplicate_rpc_name_is_an_error() -> None:
    @pikku_func(name="dup")
    def one(data: int) -> int:
        return data

    with pytest.raises(WorkflowRegistrationError, match="'dup' is registered twice"):

        @pikku_func(name="dup")
        def two(data: int) -> int:
            return data


def test_reregistering_the_same_function_is_idempotent() -> None:
    def same(data: int) -> int:
        return data

    pikku_func(name="same")(same)
    pikku_func(name="same")(same)
    assert registry.get_rpc("same").func is same


@pytest.mark.parametrize("arity", [0, 2])
def test_rpc_with_wrong_arity(arity: int) -> None:
    funcs: dict[int, Any] = {0: lambda: None, 2: lambda a, b: None}
    with pytest.raises(WorkflowRegistrationError, match="exactly one data argument"):
        pikku_func(name="bad")(funcs[arity])


async def _flow(workflow: Workflow, data: In) -> int:
    return data["x"]


def test_wire_workflow_records_metadata_and_types() -> None:
    async def mw(call: Any, call_next: Any) -> Any:
        return await call_next()

    definition = wire_workflow(
        name="flow",
        func=_flow,
        description="d",
        execution_mode="inline",
        middleware=[mw],
        tags=["t"],
        docs={"k": "v"},
    )
    assert registry.get_workflow("flow") is definition
    assert definition.execution_mode == "inline"
    assert definition.input_type is In
    assert definition.output_type is int
    assert definition.middleware == (mw,)
    assert definition.tags == ("t",)


def test_wire_workflow_default_mode_is_remote() -> None:
    assert wire_workflow(name="flow", func=_flow).execution_mode == "remote"


def test_invalid_execution_mode() -> None:
    with pytest.raises(WorkflowRegistrationError, match="invalid execution_mode 'fast'"):
        wire_workflow(name="flow", func=_flow, execution_mode="fast")  # type: ignore[arg-type]


def test_duplicate_workflow_name() -> None:
    async def other(workflow: Workflow, data: In) -> int:
        return 0

    wire_workflow(name="flow", func=_flow)
    with pytest.raises(WorkflowRegistrationError, match="'flow' is registered twice"):
        wire_workflow(name="flow", func=other)


def test_workflow_func_must_be_async_with_two_params() -> None:
    def sync(workflow: Workflow, data: In) -> int:
        return 0

    async def one(workflow: Workflow) -> int:
        return 0

    with pytest.raises(WorkflowRegistrationError, match="'async def'"):
        wire_workflow(name="a", func=sync)  # type: ignore[arg-type]
    with pytest.raises(WorkflowRegistrationError, match="exactly two arguments"):
        wire_workflow(name="b", func=one)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", None, 3])
def test_workflow_name_must_be_a_string(name: Any) -> None:
    with pytest.raises(WorkflowRegistrationError, match="name must be a non-empty string"):
        wire_workflow(name=name, func=_flow)


def test_unknown_workflow_lookup() -> None:
    with pytest.raises(WorkflowNotFoundError, match="'ghost'"):
        registry.get_workflow("ghost")


def test_non_callable_middleware() -> None:
    with pytest.raises(WorkflowRegistrationError, match="not callable"):
        wire_workflow(name="flow", func=_flow, middleware=[42])  # type: ignore[list-item]
