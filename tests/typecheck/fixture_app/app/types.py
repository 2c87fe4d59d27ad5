"""Data types of the fixture app."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, TypedDict


class CreateUserInput(TypedDict):
    email: str
    name: str


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str


class GetUserInput(TypedDict):
    user_id: str


class WelcomeEmail(TypedDict):
    to: str
    template: Literal["welcome", "tips", "survey"]


class EmailReceipt(TypedDict):
    message_id: str
    accepted: bool


class OnboardingInput(TypedDict):
    email: str
    name: str
    plan_price: Decimal


@dataclass(frozen=True)
class OnboardingOutput:
    user_id: str
    emails_sent: int


class Outer:
    class Inner:
        value: int
