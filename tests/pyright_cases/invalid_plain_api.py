"""The plain ``pikku_typing`` API, checked through the partial stubs: each marked line is an error."""

from __future__ import annotations

from app.types import OnboardingInput, OnboardingOutput

from pikku_typing import Workflow, WorkflowRuntime, rpc, wire_workflow


async def bad_steps(workflow: Workflow, data: OnboardingInput) -> OnboardingOutput:
    # expect-error pyright: "Literal['users.nope']" is not assignable to "KnownRPCName" | mypy: No overload variant of "do" of "Workflow" matches argument types "str", "str", "dict[str, str]" | mypy-plugin: Unknown RPC 'users.nope'
    await workflow.do("a", "users.nope", {"email": "x"})
    # expect-error pyright: "name" is required in "CreateUserInput" | mypy: No overload variant of "do" of "Workflow" | mypy-plugin: Data for RPC 'users.create' has incompatible type "dict[str, str]"; expected "CreateUserInput"
    await workflow.do("d", "users.create", {"email": "x"})
    user = await workflow.do("g", "users.create", {"email": "x", "name": "y"})
    # expect-error pyright: Cannot access attribute "nickname" for class "User" | mypy: "User" has no attribute "nickname"
    print(user.nickname)
    # expect-error pyright: "Literal['users.fetch']" is not assignable to "KnownRPCName" | mypy: No overload variant of "invoke" of "RPCInvoker" | mypy-plugin: Unknown RPC 'users.fetch'
    await rpc.invoke("users.fetch", {"user_id": "u1"})
    # expect-error pyright: "Literal['onbaording']" is not assignable to "KnownWorkflowName" | mypy: No overload variant of "run_child" of "Workflow" | mypy-plugin: Unknown workflow 'onbaording'
    await workflow.run_child("c1", "onbaording", data)
    return {"user_id": user.id, "tax": data["plan_price"], "emails_sent": 0}


wire_workflow(name="bad_steps", func=bad_steps)


async def misuse(runtime: WorkflowRuntime) -> None:
    # expect-error pyright: "Literal['onbaording']" is not assignable to "KnownWorkflowName" | mypy: No overload variant of "client" of "WorkflowRuntime" matches argument type "str" | mypy-plugin: Unknown workflow 'onbaording'
    runtime.client("onbaording")
    client = runtime.client("onboarding")
    # expect-error pyright: "plan_price" is required in "OnboardingInput" | mypy: Missing key "plan_price" for TypedDict "OnboardingInput" | mypy-plugin: Input for workflow 'onboarding' has incompatible type
    await client.start({"email": "ada@example.com", "name": "Ada"})
    run = await client.get_run("run-1")
    # expect-error pyright: Object of type "None" is not subscriptable | mypy: Value of type "OnboardingOutput | None" is not indexable
    print(run.output["user_id"])
