"""The fixture app's workflows."""

from __future__ import annotations

from app.types import OnboardingInput, OnboardingOutput
from pikku_typing import Workflow, wire_workflow


async def onboarding(workflow: Workflow, data: OnboardingInput) -> OnboardingOutput:
    user = await workflow.do(
        "createUser", "users.create", {"email": data["email"], "name": data["name"]}
    )
    await workflow.do("sendWelcome", "emails.send", {"to": user.email, "template": "welcome"})
    return OnboardingOutput(user_id=user.id, emails_sent=1)


async def cleanup(workflow: Workflow, data: int) -> None:
    await workflow.sleep("wait", "1d")


wire_workflow(name="onboarding", func=onboarding)
wire_workflow(name="cleanup", func=cleanup)
