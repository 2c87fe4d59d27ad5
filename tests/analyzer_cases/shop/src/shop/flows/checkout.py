import functools
import random
from datetime import datetime, timedelta

from pikku_typing import Workflow

from .. import side_effect  # noqa: F401  (never imported by the analyzer)
from ..names import CHARGE_RPC, REFUND_STEP
from ..types import Order, Receipt


def audit(order: Order) -> str:
    return order["id"]


async def notify_all(w: Workflow, people: list[str]) -> None:
    for person in people:
        await w.do(f"notify-{person}", "notify", [person], description="Tell someone")


async def checkout(workflow: Workflow, order: Order) -> Receipt:
    receipt = await workflow.do("charge", CHARGE_RPC, order, retries=2, retry_delay="5s")
    await workflow.do("audit", functools.partial(audit, order))
    if order["amount"] > 100:
        await workflow.sleep("review", timedelta(hours=1))
    else:
        await workflow.sleep("review", 30)
    stamp = datetime.now()
    await notify_all(workflow, ["ops"])

    async def maybe_refund() -> None:
        if random.random() > 0.5:  # inside a step: fine
            return None
        return None

    await workflow.do(REFUND_STEP, maybe_refund)
    await workflow.do("charge", "payments.chrage", order)  # typo and duplicate name
    await workflow.do(order["id"], lambda: stamp.isoformat())  # pikku: ignore[DYNAMIC_STEP_NAME]
    return receipt
