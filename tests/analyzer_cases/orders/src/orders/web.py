from orders.types import Approval, PaymentReceived
from pikku_typing import WorkflowRuntime

runtime = WorkflowRuntime()
orders = runtime.client("order")
refunds = runtime.client("refund")  # UNKNOWN_WORKFLOW


async def payment_callback(run_id: str, amount: int) -> bool:
    return await orders.send_event(run_id, "payments.received", PaymentReceived(amount))


async def approve(run_id: str) -> bool:
    return await runtime.send_event(run_id, "order.aproved", Approval(True))  # UNKNOWN_EVENT
