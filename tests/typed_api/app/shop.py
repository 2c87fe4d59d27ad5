"""An order waits for its payment (an event), bills through a child workflow and audits."""

from __future__ import annotations

from app.types import BillingInput, OrderInput, OrderOutput, PaymentReceived, Reservation
from pikku_typing import Workflow, pikku_func, wire_event, wire_workflow


@pikku_func(name="stock.reserve")
async def reserve(data: Reservation) -> bool:
    return data["quantity"] > 0


async def billing(workflow: Workflow, data: BillingInput) -> str:
    return await workflow.do("receipt", lambda: f"receipt-{data['order_id']}")


async def audit(workflow: Workflow, data: BillingInput) -> None:
    await workflow.do("log", lambda: print(data["order_id"]))


async def order(workflow: Workflow, data: OrderInput) -> OrderOutput:
    await workflow.do("reserve", "stock.reserve", {"sku": "A", "quantity": 1})
    paid = await workflow.wait_for_event("awaitPayment", "payment.received", timeout="3d")
    receipt = await workflow.run_child("bill", "billing", {"order_id": data["order_id"]})
    await workflow.start_child("audit", "audit", {"order_id": data["order_id"]})
    return {"order_id": data["order_id"], "paid": paid is not None, "receipt": receipt}


wire_event(name="payment.received", payload=PaymentReceived)
wire_workflow(name="order", func=order)
wire_workflow(name="billing", func=billing)
wire_workflow(name="audit", func=audit)
