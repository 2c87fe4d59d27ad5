"""Runs for the console tests (tests/test_console.py, tests/test_console_browser.py): a
completed, a failed, a suspended and a running run, and a parent with a child, written
through the store contract as the runtime would; the failed run's input and error carry
``<script>`` (nothing from the store may be rendered unescaped)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Final

from pikku_typing.models import (
    ClaimOwner,
    ErrorInfo,
    RunStatus,
    StepKind,
    StepState,
)
from pikku_typing.runtime.lifecycle import child_run_id
from pikku_typing.state import open_store
from pikku_typing.state.base import RunChanges

XSS: Final = "<script>window.__pwned = 1</script><img src=x onerror=alert(1)>"

OK: Final = "run-ok"
FAILED: Final = "run-failed"
SLEEPING: Final = "run-sleeping"
RUNNING: Final = "run-running"
PARENT: Final = "run-parent"


def _owner(token: str) -> ClaimOwner:
    return ClaimOwner(host="test-host", pid=os.getpid(), token=token)


async def make_runs(url: str, *, extra: int = 0) -> dict[str, str]:
    """The runs of the module docstring (ids in the constants), plus ``extra`` completed runs
    of workflow ``bulk`` (for paging). Returns ``{"child": <child run id>}``."""
    async with open_store(url) as store:
        run = await store.create_run("onboarding", {"email": "a@example.com"}, run_id=OK,
                                     version="v-1234abcd")
        await store.insert_step(run.id, StepState(
            key="createUser", step_name="createUser", kind=StepKind.RPC,
            rpc_name="users.create", max_attempts=4, data={"email": "a@example.com"}))
        await store.claim_step(run.id, "createUser", owner=_owner("t1"), lease_seconds=30)
        await store.complete_step(run.id, "createUser", result={"id": "u1"}, token="t1")
        await store.insert_step(run.id, StepState(
            key="calcTax", step_name="calcTax", kind=StepKind.INLINE, max_attempts=1))
        await store.claim_step(run.id, "calcTax", owner=_owner("t2"), lease_seconds=30)
        await store.complete_step(run.id, "calcTax", result=0.8, token="t2")
        await store.update_run(run.id, RunChanges(status=RunStatus.COMPLETED,
                                                  output={"user_id": "u1"}))

        run = await store.create_run("billing", {"note": XSS, "amount": 10}, run_id=FAILED)
        await store.insert_step(run.id, StepState(
            key="chargeCard", step_name="chargeCard", kind=StepKind.RPC,
            rpc_name="payments.charge", max_attempts=2, data={"amount": 10}))
        for attempt in (1, 2):
            token = f"charge-{attempt}"
            await store.claim_step(run.id, "chargeCard", owner=_owner(token), lease_seconds=30)
            await store.fail_step_attempt(
                run.id, "chargeCard", token=token,
                error=ErrorInfo(type="CardDeclined", message=f"declined {XSS} (try {attempt})",
                                traceback=f"Traceback (most recent call last):\n  ...\n{XSS}"),
                retry_at=datetime.now(UTC) if attempt < 2 else None)
        await store.update_run(run.id, RunChanges(
            status=RunStatus.FAILED,
            error=ErrorInfo(type="CardDeclined", message=f"declined {XSS} (try 2)",
                            step="chargeCard")))

        run = await store.create_run("onboarding", {"email": "b@example.com"}, run_id=SLEEPING)
        wake = datetime.now(UTC) + timedelta(hours=1)
        await store.insert_step(run.id, StepState(key="coolOff", step_name="coolOff",
                                                  kind=StepKind.SLEEP))
        await store.schedule_step(run.id, "coolOff", at=wake)
        await store.update_run(run.id, RunChanges(status=RunStatus.SUSPENDED, wake_at=wake))
        await store.send_event(run.id, "payment.received", {"amount": 5, "note": XSS})

        run = await store.create_run("onboarding", {"email": "c@example.com"}, run_id=RUNNING)
        await store.update_run(run.id, RunChanges(owner=_owner("orch")))
        await store.insert_step(run.id, StepState(
            key="createUser", step_name="createUser", kind=StepKind.RPC,
            rpc_name="users.create", max_attempts=4))
        await store.claim_step(run.id, "createUser", owner=_owner("live"), lease_seconds=30)

        run = await store.create_run("orders", {"order": 7}, run_id=PARENT)
        child = child_run_id(PARENT, "bill")
        await store.insert_step(run.id, StepState(
            key="bill", step_name="bill", kind=StepKind.CHILD, rpc_name="billing",
            data={"run_id": child, "workflow": "billing"}))
        await store.create_run("billing", {"amount": 7}, run_id=child, parent_run_id=PARENT)
        await store.update_run(child, RunChanges(status=RunStatus.COMPLETED, output={"paid": 7}))
        await store.update_run(run.id, RunChanges(status=RunStatus.SUSPENDED))

        for i in range(extra):
            bulk = await store.create_run("bulk", {"i": i}, run_id=f"bulk-{i:05d}")
            await store.update_run(bulk.id, RunChanges(status=RunStatus.COMPLETED, output=i))
    return {"child": child}
