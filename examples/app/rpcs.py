"""RPC functions: the units of work that workflow steps call by name."""

from __future__ import annotations

import hashlib

from pikku_typing import pikku_func

from app.types import CreateUserInput, EmailReceipt, GetUserInput, User, WelcomeEmail

# A toy "database" so the example runs without any service.
_USERS: dict[str, User] = {}


def _user_id(email: str) -> str:
    return "u_" + hashlib.sha256(email.encode()).hexdigest()[:12]


@pikku_func(name="users.create")
async def create_user(data: CreateUserInput) -> User:
    user = User(id=_user_id(data["email"]), email=data["email"], name=data["name"])
    _USERS[user.id] = user
    return user


@pikku_func(name="users.get")
async def get_user(data: GetUserInput) -> User:
    user = _USERS.get(data["user_id"])
    if user is None:
        # Workers may run in another process: rebuild the record deterministically.
        user = User(id=data["user_id"], email="unknown@example.com", name="unknown")
    return user


@pikku_func(name="emails.send")
def send_email(data: WelcomeEmail) -> EmailReceipt:
    digest = hashlib.sha256(f"{data['to']}:{data['template']}".encode()).hexdigest()[:16]
    return {"message_id": f"msg_{digest}", "accepted": True}
