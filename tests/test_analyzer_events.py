"""Issue 13, static side (SPEC section 8): ``wire_event``, event and child steps, the report's
``events``, the mermaid diagram, UNKNOWN_EVENT / DUPLICATE_EVENT_NAME / UNKNOWN_WORKFLOW,
NESTED_STEP across modules, and the NON_DETERMINISTIC_CALL hints at the helpers."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from pikku_analyzer import analyze, load_config, render
from pikku_typing.meta import AnalysisReport, ChildStepMeta, EventStepMeta

FILES = {
    "app/__init__.py": "",
    "app/types.py": """
        from dataclasses import dataclass

        @dataclass
        class PaymentReceived:
            amount: int
    """,
    "app/events.py": """
        from pikku_typing import wire_event
        from app.types import PaymentReceived

        wire_event(name="payment.received", payload=PaymentReceived)
        wire_event(name="order.cancelled")
    """,
    "app/helpers.py": """
        async def audit(w):
            await w.do("auditStep", lambda: 1)
    """,
    "app/flows.py": """
        from datetime import timedelta
        from pikku_typing import Workflow, wire_workflow
        from app.helpers import audit

        EVENT = "payment" + ".received"

        async def order(workflow: Workflow, data: dict) -> dict:
            paid = await workflow.wait_for_event("awaitPayment", EVENT, timeout="3d")
            gone = await workflow.wait_for_event("awaitCancel", event_name="order.cancelled")
            late = await workflow.wait_for_event("awaitLate", "order.cancelled", timedelta(hours=1))
            receipt = await workflow.run_child("bill", "billing", {"order": 1})
            audit_id = await workflow.start_child("audit", "audit", {"order": 1})
            now = await workflow.now()
            token = await workflow.uuid4()
            await workflow.do("outer", lambda: audit(workflow))
            return {}

        async def billing(workflow: Workflow, data: dict) -> dict:
            return {}

        async def auditing(workflow: Workflow, data: dict) -> None:
            await workflow.wait_for_event("never", "no.such.event")

        wire_workflow(name="order", func=order)
        wire_workflow(name="billing", func=billing)
        wire_workflow(name="audit", func=auditing)
    """,
    "app/web.py": """
        from pikku_typing import WorkflowRuntime
        from app.types import PaymentReceived

        runtime = WorkflowRuntime()
        orders = runtime.client("order")

        async def callback(run_id: str) -> bool:
            return await orders.send_event(run_id, "payment.received", PaymentReceived(5))
    """,
}


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text('[tool.pikku]\nsrc = ["."]\n', encoding="utf-8")
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content), encoding="utf-8")
    return tmp_path


def test_events_and_children_in_the_json_report(tmp_path: Path) -> None:
    result = analyze(load_config(project(tmp_path, FILES)), use_cache=False)
    data = json.loads(render(result, "json"))
    report = AnalysisReport.model_validate(data)
    assert [e.model_dump() for e in report.events] == [
        {"name": "order.cancelled", "payload_type": None, "file": "app/events.py", "line": 6, "module": "app.events"},
        {
            "name": "payment.received",
            "payload_type": "app.types.PaymentReceived",
            "file": "app/events.py",
            "line": 5,
            "module": "app.events",
        },
    ]
    order = report.workflow("order")
    assert order is not None
    events = [s for s in order.steps if isinstance(s, EventStepMeta)]
    assert [(s.step_name, s.event_name, s.timeout) for s in events] == [
        ("awaitPayment", "payment.received", "3d"),
        ("awaitCancel", "order.cancelled", None),
        ("awaitLate", "order.cancelled", 3600.0),
    ]
    children = [s for s in order.steps if isinstance(s, ChildStepMeta)]
    assert [(s.step_name, s.workflow_name, s.wait) for s in children] == [
        ("bill", "billing", True),
        ("audit", "audit", False),
    ]
    # now()/uuid4() are deterministic helpers: no step, no NON_DETERMINISTIC_CALL
    assert [s.step_name for s in order.steps] == ["awaitPayment", "awaitCancel", "awaitLate", "bill", "audit", "outer"]
    found = [(d.code, d.file, d.line) for d in result.diagnostics]
    assert found == [
        ("NESTED_STEP", "app/flows.py", 16),  # a helper of another module run inside a step
        ("UNKNOWN_EVENT", "app/flows.py", 23),
    ]


def test_unknown_names_outside_workflows(tmp_path: Path) -> None:
    files = dict(FILES)
    files["app/web.py"] = FILES["app/web.py"].replace('"order"', '"ordr"').replace(
        '"payment.received", Pay', '"payment.recieved", Pay'
    )
    result = analyze(load_config(project(tmp_path, files)), use_cache=False)
    web = [(d.code, d.line, d.hint) for d in result.diagnostics if d.file == "app/web.py"]
    assert web == [
        ("UNKNOWN_WORKFLOW", 6, "did you mean 'order'?"),
        ("UNKNOWN_EVENT", 9, "did you mean 'payment.received'?"),
    ]


def test_duplicate_event_and_unknown_child(tmp_path: Path) -> None:
    files = dict(FILES)
    files["app/more_events.py"] = 'from pikku_typing import wire_event\nwire_event(name="order.cancelled", payload=int)\n'
    files["app/flows.py"] = FILES["app/flows.py"].replace('"billing", {"order"', '"biling", {"order"')
    result = analyze(load_config(project(tmp_path, files)), use_cache=False)
    found = [(d.code, d.file, d.line) for d in result.diagnostics]
    assert ("DUPLICATE_EVENT_NAME", "app/more_events.py", 2) in found
    assert ("UNKNOWN_WORKFLOW", "app/flows.py", 12) in found
    assert [e["name"] for e in result.data["events"]] == ["order.cancelled", "payment.received"]
    assert result.exit_code == 1


def test_mermaid_shows_waits_and_child_edges(tmp_path: Path) -> None:
    result = analyze(load_config(project(tmp_path, FILES)), use_cache=False)
    text = render(result, "mermaid")
    waits = [line for line in text.splitlines() if ":::event" in line]
    assert len(waits) == 4 and all('[/"' in line for line in waits)
    assert any("wait: payment.received<br/>timeout 3d" in line for line in waits)
    children = [line for line in text.splitlines() if ":::child" in line]
    assert len(children) == 2 and all('[["' in line for line in children)
    edges = [line.strip() for line in text.splitlines() if "-.->" in line]
    assert len(edges) == 2
    assert any("-.->|runs|" in e and e.endswith("_billing_0_start") for e in edges)
    assert any("-.->|starts|" in e and e.endswith("_audit_0_start") for e in edges)


def test_text_report_shows_event_and_child_steps(tmp_path: Path) -> None:
    result = analyze(load_config(project(tmp_path, FILES)), use_cache=False)
    text = render(result, "text")
    assert "event payment.received (timeout 3d)" in text
    assert "run billing" in text and "start audit" in text
    events = text[text.index("Events (2)") :].splitlines()
    assert events[3].split() == ["order.cancelled", "-", "app/events.py:6"]
    assert events[4].split() == ["payment.received", "app.types.PaymentReceived", "app/events.py:5"]


def test_non_deterministic_hints_name_the_helpers(tmp_path: Path) -> None:
    flow = """
        import random
        import time
        import uuid
        from datetime import datetime
        from pikku_typing import Workflow, wire_workflow

        async def flow(wf: Workflow, data: dict) -> None:
            a = time.time()
            b = datetime.now()
            c = uuid.uuid4()
            d = random.random()
            e = random.randint(1, 2)

        wire_workflow(name="flow", func=flow)
    """
    result = analyze(load_config(project(tmp_path, {"flow.py": flow})), use_cache=False)
    hints = [d.hint or "" for d in result.diagnostics if d.code == "NON_DETERMINISTIC_CALL"]
    assert len(hints) == 5
    assert "await wf.now()" in hints[0] and "await wf.now()" in hints[1]
    assert "await wf.uuid4()" in hints[2]
    assert "await wf.random()" in hints[3]
    assert 'await wf.do("name"' in hints[4]


def test_names_used_through_an_imported_runtime_or_client(tmp_path: Path) -> None:
    """A web module that imports the runtime (and mentions no pikku name) is checked too."""
    files = dict(FILES)
    files["app/web.py"] = """
        from app.types import PaymentReceived
        from app.web_runtime import orders, runtime
        from app import web_runtime
        import boto3

        s3 = boto3.client("s3")
        other = runtime.client("ordr")
        refunds = runtime.client("order")

        async def callback(run_id: str) -> None:
            await orders.send_event(run_id, "payment.recieved", PaymentReceived(1))
            await refunds.send_event(run_id, "payment.received", PaymentReceived(1))
            await refunds.send_event(run_id, "nope", PaymentReceived(1))
            await web_runtime.runtime.send_event(run_id, "nope.either", None)
            await s3.send_event(run_id, "not.ours", None)
    """
    files["app/web_runtime.py"] = """
        from pikku_typing import WorkflowRuntime

        runtime = WorkflowRuntime()
        orders = runtime.client("order")
    """
    result = analyze(load_config(project(tmp_path, files)), use_cache=False)
    web = [(d.code, d.line) for d in result.diagnostics if d.file == "app/web.py"]
    assert web == [
        ("UNKNOWN_WORKFLOW", 8),
        ("UNKNOWN_EVENT", 12),
        ("UNKNOWN_EVENT", 14),
        ("UNKNOWN_EVENT", 15),
    ]
