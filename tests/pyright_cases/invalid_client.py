"""Client calls the generated stubs reject: each marked line, and no other, is an error."""

from __future__ import annotations

from decimal import Decimal

from pikku_gen import RPCS, RPCName, workflow_client

from pikku_typing import WorkflowRuntime


async def misuse(runtime: WorkflowRuntime) -> None:
    # expect-error pyright: "Literal['onbaording']" is not assignable to "KnownWorkflowName" | mypy: No overload variant of "workflow_client" matches argument types "WorkflowRuntime", "str"
    workflow_client(runtime, "onbaording")
    client = workflow_client(runtime, "onboarding")
    # expect-error pyright: "plan_price" is required in "OnboardingInput" | mypy: Missing key "plan_price" for TypedDict "OnboardingInput"
    await client.start({"email": "ada@example.com", "name": "Ada"})
    # expect-error pyright: "Literal['10']" is not assignable to "Decimal" | mypy: Incompatible types (expression has type "str", TypedDict item "plan_price" has type "Decimal")
    await client.start({"email": "a", "name": "A", "plan_price": "10"})
    # expect-error pyright: "Literal['ada@example.com']" is not assignable to "OnboardingInput" | mypy: Argument 1 to "start" of "WorkflowClient" has incompatible type "str"; expected "OnboardingInput"
    await client.start("ada@example.com")
    run = await client.get_run("run-1")
    # expect-error pyright: Object of type "None" is not subscriptable | mypy: Value of type "OnboardingOutput | None" is not indexable
    print(run.output["user_id"])
    output = await client.result("run-1")
    # expect-error pyright: "total" is not a defined key in "OnboardingOutput" | mypy: TypedDict "OnboardingOutput" has no key "total"
    print(output["total"])
    # expect-error pyright: "int" is not assignable to "str" | mypy: expression has type "int", variable has type "str"
    emails: str = output["emails_sent"]
    # expect-error pyright: "users.nope" is not a defined key in "RPCMap" | mypy: TypedDict "RPCMap" has no key "users.nope"
    print(RPCS["users.nope"])
    # expect-error pyright: Type "Literal['users.nope']" is not assignable to declared type "RPCName" | mypy: Incompatible types in assignment (expression has type "Literal['users.nope']", variable has type "Literal['emails.send', 'users.create', 'users.get']")
    name: RPCName = "users.nope"
    print(emails, Decimal(1), name)
