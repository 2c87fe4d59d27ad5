"""Starting and reading runs through the typed client: type-checks cleanly."""

from __future__ import annotations

from decimal import Decimal
from typing import reveal_type

from pikku_gen import RPCS, WORKFLOWS, RPCName, WorkflowName, workflow_client

from pikku_typing import WorkflowRuntime


async def start_and_read(runtime: WorkflowRuntime) -> str | None:
    client = workflow_client(runtime, "onboarding")
    handle = await client.start(
        {"email": "ada@example.com", "name": "Ada", "plan_price": Decimal("10")}
    )
    run = await client.get_run(handle.run_id)
    # expect-type pyright: OnboardingOutput | None | mypy: TypedDict(app.types.OnboardingOutput, {'user_id': str, 'tax': decimal.Decimal, 'emails_sent': int}) | None
    reveal_type(run.output)
    output = await client.result(handle.run_id, timeout=10)
    # expect-type pyright: OnboardingOutput | mypy: TypedDict(app.types.OnboardingOutput, {'user_id': str, 'tax': decimal.Decimal, 'emails_sent': int})
    reveal_type(output)
    tax: Decimal = output["tax"]
    cancelled: bool = await client.cancel_run(handle.run_id)
    # the maps: one typed entry per workflow and RPC
    # expect-type pyright: WorkflowSpec[OnboardingInput, OnboardingOutput] | mypy: pikku_gen.workflow_map.WorkflowSpec[TypedDict(app.types.OnboardingInput, {'email': str, 'name': str, 'plan_price': decimal.Decimal}), TypedDict(app.types.OnboardingOutput, {'user_id': str, 'tax': decimal.Decimal, 'emails_sent': int})]
    reveal_type(WORKFLOWS["onboarding"])
    names: list[WorkflowName] = ["onboarding"]
    rpc_names: list[RPCName] = ["users.create", "users.get", "emails.send"]
    described = [WORKFLOWS[n].description for n in names if not cancelled]
    print(described, [RPCS["users.get"].input_type], rpc_names)
    return None if run.output is None else f"{run.output['user_id']} {tax}"
