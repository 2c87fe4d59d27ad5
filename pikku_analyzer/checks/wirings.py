"""``wire_workflow(...)`` calls: a static, non-empty, unique name (``MISSING_NAME``,
``NON_LITERAL_WORKFLOW_NAME``, ``DUPLICATE_WORKFLOW_NAME``), a ``func=`` that is a workflow
function of the sources (``MISSING_FUNC``, ``UNRESOLVED_WORKFLOW_FUNC``) and a valid
``execution_mode=`` (``NON_LITERAL_EXECUTION_MODE``, ``INVALID_EXECUTION_MODE``)."""

from __future__ import annotations

from pikku_analyzer.checks.base import Check, Loc, Report
from pikku_analyzer.facts import DYNAMIC
from pikku_analyzer.link import Project, Wiring


def check_workflow_names(project: Project, report: Report) -> None:
    for wiring in project.wirings:
        fact = wiring.fact
        at = Loc(wiring.unit.rel, fact["line"], fact["column"])
        name_at = Loc(wiring.unit.rel, fact["name_line"], fact["name_column"])
        if fact["name"] is None:
            if fact["starred"]:
                report(
                    "NON_LITERAL_WORKFLOW_NAME",
                    at,
                    "wire_workflow: the name is passed positionally or through **kwargs and "
                    "cannot be read statically",
                )
            else:
                report("MISSING_NAME", at, "wire_workflow(...) has no name=")
        elif not isinstance(wiring.name, str) or wiring.name == DYNAMIC:
            report(
                "NON_LITERAL_WORKFLOW_NAME",
                name_at,
                "wire_workflow: name= is not a string literal (or a module-level string constant)",
            )
        elif not wiring.name:
            report(
                "NON_LITERAL_WORKFLOW_NAME",
                name_at,
                "wire_workflow: name= is an empty string",
                hint="give the workflow a non-empty name",
            )
        elif wiring.duplicate_of is not None:
            rel, line = wiring.duplicate_of
            report(
                "DUPLICATE_WORKFLOW_NAME",
                name_at,
                f"workflow {wiring.name!r} is already wired at {rel}:{line}",
                workflow=wiring.name,
                first_file=rel,
                first_line=line,
            )


def check_workflow_funcs(project: Project, report: Report) -> None:
    for wiring in project.wirings:
        fact = wiring.fact
        at = Loc(wiring.unit.rel, fact["line"], fact["column"])
        if fact["func"] is None:
            if fact["starred"]:
                report(
                    "UNRESOLVED_WORKFLOW_FUNC",
                    at,
                    "wire_workflow: func is passed positionally or through **kwargs and cannot "
                    "be read statically",
                )
            else:
                shown = "name=" + repr(wiring.name) if wiring.named else "..."
                report("MISSING_FUNC", at, f"wire_workflow({shown}) has no func=")
        elif wiring.workflow is not None:
            _resolved_func(wiring, at, report)


def _resolved_func(wiring: Wiring, at: Loc, report: Report) -> None:
    fact = wiring.fact
    name = wiring.name
    if wiring.func_ref is None:
        report(
            "UNRESOLVED_WORKFLOW_FUNC",
            at,
            f"workflow {name!r}: func={fact['func_text']} is not a function name",
            hint="pass the workflow function itself: func=my_workflow",
        )
    elif wiring.func_target is None:
        report(
            "UNRESOLVED_WORKFLOW_FUNC",
            at,
            f"workflow {name!r}: func={fact['func_text']} ({wiring.func_ref}) is not a function "
            "of the analysed sources; its steps are unknown",
        )
    elif wiring.body is None:
        assert wiring.workflow is not None
        report(
            "UNRESOLVED_WORKFLOW_FUNC",
            at,
            f"workflow {name!r}: {wiring.workflow['func']} is not an `async def` taking "
            "(workflow, data); its steps are unknown",
            hint="a workflow function is `async def flow(workflow: Workflow, data: In) -> Out`",
        )


def check_execution_modes(project: Project, report: Report) -> None:
    for wiring in project.wirings:
        mode = wiring.mode
        if wiring.workflow is None or mode is None:
            continue
        fact = wiring.fact
        at = Loc(wiring.unit.rel, fact["mode_line"], fact["mode_column"])
        if mode == DYNAMIC:
            report(
                "NON_LITERAL_EXECUTION_MODE",
                at,
                f"workflow {wiring.name!r}: execution_mode is not a string literal; recorded as "
                f"{DYNAMIC!r}",
            )
        elif mode not in ("inline", "remote"):
            report(
                "INVALID_EXECUTION_MODE",
                at,
                f"workflow {wiring.name!r}: execution_mode {mode!r} is neither 'inline' nor 'remote'",
                mode=mode,
            )


NAMES = Check(
    "workflow names",
    frozenset({"MISSING_NAME", "NON_LITERAL_WORKFLOW_NAME", "DUPLICATE_WORKFLOW_NAME"}),
    check_workflow_names,
)
FUNCS = Check(
    "workflow functions",
    frozenset({"MISSING_FUNC", "UNRESOLVED_WORKFLOW_FUNC"}),
    check_workflow_funcs,
)
MODES = Check(
    "execution modes",
    frozenset({"NON_LITERAL_EXECUTION_MODE", "INVALID_EXECUTION_MODE"}),
    check_execution_modes,
)
