from typing import Final

PAYMENTS: Final = "payments"
PAYMENT_RECEIVED: Final = PAYMENTS + ".received"
