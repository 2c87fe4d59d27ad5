"""The onboarding workflow: RPC and inline steps, a durable sleep, a loop of steps."""

from __future__ import annotations

from decimal import Decimal

from pikku_typing import Workflow, rpc, wire_workflow

from app.types import OnboardingInput, OnboardingOutput, User

TAX_RATE = Decimal("0.08")
FOLLOW_UPS = ("tips", "survey")


async def onboarding(workflow: Workflow, data: OnboardingInput) -> OnboardingOutput:
    user = await workflow.do(
        "createUser",
        "users.create",
        {"email": data["email"], "name": data["name"]},
        description="Create the account",
        retries=3,
        retry_delay="2s",
    )
    tax = await workflow.do("calcTax", lambda: data["plan_price"] * TAX_RATE)
    await workflow.do(
        "sendWelcome", "emails.send", {"to": data["email"], "template": "welcome"}
    )
    await workflow.sleep("coolOff", "1s", description="Let the welcome email land")

    async def load_profile() -> User:
        profile: User = await rpc.invoke("users.get", {"user_id": user.id})
        return profile

    profile = await workflow.do("loadProfile", load_profile)
    sent = 1
    for topic in FOLLOW_UPS:
        await workflow.do(
            f"followUp-{topic}",
            "emails.send",
            {"to": profile.email, "template": topic},
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
    docs={"summary": "User onboarding", "owner": "growth"},
)
