"""RPC-form steps the generated stubs reject: each marked line, and no other, is an error."""

from __future__ import annotations

from app.types import OnboardingInput, OnboardingOutput
from pikku_gen import Workflow, rpc, wire_workflow


async def bad_steps(workflow: Workflow, data: OnboardingInput) -> OnboardingOutput:
    # an RPC name that no @pikku_func defines
    # expect-error pyright: "Literal['users.nope']" is not assignable to "KnownRPCName" | mypy: No overload variant of "do" of "Workflow" matches argument types "str", "str", "dict[str, str]"
    await workflow.do("a", "users.nope", {"email": "x"})
    # a typo of a real one
    # expect-error pyright: "Literal['users.creat']" is not assignable to "KnownRPCName" | mypy: No overload variant of "do" of "Workflow"
    await workflow.do("b", "users.creat", {"email": "x", "name": "y"})
    # data of the wrong type for that RPC: a value of the wrong type, a missing key, a wrong key
    # expect-error pyright: parameter "data" of type "CreateUserInput" | mypy: No overload variant of "do"
    await workflow.do("c", "users.create", {"email": 1, "name": "y"})
    # expect-error pyright: "name" is required in "CreateUserInput" | mypy: No overload variant of "do" of "Workflow"
    await workflow.do("d", "users.create", {"email": "x"})
    # expect-error pyright: "id" is an undefined item in type "GetUserInput" | mypy: No overload variant of "do" of "Workflow" matches argument types "str", "str", "dict[str, str]"
    await workflow.do("e", "users.get", {"id": "u1"})
    # expect-error pyright: "Literal['hello']" is not assignable to "WelcomeEmail" | mypy: Possible overload variants:
    await workflow.do("f", "emails.send", "hello")
    # an RPC name the checkers cannot see as a literal
    # expect-error pyright: "str" is not assignable to "KnownRPCName" | mypy: No overload variant of "do" of "Workflow" matches argument types "str", "str", "dict[str, str]"
    await workflow.do("j", data["name"], {"user_id": "u1"})
    # the step's type comes from the RPC's output
    user = await workflow.do("g", "users.create", {"email": "x", "name": "y"})
    # expect-error pyright: Cannot access attribute "nickname" for class "User" | mypy: "User" has no attribute "nickname"
    print(user.nickname)
    receipt = await workflow.do("h", "emails.send", {"to": "x", "template": "y"})
    # expect-error pyright: "str" is not assignable to "int" | mypy: Incompatible types in assignment (expression has type "str", variable has type "int")
    count: int = receipt["message_id"]
    # an inline step keeps its callable's type
    # expect-error pyright: "Decimal" is not assignable to "str" | mypy: Argument 2 to "do" of "Workflow" has incompatible type "Callable[[], Decimal]"
    tax: str = await workflow.do("i", lambda: data["plan_price"])
    # rpc.invoke is typed like the RPC form of do
    # expect-error pyright: "Literal['users.fetch']" is not assignable to "KnownRPCName" | mypy: No overload variant of "invoke" of "RPCInvoker" matches argument types "str", "dict[str, str]"
    await rpc.invoke("users.fetch", {"user_id": "u1"})
    # expect-error pyright: "user" is an undefined item in type "GetUserInput" | mypy: No overload variant of "invoke" of "RPCInvoker"
    await rpc.invoke("users.get", {"user": "u1"})
    # a child workflow that is not wired
    # expect-error pyright: "Literal['onbording']" is not assignable to "KnownWorkflowName" | mypy: No overload variant of "start_child" of "Workflow"
    await workflow.start_child("k", "onbording", data)
    # an event that no wire_event declares
    # expect-error pyright: "Literal['paid']" is not assignable to "KnownEventName" | mypy: Argument 2 to "wait_for_event" of "Workflow" has incompatible type "str"; expected "KnownEventName"
    await workflow.wait_for_event("l", "paid")
    return {"user_id": user.id, "tax": data["plan_price"], "emails_sent": count + len(tax)}


# expect-error pyright: cannot be assigned to parameter "execution_mode" of type "Literal['inline', 'remote']" | mypy: Argument "execution_mode" to "wire_workflow" has incompatible type "Literal['fast']"
wire_workflow(name="bad_steps", func=bad_steps, execution_mode="fast")
