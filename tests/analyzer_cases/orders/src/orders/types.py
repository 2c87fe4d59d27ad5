from dataclasses import dataclass
from typing import TypedDict


class OrderInput(TypedDict):
    order_id: str
    amount: int


class Receipt(TypedDict):
    order_id: str
    paid: bool


@dataclass
class PaymentReceived:
    amount: int


@dataclass
class Approval:
    approved: bool
