"""``DYNAMIC_STEP_NAME``, ``DUPLICATE_STEP_NAME``: step names are the keys of a run's
history, so they are readable and unique within a workflow (outside loops and exclusive
``if``/``match`` arms)."""

from __future__ import annotations

from pikku_analyzer.checks.base import Check, Loc, Report
from pikku_analyzer.facts import DYNAMIC
from pikku_analyzer.link import PlacedStep, Project, exclusive


def check_step_names(project: Project, report: Report) -> None:
    for body in project.bodies.values():
        literal: dict[str, list[PlacedStep]] = {}
        for step in body.steps:
            if step.step_name == DYNAMIC and step.description is None:
                report(
                    "DYNAMIC_STEP_NAME",
                    Loc(step.unit.rel, step.fact["line"], step.fact["column"]),
                    "the step name is not a string literal and the step has no description=",
                    hint='use a literal step name, or add description="..." so the step stays readable',
                )
            if step.step_name != DYNAMIC and not step.in_loop:
                literal.setdefault(step.step_name, []).append(step)
        for name, group in literal.items():
            for index, later in enumerate(group[1:], start=1):
                clash = next(
                    (e for e in group[:index] if not exclusive(e.branches, later.branches)), None
                )
                if clash is None:
                    continue
                line = clash.fact["line"]
                where = f"line {line}" if clash.unit.rel == later.unit.rel else f"{clash.unit.rel}:{line}"
                report(
                    "DUPLICATE_STEP_NAME",
                    Loc(later.unit.rel, later.fact["line"], later.fact["column"]),
                    f"step name {name!r} is already used at {where} of this workflow",
                    step_name=name,
                    first_file=clash.unit.rel,
                    first_line=line,
                )


CHECK = Check("step names", frozenset({"DYNAMIC_STEP_NAME", "DUPLICATE_STEP_NAME"}), check_step_names)
