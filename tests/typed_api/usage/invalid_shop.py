"""The plain API misused: each marked line, and no other, is an error in every checker."""

from __future__ import annotations

from decimal import Decimal

from app.types import OrderInput

from pikku_typing import Workflow, WorkflowRuntime, rpc


async def steps(workflow: Workflow, data: OrderInput) -> None:
    # expect-error pyright: "Literal['stock.reserv']" is not assignable to "KnownRPCName" | mypy: No overload variant of "do" of "Workflow" | mypy-plugin: Unknown RPC 'stock.reserv'; did you mean 'stock.reserve'?
    await workflow.do("a", "stock.reserv", {"sku": "A", "quantity": 1})
    # expect-error pyright: "quantity" is required in "Reservation" | mypy: No overload variant of "do" of "Workflow" | mypy-plugin: Data for RPC 'stock.reserve' has incompatible type "dict[str, str]"; expected "Reservation"
    await workflow.do("b", "stock.reserve", {"sku": "A"})
    # expect-error pyright: "Literal['1']" is not assignable to "int" | mypy: No overload variant of "do" of "Workflow" | mypy-plugin: Data for RPC 'stock.reserve' has incompatible type
    await workflow.do("c", "stock.reserve", {"sku": "A", "quantity": "1"})
    ok = await workflow.do("d", "stock.reserve", {"sku": "A", "quantity": 1})
    # expect-error pyright: "bool" is not assignable to "str" | mypy: Incompatible types in assignment (expression has type "bool", variable has type "str") | mypy-plugin: Incompatible types in assignment (expression has type "bool", variable has type "str")
    text: str = ok
    # expect-error pyright: "Literal['stock.nope']" is not assignable to "KnownRPCName" | mypy: No overload variant of "invoke" of "RPCInvoker" | mypy-plugin: Unknown RPC 'stock.nope'
    await rpc.invoke("stock.nope", {"sku": "A", "quantity": 1})
    # expect-error pyright: "Literal['payment.recieved']" is not assignable to "KnownEventName" | mypy: No overload variant of "wait_for_event" of "Workflow" | mypy-plugin: Unknown event 'payment.recieved'; did you mean 'payment.received'?
    await workflow.wait_for_event("e", "payment.recieved")
    paid = await workflow.wait_for_event("f", "payment.received", timeout="1d")
    # expect-error pyright: Object of type "None" is not subscriptable | mypy: Value of type "PaymentReceived | None" is not indexable | mypy-plugin: Value of type "PaymentReceived | None" is not indexable
    print(paid["amount"])
    # expect-error pyright: "Literal['biling']" is not assignable to "KnownWorkflowName" | mypy: No overload variant of "run_child" of "Workflow" | mypy-plugin: Unknown workflow 'biling'; did you mean 'billing'?
    await workflow.run_child("g", "biling", {"order_id": "o"})
    # expect-error pyright: "order" is an undefined item in type "BillingInput" | mypy: No overload variant of "run_child" of "Workflow" | mypy-plugin: Input for workflow 'billing' has incompatible type "dict[str, str]"; expected "BillingInput"
    await workflow.run_child("h", "billing", {"order": "o"})
    # expect-error pyright: "order_id" is required in "BillingInput" | mypy: No overload variant of "start_child" of "Workflow" | mypy-plugin: Input for workflow 'audit' has incompatible type
    await workflow.start_child("i", "audit", {})
    receipt = await workflow.run_child("j", "billing", {"order_id": data["order_id"]})
    # expect-error pyright: "str" is not assignable to "int" | mypy: Incompatible types in assignment (expression has type "str", variable has type "int") | mypy-plugin: Incompatible types in assignment
    number: int = receipt
    print(text, number)


async def clients(runtime: WorkflowRuntime) -> None:
    # expect-error pyright: "Literal['ordr']" is not assignable to "KnownWorkflowName" | mypy: No overload variant of "client" of "WorkflowRuntime" | mypy-plugin: Unknown workflow 'ordr'; did you mean 'order'?
    runtime.client("ordr")
    client = runtime.client("order")
    # expect-error pyright: "amount" is required in "OrderInput" | mypy: Missing key "amount" for TypedDict "OrderInput" | mypy-plugin: Input for workflow 'order' has incompatible type "dict[str, str]"; expected "OrderInput"
    await client.start({"order_id": "o-1"})
    # expect-error pyright: "Literal['9.50']" is not assignable to "Decimal" | mypy: TypedDict item "amount" has type "Decimal" | mypy-plugin: Input for workflow 'order' has incompatible type
    await client.start({"order_id": "o-1", "amount": "9.50"})
    # expect-error pyright: "Literal['payment.sent']" is not assignable to "KnownEventName" | mypy: No overload variant of "send_event" of "WorkflowClient" | mypy-plugin: Unknown event 'payment.sent'; did you mean 'payment.received'?
    await client.send_event("run-1", "payment.sent", {"amount": Decimal(1), "reference": "r"})
    # expect-error pyright: "reference" is required in "PaymentReceived" | mypy: No overload variant of "send_event" of "WorkflowClient" | mypy-plugin: Payload of event 'payment.received' has incompatible type "dict[str, Decimal]"; expected "PaymentReceived"
    await client.send_event("run-1", "payment.received", {"amount": Decimal(1)})
    # expect-error pyright: "Literal['1']" is not assignable to "Decimal" | mypy: No overload variant of "send_event" of "WorkflowRuntime" | mypy-plugin: Payload of event 'payment.received' has incompatible type
    await runtime.send_event("run-1", "payment.received", {"amount": "1", "reference": "r"})
    # expect-error pyright: "Literal['nope']" is not assignable to "KnownEventName" | mypy: No overload variant of "send_event" of "WorkflowRuntime" | mypy-plugin: Unknown event 'nope' (no wire_event declares this name in the generated map
    await runtime.send_event("run-1", "nope", {})
    output = await client.result("run-1")
    # expect-error pyright: "total" is not a defined key in "OrderOutput" | mypy: TypedDict "OrderOutput" has no key "total" | mypy-plugin: TypedDict "OrderOutput" has no key "total"
    print(output["total"])
