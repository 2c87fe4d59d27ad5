"""Event and workflow names used in the sources (SPEC section 8): by the event and child
steps of the workflow bodies, and by ``runtime.client(...)``, ``workflow_client(...)`` and
``send_event(...)`` anywhere in a module. :mod:`pikku_analyzer.checks.events` and
:mod:`pikku_analyzer.checks.children` check them against the declared events and the wired
workflows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pikku_analyzer.checks.base import Loc
from pikku_analyzer.facts import DYNAMIC
from pikku_analyzer.link import Linker, Project


@dataclass(frozen=True, slots=True)
class NameUse:
    """One use of an event or workflow name, where it is written."""

    kind: Literal["event", "workflow"]
    via: str
    """``wait_for_event``, ``send_event``, ``run_child``, ``start_child``, ``client``,
    ``workflow_client``."""
    name: str
    at: Loc


def name_uses(project: Project) -> list[NameUse]:
    """Every statically known event or workflow name used, in a stable order."""
    out: list[NameUse] = []
    for body in project.bodies.values():
        for step in body.steps:
            if step.kind not in ("event", "child") or step.target_name in (None, DYNAMIC):
                continue
            assert step.target_name is not None
            fact = step.fact
            line, column = fact.get("name_span") or (fact["line"], fact["column"])
            at = Loc(step.unit.rel, line, column)
            if step.kind == "event":
                out.append(NameUse("event", "wait_for_event", step.target_name, at))
            else:
                via = "run_child" if fact.get("wait", True) else "start_child"
                out.append(NameUse("workflow", via, step.target_name, at))
    for unit in project.units.values():
        for use in unit.facts.get("uses", ()):
            name = project.linker.string(use["name"])
            if not isinstance(name, str) or name == DYNAMIC:
                continue
            receiver = use.get("receiver")
            if receiver is not None:
                kind_of = _receiver_kind(project.linker, receiver)
                if kind_of is None or (use["via"] == "client" and kind_of != "runtime"):
                    continue  # not a pikku runtime/client of the analysed sources (boto3.client)
            kind: Literal["event", "workflow"] = "event" if use["kind"] == "event" else "workflow"
            out.append(NameUse(kind, use["via"], name, Loc(unit.rel, use["line"], use["column"])))
    return sorted(set(out), key=lambda u: (u.at, u.kind, u.name))


def _receiver_kind(linker: Linker, dotted: str) -> str | None:
    """``"runtime"`` or ``"client"`` when ``dotted`` (an imported name) is bound to one at
    module level in an analysed module (following re-exports), else None."""
    for _ in range(8):
        module, _, name = dotted.rpartition(".")
        unit = linker.unit(module) if module else None
        if unit is None:
            return None
        kind = unit.facts.get("runtimes", {}).get(name)
        if kind is not None:
            return kind
        following = unit.facts["imports"].get(name)
        if following is None:
            return None
        dotted = following
    return None
