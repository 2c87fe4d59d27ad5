"""``UNRESOLVED_STEP_KIND``, ``UNKNOWN_RPC``: every ``workflow.do`` is statically an RPC
step calling a defined RPC, or an inline step."""

from __future__ import annotations

import difflib

from pikku_analyzer.checks.base import Check, Loc, Report
from pikku_analyzer.facts import DYNAMIC
from pikku_analyzer.link import Project


def close_match(name: str, candidates: list[str]) -> str | None:
    """The one close match of ``name`` (difflib, cutoff 0.6), or None if none or several:
    the rename ``--fix`` applies."""
    matches = difflib.get_close_matches(name, candidates, n=2, cutoff=0.6)
    return matches[0] if len(matches) == 1 else None


def check_step_kinds(project: Project, report: Report) -> None:
    rpc_names = project.rpc_names
    known = set(rpc_names)
    for body in project.bodies.values():
        for step in body.steps:
            fact = step.fact
            at = Loc(step.unit.rel, fact["line"], fact["column"])
            if step.unresolved:
                report(
                    "UNRESOLVED_STEP_KIND",
                    at,
                    f"cannot tell whether step {step.step_name!r} is an RPC or an inline step: "
                    f"{step.unresolved}",
                )
            name = step.rpc_name
            if name is None or name == DYNAMIC or name in known:
                continue
            close = difflib.get_close_matches(name, rpc_names, n=3, cutoff=0.6)
            hint = (
                f"did you mean {' or '.join(repr(c) for c in close)}?"
                if close
                else "define it with @pikku_func(name=...)"
            )
            span = fact.get("rpc_span")
            report(
                "UNKNOWN_RPC",
                Loc(step.unit.rel, span[0], span[1] + 1) if span else at,
                f"step {step.step_name!r} calls RPC {name!r}, which no @pikku_func defines",
                hint=hint,
                rpc_name=name,
                suggestion=close_match(name, rpc_names),
            )


CHECK = Check("step kinds", frozenset({"UNRESOLVED_STEP_KIND", "UNKNOWN_RPC"}), check_step_kinds)
