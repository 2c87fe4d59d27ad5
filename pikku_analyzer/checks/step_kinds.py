"""``UNRESOLVED_STEP_KIND``, ``UNKNOWN_RPC``: every ``workflow.do`` is statically an RPC
step calling a defined RPC, or an inline step."""

from __future__ import annotations

from pikku_analyzer.checks.base import Check, Loc, Report, did_you_mean
from pikku_analyzer.facts import DYNAMIC
from pikku_analyzer.link import Project


def close_match(name: str, candidates: list[str]) -> str | None:
    """The one close match of ``name`` (difflib, cutoff 0.6), or None if none or several:
    the rename ``--fix`` applies."""
    import difflib  # only when an RPC is unknown: keeps a clean run's imports small

    matches = difflib.get_close_matches(name, candidates, n=2, cutoff=0.6)
    return matches[0] if len(matches) == 1 else None


def check_step_kinds(project: Project, report: Report) -> None:
    rpc_names = project.rpc_names
    known = set(rpc_names)
    for body in project.bodies.values():
        for step in body.steps:
            fact = step.fact
            if step.unresolved:
                report(
                    "UNRESOLVED_STEP_KIND",
                    Loc(step.unit.rel, fact["line"], fact["column"]),
                    f"cannot tell whether step {step.step_name!r} is an RPC or an inline step: "
                    f"{step.unresolved}",
                )
            name = step.rpc_name
            if name is None or name == DYNAMIC or name in known:
                continue
            hint, close = did_you_mean(name, rpc_names, "define it with @pikku_func(name=...)")
            span = fact.get("rpc_span")
            report(
                "UNKNOWN_RPC",
                Loc(step.unit.rel, span[0], span[1] + 1)
                if span
                else Loc(step.unit.rel, fact["line"], fact["column"]),
                f"step {step.step_name!r} calls RPC {name!r}, which no @pikku_func defines",
                hint=hint,
                rpc_name=name,
                suggestion=close[0] if len(close) == 1 else None,
            )


CHECK = Check("step kinds", frozenset({"UNRESOLVED_STEP_KIND", "UNKNOWN_RPC"}), check_step_kinds)
