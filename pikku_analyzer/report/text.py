"""The terminal report: workflows with their steps as tables, RPCs, diagnostics with a
source excerpt, and a summary line. Colour only when asked (the CLI asks on a TTY)."""

from __future__ import annotations

from typing import Any

from pikku_analyzer.engine import AnalysisResult, source_lines
from pikku_analyzer.facts import StepInfo
from pikku_typing._term import Painter, table


def _table(headers: list[str], rows: list[list[str]], style: Painter, indent: str = "    ") -> list[str]:
    """Plain headers over a rule of dashes (the shared :func:`pikku_typing._term.table`)."""
    return table(headers, rows, style, indent=indent, header_style=None, rule=True)

def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return f"{int(value)}s"
    if isinstance(value, float):
        return f"{value}s"
    return str(value)


def _step_row(index: int, step: StepInfo) -> list[str]:
    kind = step["type"]
    if kind == "rpc":
        target = step["rpc_name"]
    elif kind == "sleep":
        target = _fmt(step.get("duration"))
    elif kind == "event":
        target = f"event {step['event_name']}" + (f" (timeout {_fmt(step['timeout'])})" if step.get("timeout") else "")
    elif kind == "child":
        target = f"{'run' if step.get('wait', True) else 'start'} {step['workflow_name']}"
    else:
        target = "(inline)"
    notes: list[str] = []
    if step.get("retries") is not None:
        notes.append(f"retries={step['retries']}")
    if step.get("retry_delay") is not None:
        notes.append(f"retry_delay={_fmt(step['retry_delay'])}")
    if step.get("in_loop"):
        notes.append("in loop")
    if step.get("description"):
        notes.append(f'"{step["description"]}"')
    return [str(index), str(step["step_name"]), kind, target, str(step["line"]), " ".join(notes)]


def render_text(result: AnalysisResult, *, color: bool = False) -> str:
    style = Painter(color)
    data = result.data
    out: list[str] = []
    workflows = data["workflows"]
    out.append(style(f"Workflows ({len(workflows)})", "bold"))
    if not workflows:
        out.append("  (none found)")
    for workflow in workflows:
        out.append("")
        out.append(
            f"  {style(workflow['name'], 'cyan')}  [{workflow['execution_mode']}]  "
            f"{workflow['func']}  ({workflow['file']}:{workflow['line']})"
        )
        if workflow.get("description"):
            out.append(f"    {workflow['description']}")
        out.append(f"    input: {workflow.get('input_type') or '-'}  output: {workflow.get('output_type') or '-'}")
        if workflow.get("tags"):
            out.append(f"    tags: {', '.join(workflow['tags'])}")
        if workflow.get("middleware"):
            out.append(f"    middleware: {', '.join(workflow['middleware'])}")
        steps = workflow["steps"]
        if steps:
            rows = [_step_row(i, s) for i, s in enumerate(steps, start=1)]
            out.extend(_table(["#", "step", "kind", "rpc / duration", "line", "notes"], rows, style))
        else:
            out.append("    (no steps found)")
    rpcs = data["rpcs"]
    out.append("")
    out.append(style(f"RPCs ({len(rpcs)})", "bold"))
    if rpcs:
        rows = [
            [
                r["name"],
                "async" if r.get("is_async", True) else "sync",
                r["func"],
                r.get("input_type") or "-",
                r.get("output_type") or "-",
            ]
            for r in rpcs
        ]
        out.extend(_table(["name", "", "function", "input", "output"], rows, style, "  "))
    else:
        out.append("  (none found)")
    events = data["events"]
    if events:  # SPEC 8: shown when the project declares any
        out.append("")
        out.append(style(f"Events ({len(events)})", "bold"))
        rows = [[e["name"], e.get("payload_type") or "-", f"{e['file']}:{e['line']}"] for e in events]
        out.extend(_table(["name", "payload", "declared at"], rows, style, "  "))
    diagnostics = result.diagnostics
    if diagnostics:
        out.append("")
        out.append(style(f"Diagnostics ({len(diagnostics)})", "bold"))
        cache: dict[str, list[str]] = {}
        for diag in diagnostics:
            out.append("")
            severity = style(diag.severity, diag.severity)
            out.append(f"{diag.file}:{diag.line}:{diag.column}: {severity} {style(diag.code, 'bold')} {diag.message}")
            if diag.file not in cache:
                cache[diag.file] = source_lines(result.config.root / diag.file)
            lines = cache[diag.file]
            if 0 < diag.line <= len(lines):
                text = lines[diag.line - 1].expandtabs(4)
                if len(text) > 200:
                    text = text[:200] + "…"
                number = str(diag.line)
                out.append(f"  {style(number, 'dim')} | {text}")
                caret_at = min(max(diag.column - 1, 0), len(text))
                out.append(f"  {' ' * len(number)} | {' ' * caret_at}{style('^', diag.severity)}")
            if diag.hint:
                out.append(f"  {style('hint:', 'green')} {diag.hint}")
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = len(diagnostics) - errors
    steps_total = sum(len(w["steps"]) for w in workflows)
    stats = result.stats
    summary = (
        f"{len(workflows)} workflow{'s' if len(workflows) != 1 else ''}, {steps_total} "
        f"step{'s' if steps_total != 1 else ''}, {len(rpcs)} RPC{'s' if len(rpcs) != 1 else ''}; "
        f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''} "
        f"({stats.files} files, {stats.candidates + stats.lazily_loaded} analysed, {stats.seconds:.2f}s)"
    )
    out.append("")
    out.append(style(summary, "error" if errors else ("warning" if warnings else "green")))
    return "\n".join(out) + "\n"
