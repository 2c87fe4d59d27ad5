"""``UNKNOWN_WORKFLOW`` (SPEC section 8): a child step (``run_child``/``start_child``) or a
client (``runtime.client(...)``, ``workflow_client(runtime, ...)``) names a workflow that no
``wire_workflow`` wires."""

from __future__ import annotations

from pikku_analyzer.checks.base import Check, Report, did_you_mean
from pikku_analyzer.checks.names import name_uses
from pikku_analyzer.link import Project

_WHAT = {
    "run_child": "runs child workflow",
    "start_child": "starts child workflow",
    "client": "asks for a client of workflow",
    "workflow_client": "asks for a client of workflow",
}


def check_children(project: Project, report: Report) -> None:
    known = sorted(project.workflow_names())
    for use in name_uses(project):
        if use.kind != "workflow" or use.name in known:
            continue
        hint, close = did_you_mean(
            use.name, known, "wire it with wire_workflow(name=..., func=...) or fix the name"
        )
        report(
            "UNKNOWN_WORKFLOW",
            use.at,
            f"{use.via}(...) {_WHAT.get(use.via, 'names workflow')} {use.name!r}, which no "
            "wire_workflow wires",
            hint=hint,
            workflow=use.name,
            suggestion=close[0] if len(close) == 1 else None,
        )


CHECK = Check("child workflows", frozenset({"UNKNOWN_WORKFLOW"}), check_children)
