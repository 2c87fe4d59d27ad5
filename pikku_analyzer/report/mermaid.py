"""``--format mermaid``: one flowchart subgraph per workflow; RPC, inline, sleep, event-wait
and child steps drawn with different shapes (rectangle, rounded, hexagon, parallelogram,
subroutine) and classes. A child step has a dotted edge to the child workflow's start
(``runs`` for ``run_child``, ``starts`` for ``start_child``) when that workflow is drawn."""

from __future__ import annotations

import re

from pikku_analyzer.engine import AnalysisResult
from pikku_analyzer.facts import StepInfo


def _label(text: str) -> str:
    return (
        text.replace("&", "#amp;")
        .replace('"', "#quot;")
        .replace("<", "#lt;")
        .replace(">", "#gt;")
    )


def _node_id(prefix: str, index: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', prefix)}_{index}"


def _step_node(node: str, step: StepInfo) -> str:
    name = _label(str(step["step_name"]))
    loop = " ⟳" if step.get("in_loop") else ""
    if step["type"] == "rpc":
        text = f"{name}{loop}<br/>rpc: {_label(str(step['rpc_name']))}"
        return f'{node}["{text}"]:::rpc'
    if step["type"] == "sleep":
        text = f"{name}{loop}<br/>sleep {_label(str(step.get('duration')))}"
        return f'{node}{{{{"{text}"}}}}:::sleep'
    if step["type"] == "event":
        timeout = step.get("timeout")
        until = "" if timeout is None else f"<br/>timeout {_label(str(timeout))}"
        text = f"{name}{loop}<br/>wait: {_label(str(step['event_name']))}{until}"
        return f'{node}[/"{text}"/]:::event'
    if step["type"] == "child":
        verb = "run" if step.get("wait", True) else "start"
        text = f"{name}{loop}<br/>{verb} child: {_label(str(step['workflow_name']))}"
        return f'{node}[["{text}"]]:::child'
    text = f"{name}{loop}<br/>inline"
    return f'{node}("{text}"):::inline'


def render_mermaid(result: AnalysisResult) -> str:
    lines = ["flowchart TD"]
    starts: dict[str, str] = {}
    for w_index, workflow in enumerate(result.data["workflows"]):
        prefix = f"w{w_index}_{workflow['name']}"
        starts.setdefault(str(workflow["name"]), f"{_node_id(prefix, 0)}_start")
    child_edges: list[str] = []
    for w_index, workflow in enumerate(result.data["workflows"]):
        prefix = f"w{w_index}_{workflow['name']}"
        title = _label(f"{workflow['name']} ({workflow['execution_mode']})")
        lines.append(f'  subgraph {_node_id(prefix, 0)}_graph["{title}"]')
        lines.append("    direction TB")
        start = f"{_node_id(prefix, 0)}_start"
        end = f"{_node_id(prefix, 0)}_end"
        lines.append(f"    {start}([start])")
        previous = start
        for s_index, step in enumerate(workflow["steps"], start=1):
            node = _node_id(prefix, s_index)
            lines.append(f"    {_step_node(node, step)}")
            lines.append(f"    {previous} --> {node}")
            previous = node
            if step["type"] == "child" and str(step["workflow_name"]) in starts:
                verb = "runs" if step.get("wait", True) else "starts"
                child_edges.append(f"  {node} -.->|{verb}| {starts[str(step['workflow_name'])]}")
        lines.append(f"    {end}([end])")
        lines.append(f"    {previous} --> {end}")
        lines.append("  end")
    lines.extend(child_edges)
    lines.append("  classDef rpc fill:#dbeafe,stroke:#1d4ed8")
    lines.append("  classDef inline fill:#dcfce7,stroke:#15803d")
    lines.append("  classDef sleep fill:#fef3c7,stroke:#b45309")
    lines.append("  classDef event fill:#fce7f3,stroke:#be185d")
    lines.append("  classDef child fill:#ede9fe,stroke:#6d28d9")
    return "\n".join(lines) + "\n"
