from typing import TypedDict


class Order(TypedDict):
    id: str
    amount: int


class Receipt(TypedDict):
    order_id: str
    charged: int
