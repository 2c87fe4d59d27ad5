"""Safe deploys at run time (SPEC section 9): ``WorkflowRun.version`` on every store, and the
structural hash it records."""

from __future__ import annotations

from pathlib import Path

import pytest

from pikku_typing.meta import RpcStepMeta, SleepStepMeta, WorkflowMeta, structural_hash
from tests.stores import StoreFactory, store_params


def _workflow(**changes: object) -> WorkflowMeta:
    base: dict[str, object] = {
        "name": "checkout",
        "func": "app.flow:checkout",
        "file": "app/flow.py",
        "line": 3,
        "input_type": "app.types.OrderInput",
        "steps": [
            RpcStepMeta(step_name="charge", rpc_name="payments.charge", line=4),
            SleepStepMeta(step_name="coolOff", duration="1d", line=5),
        ],
    }
    base.update(changes)
    return WorkflowMeta.model_validate(base)


def test_structural_hash_ignores_layout_but_not_structure() -> None:
    original = structural_hash(_workflow())
    assert len(original) == 16 and original == structural_hash(_workflow())
    moved = _workflow(
        line=30,
        description="edited",
        steps=[
            RpcStepMeta(step_name="charge", rpc_name="payments.charge", line=40, description="x", retries=2),
            SleepStepMeta(step_name="coolOff", duration="2d", line=50),
        ],
    )
    assert structural_hash(moved) == original
    retargeted = _workflow(
        steps=[
            RpcStepMeta(step_name="charge", rpc_name="payments.charge_v2", line=4),
            SleepStepMeta(step_name="coolOff", duration="1d", line=5),
        ]
    )
    assert structural_hash(retargeted) != original
    assert structural_hash(_workflow(input_type="app.types.Other")) != original
    assert structural_hash(_workflow(steps=[])) != original


@pytest.mark.parametrize("factory", store_params())
async def test_every_store_keeps_the_run_version(factory: StoreFactory, tmp_path: Path) -> None:
    spec = factory.make_spec(tmp_path)
    store = spec.open()
    try:
        run = await store.create_run("wf", {"n": 1}, version="0123456789abcdef")
        assert run.version == "0123456789abcdef"
        assert (await store.get_run(run.id)).version == "0123456789abcdef"
        legacy = await store.create_run("wf", {"n": 2})
        assert (await store.get_run(legacy.id)).version is None
        listed = {r.id: r.version for r in await store.list_runs(workflow="wf")}
        assert listed == {run.id: "0123456789abcdef", legacy.id: None}
    finally:
        await store.close()
        if factory.cleanup is not None:
            factory.cleanup(spec)
