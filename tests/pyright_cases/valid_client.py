"""Starting and reading runs through the typed client: type-checks cleanly."""

from __future__ import annotations

from decimal import Decimal
from typing import reveal_type

from pikku_gen import workflow_client

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
    return None if run.output is None else f"{run.output['user_id']} {tax}"
