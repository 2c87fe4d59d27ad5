"""RPCs of the fixture app."""

from __future__ import annotations

from app.types import CreateUserInput, EmailReceipt, GetUserInput, Outer, User, WelcomeEmail
from pikku_typing import pikku_func


@pikku_func(name="users.create")
async def create_user(data: CreateUserInput) -> User:
    return User(id="u1", email=data["email"], name=data["name"])


@pikku_func(name="users.get")
async def get_user(data: GetUserInput) -> User:
    return User(id=data["user_id"], email="a@example.com", name="a")


@pikku_func(name="users.find")
async def find_user(data: str) -> User | None:
    return None


@pikku_func(name="users.list")
async def list_users(data: int) -> list[User]:
    return []


@pikku_func(name="emails.send")
def send_email(data: WelcomeEmail) -> EmailReceipt:
    return {"message_id": "m1", "accepted": True}


@pikku_func(name="misc.inner")
def inner(data: Outer.Inner) -> dict[str, int]:
    return {"value": data.value}


@pikku_func(name="misc.untyped")
def untyped(data):  # type: ignore[no-untyped-def]
    return data
