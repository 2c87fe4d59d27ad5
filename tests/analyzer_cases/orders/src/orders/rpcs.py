from orders.names import PAYMENTS
from orders.types import OrderInput, Receipt
from pikku_typing import pikku_func


@pikku_func(name=f"{PAYMENTS}.charge")
async def charge(data: OrderInput) -> Receipt:
    return {"order_id": data["order_id"], "paid": True}
