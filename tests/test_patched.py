"""``await workflow.patched("change-id")`` (SPEC section 9): a run recorded before a change
keeps the old branch, a run started after it takes the new one; both complete with every side
effect once. The answer is a durable marker, read back on every pass and by the replayer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from pikku_typing import Workflow
from pikku_typing.models import RunStatus, StepKind
from pikku_typing.runtime.kinds.patch import PatchedCall
from pikku_typing.state import InMemoryWorkflowStateService
from pikku_typing.testing import WorkflowTestEnv, replay
from pikku_typing.wiring import Registry, RPCDefinition, WorkflowDefinition


@dataclass
class Effects:
    counts: dict[str, int] = field(default_factory=dict)

    def hit(self, name: str) -> str:
        self.counts[name] = self.counts.get(name, 0) + 1
        return name


def registry(effects: Effects, body: Any) -> Registry:
    def rpc(name: str) -> RPCDefinition:
        async def fn(data: dict[str, Any]) -> str:
            return effects.hit(name)

        return RPCDefinition(name=name, func=fn, is_async=True, input_type=dict[str, Any], output_type=str)

    rpcs = {n: rpc(n) for n in ("payments.charge", "shipping.old", "shipping.new", "emails.notify")}
    flow = WorkflowDefinition(name="order", func=body, input_type=dict[str, Any], output_type=dict[str, Any])
    return Registry(workflows={"order": flow}, rpcs=rpcs)


async def before_patch(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
    await workflow.do("charge", "payments.charge", {"id": data["id"]})
    shipped = await workflow.do("ship", "shipping.old", {"id": data["id"]})
    await workflow.sleep("coolOff", "1d")
    await workflow.do("notify", "emails.notify", {"id": data["id"]})
    return {"shipped": shipped}


async def after_patch(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
    await workflow.do("charge", "payments.charge", {"id": data["id"]})
    if await workflow.patched("new-shipping"):
        shipped = await workflow.do("ship", "shipping.new", {"id": data["id"]})
    else:
        shipped = await workflow.do("ship", "shipping.old", {"id": data["id"]})
    assert await workflow.patched("new-shipping") == (shipped == "shipping.new")  # same answer again
    await workflow.sleep("coolOff", "1d")
    await workflow.do("notify", "emails.notify", {"id": data["id"]})
    return {"shipped": shipped}


async def without_patch(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
    await workflow.do("charge", "payments.charge", {"id": data["id"]})
    shipped = await workflow.do("ship", "shipping.new", {"id": data["id"]})
    await workflow.sleep("coolOff", "1d")
    await workflow.do("notify", "emails.notify", {"id": data["id"]})
    return {"shipped": shipped}


@pytest.mark.parametrize("mode", ["remote", "inline"])
async def test_old_and_new_runs_take_their_branch_and_complete_once(mode: str) -> None:
    effects = Effects()
    store = InMemoryWorkflowStateService()

    def reg(body: Any) -> Registry:
        r = registry(effects, body)
        r.workflows["order"] = WorkflowDefinition(
            name="order", func=body, execution_mode=mode,  # type: ignore[arg-type]
            input_type=dict[str, Any], output_type=dict[str, Any],
        )
        return r

    old_env = WorkflowTestEnv(state=store, registry=reg(before_patch))
    with old_env.hold_clock():
        old = await old_env.start("order", {"id": 1})
    deployed_at = old_env.now()
    old_history = await old_env.history(old.run_id)
    await old_env.close()  # the old process is gone: the run is in flight in its sleep
    assert old_history.run.status is RunStatus.SUSPENDED
    assert effects.counts == {"payments.charge": 1, "shipping.old": 1}

    # the deploy: new code, same store, a day later (the old run's sleep has ended)
    env = WorkflowTestEnv(state=store, registry=reg(after_patch), start=deployed_at + timedelta(days=1, seconds=1))
    try:
        # the replayer agrees before the deploy: the old run replays on the patched code...
        assert (await replay(old_history, registry=reg(after_patch))).ok
        # ...and not on the code that changed the step without a patch
        flagged = await replay(old_history, registry=reg(without_patch), check=False)
        assert [(p.step_key, p.recorded, p.new) for p in flagged.problems] == [
            ("ship", "rpc 'shipping.old'", "rpc 'shipping.new'")
        ]
        new = await env.start("order", {"id": 2})
        with env._active():
            await env.runtime.recover()
        await env.drain()
        assert await env.result(old.run_id) == {"shipped": "shipping.old"}
        assert await env.result(new.run_id) == {"shipped": "shipping.new"}
        old_steps = await env.steps(old.run_id)
        new_steps = await env.steps(new.run_id)
        assert old_steps["patched:new-shipping"].kind is StepKind.VALUE
        assert old_steps["patched:new-shipping"].result is False
        assert new_steps["patched:new-shipping"].result is True
        # every side effect once: each run charged and notified once, shipped once on its side
        assert effects.counts == {
            "payments.charge": 2,
            "shipping.old": 1,
            "shipping.new": 1,
            "emails.notify": 2,
        }
        # replaying both finished histories on the patched code: the markers are read back
        for run_id in (old.run_id, new.run_id):
            result = await replay(await env.history(run_id), registry=reg(after_patch))
            assert "patched:new-shipping" in result.replayed_steps and result.outcome == "completed"
        assert effects.counts["shipping.new"] == 1  # the replays ran nothing
    finally:
        await env.close()
        await store.close()


async def test_a_new_run_keeps_its_answer_on_every_pass() -> None:
    effects = Effects()
    seen: list[bool] = []

    async def flow(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
        seen.append(await workflow.patched("p"))
        await workflow.sleep("nap", "1h")  # another pass replays the body from the top
        seen.append(await workflow.patched("p"))
        return {}

    async with WorkflowTestEnv(registry=registry(effects, flow)) as env:
        await env.run("order", {"id": 1})
    assert seen and all(seen)


async def test_patched_must_be_awaited() -> None:
    effects = Effects()
    problems: list[str] = []

    async def flow(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
        call = workflow.patched("p")
        assert isinstance(call, PatchedCall)
        try:
            if call:  # forgot the await
                pass
        except TypeError as exc:
            problems.append(str(exc))
        with pytest.raises(ValueError, match="non-empty string"):
            await workflow.patched("")
        return {}

    async with WorkflowTestEnv(registry=registry(effects, flow)) as env:
        await env.run("order", {"id": 1})
    assert problems and "must be awaited" in problems[0]
