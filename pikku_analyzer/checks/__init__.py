"""The checks: one module per diagnostic family, run over the linked
:class:`~pikku_analyzer.link.Project`.

To add a diagnostic: add its code to :mod:`pikku_analyzer.codes` (severity, title, help,
hint), write ``checks/<family>.py`` with a ``check_<family>(project, report)`` function that
calls ``report(code, Loc(file, line, column), message, hint=..., **data)`` and a
``CHECK = Check(name, frozenset({codes}), check_<family>)``, and add ``CHECK`` to
:data:`CHECKS` below. A check reads the typed facts (:mod:`pikku_analyzer.facts`) through the
project: ``project.units``, ``project.rpcs``, ``project.wirings``, ``project.bodies``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pikku_analyzer.checks import (
    children,
    determinism,
    events,
    nesting,
    parse_errors,
    rpc_names,
    step_kinds,
    step_names,
    wirings,
)
from pikku_analyzer.checks.base import Check, Diag, Loc, Report, Reporter, make_diag
from pikku_analyzer.facts import EventInfo, RpcInfo, Unit, WorkflowInfo
from pikku_analyzer.link import Loader, Project, build_project

CHECKS: tuple[Check, ...] = (
    parse_errors.CHECK,
    rpc_names.CHECK,
    wirings.NAMES,
    wirings.FUNCS,
    wirings.MODES,
    step_names.CHECK,
    step_kinds.CHECK,
    determinism.CHECK,
    nesting.CHECK,
    events.CHECK,
    children.CHECK,
)
"""Every check, in the order they run (the diagnostics are sorted afterwards)."""


def run_checks(project: Project, checks: tuple[Check, ...] = CHECKS) -> list[Diag]:
    reporter = Reporter()
    for check in checks:
        reporter.run(check, project)
    return reporter.diagnostics


@dataclass
class LinkResult:
    workflows: list[WorkflowInfo] = field(default_factory=list)
    rpcs: list[RpcInfo] = field(default_factory=list)
    diagnostics: list[Diag] = field(default_factory=list)
    units: dict[str, Unit] = field(default_factory=dict)
    """Every unit looked at, by relative path (for suppressions and excerpts)."""
    events: list[EventInfo] = field(default_factory=list)


def link(units: list[Unit], loader: Loader | None = None) -> LinkResult:
    """Link ``units`` and run every check: the report's workflows and RPCs, and the
    diagnostics."""
    project = build_project(units, loader)
    return LinkResult(
        project.workflows(), project.rpc_infos(), run_checks(project), project.units, project.event_infos()
    )


__all__ = [
    "CHECKS",
    "Check",
    "Diag",
    "LinkResult",
    "Loc",
    "Report",
    "Reporter",
    "Unit",
    "link",
    "make_diag",
    "run_checks",
]
