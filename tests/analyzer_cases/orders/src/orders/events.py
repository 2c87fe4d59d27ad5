from orders.names import PAYMENT_RECEIVED
from orders.types import Approval, PaymentReceived
from pikku_typing import wire_event

wire_event(name=PAYMENT_RECEIVED, payload=PaymentReceived)
wire_event(name="order.approved", payload=Approval)
wire_event(name="order" ".approved", payload=Approval)  # DUPLICATE_EVENT_NAME
