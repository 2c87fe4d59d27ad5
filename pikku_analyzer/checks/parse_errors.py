"""``SYNTAX_ERROR``, ``ANALYZER_ERROR``: a file that does not parse, or whose analysis failed."""

from __future__ import annotations

from pikku_analyzer.checks.base import Check, Loc, Report
from pikku_analyzer.link import Project


def check_parse_errors(project: Project, report: Report) -> None:
    for unit in project.units.values():
        facts = unit.facts
        error = facts["syntax_error"]
        if error:
            report(
                "SYNTAX_ERROR",
                Loc(unit.rel, error["line"], error["column"]),
                f"cannot parse {unit.rel}: {error['message']}",
                hint="fix the syntax error; the other files are still analysed",
            )
        if facts["internal_error"]:
            report(
                "ANALYZER_ERROR", Loc(unit.rel, 1, 1), f"analysis failed: {facts['internal_error']}"
            )


CHECK = Check("parse errors", frozenset({"SYNTAX_ERROR", "ANALYZER_ERROR"}), check_parse_errors)
