"""The check registry (one module per diagnostic family), the ``report`` helper and the
structured data a diagnostic carries (``--fix`` reads it, never the message text)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pikku_analyzer import CODES, analyze, load_config
from pikku_analyzer.checks import CHECKS, Check, Loc, Report, Reporter, link, run_checks
from pikku_analyzer.detect import extract_facts
from pikku_analyzer.facts import Unit
from pikku_analyzer.fix import plan_edits
from pikku_analyzer.link import Project, build_project

FLOW = """
from pikku_typing import Workflow, pikku_func, wire_workflow

@pikku_func(name="users.create")
async def create(data: int) -> int:
    return data

async def flow(workflow: Workflow, data: int) -> None:
    await workflow.do("a", "users.craete", data)
    await workflow.do("b", "nothing.like.it", data)

wire_workflow(name="flow", func=flow)
"""


def _units(source: str) -> list[Unit]:
    return [Unit("flow.py", "flow", extract_facts(source.encode(), module="flow", filename="flow.py"))]


def test_every_check_declares_known_codes_once() -> None:
    seen: set[str] = set()
    for check in CHECKS:
        assert check.codes, check.name
        assert check.codes <= set(CODES), check.name
        assert not (check.codes & seen), f"{check.name}: a code reported by two checks"
        seen |= check.codes


def test_a_check_may_only_report_its_own_codes() -> None:
    def rogue(project: Project, report: Report) -> None:
        report("UNKNOWN_RPC", Loc("flow.py", 1, 1), "not mine")

    reporter = Reporter()
    with pytest.raises(ValueError, match="UNKNOWN_RPC"):
        reporter.run(Check("rogue", frozenset({"MISSING_NAME"}), rogue), build_project(_units(FLOW)))


def test_a_new_check_is_one_function_and_a_registration() -> None:
    def no_step_named_b(project: Project, report: Report) -> None:
        for body in project.bodies.values():
            for step in body.steps:
                if step.step_name == "b":
                    report("DYNAMIC_STEP_NAME", Loc(step.unit.rel, step.line, step.column), "b!", why="b")

    extra = Check("no b", frozenset({"DYNAMIC_STEP_NAME"}), no_step_named_b)
    diags = run_checks(build_project(_units(FLOW)), (extra,))
    assert [(d.code, d.line, d.message, dict(d.data)) for d in diags] == [
        ("DYNAMIC_STEP_NAME", 10, "b!", {"why": "b"})
    ]


def test_unknown_rpc_carries_the_name_and_the_suggestion() -> None:
    diags = [d for d in link(_units(FLOW)).diagnostics if d.code == "UNKNOWN_RPC"]
    assert [dict(d.data) for d in diags] == [
        {"rpc_name": "users.craete", "suggestion": "users.create"},
        {"rpc_name": "nothing.like.it", "suggestion": None},
    ]
    # the data is not part of the report nor of equality (diagnostics are deduplicated)
    assert set(diags[0].to_dict()) == {"code", "severity", "file", "line", "column", "message", "hint"}
    assert dataclasses.replace(diags[0], data={}) == diags[0]


def test_fix_reads_the_data_not_the_message(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "flow.py").write_text(FLOW, encoding="utf-8")
    result = analyze(load_config(tmp_path), use_cache=False)
    edits = plan_edits(result, fix=True, add_ignore=[])
    assert [e.renames for e in edits] == [{(9, 27): ("users.craete", "users.create")}]
    # a message worded differently changes nothing: the rename comes from the data
    result.diagnostics = [dataclasses.replace(d, message="reworded") for d in result.diagnostics]
    assert [e.renames for e in plan_edits(result, fix=True, add_ignore=[])] == [
        {(9, 27): ("users.craete", "users.create")}
    ]
