"""Types of the shop app."""

from __future__ import annotations

from decimal import Decimal
from typing import TypedDict


class OrderInput(TypedDict):
    order_id: str
    amount: Decimal


class OrderOutput(TypedDict):
    order_id: str
    paid: bool
    receipt: str


class BillingInput(TypedDict):
    order_id: str


class PaymentReceived(TypedDict):
    amount: Decimal
    reference: str


class Reservation(TypedDict):
    sku: str
    quantity: int
