import time
from datetime import timedelta

from orders import audit, names
from orders.types import OrderInput, Receipt
from pikku_typing import Workflow, wire_workflow


async def order(workflow: Workflow, data: OrderInput) -> Receipt:
    paid = await workflow.wait_for_event("awaitPayment", names.PAYMENT_RECEIVED, timeout="3d")
    approval = await workflow.wait_for_event("awaitApproval", "order.approved")
    if paid is None or not approval.approved:
        await workflow.start_child("cancel", "cancellation", data)  # UNKNOWN_WORKFLOW
        return {"order_id": data["order_id"], "paid": False}
    receipt = await workflow.run_child("bill", "billing", data)
    await workflow.wait_for_event("awaitShipment", "order.shiped", timedelta(days=7))  # UNKNOWN_EVENT
    await workflow.do("stamp", time.time)  # a function of an outside module: inline
    await workflow.do("notify", lambda: audit.record(workflow, "paid"))  # NESTED_STEP
    now = await workflow.now()  # recorded once: no NON_DETERMINISTIC_CALL
    await workflow.sleep("settle", "1h", description=str(now))
    return receipt


async def billing(workflow: Workflow, data: OrderInput) -> Receipt:
    return await workflow.do("charge", names.PAYMENTS + ".charge", data)


async def billing_v2(workflow: Workflow, data: OrderInput) -> Receipt:
    return await workflow.do("charge", "payments.chrage", data)  # checked too: UNKNOWN_RPC


wire_workflow(name="order", func=order)
wire_workflow(name="billing", func=billing)
wire_workflow(name="billing", func=billing_v2)  # DUPLICATE_WORKFLOW_NAME, body still checked
