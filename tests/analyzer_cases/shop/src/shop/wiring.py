from pikku_typing import wire_workflow as ww
from shop.flows import checkout as flows

ww(
    name="checkout",
    func=flows.checkout,
    description="Charge, review and notify",
    execution_mode="inline",
    tags=["shop", "payments"],
    middleware=[flows.audit],
    docs={"owner": "payments", "sla_minutes": 5},
)
ww(name="checkout", func=flows.checkout)
ww(name="broken-mode", func=flows.checkout, execution_mode="eventually")
