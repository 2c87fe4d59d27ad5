"""``NESTED_STEP`` (SPEC section 4): a step started from inside the function of an inline
step. At run time the inner call raises ``NestedStepError``; statically it is found in the
workflow body, in the helpers it calls with the workflow object, and in helpers of other
modules called (with the workflow object) from inside an inline step. A nested call is not a
step of the workflow."""

from __future__ import annotations

from pikku_analyzer.checks.base import Check, Loc, Report
from pikku_analyzer.facts import DYNAMIC, FunctionFact, StrValue, Unit
from pikku_analyzer.link import MAX_HELPERS, Linker, Project


def _name(linker: Linker, value: StrValue) -> str:
    name = linker.string(value)
    return repr(name) if isinstance(name, str) and name != DYNAMIC else DYNAMIC


def check_nesting(project: Project, report: Report) -> None:
    linker = project.linker
    for body in project.bodies.values():
        queue: list[tuple[Unit, FunctionFact]] = [(body.unit, body.function)]
        seen: set[tuple[str, str]] = {(body.unit.rel, body.name)}
        while queue:
            unit, function = queue.pop(0)
            for nested in function.get("nested", ()):
                report(
                    "NESTED_STEP",
                    Loc(unit.rel, nested["line"], nested["column"]),
                    f"`{nested['call']}({_name(linker, nested['step_name'])}, ...)` is reached from "
                    f"inside inline step {_name(linker, nested['outer'])}: a step cannot start "
                    "another step (at run time: NestedStepError)",
                )
            for call in function["helper_calls"]:
                found = linker.resolve(call["ref"])
                if found is None or found.kind != "function":
                    continue
                helper_unit = linker.unit(str(found.value))
                helper = helper_unit.facts["functions"].get(found.name) if helper_unit else None
                if helper_unit is None or helper is None:
                    continue
                if call["in_step"]:
                    if helper["steps"] or helper["helper_calls"]:
                        first = helper["steps"][0]["step_name"] if helper["steps"] else None
                        shown = f" (first: {_name(linker, first)})" if first is not None else ""
                        report(
                            "NESTED_STEP",
                            Loc(unit.rel, call["line"], call["column"]),
                            f"`{found.name}` ({found.value}) starts steps{shown} and is called from "
                            "inside an inline step: a step cannot start another step (at run time: "
                            "NestedStepError)",
                        )
                    continue
                key = (helper_unit.rel, found.name)
                if key not in seen and len(seen) < MAX_HELPERS:
                    seen.add(key)
                    queue.append((helper_unit, helper))


CHECK = Check("nested steps", frozenset({"NESTED_STEP"}), check_nesting)
