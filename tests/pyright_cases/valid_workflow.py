"""A workflow written against the generated package: type-checks cleanly."""

from __future__ import annotations

from decimal import Decimal
from typing import Final, reveal_type

from app.types import OnboardingInput, OnboardingOutput, User
from pikku_gen import Workflow, rpc, wire_workflow

TAX_RATE = Decimal("0.08")
GET_USER: Final = "users.get"  # a module-level constant names an RPC when it is Final


async def onboarding(workflow: Workflow, data: OnboardingInput) -> OnboardingOutput:
    user = await workflow.do(
        "createUser",
        "users.create",
        {"email": data["email"], "name": data["name"]},
        description="Create the account",
        retries=3,
        retry_delay="2s",
    )
    # expect-type pyright: User | mypy: app.types.User
    reveal_type(user)
    tax = await workflow.do("calcTax", lambda: data["plan_price"] * TAX_RATE)
    # expect-type pyright: Decimal | mypy: decimal.Decimal
    reveal_type(tax)
    receipt = await workflow.do(
        "sendWelcome", "emails.send", {"to": data["email"], "template": "welcome"}
    )
    # expect-type pyright: EmailReceipt | mypy: TypedDict(app.types.EmailReceipt, {'message_id': str, 'accepted': bool})
    reveal_type(receipt)
    accepted: bool = receipt["accepted"]
    await workflow.sleep("coolOff", "1s", description="Let the welcome email land")

    async def load_profile() -> User:
        return await rpc.invoke("users.get", {"user_id": user.id})

    profile = await workflow.do("loadProfile", load_profile)
    # expect-type pyright: User | mypy: app.types.User
    reveal_type(profile)
    # an inline step calling an RPC through the typed rpc: its result type is the RPC's output
    fresh = await workflow.do("reload", lambda: rpc.invoke("users.get", {"user_id": user.id}))
    # expect-type pyright: User | mypy: app.types.User
    reveal_type(fresh)
    again = await workflow.do("getUser", GET_USER, {"user_id": profile.id}, retries=0)
    reveal_type(again)  # expect-type pyright: User | mypy: app.types.User
    # a child run of a workflow of the map: its output type
    child = await workflow.run_child("child", "onboarding", data)
    # expect-type pyright: OnboardingOutput | mypy: TypedDict(app.types.OnboardingOutput, {'user_id': str, 'tax': decimal.Decimal, 'emails_sent': int})
    reveal_type(child)
    sent = 1 if accepted else 0
    for topic in ("tips", "survey"):
        await workflow.do(
            f"followUp-{topic}",
            "emails.send",
            {"to": again.email, "template": topic},
            description="Send a follow-up email",
        )
        sent += 1
    return {"user_id": user.id, "tax": tax, "emails_sent": sent}


wire_workflow(
    name="onboarding",
    func=onboarding,
    description="Create a user, send the welcome email and follow-ups",
    execution_mode="remote",
    tags=["users"],
    docs={"summary": "User onboarding"},
)
