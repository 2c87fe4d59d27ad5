"""Safe deploys at run time (SPEC section 9): ``WorkflowRun.version`` on every store and the
structural hash it records; the replayer (``pikku_typing.testing.replay``, ``pikku-runs
replay``/``export``) flags an incompatible deploy and passes a compatible one without running
any step."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from pikku_typing import Workflow
from pikku_typing.errors import WorkflowNonDeterminismError
from pikku_typing.meta import RpcStepMeta, SleepStepMeta, WorkflowMeta, structural_hash
from pikku_typing.models import RunStatus
from pikku_typing.runtime.replayer import History, load_histories, replay_history
from pikku_typing.state import FileWorkflowStateService
from pikku_typing.testing import WorkflowTestEnv, replay
from pikku_typing.wiring import Registry, RPCDefinition, WorkflowDefinition
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


# --------------------------------------------------------------------------- the replayer



class Receipt(BaseModel):
    receipt_id: str
    total: int


class StrictReceipt(BaseModel):
    receipt_id: str
    total: int
    currency: str  # a new required field: stored receipts lack it


@dataclass
class Calls:
    """Every side effect, counted: the replayer must add none."""

    counts: dict[str, int] = dc_field(default_factory=dict)

    def hit(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


def build(calls: Calls, body: Any, *, receipt: type[BaseModel] = Receipt) -> Registry:
    async def charge(data: dict[str, Any]) -> Any:
        calls.hit("charge")
        return receipt(receipt_id=f"r-{data['order']}", total=10, **({"currency": "EUR"} if receipt is StrictReceipt else {}))

    async def ship(data: dict[str, Any]) -> str:
        calls.hit("ship")
        return f"shipped {data['receipt']}"

    rpcs = {
        name: RPCDefinition(name=name, func=fn, is_async=True, input_type=dict[str, Any], output_type=out)
        for name, fn, out in (
            ("payments.charge", charge, receipt),
            ("payments.charge_v2", charge, receipt),
            ("shipping.ship", ship, str),
        )
    }
    workflow = WorkflowDefinition(
        name="checkout", func=body, input_type=dict[str, Any], output_type=dict[str, Any]
    )
    return Registry(workflows={"checkout": workflow}, rpcs=rpcs)


def v1(calls: Calls) -> Any:
    async def checkout(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
        receipt = await workflow.do("charge", "payments.charge", {"order": data["order"]})
        await workflow.do("audit", lambda: calls.hit("audit"))
        await workflow.sleep("coolOff", "1d")
        shipped = await workflow.do("ship", "shipping.ship", {"receipt": receipt.receipt_id})
        return {"shipped": shipped}

    return checkout


async def recorded(calls: Calls, env_state: Any = None) -> tuple[History, History]:
    """Two runs of v1: one suspended in its 1-day sleep (in flight: its environment held the
    clock and was closed), one completed (another environment on the same store)."""
    held = WorkflowTestEnv(registry=build(calls, v1(calls)), state=env_state)
    try:
        with held.hold_clock():
            in_flight = await held.start("checkout", {"order": 1})
        history = await held.history(in_flight.run_id)
        assert history.run.status is RunStatus.SUSPENDED
    finally:
        await held.close()
    env = WorkflowTestEnv(registry=build(calls, v1(calls)), state=env_state)
    try:
        done = await env.start("checkout", {"order": 2})
        assert (await env.get_run(done.run_id)).status is RunStatus.COMPLETED
        return history, await env.history(done.run_id)
    finally:
        await env.close()


async def test_compatible_deploy_replays_without_running_any_step() -> None:
    calls = Calls()
    histories = await recorded(calls)
    before = dict(calls.counts)
    assert before == {"charge": 2, "audit": 2, "ship": 1}

    async def v2(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:  # a step appended
        receipt = await workflow.do("charge", "payments.charge", {"order": data["order"]})
        await workflow.do("audit", lambda: calls.hit("audit"))
        await workflow.sleep("coolOff", "1d")
        shipped = await workflow.do("ship", "shipping.ship", {"receipt": receipt.receipt_id})
        await workflow.do("notify", lambda: calls.hit("notify"))
        return {"shipped": shipped}

    registry = build(calls, v2)
    in_flight = await replay(histories[0], registry=registry)
    done = await replay(histories[1], registry=registry)
    assert in_flight.ok and done.ok
    assert in_flight.replayed_steps == ["charge", "audit"] and in_flight.outcome == "end of history"
    assert done.replayed_steps == ["charge", "audit", "coolOff", "ship"]
    assert done.outcome == "end of history"  # notify: the completed run never recorded it
    assert calls.counts == before  # no RPC, no inline callable ran


async def test_incompatible_deploy_is_flagged_with_the_step_and_both_sides() -> None:
    calls = Calls()
    in_flight, done = await recorded(calls)
    before = dict(calls.counts)

    async def v3(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:  # charge -> v2 RPC
        receipt = await workflow.do("charge", "payments.charge_v2", {"order": data["order"]})
        await workflow.do("audit", lambda: calls.hit("audit"))
        return {"shipped": receipt.receipt_id}

    registry = build(calls, v3)
    result = await replay(in_flight, registry=registry, check=False)
    assert not result.ok
    [problem] = result.problems
    assert (problem.kind, problem.step_key) == ("nondeterminism", "charge")
    assert problem.recorded == "rpc 'payments.charge'" and problem.new == "rpc 'payments.charge_v2'"
    with pytest.raises(WorkflowNonDeterminismError, match=r"step 'charge'.*recorded: rpc 'payments\.charge'"):
        await replay(done, registry=registry)
    assert calls.counts == before


async def test_other_data_kind_changes_and_types_are_flagged() -> None:
    calls = Calls()
    in_flight, done = await recorded(calls)

    async def other_data(workflow: Workflow, data: dict[str, Any]) -> None:
        await workflow.do("charge", "payments.charge", {"order": data["order"] + 100})

    result = await replay(in_flight, registry=build(calls, other_data), check=False)
    assert [(p.kind, p.step_key) for p in result.problems] == [("nondeterminism", "charge")]
    assert result.problems[0].recorded and result.problems[0].recorded.startswith("data digest")

    async def sleep_became_step(workflow: Workflow, data: dict[str, Any]) -> None:
        await workflow.do("charge", "payments.charge", {"order": data["order"]})
        await workflow.do("audit", lambda: None)
        await workflow.do("coolOff", lambda: None)

    result = await replay(done, registry=build(calls, sleep_became_step), check=False)
    assert [(p.step_key, p.recorded, p.new) for p in result.problems] == [("coolOff", "sleep", "inline")]

    result = await replay(in_flight, registry=build(calls, v1(calls), receipt=StrictReceipt), check=False)
    assert [(p.kind, p.step_key) for p in result.problems] == [("result", "charge")]

    result = await replay(in_flight, registry=Registry(), check=False)
    assert [p.kind for p in result.problems] == ["workflow"]


async def test_workflow_code_raising_on_replay_is_reported() -> None:
    calls = Calls()
    in_flight, _ = await recorded(calls)

    async def broken(workflow: Workflow, data: dict[str, Any]) -> None:
        receipt = await workflow.do("charge", "payments.charge", {"order": data["order"]})
        raise KeyError(receipt.receipt_id)

    result = await replay(in_flight, registry=build(calls, broken), check=False)
    assert [p.kind for p in result.problems] == ["error"] and "KeyError" in result.problems[0].message


async def test_history_json_round_trip() -> None:
    calls = Calls()
    in_flight, done = await recorded(calls)
    text = json.dumps([in_flight.to_json(), done.to_json()])
    loaded = load_histories(json.loads(text))
    assert [h.run.id for h in loaded] == [in_flight.run.id, done.run.id]
    assert loaded[1].steps.keys() == done.steps.keys()
    result = await replay_history(loaded[1], registry=build(calls, v1(calls)))
    assert result.ok and result.outcome == "completed"


# ------------------------------------------------------------------------ pikku-runs replay

APP_V2 = '''
from typing import Any

from pikku_typing import pikku_func, wire_workflow


@pikku_func(name="payments.charge")
async def charge(data: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError("replay must not run a step")


@pikku_func(name="payments.charge_v2")
async def charge_v2(data: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError("replay must not run a step")


@pikku_func(name="shipping.ship")
async def ship(data: dict[str, Any]) -> str:
    raise AssertionError("replay must not run a step")


async def checkout(workflow, data: dict[str, Any]) -> dict[str, Any]:
    receipt = await workflow.do("charge", "RPC", {"order": data["order"]})
    await workflow.do("audit", lambda: None)
    await workflow.sleep("coolOff", "1d")
    shipped = await workflow.do("ship", "shipping.ship", {"receipt": receipt["receipt_id"]})
    return {"shipped": shipped}


wire_workflow(name="checkout", func=checkout)
'''


def _runs(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pikku_typing.runtime.runs_cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_pikku_runs_export_and_replay(tmp_path: Path) -> None:
    calls = Calls()
    state_dir = tmp_path / "state"
    store = FileWorkflowStateService(state_dir)
    try:
        in_flight, done = await recorded(calls, store)
    finally:
        await store.close()
    (tmp_path / "app_ok.py").write_text(APP_V2.replace('"RPC"', '"payments.charge"'), encoding="utf-8")
    (tmp_path / "app_bad.py").write_text(APP_V2.replace('"RPC"', '"payments.charge_v2"'), encoding="utf-8")
    store_arg = f"--store=file:{state_dir}"

    exported = _runs(tmp_path, store_arg, "export", in_flight.run.id)
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "history.json").write_text(exported.stdout, encoding="utf-8")
    assert json.loads(exported.stdout)["run"]["id"] == in_flight.run.id

    ok = _runs(tmp_path, store_arg, "replay", "--all-unsettled", done.run.id, "--app", "app_ok")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "replayed 2 runs" in ok.stdout and "all replay" in ok.stdout

    bad = _runs(tmp_path, store_arg, "replay", "--all-unsettled", "--app", "app_bad", "--format", "json")
    assert bad.returncode == 1, bad.stderr
    report = json.loads(bad.stdout)
    assert report["ok"] is False
    [run] = report["runs"]
    assert run["run_id"] == in_flight.run.id
    assert run["problems"][0]["step_key"] == "charge"
    assert run["problems"][0]["recorded"] == "rpc 'payments.charge'"
    assert run["problems"][0]["new"] == "rpc 'payments.charge_v2'"

    from_file = _runs(tmp_path, "replay", "--from", "history.json", "--app", "app_bad")
    assert from_file.returncode == 1
    assert "FAIL" in from_file.stdout and "recorded: rpc 'payments.charge'" in from_file.stdout
    assert "new code: rpc 'payments.charge_v2'" in from_file.stdout


def test_pikku_runs_replay_usage_errors(tmp_path: Path) -> None:
    nothing = _runs(tmp_path, "replay")
    assert nothing.returncode == 2 and "--all-unsettled" in nothing.stderr
    (tmp_path / "bad.json").write_text("{nope", encoding="utf-8")
    bad = _runs(tmp_path, "replay", "--from", "bad.json", "--app", "json")
    assert bad.returncode == 2 and "not JSON" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "h.json").write_text('{"run": {"id": 1}}', encoding="utf-8")
    invalid = _runs(tmp_path, "replay", "--from", "h.json", "--app", "json")
    assert invalid.returncode == 2 and "invalid history" in invalid.stderr
    (tmp_path / "ok.json").write_text("[]", encoding="utf-8")
    no_app = _runs(tmp_path, "replay", "--from", "ok.json", "--app", "no_such_module_xyz")
    assert no_app.returncode == 2 and "cannot import 'no_such_module_xyz'" in no_app.stderr
    missing = _runs(tmp_path, "--store", f"file:{tmp_path}", "export", "nope")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


async def test_a_run_records_the_version_registered_by_the_generated_wirings() -> None:
    from pikku_typing.wiring import set_workflow_versions, workflow_version

    calls = Calls()
    reg = build(calls, v1(calls))
    for name in ("versioned-checkout", "unversioned-checkout"):
        reg.workflows[name] = WorkflowDefinition(
            name=name, func=v1(calls), input_type=dict[str, Any], output_type=dict[str, Any]
        )
    async with WorkflowTestEnv(registry=reg) as env:
        unversioned = await env.start("unversioned-checkout", {"order": 1})
        assert workflow_version("unversioned-checkout") is None
        assert (await env.get_run(unversioned.run_id)).version is None
        set_workflow_versions({"versioned-checkout": "feedc0ffee123456"})
        run = await env.start("versioned-checkout", {"order": 2})
        assert (await env.get_run(run.run_id)).version == "feedc0ffee123456"
        history = await env.history(run.run_id)
        assert history.to_json()["run"]["version"] == "feedc0ffee123456"


def test_generated_wirings_register_the_meta_versions(tmp_path: Path) -> None:
    """The example app's generated workflow_wirings registers the hash of its meta."""
    from pikku_typing.meta import AnalysisReport

    root = Path(__file__).resolve().parent.parent / "examples"
    meta = AnalysisReport.model_validate_json((root / "pikku_gen" / "workflow_meta.json").read_text())
    expected = {w.name: structural_hash(w) for w in meta.workflows}
    code = (
        "import json, sys; sys.path.insert(0, '.'); import pikku_gen.workflow_wirings as w; "
        "from pikku_typing.wiring import workflow_version; "
        "print(json.dumps({n: workflow_version(n) for n in w.WORKFLOW_VERSIONS}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == expected


# ------------------------------------------- events, child runs, recorded values (SPEC 8)


def _events_history() -> tuple[History, Registry]:
    from datetime import UTC, datetime
    from typing import TypedDict

    from pikku_typing.models import StepKind, StepState, StepStatus, WorkflowRun
    from pikku_typing.runtime import codec
    from pikku_typing.wiring import EventDefinition

    class Payment(TypedDict):
        amount: int

    class Bill(TypedDict):
        total: int

    async def order(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
        paid = await workflow.wait_for_event("paid", "payment.received", timeout="3d")
        late = await workflow.wait_for_event("late", "payment.received", timeout="1h")
        when = await workflow.now()
        bill = await workflow.run_child("bill", "billing", {"amount": paid["amount"]})
        audit = await workflow.start_child("audit", "billing", {"amount": 0})
        return {"total": bill["total"], "late": late, "when": when.isoformat(), "audit": audit}

    async def billing(workflow: Workflow, data: dict[str, Any]) -> Bill:
        return {"total": data["amount"]}

    registry = Registry(
        workflows={
            "order": WorkflowDefinition(name="order", func=order, input_type=dict[str, Any]),
            "billing": WorkflowDefinition(name="billing", func=billing, input_type=dict[str, Any], output_type=Bill),
        },
        events={"payment.received": EventDefinition(name="payment.received", payload_type=Payment)},
    )
    ok = StepStatus.SUCCEEDED
    recorded = [
        StepState(key="paid", step_name="paid", kind=StepKind.EVENT, rpc_name="payment.received", status=ok,
                  result={"seq": 1, "payload": {"amount": 5}}),
        StepState(key="late", step_name="late", kind=StepKind.EVENT, rpc_name="payment.received", status=ok,
                  result={"timed_out": True}),
        StepState(key="now", step_name="now", kind=StepKind.VALUE, rpc_name="now", status=ok,
                  result=datetime(2026, 1, 1, tzinfo=UTC).isoformat()),
        StepState(key="bill", step_name="bill", kind=StepKind.CHILD, rpc_name="billing", status=ok,
                  data_digest=codec.digest({"amount": 5}),
                  result={"run_id": "child-1", "status": "completed", "output": {"total": 5}}),
        StepState(key="audit", step_name="audit", kind=StepKind.CHILD, rpc_name="billing", status=ok,
                  data_digest=codec.digest({"amount": 0}), result={"run_id": "child-2"}),
    ]
    run = WorkflowRun[Any, Any](id="parent-1", workflow="order", status=RunStatus.COMPLETED, input={})
    return History(run=run, steps={s.key: s for s in recorded}), registry


async def test_events_children_and_values_replay_from_their_records() -> None:
    history, registry = _events_history()
    result = await replay(history, registry=registry)
    assert result.outcome == "completed"
    assert result.replayed_steps == ["paid", "late", "now", "bill", "audit"]


async def test_events_children_and_values_mismatches() -> None:
    history, registry = _events_history()

    async def other_event(workflow: Workflow, data: dict[str, Any]) -> None:
        await workflow.wait_for_event("paid", "payment.settled")

    registry.events["payment.settled"] = registry.events["payment.received"]
    registry.workflows["order"] = WorkflowDefinition(name="order", func=other_event)
    result = await replay(history, registry=registry, check=False)
    assert [(p.step_key, p.recorded, p.new) for p in result.problems] == [
        ("paid", "event 'payment.received'", "event 'payment.settled'")
    ]

    async def other_child_input(workflow: Workflow, data: dict[str, Any]) -> None:
        await workflow.wait_for_event("paid", "payment.received")
        await workflow.wait_for_event("late", "payment.received")
        await workflow.now()
        await workflow.run_child("bill", "billing", {"amount": 6})

    registry.workflows["order"] = WorkflowDefinition(name="order", func=other_child_input)
    result = await replay(history, registry=registry, check=False)
    assert [(p.kind, p.step_key) for p in result.problems] == [("nondeterminism", "bill")]

    async def now_became_random(workflow: Workflow, data: dict[str, Any]) -> None:
        await workflow.wait_for_event("paid", "payment.received")
        await workflow.wait_for_event("late", "payment.received")
        await workflow.random()

    registry.workflows["order"] = WorkflowDefinition(name="order", func=now_became_random)
    result = await replay(history, registry=registry, check=False)
    # the recorded "now" is not reached: "random" is new (the history ends there for it)
    assert result.ok and result.unreached == ["now", "bill", "audit"]


async def test_real_event_child_and_value_runs_replay_without_side_effects() -> None:
    """Runs recorded by the real runtime (WorkflowTestEnv): an event wait that times out after
    a day (instantly, on the environment's clock), one that gets its event, a child run, a
    started child and recorded values; all replay on the same code, nothing runs again, and a
    changed event name is flagged."""
    from typing import TypedDict

    from pikku_typing.wiring import EventDefinition

    class Payment(TypedDict):
        amount: int

    effects = Calls()

    async def bill(data: dict[str, Any]) -> int:
        effects.hit("bill")
        return int(data["amount"]) * 2

    async def billing(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
        return {"total": await workflow.do("bill", "billing.bill", data)}

    def order_flow(event_name: str) -> Any:
        async def order(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
            paid = await workflow.wait_for_event("paid", event_name, timeout="1d")
            amount = paid["amount"] if paid is not None else 0
            when = await workflow.now()
            token = await workflow.uuid4()
            child = await workflow.run_child("invoice", "billing", {"amount": amount})
            audit = await workflow.start_child("audit", "billing", {"amount": 1})
            return {"total": child["total"], "when": when.isoformat(), "token": str(token), "audit": audit}

        return order

    def reg(event_name: str) -> Registry:
        return Registry(
            workflows={
                "order": WorkflowDefinition(name="order", func=order_flow(event_name), input_type=dict[str, Any]),
                "billing": WorkflowDefinition(name="billing", func=billing, input_type=dict[str, Any]),
            },
            rpcs={
                "billing.bill": RPCDefinition(
                    name="billing.bill", func=bill, is_async=True, input_type=dict[str, Any], output_type=int
                )
            },
            events={
                name: EventDefinition(name=name, payload_type=Payment)
                for name in ("payment.received", "payment.settled")
            },
        )

    async with WorkflowTestEnv(registry=reg("payment.received")) as env:
        timed_out = await env.run("order", {})  # nobody sends: the 1-day timeout passes at once
        assert timed_out["total"] == 0
        timed_out_id = env.last_run_id or ""
        with env.hold_clock():  # else the 1-day timeout passes before the event is sent
            waiting = await env.start("order", {})
            assert await env.send_event(waiting.run_id, "payment.received", {"amount": 21})
        paid = await env.result(waiting.run_id)
        assert paid["total"] == 42
        histories = [await env.history(timed_out_id), await env.history(waiting.run_id)]
        children = [r for r in await env.state.list_runs(workflow="billing") if r.parent_run_id]
        assert len(children) == 4 and all(r.status is RunStatus.COMPLETED for r in children)
    before = dict(effects.counts)
    assert before == {"bill": 4}
    for history in histories:
        result = await replay(history, registry=reg("payment.received"))
        assert result.outcome == "completed"
        assert {"paid", "now", "uuid4", "invoice", "audit"} <= set(result.replayed_steps)
    assert effects.counts == before  # no step ran again
    flagged = await replay(histories[1], registry=reg("payment.settled"), check=False)
    assert [(p.step_key, p.recorded, p.new) for p in flagged.problems] == [
        ("paid", "event 'payment.received'", "event 'payment.settled'")
    ]


def test_pikku_runs_replay_imports_the_generated_wirings_by_default(tmp_path: Path) -> None:
    """Without --app, the generated <package>.workflow_wirings of the [tool.pikku] project around
    the current directory is the current code (here: a copy of the example app)."""
    import shutil

    project = tmp_path / "examples"
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples", project)
    history = {
        "pikku_history": 1,
        "run": {
            "id": "run-1",
            "workflow": "onboarding",
            "status": "suspended",
            "input": {"email": "a@example.com", "name": "A", "plan_price": "9.50"},
        },
        "steps": [],
    }
    (project / "h.json").write_text(json.dumps(history), encoding="utf-8")
    ok = _runs(project, "replay", "--from", "h.json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all replay" in ok.stdout and "end of history" in ok.stdout
    history["run"]["workflow"] = "gone"  # type: ignore[index]
    (project / "h.json").write_text(json.dumps(history), encoding="utf-8")
    gone = _runs(project, "replay", "--from", "h.json", "--format", "json")
    assert gone.returncode == 1
    assert json.loads(gone.stdout)["runs"][0]["problems"][0]["kind"] == "workflow"
