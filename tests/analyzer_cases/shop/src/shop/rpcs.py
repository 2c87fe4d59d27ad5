import pikku_typing as pk
from shop.types import Order, Receipt


@pk.pikku_func(name="payments.charge")
async def charge(data: Order) -> Receipt:
    return {"order_id": data["id"], "charged": data["amount"]}


@pk.pikku_func
def notify(data: "list[str]") -> None:
    return None


@pk.pikku_func(name="payments.charge")  # duplicate name
def charge_again(data: Order) -> Receipt:
    return {"order_id": data["id"], "charged": 0}
