"""The plain API, typed by the generated stubs: checks cleanly; each reveal_type is exact."""

from __future__ import annotations

from decimal import Decimal
from typing import reveal_type

from app.types import OrderInput, PaymentReceived

from pikku_typing import Workflow, WorkflowRuntime, rpc


async def flow(workflow: Workflow, data: OrderInput) -> None:
    reserved = await workflow.do("r", "stock.reserve", {"sku": "B", "quantity": 2})
    # expect-type pyright: bool | mypy: bool
    reveal_type(reserved)
    again = await rpc.invoke("stock.reserve", {"sku": "B", "quantity": 1})
    # expect-type pyright: bool | mypy: bool
    reveal_type(again)
    payment = await workflow.wait_for_event("pay", "payment.received")
    # expect-type pyright: PaymentReceived | mypy: TypedDict(app.types.PaymentReceived, {'amount': decimal.Decimal, 'reference': str})
    reveal_type(payment)
    maybe = await workflow.wait_for_event("pay2", "payment.received", timeout="1h")
    # expect-type pyright: PaymentReceived | None | mypy: TypedDict(app.types.PaymentReceived, {'amount': decimal.Decimal, 'reference': str}) | None
    reveal_type(maybe)
    receipt = await workflow.run_child("bill", "billing", {"order_id": data["order_id"]})
    # expect-type pyright: str | mypy: str
    reveal_type(receipt)
    child_id = await workflow.start_child("audit", "audit", {"order_id": "o-1"})
    # expect-type pyright: str | mypy: str
    reveal_type(child_id)
    tax = await workflow.do("tax", lambda: data["amount"] * Decimal("0.2"))
    # expect-type pyright: Decimal | mypy: decimal.Decimal
    reveal_type(tax)


async def drive(runtime: WorkflowRuntime) -> None:
    client = runtime.client("order")
    handle = await client.start({"order_id": "o-1", "amount": Decimal("9.50")})
    payment: PaymentReceived = {"amount": Decimal("9.50"), "reference": "r-1"}
    delivered = await client.send_event(handle.run_id, "payment.received", payment)
    # expect-type pyright: bool | mypy: bool
    reveal_type(delivered)
    sent = await runtime.send_event(handle.run_id, "payment.received", payment)
    # expect-type pyright: bool | mypy: bool
    reveal_type(sent)
    run = await client.get_run(handle.run_id)
    # expect-type pyright: OrderOutput | None | mypy: TypedDict(app.types.OrderOutput, {'order_id': str, 'paid': bool, 'receipt': str}) | None
    reveal_type(run.output)
    output = await client.result(handle.run_id, timeout=10)
    # expect-type pyright: OrderOutput | mypy: TypedDict(app.types.OrderOutput, {'order_id': str, 'paid': bool, 'receipt': str})
    reveal_type(output)
