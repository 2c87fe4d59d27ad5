"""The store contract: every ``WorkflowStateService`` passes the same tests.

Stores come from ``tests/stores.py`` (add a factory there to run a new store through all
of this). Multi-process tests use ``spawn``-ed OS processes and skip stores that live in one
process (memory).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from stores import (
    STORE_FACTORIES,
    StoreFactory,
    StoreSpec,
    claim_race_worker,
    consume_events_worker,
    create_same_run_worker,
    fresh_store_worker,
    lock_holder_worker,
    make_owner,
    read_run_worker,
    rewrite_loop_worker,
    send_events_worker,
)

from pikku_typing.errors import (
    InvalidRunIdError,
    RunAlreadyExistsError,
    RunNotFoundError,
    StepNotFoundError,
)
from pikku_typing.models import (
    ErrorInfo,
    RunStatus,
    StepAttempt,
    StepKind,
    StepState,
    StepStatus,
    WorkflowRun,
)
from pikku_typing.state import RunChanges, WorkflowStateService

# ------------------------------------------------------------------- fixtures


@pytest.fixture(params=[pytest.param(f, marks=f.marks, id=f.name) for f in STORE_FACTORIES])
def factory(request: pytest.FixtureRequest) -> StoreFactory:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def spec(factory: StoreFactory, tmp_path: Path) -> Iterator[StoreSpec]:
    spec = factory.make_spec(tmp_path)
    yield spec
    if factory.cleanup is not None:
        factory.cleanup(spec)


@pytest.fixture
async def store(spec: StoreSpec) -> AsyncIterator[WorkflowStateService]:
    store = spec.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def cross_process(factory: StoreFactory) -> None:
    if not factory.cross_process:
        pytest.skip(f"the {factory.name} store lives in one process")


def step(key: str, **fields: Any) -> StepState:
    name = key.split("#", 1)[0]
    fields.setdefault("kind", StepKind.RPC)
    fields.setdefault("rpc_name", "users.create" if fields["kind"] == StepKind.RPC else None)
    return StepState(key=key, step_name=name, **fields)


def err(message: str = "boom") -> ErrorInfo:
    return ErrorInfo(type="RuntimeError", message=message)


async def new_run_with_step(
    store: WorkflowStateService, key: str = "s", **fields: Any
) -> tuple[str, StepState]:
    run = await store.create_run("wf", {"n": 1})
    stored = await store.insert_step(run.id, step(key, **fields))
    return run.id, stored


T0 = datetime(2030, 1, 1, tzinfo=UTC)

# ----------------------------------------------------------------------- runs


async def test_create_and_get_run_round_trip(store: WorkflowStateService) -> None:
    run = await store.create_run("onboarding", {"email": "a@example.com", "n": [1, 2]})
    assert re.fullmatch(r"[0-9a-f]{32}", run.id)
    assert run.workflow == "onboarding"
    assert run.status is RunStatus.RUNNING
    assert run.input == {"email": "a@example.com", "n": [1, 2]}
    assert run.output is None and run.error is None and run.wake_at is None
    assert run.owner is None and run.cancel_requested is False
    assert run.created_at.tzinfo is not None

    got = await store.get_run(run.id)
    assert isinstance(got, WorkflowRun)
    assert got.model_dump() == run.model_dump()
    other = await store.create_run("onboarding", None)
    assert other.id != run.id


async def test_create_run_with_given_id_and_duplicate(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", 1, run_id="order-42_a.b")
    assert run.id == "order-42_a.b"
    assert (await store.get_run("order-42_a.b")).input == 1
    with pytest.raises(RunAlreadyExistsError, match=r"order-42_a\.b"):
        await store.create_run("wf", 2, run_id="order-42_a.b")
    assert (await store.get_run("order-42_a.b")).input == 1


BAD_IDS = ["", ".", "..", "../x", "a/b", "/abs", "a\\b", "a..b", "-lead", "a\x00b", "x" * 129, "é"]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_invalid_run_ids_rejected(store: WorkflowStateService, bad: str) -> None:
    with pytest.raises(InvalidRunIdError):
        await store.create_run("wf", None, run_id=bad)
    with pytest.raises(InvalidRunIdError):
        await store.get_run(bad)
    with pytest.raises(InvalidRunIdError):
        await store.get_step_states(bad)
    with pytest.raises(InvalidRunIdError):
        await store.insert_step(bad, step("s"))
    with pytest.raises(InvalidRunIdError):
        await store.update_run(bad, RunChanges(status=RunStatus.FAILED))
    with pytest.raises(InvalidRunIdError):
        async with store.lock_run(bad, timeout=1):
            pass


async def test_unknown_run_raises_run_not_found(store: WorkflowStateService) -> None:
    missing = "does-not-exist"
    with pytest.raises(RunNotFoundError, match=missing):
        await store.get_run(missing)
    with pytest.raises(RunNotFoundError):
        await store.update_run(missing, RunChanges(status=RunStatus.FAILED))
    with pytest.raises(RunNotFoundError):
        await store.transition_run(missing, [RunStatus.RUNNING], RunChanges())
    with pytest.raises(RunNotFoundError):
        await store.get_step_states(missing)
    with pytest.raises(RunNotFoundError):
        await store.get_step(missing, "s")
    with pytest.raises(RunNotFoundError):
        await store.insert_step(missing, step("s"))
    with pytest.raises(RunNotFoundError):
        await store.schedule_step(missing, "s", at=None)
    with pytest.raises(RunNotFoundError):
        await store.claim_step(missing, "s", owner=make_owner(), lease_seconds=5)
    with pytest.raises(RunNotFoundError):
        await store.complete_step(missing, "s", result=1, token=None)
    with pytest.raises(RunNotFoundError):
        await store.fail_step_attempt(missing, "s", token=None, error=err(), retry_at=None)
    with pytest.raises(RunNotFoundError):
        await store.heartbeat_step(missing, "s", token="t", lease_seconds=5)


async def test_list_runs_filters_limit_and_order(store: WorkflowStateService) -> None:
    ids = []
    for i in range(6):
        run = await store.create_run("a" if i % 2 == 0 else "b", i)
        ids.append(run.id)
    await store.update_run(ids[0], RunChanges(status=RunStatus.COMPLETED, output="x"))
    await store.update_run(ids[1], RunChanges(status=RunStatus.FAILED))
    await store.update_run(ids[2], RunChanges(status=RunStatus.SUSPENDED))

    everything = await store.list_runs()
    assert [r.id for r in everything] == ids[::-1]  # newest first
    assert all(isinstance(r, WorkflowRun) for r in everything)
    stamps = [(r.created_at, r.id) for r in everything]
    assert stamps == sorted(stamps, reverse=True)

    assert [r.id for r in await store.list_runs(workflow="a")] == [ids[4], ids[2], ids[0]]
    assert [r.id for r in await store.list_runs(status=RunStatus.RUNNING)] == [
        ids[5],
        ids[4],
        ids[3],
    ]
    done = await store.list_runs(status=[RunStatus.COMPLETED, RunStatus.FAILED])
    assert [r.id for r in done] == [ids[1], ids[0]]
    assert done[1].output == "x"
    assert [r.id for r in await store.list_runs(workflow="b", status={RunStatus.RUNNING})] == [
        ids[5],
        ids[3],
    ]
    assert [r.id for r in await store.list_runs(limit=2)] == [ids[5], ids[4]]
    assert [r.id for r in await store.list_runs(workflow="a", limit=1)] == [ids[4]]
    assert await store.list_runs(limit=0) == []
    assert await store.list_runs(workflow="nope") == []
    assert await store.list_runs(status=RunStatus.CANCELLED) == []


async def test_list_runs_empty_store(store: WorkflowStateService) -> None:
    assert await store.list_runs() == []


async def test_update_run_fields_round_trip(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", {"a": 1})
    owner = make_owner()
    wake = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    updated = await store.update_run(
        run.id,
        RunChanges(
            status=RunStatus.SUSPENDED,
            wake_at=wake,
            owner=owner,
            cancel_requested=True,
        ),
    )
    assert updated.status is RunStatus.SUSPENDED
    assert updated.wake_at == wake and updated.owner == owner and updated.cancel_requested
    assert updated.updated_at >= run.updated_at
    got = await store.get_run(run.id)
    assert got.model_dump() == updated.model_dump()

    # UNSET fields are left as they are; None clears.
    error = ErrorInfo(type="ValueError", message="bad", step="s#1", traceback="tb")
    done = await store.update_run(
        run.id,
        RunChanges(status=RunStatus.FAILED, error=error, wake_at=None, owner=None),
    )
    assert done.status is RunStatus.FAILED and done.error == error
    assert done.wake_at is None and done.owner is None and done.cancel_requested is True
    assert done.input == {"a": 1}
    got = await store.get_run(run.id)
    assert got.model_dump() == done.model_dump()

    out = await store.update_run(run.id, RunChanges(output={"user_id": "u1"}))
    assert out.output == {"user_id": "u1"} and out.status is RunStatus.FAILED
    assert (await store.get_run(run.id)).output == {"user_id": "u1"}


async def test_transition_run_compare_and_set(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    moved = await store.transition_run(
        run.id, [RunStatus.RUNNING], RunChanges(status=RunStatus.SUSPENDED)
    )
    assert moved is not None and moved.status is RunStatus.SUSPENDED
    # Status is no longer running: the CAS refuses and changes nothing.
    refused = await store.transition_run(
        run.id, [RunStatus.RUNNING], RunChanges(status=RunStatus.COMPLETED, output=1)
    )
    assert refused is None
    got = await store.get_run(run.id)
    assert got.status is RunStatus.SUSPENDED and got.output is None
    again = await store.transition_run(
        run.id,
        {RunStatus.RUNNING, RunStatus.SUSPENDED},
        RunChanges(status=RunStatus.CANCELLED),
    )
    assert again is not None and again.status is RunStatus.CANCELLED
    assert await store.transition_run(run.id, [], RunChanges(status=RunStatus.RUNNING)) is None
    assert (await store.get_run(run.id)).status is RunStatus.CANCELLED


async def test_transition_run_concurrent_tasks_one_winner(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    results = await asyncio.gather(
        *(
            store.transition_run(
                run.id, [RunStatus.RUNNING], RunChanges(status=RunStatus.COMPLETED, output=i)
            )
            for i in range(12)
        )
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert (await store.get_run(run.id)).output == winners[0].output


# ---------------------------------------------------------------------- steps


async def test_insert_step_is_idempotent(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    first = await store.insert_step(
        run.id, step("createUser", data={"email": "a"}, data_digest="d1", max_attempts=6)
    )
    assert first.key == "createUser" and first.status is StepStatus.PENDING
    assert first.data == {"email": "a"} and first.attempt_count == 0 and first.attempts == []
    second = await store.insert_step(
        run.id, step("createUser", data={"email": "b"}, data_digest="d2")
    )
    assert second.data == {"email": "a"} and second.data_digest == "d1"
    got = await store.get_step(run.id, "createUser")
    assert got is not None and got.model_dump() == first.model_dump()
    assert list(await store.get_step_states(run.id)) == ["createUser"]
    # An existing step is never overwritten, whatever its status.
    owner = make_owner()
    await store.claim_step(run.id, "createUser", owner=owner, lease_seconds=30)
    third = await store.insert_step(run.id, step("createUser"))
    assert third.status is StepStatus.RUNNING and third.attempt_count == 1


async def test_insert_step_at_boundary_inserts_while_the_run_goes_on(
    store: WorkflowStateService,
) -> None:
    """A running or suspended run without a cancel request: exactly ``insert_step`` (the
    step is inserted once, an existing step is returned as stored, never overwritten)."""
    run = await store.create_run("wf", None)
    first = await store.insert_step_at_boundary(run.id, step("a", data={"n": 1}, data_digest="d1"))
    assert first is not None and first.key == "a" and first.data == {"n": 1}
    again = await store.insert_step_at_boundary(run.id, step("a", data={"n": 2}, data_digest="d2"))
    assert again is not None and again.data == {"n": 1} and again.data_digest == "d1"
    await store.transition_run(run.id, [RunStatus.RUNNING], RunChanges(status=RunStatus.SUSPENDED))
    owner = make_owner()
    claimed = step("b", kind=StepKind.INLINE, status=StepStatus.RUNNING, attempt_count=1)
    claimed.attempts = [StepAttempt(number=1, status=StepStatus.RUNNING, owner=owner)]
    second = await store.insert_step_at_boundary(run.id, claimed)
    assert second is not None and second.status is StepStatus.RUNNING
    assert second.current_attempt is not None and second.current_attempt.owner == owner
    stored = await store.get_step_states(run.id)
    assert list(stored) == ["a", "b"] and stored["a"].data == {"n": 1}
    assert stored["b"].model_dump() == second.model_dump()
    with pytest.raises(RunNotFoundError):
        await store.insert_step_at_boundary("no-such-run", step("a"))


@pytest.mark.parametrize(
    "changes",
    [
        RunChanges(cancel_requested=True),
        RunChanges(status=RunStatus.SUSPENDED, cancel_requested=True),
        RunChanges(status=RunStatus.COMPLETED, output=1),
        RunChanges(status=RunStatus.FAILED, error=ErrorInfo(type="E", message="m")),
        RunChanges(status=RunStatus.CANCELLED),
    ],
    ids=["cancel-requested", "suspended-cancel-requested", "completed", "failed", "cancelled"],
)
async def test_insert_step_at_boundary_stops_a_cancelled_or_settled_run(
    store: WorkflowStateService, changes: RunChanges
) -> None:
    """``None`` and nothing inserted when the run has a cancel request or is settled, also
    when the step exists already (the boundary comes first)."""
    run = await store.create_run("wf", None)
    await store.insert_step(run.id, step("old"))
    await store.update_run(run.id, changes)
    assert await store.insert_step_at_boundary(run.id, step("new")) is None
    assert await store.insert_step_at_boundary(run.id, step("old")) is None
    assert list(await store.get_step_states(run.id)) == ["old"]


async def test_step_states_in_creation_order(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    keys = ["zeta", "alpha", "loop", "loop#1", "loop#2", "coolOff", "b"]
    for key in keys:
        kind = StepKind.SLEEP if key == "coolOff" else StepKind.INLINE
        await store.insert_step(run.id, step(key, kind=kind))
    states = await store.get_step_states(run.id)
    assert list(states) == keys
    assert all(states[k].key == k for k in keys)
    assert states["loop#2"].step_name == "loop"
    assert states["coolOff"].kind is StepKind.SLEEP
    assert await store.get_step(run.id, "missing") is None
    other = await store.create_run("wf", None)
    assert await store.get_step_states(other.id) == {}


async def test_steps_are_per_run(store: WorkflowStateService) -> None:
    a = await store.create_run("wf", None)
    b = await store.create_run("wf", None)
    await store.insert_step(a.id, step("s", data=1))
    await store.insert_step(b.id, step("s", data=2))
    owner = make_owner()
    assert await store.claim_step(a.id, "s", owner=owner, lease_seconds=5) is not None
    assert (await store.get_step_states(b.id))["s"].status is StepStatus.PENDING
    assert (await store.get_step(b.id, "s")).data == 2  # type: ignore[union-attr]


async def test_schedule_step(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store, "coolOff", kind=StepKind.SLEEP)
    wake = datetime(2031, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    scheduled = await store.schedule_step(run_id, "coolOff", at=wake)
    assert scheduled.status is StepStatus.SCHEDULED and scheduled.next_attempt_at == wake
    # Not pending any more: unchanged.
    again = await store.schedule_step(run_id, "coolOff", at=None)
    assert again.status is StepStatus.SCHEDULED and again.next_attempt_at == wake
    got = await store.get_step(run_id, "coolOff")
    assert got is not None and got.next_attempt_at == wake

    await store.insert_step(run_id, step("remote"))
    now_sched = await store.schedule_step(run_id, "remote", at=None)
    assert now_sched.status is StepStatus.SCHEDULED and now_sched.next_attempt_at is None
    with pytest.raises(StepNotFoundError):
        await store.schedule_step(run_id, "missing", at=None)


async def test_claim_step_sets_running_attempt(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store)
    owner = make_owner()
    claimed = await store.claim_step(run_id, "s", owner=owner, lease_seconds=30, now=T0)
    assert claimed is not None
    assert claimed.status is StepStatus.RUNNING and claimed.attempt_count == 1
    assert len(claimed.attempts) == 1
    attempt = claimed.attempts[0]
    assert attempt.number == 1 and attempt.status is StepStatus.RUNNING
    assert attempt.owner == owner
    assert attempt.started_at == T0
    assert attempt.lease_expires_at == T0 + timedelta(seconds=30)
    assert claimed.current_attempt == attempt
    got = await store.get_step(run_id, "s")
    assert got is not None and got.model_dump() == claimed.model_dump()
    # Running: nobody else can claim it.
    assert await store.claim_step(run_id, "s", owner=make_owner(), lease_seconds=30) is None


async def test_claim_missing_step_returns_none(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    assert await store.claim_step(run.id, "nope", owner=make_owner(), lease_seconds=5) is None


async def test_claim_scheduled_step_and_not_before_due(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store)
    await store.schedule_step(run_id, "s", at=T0 + timedelta(hours=1))
    owner = make_owner()
    assert await store.claim_step(run_id, "s", owner=owner, lease_seconds=5, now=T0) is None
    assert (await store.get_step(run_id, "s")).status is StepStatus.SCHEDULED  # type: ignore[union-attr]
    due = T0 + timedelta(hours=1)
    claimed = await store.claim_step(run_id, "s", owner=owner, lease_seconds=5, now=due)
    assert claimed is not None and claimed.attempt_count == 1
    assert claimed.next_attempt_at is None


async def test_not_claimable_after_success_or_failure(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    for key in ("ok", "bad"):
        await store.insert_step(run.id, step(key))
    ok_owner, bad_owner = make_owner(), make_owner()
    await store.claim_step(run.id, "ok", owner=ok_owner, lease_seconds=5)
    await store.claim_step(run.id, "bad", owner=bad_owner, lease_seconds=5)
    assert await store.complete_step(run.id, "ok", result=1, token=ok_owner.token)
    failed = await store.fail_step_attempt(
        run.id, "bad", token=bad_owner.token, error=err(), retry_at=None
    )
    assert failed is not None
    for key in ("ok", "bad"):
        assert await store.claim_step(run.id, key, owner=make_owner(), lease_seconds=5) is None


async def test_heartbeat_extends_lease_of_holder_only(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store)
    owner = make_owner()
    claimed = await store.claim_step(run_id, "s", owner=owner, lease_seconds=1)
    assert claimed is not None
    first_expiry = claimed.attempts[0].lease_expires_at
    assert first_expiry is not None
    assert await store.heartbeat_step(run_id, "s", token=owner.token, lease_seconds=3600)
    got = await store.get_step(run_id, "s")
    assert got is not None
    new_expiry = got.attempts[0].lease_expires_at
    assert new_expiry is not None and new_expiry > first_expiry + timedelta(minutes=30)
    assert not await store.heartbeat_step(run_id, "s", token="someone-else", lease_seconds=5)
    assert await store.complete_step(run_id, "s", result=None, token=owner.token)
    assert not await store.heartbeat_step(run_id, "s", token=owner.token, lease_seconds=5)
    assert not await store.heartbeat_step(run_id, "missing", token=owner.token, lease_seconds=5)


async def test_complete_step_requires_holding_token(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store)
    owner = make_owner()
    await store.claim_step(run_id, "s", owner=owner, lease_seconds=30)
    assert not await store.complete_step(run_id, "s", result="nope", token="wrong-token")
    got = await store.get_step(run_id, "s")
    assert got is not None and got.status is StepStatus.RUNNING and got.result is None

    assert await store.complete_step(run_id, "s", result={"id": "u1"}, token=owner.token)
    done = await store.get_step(run_id, "s")
    assert done is not None
    assert done.status is StepStatus.SUCCEEDED and done.result == {"id": "u1"}
    assert done.attempts[-1].status is StepStatus.SUCCEEDED
    assert done.attempts[-1].finished_at is not None and done.finished_at is not None
    assert done.error is None
    # Duplicate delivery: the result is not stored twice.
    assert not await store.complete_step(run_id, "s", result="again", token=owner.token)
    assert not await store.complete_step(run_id, "s", result="again", token=None)
    assert (await store.get_step(run_id, "s")).result == {"id": "u1"}  # type: ignore[union-attr]
    assert not await store.complete_step(run_id, "missing", result=1, token=None)


async def test_complete_without_token_for_sleeps(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store, "coolOff", kind=StepKind.SLEEP)
    await store.schedule_step(run_id, "coolOff", at=T0)
    assert await store.complete_step(run_id, "coolOff", result=None, token=None)
    got = await store.get_step(run_id, "coolOff")
    assert got is not None and got.status is StepStatus.SUCCEEDED and got.attempts == []
    assert not await store.complete_step(run_id, "coolOff", result=None, token=None)


async def test_fail_with_retry_then_second_attempt(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store, max_attempts=3)
    first = make_owner("first-")
    await store.claim_step(run_id, "s", owner=first, lease_seconds=30, now=T0)
    retry_at = T0 + timedelta(seconds=2)
    failed = await store.fail_step_attempt(
        run_id, "s", token=first.token, error=err("first failure"), retry_at=retry_at
    )
    assert failed is not None
    assert failed.status is StepStatus.SCHEDULED and failed.next_attempt_at == retry_at
    assert failed.attempts[0].status is StepStatus.FAILED
    assert failed.attempts[0].error == err("first failure")
    assert failed.attempts[0].finished_at is not None

    # Not before the retry is due; then claimable again as attempt 2.
    second = make_owner("second-")
    assert await store.claim_step(run_id, "s", owner=second, lease_seconds=30, now=T0) is None
    claimed = await store.claim_step(
        run_id, "s", owner=second, lease_seconds=30, now=retry_at + timedelta(seconds=1)
    )
    assert claimed is not None and claimed.attempt_count == 2
    assert [a.number for a in claimed.attempts] == [1, 2]
    assert claimed.attempts[1].owner == second
    assert claimed.attempts[1].status is StepStatus.RUNNING
    # The first holder cannot complete the newer attempt.
    assert not await store.complete_step(run_id, "s", result="stale", token=first.token)
    assert await store.complete_step(run_id, "s", result="fresh", token=second.token)
    done = await store.get_step(run_id, "s")
    assert done is not None and done.result == "fresh" and done.status is StepStatus.SUCCEEDED
    assert [a.status for a in done.attempts] == [StepStatus.FAILED, StepStatus.SUCCEEDED]
    assert done.attempts[0].error == err("first failure")
    assert done.max_attempts == 3


async def test_fail_without_retry_fails_step(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store)
    owner = make_owner()
    await store.claim_step(run_id, "s", owner=owner, lease_seconds=30)
    error = ErrorInfo(type="KeyError", message="'x'", traceback="Traceback ...")
    failed = await store.fail_step_attempt(
        run_id, "s", token=owner.token, error=error, retry_at=None
    )
    assert failed is not None and failed.status is StepStatus.FAILED
    assert failed.error == error and failed.finished_at is not None
    assert failed.next_attempt_at is None
    got = await store.get_step(run_id, "s")
    assert got is not None and got.model_dump() == failed.model_dump()
    # Not running any more: a second failure report is refused.
    assert (
        await store.fail_step_attempt(run_id, "s", token=owner.token, error=error, retry_at=None)
        is None
    )


async def test_fail_with_wrong_token_refused(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store)
    owner = make_owner()
    await store.claim_step(run_id, "s", owner=owner, lease_seconds=30)
    assert (
        await store.fail_step_attempt(run_id, "s", token="wrong", error=err(), retry_at=None)
        is None
    )
    got = await store.get_step(run_id, "s")
    assert got is not None and got.status is StepStatus.RUNNING
    assert got.attempts[0].status is StepStatus.RUNNING and got.error is None


async def test_abandon_attempt_without_token(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store)
    dead = make_owner("dead-")
    await store.claim_step(run_id, "s", owner=dead, lease_seconds=30, now=T0)
    abandoned = await store.fail_step_attempt(
        run_id,
        "s",
        token=None,
        error=ErrorInfo(type="AbandonedAttempt", message="holder died"),
        retry_at=T0,
    )
    assert abandoned is not None and abandoned.status is StepStatus.SCHEDULED
    assert abandoned.attempts[0].status is StepStatus.FAILED
    alive = make_owner("alive-")
    claimed = await store.claim_step(run_id, "s", owner=alive, lease_seconds=30, now=T0)
    assert claimed is not None and claimed.attempt_count == 2
    # The dead holder wakes up: it can neither heartbeat nor complete nor fail.
    assert not await store.heartbeat_step(run_id, "s", token=dead.token, lease_seconds=30)
    assert not await store.complete_step(run_id, "s", result="late", token=dead.token)
    assert (
        await store.fail_step_attempt(run_id, "s", token=dead.token, error=err(), retry_at=None)
        is None
    )
    assert await store.complete_step(run_id, "s", result="ok", token=alive.token)
    # Nothing is running: abandoning again does nothing.
    assert (
        await store.fail_step_attempt(run_id, "s", token=None, error=err(), retry_at=None) is None
    )
    got = await store.get_step(run_id, "s")
    assert got is not None and got.status is StepStatus.SUCCEEDED and got.result == "ok"


async def test_abandon_pending_step_is_refused(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store)
    assert (
        await store.fail_step_attempt(run_id, "s", token=None, error=err(), retry_at=None) is None
    )
    assert (await store.get_step(run_id, "s")).status is StepStatus.PENDING  # type: ignore[union-attr]


async def test_reset_failed_step_for_new_attempts(store: WorkflowStateService) -> None:
    """``reset_step`` (an operator action, ``pikku-runs resume``): part of the contract, every
    store has it."""
    run_id, _ = await new_run_with_step(store, max_attempts=1)
    owner = make_owner()
    await store.claim_step(run_id, "s", owner=owner, lease_seconds=30, now=T0)
    await store.fail_step_attempt(run_id, "s", token=owner.token, error=err(), retry_at=None)
    reset = await store.reset_step(run_id, "s", attempts=2, at=T0)
    assert reset is not None and reset.status is StepStatus.SCHEDULED
    assert reset.error is None and reset.max_attempts == 3 and reset.next_attempt_at == T0
    assert reset.attempt_count == 1 and reset.finished_at is None
    assert reset.attempts[0].status is StepStatus.FAILED  # history kept
    # Not failed any more: a second reset changes nothing.
    assert await store.reset_step(run_id, "s", attempts=2) is None
    claimed = await store.claim_step(run_id, "s", owner=make_owner(), lease_seconds=30, now=T0)
    assert claimed is not None and claimed.attempt_count == 2
    with pytest.raises(StepNotFoundError):
        await store.reset_step(run_id, "missing")
    with pytest.raises(RunNotFoundError):
        await store.reset_step("no-such-run", "s")


async def test_concurrent_claims_in_one_process_one_winner(store: WorkflowStateService) -> None:
    run_id, _ = await new_run_with_step(store)
    owners = [make_owner(f"o{i}-") for i in range(16)]
    results = await asyncio.gather(
        *(store.claim_step(run_id, "s", owner=o, lease_seconds=30) for o in owners)
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    got = await store.get_step(run_id, "s")
    assert got is not None and got.attempt_count == 1
    assert got.attempts[0].owner == winners[0].attempts[0].owner


# ------------------------------------------------------------------ JSON values

JSON_VALUES = {
    "nested": {"a": [1, 2.5, {"b": [None, True, False, {"c": []}]}], "d": {}},
    "unicode": {"名前": "héllo wörld 🌍 \u2028 \\ \" '", "emoji": ["👩‍💻", "\x00\x1f"]},
    "large": {"blob": "x" * 300_000, "items": list(range(20_000))},
    "scalars": [0, -1, 2**62, -(2**62), 1.5e-300, 3.141592653589793, "", None],
    "string": "just a string",
    "int": 42,
    "null": None,
    "list": [[], [[]], [{}]],
}


@pytest.mark.parametrize("name", list(JSON_VALUES))
async def test_json_values_round_trip(store: WorkflowStateService, name: str) -> None:
    value = JSON_VALUES[name]
    run = await store.create_run("wf", value)
    assert (await store.get_run(run.id)).input == value
    await store.update_run(run.id, RunChanges(output=value))
    assert (await store.get_run(run.id)).output == value
    await store.insert_step(run.id, step("s", data=value))
    owner = make_owner()
    await store.claim_step(run.id, "s", owner=owner, lease_seconds=30)
    assert await store.complete_step(run.id, "s", result=value, token=owner.token)
    got = (await store.get_step_states(run.id))["s"]
    assert got.data == value and got.result == value
    listed = await store.list_runs(workflow="wf")
    assert listed[0].input == value and listed[0].output == value


async def test_returned_objects_are_copies(store: WorkflowStateService) -> None:
    data = {"items": [1, 2]}
    run = await store.create_run("wf", data)
    data["items"].append(3)
    run.input["items"].append(4)
    assert (await store.get_run(run.id)).input == {"items": [1, 2]}
    payload = {"k": [1]}
    await store.insert_step(run.id, step("s", data=payload))
    payload["k"].append(2)
    states = await store.get_step_states(run.id)
    states["s"].data["k"].append(3)
    states["s"].attempts.append(states["s"].attempts[0] if states["s"].attempts else None)  # type: ignore[arg-type]
    got = await store.get_step(run.id, "s")
    assert got is not None and got.data == {"k": [1]} and got.attempts == []
    owner = make_owner()
    await store.claim_step(run.id, "s", owner=owner, lease_seconds=5)
    result = {"r": [1]}
    await store.complete_step(run.id, "s", result=result, token=owner.token)
    result["r"].append(2)
    assert (await store.get_step(run.id, "s")).result == {"r": [1]}  # type: ignore[union-attr]


# --------------------------------------------------------------------- locking


async def test_lock_run_excludes_other_tasks(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    inside = 0
    max_inside = 0
    order: list[int] = []

    async def worker(i: int) -> None:
        nonlocal inside, max_inside
        async with store.lock_run(run.id, timeout=30):
            inside += 1
            max_inside = max(max_inside, inside)
            await asyncio.sleep(0.002)
            order.append(i)
            inside -= 1

    await asyncio.gather(*(worker(i) for i in range(8)))
    assert max_inside == 1 and sorted(order) == list(range(8))


async def test_lock_run_timeout(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    other = await store.create_run("wf", None)
    async with store.lock_run(run.id):
        with pytest.raises(TimeoutError):
            async with store.lock_run(run.id, timeout=0.05):
                pytest.fail("acquired a held lock")
        with pytest.raises(TimeoutError):
            async with store.lock_run(run.id, timeout=0):
                pytest.fail("acquired a held lock")
        # Other runs are not affected; data operations on the locked run still work.
        async with store.lock_run(other.id, timeout=1):
            pass
        await store.insert_step(run.id, step("s"))
        owner = make_owner()
        assert await store.claim_step(run.id, "s", owner=owner, lease_seconds=5) is not None
        assert await store.complete_step(run.id, "s", result=1, token=owner.token)
        await store.update_run(run.id, RunChanges(status=RunStatus.SUSPENDED))
    async with store.lock_run(run.id, timeout=1):
        pass


async def test_lock_run_released_on_error(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    with pytest.raises(ZeroDivisionError):
        async with store.lock_run(run.id):
            1 / 0  # noqa: B018
    async with store.lock_run(run.id, timeout=1):
        pass


async def test_lock_waiter_gets_lock_after_release(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    got_it = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with store.lock_run(run.id):
            got_it.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await got_it.wait()
    waiter = asyncio.create_task(_acquire_and_return(store, run.id))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    release.set()
    assert await asyncio.wait_for(waiter, 10) == "acquired"
    await task


async def _acquire_and_return(store: WorkflowStateService, run_id: str) -> str:
    async with store.lock_run(run_id, timeout=30):
        return "acquired"


async def test_lock_run_excludes_another_thread_and_event_loop(
    store: WorkflowStateService,
) -> None:
    """One service used from two threads, each with its own event loop."""
    run = await store.create_run("wf", None)
    acquired, release = threading.Event(), threading.Event()

    def holder() -> None:
        async def main() -> None:
            async with store.lock_run(run.id, timeout=30):
                acquired.set()
                while not release.is_set():
                    await asyncio.sleep(0.005)

        asyncio.run(main())

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert await asyncio.to_thread(acquired.wait, 60)
        with pytest.raises(TimeoutError):
            async with store.lock_run(run.id, timeout=0.05):
                pytest.fail("acquired a lock another thread holds")
        waiter = asyncio.create_task(_acquire_and_return(store, run.id))
        await asyncio.sleep(0.02)
        assert not waiter.done()
        release.set()
        assert await asyncio.wait_for(waiter, 30) == "acquired"
    finally:
        release.set()
        await asyncio.to_thread(thread.join, 30)


async def test_close_is_idempotent(spec: StoreSpec) -> None:
    async with spec.open() as store:
        run = await store.create_run("wf", None)
        assert (await store.get_run(run.id)).id == run.id
    await store.close()
    await store.close()


# ---------------------------------------------------------------- multi-process

PROCESSES = 6
ROUNDS = 6
INSERTS = 5


def _ctx() -> Any:
    return multiprocessing.get_context("spawn")


@pytest.mark.usefixtures("cross_process")
async def test_processes_race_to_claim_exactly_one_wins(
    store: WorkflowStateService, spec: StoreSpec
) -> None:
    run = await store.create_run("wf", None)
    for n in range(ROUNDS):
        await store.insert_step(run.id, step(f"r{n}"))
    ctx = _ctx()
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=claim_race_worker,
            args=(spec, run.id, ROUNDS, i, INSERTS, barrier, results),
        )
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = await asyncio.to_thread(_collect, results, procs, PROCESSES * ROUNDS)
        for p in procs:
            await asyncio.to_thread(p.join, 120)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    for n in range(ROUNDS):
        winners = [i for (r, i, won) in outcomes if r == n and won]
        assert len(winners) == 1, f"round {n}: winners {winners}"
        got = await store.get_step(run.id, f"r{n}")
        assert got is not None and got.attempt_count == 1 and got.status is StepStatus.RUNNING
        assert got.attempts[0].owner is not None
        assert got.attempts[0].owner.token.startswith(f"w{winners[0]}-")
    # Concurrent inserts from every process: none lost.
    states = await store.get_step_states(run.id)
    expected = {f"p{i}-{j}" for i in range(PROCESSES) for j in range(INSERTS)}
    assert expected <= set(states)
    assert len(states) == ROUNDS + PROCESSES * INSERTS


def _collect(results: Any, procs: list[Any], count: int) -> list[Any]:
    """Read ``count`` results, failing fast if a child process dies."""
    deadline = time.monotonic() + 180
    outcomes: list[Any] = []
    while len(outcomes) < count:
        try:
            outcomes.append(results.get(timeout=0.2))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"a child process failed (exit codes {dead})"
            assert time.monotonic() < deadline, "timed out waiting for the child processes"
    return outcomes


@pytest.mark.usefixtures("cross_process")
async def test_killed_writer_leaves_a_consistent_store(
    store: WorkflowStateService, spec: StoreSpec
) -> None:
    """SIGKILL a process in the middle of rewriting big values (several times): every read
    afterwards sees complete old or new values, and the store stays writable."""
    await store.create_run("wf", None, run_id="victim")
    ctx = _ctx()
    for attempt in range(3):
        started = ctx.Event()
        proc = ctx.Process(target=rewrite_loop_worker, args=(spec, "victim", started))
        proc.start()
        try:
            deadline = time.monotonic() + 180
            while not await asyncio.to_thread(started.wait, 0.2):
                assert proc.exitcode is None, f"writer failed (exit code {proc.exitcode})"
                assert time.monotonic() < deadline, "the writer never started"
            await asyncio.sleep(0.02 * (attempt + 1))
        finally:
            proc.kill()
            await asyncio.to_thread(proc.join, 60)
        async with spec.open() as fresh:
            run = await fresh.get_run("victim")
            assert run.output["n"] in (0, 1)
            assert run.output["blob"] == "ab"[run.output["n"]] * 200_000
            steps = await fresh.get_step_states("victim")
            assert len(steps) >= 3
            for s in steps.values():
                if s.key.startswith("after-"):
                    continue
                assert s.data["blob"] == "ab"[s.data["n"]] * 200_000
            assert [r.id for r in await fresh.list_runs()] == ["victim"]
            await fresh.update_run("victim", RunChanges(output={"n": 0, "blob": "a" * 200_000}))
            await fresh.insert_step("victim", step(f"after-{attempt}"))


@pytest.mark.usefixtures("cross_process")
async def test_processes_create_a_fresh_store_at_once(spec: StoreSpec) -> None:
    """Several processes open a store nobody has used yet (directory / schema creation)."""
    ctx = _ctx()
    count = 4
    barrier, results = ctx.Barrier(count), ctx.Queue()
    procs = [
        ctx.Process(target=fresh_store_worker, args=(spec, i, barrier, results))
        for i in range(count)
    ]
    for p in procs:
        p.start()
    try:
        ids = await asyncio.to_thread(_collect, results, procs, count)
        for p in procs:
            await asyncio.to_thread(p.join, 120)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    assert sorted(ids) == [f"fresh-{i}" for i in range(count)]
    async with spec.open() as store:
        assert sorted(r.id for r in await store.list_runs()) == sorted(ids)


async def _start_lock_holder(spec: StoreSpec, run_id: str) -> tuple[Any, Any]:
    ctx = _ctx()
    acquired, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=lock_holder_worker, args=(spec, run_id, acquired, release))
    proc.start()
    deadline = time.monotonic() + 180
    while not await asyncio.to_thread(acquired.wait, 0.2):
        assert proc.exitcode in (None, 0), f"lock holder failed (exit code {proc.exitcode})"
        assert time.monotonic() < deadline, "the child never acquired the lock"
    return proc, release


@pytest.mark.usefixtures("cross_process")
async def test_lock_excludes_other_process_until_released(
    store: WorkflowStateService, spec: StoreSpec
) -> None:
    run = await store.create_run("wf", None)
    proc, release = await _start_lock_holder(spec, run.id)
    try:
        with pytest.raises(TimeoutError):
            async with store.lock_run(run.id, timeout=0.2):
                pytest.fail("acquired a lock another process holds")
        release.set()
        async with store.lock_run(run.id, timeout=60):
            pass
        await asyncio.to_thread(proc.join, 60)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()


@pytest.mark.usefixtures("cross_process")
async def test_lock_released_when_holder_is_killed(
    store: WorkflowStateService, spec: StoreSpec
) -> None:
    run = await store.create_run("wf", None)
    proc, _release = await _start_lock_holder(spec, run.id)
    try:
        with pytest.raises(TimeoutError):
            async with store.lock_run(run.id, timeout=0.1):
                pytest.fail("acquired a lock another process holds")
        proc.kill()  # SIGKILL: no cleanup code runs in the child
        await asyncio.to_thread(proc.join, 60)
        async with store.lock_run(run.id, timeout=60):
            pass
    finally:
        if proc.is_alive():
            proc.kill()


@pytest.mark.usefixtures("cross_process")
async def test_other_process_sees_committed_state(
    store: WorkflowStateService, spec: StoreSpec
) -> None:
    run = await store.create_run("wf", {"x": 1}, run_id="shared-run")
    await store.insert_step(run.id, step("s", data=[1]))
    ctx = _ctx()
    with ctx.Pool(1) as pool:
        seen = await asyncio.to_thread(pool.apply, read_run_worker, (spec, run.id))
    assert seen == ({"x": 1}, ["s"])


# ------------------------------------------------------------------- open_store


def test_open_store_urls(tmp_path: Path) -> None:
    from pikku_typing.state import (
        FileWorkflowStateService,
        InMemoryWorkflowStateService,
        SqliteWorkflowStateService,
        open_store,
    )

    assert isinstance(open_store("memory:"), InMemoryWorkflowStateService)
    file_store = open_store(f"file:{tmp_path}/f?fsync=0")
    assert isinstance(file_store, FileWorkflowStateService)
    assert file_store.directory == tmp_path / "f"
    sqlite_store = open_store(f"sqlite:{tmp_path}/s.db?synchronous=normal&busy_timeout=2.5")
    assert isinstance(sqlite_store, SqliteWorkflowStateService)
    assert sqlite_store.path == tmp_path / "s.db"
    assert sqlite_store.synchronous == "NORMAL" and sqlite_store.busy_timeout == 2.5
    default = open_store(f"sqlite:{tmp_path}/d.db")
    assert isinstance(default, SqliteWorkflowStateService) and default.synchronous == "FULL"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost", "unknown state store scheme 'redis'"),
        ("no-scheme-here", "has no scheme"),
        ("file:", "has no path"),
        ("sqlite:", "has no path"),
        ("sqlite:/x.db?bogus=1", "unknown option"),
        ("sqlite:/x.db?synchronous=OFF", "synchronous must be"),
        ("file:/x?fsync=perhaps", "expected a boolean"),
    ],
)
def test_open_store_rejects_bad_urls(url: str, message: str) -> None:
    from pikku_typing.state import open_store

    with pytest.raises(ValueError, match=re.escape(message)):
        open_store(url)


# ------------------------------------------------------------------------ events
# (SPEC section 8: send_event / consume_event / list_events, parent_run_id, idempotent create)



async def test_create_run_records_parent_run_id(store: WorkflowStateService) -> None:
    parent = await store.create_run("parent", None)
    assert parent.parent_run_id is None
    child = await store.create_run("child", {"n": 1}, run_id="kid-1", parent_run_id=parent.id)
    assert child.parent_run_id == parent.id
    assert (await store.get_run("kid-1")).parent_run_id == parent.id
    [listed] = await store.list_runs(workflow="child")
    assert listed.parent_run_id == parent.id
    with pytest.raises(InvalidRunIdError):
        await store.create_run("child", None, parent_run_id="../escape")


async def test_events_are_consumed_in_send_order_per_name(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    sent = [
        await store.send_event(run.id, "paid", {"amount": "9.50", "n": 1}),
        await store.send_event(run.id, "shipped", {"n": 2}),
        await store.send_event(run.id, "paid", {"amount": "1.00", "n": 3}),
    ]
    assert all(e is not None for e in sent)
    seqs = [e.seq for e in sent if e is not None]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert [e.name for e in await store.list_events(run.id)] == ["paid", "shipped", "paid"]

    first = await store.consume_event(run.id, "paid", "wait")
    assert first is not None and first.payload == {"amount": "9.50", "n": 1}
    assert first.consumed_by == "wait" and first.consumed_at is not None
    second = await store.consume_event(run.id, "paid", "wait#1")
    assert second is not None and second.payload["n"] == 3
    assert await store.consume_event(run.id, "paid", "wait#2") is None  # none left
    shipped = await store.consume_event(run.id, "shipped", "ship")
    assert shipped is not None and shipped.payload == {"n": 2}
    events = await store.list_events(run.id)
    assert [e.consumed_by for e in events] == ["wait", "ship", "wait#1"]
    assert [e.payload["n"] for e in events] == [1, 2, 3]


async def test_consume_event_is_idempotent_by_step_key(store: WorkflowStateService) -> None:
    """A replay after a crash between consuming and recording the step gets the SAME event
    back (never the next one: an event is never consumed twice, nor lost)."""
    run = await store.create_run("wf", None)
    await store.send_event(run.id, "e", 1)
    await store.send_event(run.id, "e", 2)
    got = await store.consume_event(run.id, "e", "k")
    again = await store.consume_event(run.id, "e", "k")
    assert got is not None and again is not None
    assert (got.seq, got.payload) == (again.seq, again.payload) == (got.seq, 1)
    events = await store.list_events(run.id)
    assert [e.consumed_by for e in events] == ["k", None]


async def test_event_sent_later_is_consumed_later(store: WorkflowStateService) -> None:
    run = await store.create_run("wf", None)
    assert await store.consume_event(run.id, "e", "k") is None
    await store.send_event(run.id, "e", {"late": True})
    got = await store.consume_event(run.id, "e", "k")
    assert got is not None and got.payload == {"late": True}


@pytest.mark.parametrize(
    "status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED]
)
async def test_send_event_to_settled_or_unknown_run_stores_nothing(
    store: WorkflowStateService, status: RunStatus
) -> None:
    assert await store.send_event("no-such-run", "e", 1) is None
    run = await store.create_run("wf", None)
    await store.update_run(run.id, RunChanges(status=status))
    assert await store.send_event(run.id, "e", 1) is None
    assert await store.list_events(run.id) == []
    with pytest.raises(InvalidRunIdError):
        await store.send_event("../x", "e", 1)


async def test_send_event_makes_a_suspended_run_due(store: WorkflowStateService) -> None:
    far = datetime.now(UTC) + timedelta(days=3)
    sleeping = await store.create_run("wf", None)
    await store.update_run(sleeping.id, RunChanges(status=RunStatus.SUSPENDED, wake_at=far))
    waiting = await store.create_run("wf", None)
    await store.update_run(waiting.id, RunChanges(status=RunStatus.SUSPENDED))
    running = await store.create_run("wf", None)
    before = datetime.now(UTC)
    for run_id in (sleeping.id, waiting.id, running.id):
        assert await store.send_event(run_id, "e", None) is not None
    for run_id in (sleeping.id, waiting.id):
        got = await store.get_run(run_id)
        assert got.status is RunStatus.SUSPENDED
        assert got.wake_at is not None and before - timedelta(seconds=1) <= got.wake_at < far
    assert (await store.get_run(running.id)).wake_at is None  # its pass is running


async def test_event_methods_on_unknown_run(store: WorkflowStateService) -> None:
    with pytest.raises(RunNotFoundError):
        await store.consume_event("no-such-run", "e", "k")
    with pytest.raises(RunNotFoundError):
        await store.list_events("no-such-run")


@pytest.mark.parametrize("name", ["nested", "unicode", "scalars", "null", "string"])
async def test_event_payload_json_round_trip(store: WorkflowStateService, name: str) -> None:
    value = JSON_VALUES[name]
    run = await store.create_run("wf", None)
    sent = await store.send_event(run.id, "é.vent", value)
    assert sent is not None and sent.payload == value and sent.name == "é.vent"
    got = await store.consume_event(run.id, "é.vent", "k")
    assert got is not None and got.payload == value
    [listed] = await store.list_events(run.id)
    assert listed.payload == value and listed.consumed_by == "k"


async def test_concurrent_consumers_in_one_process_never_share_an_event(
    store: WorkflowStateService,
) -> None:
    run = await store.create_run("wf", None)
    for n in range(10):
        await store.send_event(run.id, "e", n)
    got = await asyncio.gather(*(store.consume_event(run.id, "e", f"k{i}") for i in range(14)))
    payloads = [e.payload for e in got if e is not None]
    assert sorted(payloads) == list(range(10))
    assert sum(e is None for e in got) == 4


SENDERS = 3
EVENTS_PER_SENDER = 15


@pytest.mark.usefixtures("cross_process")
async def test_processes_racing_to_send_and_consume_lose_nothing(
    store: WorkflowStateService, spec: StoreSpec
) -> None:
    """Three processes send events to one run at once while two others consume them with
    their own step keys: no event is lost, each is consumed exactly once, and each sender's
    events keep their send order."""
    run = await store.create_run("wf", None)
    ctx = _ctx()
    barrier = ctx.Barrier(SENDERS + 2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=send_events_worker, args=(spec, run.id, i, EVENTS_PER_SENDER, barrier))
        for i in range(SENDERS)
    ] + [
        ctx.Process(
            target=consume_events_worker,
            args=(spec, run.id, f"c{i}", SENDERS * EVENTS_PER_SENDER, barrier, results),
        )
        for i in range(2)
    ]
    for p in procs:
        p.start()
    try:
        consumed = await asyncio.to_thread(_collect, results, procs, 2)
        for p in procs:
            await asyncio.to_thread(p.join, 120)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    events = await store.list_events(run.id)
    assert len(events) == SENDERS * EVENTS_PER_SENDER
    assert len({e.seq for e in events}) == len(events)
    for i in range(SENDERS):
        mine = [e.payload["n"] for e in events if e.payload["sender"] == i]
        assert mine == list(range(EVENTS_PER_SENDER))  # send order kept
    taken = [seq for _, seqs in consumed for seq in seqs]
    assert sorted(taken) == sorted(e.seq for e in events)  # every event exactly once
    by_key = {e.consumed_by for e in events}
    assert all(k is not None and k.startswith(("c0#", "c1#")) for k in by_key)


@pytest.mark.usefixtures("cross_process")
async def test_processes_racing_to_create_one_run_id_one_wins(spec: StoreSpec) -> None:
    ctx = _ctx()
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=create_same_run_worker, args=(spec, i, barrier, results))
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = await asyncio.to_thread(_collect, results, procs, PROCESSES)
        for p in procs:
            await asyncio.to_thread(p.join, 120)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    winners = [i for i, won in outcomes if won]
    assert len(winners) == 1, outcomes
    async with spec.open() as fresh:
        assert (await fresh.get_run("order-42")).input == {"by": winners[0]}
        assert [r.id for r in await fresh.list_runs()] == ["order-42"]
