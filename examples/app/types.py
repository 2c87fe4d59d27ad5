"""Data types shared by the RPCs and the workflow."""

from __future__ import annotations

from decimal import Decimal
from typing import TypedDict

from pydantic import BaseModel


class CreateUserInput(TypedDict):
    email: str
    name: str


class User(BaseModel):
    id: str
    email: str
    name: str


class GetUserInput(TypedDict):
    user_id: str


class WelcomeEmail(TypedDict):
    to: str
    template: str


class EmailReceipt(TypedDict):
    message_id: str
    accepted: bool


class OnboardingInput(TypedDict):
    email: str
    name: str
    plan_price: Decimal


class OnboardingOutput(TypedDict):
    user_id: str
    tax: Decimal
    emails_sent: int
