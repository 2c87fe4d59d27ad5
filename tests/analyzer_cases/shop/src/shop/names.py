"""Constants shared by the flows (no pikku import: parsed only when followed)."""

CHARGE_RPC = "payments.charge"
REFUND_STEP = "refund"
