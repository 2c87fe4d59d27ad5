"""``NON_DETERMINISTIC_CALL``: a workflow body (and the helpers it calls with the workflow
object) is re-run on every replay, so clocks, randomness and I/O belong in steps."""

from __future__ import annotations

from pikku_analyzer.checks.base import Check, Loc, Report
from pikku_analyzer.link import Project


def check_determinism(project: Project, report: Report) -> None:
    for body in project.bodies.values():
        for unit, call in body.nondet:
            report(
                "NON_DETERMINISTIC_CALL",
                Loc(unit.rel, call["line"], call["column"]),
                call["message"],
                hint=call["hint"],
                name=call["name"],
                alias=call.get("alias"),
            )


CHECK = Check("determinism", frozenset({"NON_DETERMINISTIC_CALL"}), check_determinism)
