"""Linking: resolve the per-file facts across modules into one :class:`Project`.

Input: the :class:`~pikku_analyzer.facts.Unit` of every candidate file, and a loader for any
other analysed module (parsed on demand when a ``func=``, a helper or a constant is imported
from it). Output: the :class:`Project`: every RPC declaration and ``wire_workflow`` call with
its names resolved, the workflow bodies with their steps placed (helpers of other modules
merged in), and the report's workflows and RPCs. Linking reports nothing: the checks
(:mod:`pikku_analyzer.checks`) read the project and report the diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from pikku_analyzer.facts import (
    DYNAMIC,
    Concat,
    EventFact,
    EventInfo,
    FunctionFact,
    HelperCallFact,
    NondetFact,
    Ref,
    RpcFact,
    RpcInfo,
    StepFact,
    StepInfo,
    StrValue,
    Unit,
    WiringFact,
    WorkflowInfo,
)

Loader = Callable[[str], Unit | None]

MAX_HELPERS = 64
"""At most this many functions (the body and the helpers it calls) are merged per workflow."""


class Target(NamedTuple):
    """What a dotted name resolves to: ``function`` (``value`` the module, ``name`` the
    function), ``constant`` (``value`` the constant) or ``module`` (``value`` its name)."""

    kind: str
    value: str | int | float | Ref | Concat
    name: str = ""


class Linker:
    """Finds units by module (loading other analysed modules on demand) and resolves
    dotted names through imports, ``from x import *`` and re-exports."""

    def __init__(self, units: list[Unit], loader: Loader | None = None) -> None:
        self.by_module: dict[str, Unit] = {}
        for unit in units:
            self.by_module.setdefault(unit.module, unit)
        self.loader = loader
        self.loaded: dict[str, Unit] = {}
        """Units parsed on demand, by relative path (broken ones too: they are reported)."""
        self._missing: set[str] = set()

    def unit(self, module: str) -> Unit | None:
        found = self.by_module.get(module)
        if found is not None:
            return found
        if module in self._missing or self.loader is None:
            return None
        loaded = self.loader(module)
        if loaded is None or loaded.facts["syntax_error"] or loaded.facts["internal_error"]:
            self._missing.add(module)
            if loaded is not None:
                self.loaded[loaded.rel] = loaded
            return None
        self.by_module[module] = loaded
        self.loaded[loaded.rel] = loaded
        return loaded

    def resolve(self, dotted: str, depth: int = 0) -> Target | None:
        if depth > 12 or not dotted:
            return None
        parts = dotted.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            unit = self.unit(".".join(parts[:cut]))
            if unit is None:
                continue
            if len(parts) - cut != 1:
                if self.unit(".".join(parts[: cut + 1])) is not None:
                    continue
                return None
            return self._member(unit, parts[cut], depth)
        if self.unit(dotted) is not None:
            return Target("module", dotted)
        return None

    def _member(self, unit: Unit, name: str, depth: int) -> Target | None:
        facts = unit.facts
        if name in facts["defs"]:
            return Target("function", unit.module, name)
        constants = facts["constants"]
        if name in constants:
            return Target("constant", constants[name])
        imports = facts["imports"]
        if name in imports:
            return self.resolve(imports[name], depth + 1)
        if self.unit(f"{unit.module}.{name}") is not None:
            return Target("module", f"{unit.module}.{name}")
        for base in facts.get("star_imports", ()):
            found = self.resolve(f"{base}.{name}", depth + 1)
            if found is not None:
                return found
        return None

    def string(self, value: StrValue, depth: int = 0) -> str | None:
        """A string value with its :class:`~pikku_analyzer.facts.Ref` resolved (to the
        constant, or :data:`DYNAMIC` when it is not a string constant) and the parts of a
        :class:`~pikku_analyzer.facts.Concat` joined."""
        if not isinstance(value, dict):
            return value
        if depth > 12:
            return DYNAMIC
        if "concat" in value:
            concat: Concat = value  # type: ignore[assignment]
            parts = [self.string(part, depth + 1) for part in concat["concat"]]
            known = [part for part in parts if isinstance(part, str) and part != DYNAMIC]
            return "".join(known) if len(known) == len(parts) else DYNAMIC
        if "ref" in value:
            ref: Ref = value
            found = self.resolve(ref["ref"])
            if found is not None and found.kind == "constant" and isinstance(found.value, str | dict):
                resolved = self.string(found.value, depth + 1)
                return resolved if isinstance(resolved, str) else DYNAMIC
        return DYNAMIC

    def in_project(self, dotted: str) -> bool:
        """Whether ``dotted`` names something in an analysed module (not an outside library
        such as ``time`` or ``uuid``)."""
        parts = dotted.split(".")
        return any(self.unit(".".join(parts[:cut])) is not None for cut in range(len(parts), 0, -1))


# ------------------------------------------------------------------ the linked project


@dataclass(frozen=True, slots=True, eq=False)
class RpcDecl:
    """An RPC declaration; ``name`` resolved (:data:`DYNAMIC` when not a literal)."""

    unit: Unit
    fact: RpcFact
    name: str
    first: bool
    """The first declaration of this name (the one in the report)."""


@dataclass(slots=True, eq=False)
class PlacedStep:
    """A step of a workflow body, possibly from a helper function of another module, with
    its names and kind resolved."""

    unit: Unit
    fact: StepFact
    in_loop: bool
    branches: tuple[tuple[str, int], ...]
    line: int
    """Where it is called from the workflow body (the helper call site for a helper's step)."""
    column: int
    sort_key: tuple[int, int, int, int]
    step_name: str
    description: str | None
    kind: str
    rpc_name: str | None
    """``kind == "rpc"``: the RPC name (:data:`DYNAMIC` when not known statically)."""
    target_name: str | None
    """``kind == "event"``: the event's name; ``kind == "child"``: the child workflow's name
    (:data:`DYNAMIC` when not known statically)."""
    unresolved: str | None
    """Why the kind cannot be told (``UNRESOLVED_STEP_KIND``), or None."""


@dataclass(slots=True, eq=False)
class Body:
    """A workflow function with the steps and non-deterministic calls of its body."""

    unit: Unit
    name: str
    function: FunctionFact
    steps: list[PlacedStep]
    nondet: list[tuple[Unit, NondetFact]]


@dataclass(slots=True, eq=False)
class Wiring:
    """A ``wire_workflow(...)`` call with its names resolved."""

    unit: Unit
    fact: WiringFact
    name: str | None
    """The resolved name (None: not given, :data:`DYNAMIC`, or possibly empty)."""
    duplicate_of: tuple[str, int] | None = None
    """(file, line) of the earlier wiring of the same name (a duplicate is still a workflow
    of the report and its body is checked; the code generator keeps the first)."""
    workflow: WorkflowInfo | None = None
    """Set when the wiring is a workflow of the report (named, with a func=)."""
    mode: str | None = None
    """The resolved ``execution_mode=`` (None: not given)."""
    func_ref: str | None = None
    """The dotted name of ``func=`` when it is a name."""
    func_target: tuple[Unit, str] | None = None
    """The unit and name of the function ``func=`` resolves to."""
    body: Body | None = None
    """The workflow body (None when ``func=`` is not an ``async def`` of the sources)."""

    @property
    def named(self) -> bool:
        return isinstance(self.name, str) and self.name != DYNAMIC and bool(self.name)


@dataclass(frozen=True, slots=True, eq=False)
class EventDecl:
    """A ``wire_event(...)`` call; ``name`` resolved (:data:`DYNAMIC` when not static)."""

    unit: Unit
    fact: EventFact
    name: str
    duplicate_of: tuple[str, int] | None
    """(file, line) of the earlier declaration of the same name."""


@dataclass(eq=False)
class Project:
    """Every unit, RPC declaration, wiring and workflow body, linked."""

    linker: Linker
    units: dict[str, Unit] = field(default_factory=dict)
    """Every unit looked at (candidates and modules parsed on demand), by relative path."""
    rpcs: list[RpcDecl] = field(default_factory=list)
    rpc_names: list[str] = field(default_factory=list)
    """The RPC names defined (sorted)."""
    wirings: list[Wiring] = field(default_factory=list)
    bodies: dict[tuple[str, str], Body] = field(default_factory=dict)
    """Each workflow function once (several wirings may share one), by (file, name)."""
    events: list[EventDecl] = field(default_factory=list)

    def workflow_names(self) -> set[str]:
        """Every statically named workflow that is wired."""
        return {w.name for w in self.wirings if w.workflow is not None and w.name is not None}

    def event_infos(self) -> list[EventInfo]:
        out: list[EventInfo] = [
            {
                "name": decl.name,
                "payload_type": decl.fact["payload_type"],
                "file": decl.unit.rel,
                "line": decl.fact["line"],
                "module": decl.unit.module,
            }
            for decl in self.events
            if decl.duplicate_of is None and decl.name != DYNAMIC
        ]
        return sorted(out, key=lambda e: e["name"])

    def workflows(self) -> list[WorkflowInfo]:
        found = [w.workflow for w in self.wirings if w.workflow is not None]
        return sorted(found, key=lambda w: w["name"])

    def rpc_infos(self) -> list[RpcInfo]:
        out: list[RpcInfo] = []
        for decl in self.rpcs:
            if decl.first:
                fact = decl.fact
                out.append(
                    {
                        "name": decl.name,
                        "func": f"{decl.unit.module}:{fact['func']}",
                        "input_type": fact["input_type"],
                        "output_type": fact["output_type"],
                        "is_async": fact["is_async"],
                        "file": decl.unit.rel,
                        "line": fact["line"],
                    }
                )
        return sorted(out, key=lambda r: r["name"])


def build_project(units: list[Unit], loader: Loader | None = None) -> Project:
    """Link ``units`` (sorted by path) into a :class:`Project`."""
    linker = Linker(units, loader)
    project = Project(linker)
    ordered = sorted(units, key=lambda u: u.rel)
    for unit in ordered:
        project.units[unit.rel] = unit
    _link_rpcs(project, ordered)
    _link_wirings(project, ordered)
    _link_events(project, ordered)
    for rel, unit in sorted(linker.loaded.items()):
        project.units.setdefault(rel, unit)  # a module parsed on demand (followed from func=)
    return project


def _link_rpcs(project: Project, ordered: list[Unit]) -> None:
    seen: set[str] = set()
    for unit in ordered:
        for fact in unit.facts["rpcs"]:
            name = project.linker.string(fact["name"])
            if not isinstance(name, str):
                name = DYNAMIC
            first = name != DYNAMIC and name not in seen
            seen.add(name)
            project.rpcs.append(RpcDecl(unit, fact, name, first))
    project.rpc_names = sorted(seen - {DYNAMIC})


def _link_wirings(project: Project, ordered: list[Unit]) -> None:
    linker = project.linker
    seen: dict[str, tuple[str, int]] = {}
    for unit in ordered:
        for fact in unit.facts["wirings"]:
            wiring = Wiring(unit, fact, linker.string(fact["name"]))
            project.wirings.append(wiring)
            if fact["func"] is None or not wiring.named:
                continue
            name = wiring.name
            assert name is not None
            if name in seen:
                wiring.duplicate_of = seen[name]  # still reported and its body checked
            else:
                seen[name] = (unit.rel, fact["line"])
            _link_workflow(project, wiring, name)


def _link_events(project: Project, ordered: list[Unit]) -> None:
    seen: dict[str, tuple[str, int]] = {}
    for unit in ordered:
        for fact in unit.facts["events"]:
            name = project.linker.string(fact["name"])
            if not isinstance(name, str) or not name:
                name = DYNAMIC
            duplicate = seen.get(name) if name != DYNAMIC else None
            if duplicate is None and name != DYNAMIC:
                seen[name] = (unit.rel, fact["line"])
            project.events.append(EventDecl(unit, fact, name, duplicate))


def _tags(linker: Linker, raw: list[StrValue] | str) -> list[str]:
    if raw == DYNAMIC or isinstance(raw, str):
        return [DYNAMIC]
    out: list[str] = []
    for tag in raw:
        value = tag if isinstance(tag, str) else linker.string(tag)
        out.append(value if isinstance(value, str) else DYNAMIC)
    return out


def _link_workflow(project: Project, wiring: Wiring, name: str) -> None:
    linker = project.linker
    fact = wiring.fact
    wiring.mode = linker.string(fact["execution_mode"])
    mode = wiring.mode
    if mode is None:
        mode = "remote"
    elif mode == DYNAMIC or not isinstance(mode, str):
        mode = DYNAMIC
    func = fact["func"]
    func_id = DYNAMIC
    if isinstance(func, dict):
        dotted = func["ref"]
        wiring.func_ref = dotted
        found = linker.resolve(dotted)
        if found is not None and found.kind == "function":
            module = str(found.value)
            func_unit = linker.unit(module)
            func_id = f"{module}:{found.name}"
            if func_unit is not None:
                wiring.func_target = (func_unit, found.name)
        else:
            module, _, attr = dotted.rpartition(".")
            func_id = f"{module}:{attr}" if module else dotted
    docs = fact["docs"]
    workflow: WorkflowInfo = {
        "name": name,
        "description": linker.string(fact["description"]),
        "execution_mode": mode,
        "tags": _tags(linker, fact["tags"]),
        "middleware": list(fact["middleware"]),
        "docs": docs if isinstance(docs, dict) else None,
        "func": func_id,
        "file": wiring.unit.rel,
        "line": fact["line"],
        "input_type": None,
        "output_type": None,
        "steps": [],
    }
    wiring.workflow = workflow
    if wiring.func_target is None:
        return
    func_unit, func_name = wiring.func_target
    function = func_unit.facts["functions"].get(func_name)
    if function is None:
        return
    key = (func_unit.rel, func_name)
    body = project.bodies.get(key)
    if body is None:
        body = project.bodies[key] = _body(linker, func_unit, func_name, function)
    wiring.body = body
    workflow["steps"] = [_step_info(step) for step in body.steps]
    workflow["input_type"] = function["input_type"]
    workflow["output_type"] = function["output_type"]
    workflow["line"] = function["line"]
    workflow["file"] = func_unit.rel


# ------------------------------------------------------------------ workflow bodies


def _namespaced(branches: list[list[int]], prefix: str) -> tuple[tuple[str, int], ...]:
    return tuple([(f"{prefix}{bid}", arm) for bid, arm in branches]) if branches else ()


def _body(linker: Linker, unit: Unit, name: str, function: FunctionFact) -> Body:
    """The steps of a workflow function plus those of helpers imported from other modules
    that receive the workflow object as their first argument (followed recursively)."""
    steps: list[PlacedStep] = []
    nondet: list[tuple[Unit, NondetFact]] = [(unit, n) for n in function["nondet"]]
    seen = {(unit.rel, name)}
    root_prefix = f"{unit.rel}:{name}:"
    for step in function["steps"]:
        steps.append(
            _place(
                linker,
                unit,
                step,
                bool(step["in_loop"]),
                _namespaced(step["branches"], root_prefix),
                step["line"],
                step["column"],
                (step["line"], step["column"], 0, 0),
            )
        )
    # (caller prefix, call, site line, site column, in_loop, branches)
    queue: list[tuple[str, HelperCallFact, int, int, bool, tuple[tuple[str, int], ...]]] = [
        (root_prefix, call, call["line"], call["column"], bool(call["in_loop"]), ())
        for call in function["helper_calls"]
    ]
    counts: dict[str, int] = {}
    for call in function["helper_calls"]:
        counts[call["ref"]] = counts.get(call["ref"], 0) + 1
    order = 0
    while queue and len(seen) < MAX_HELPERS:
        prefix, call, site_line, site_column, in_loop, outer = queue.pop(0)
        if call["in_step"]:
            continue  # a helper run inside an inline step: its steps are NESTED_STEP
        found = linker.resolve(call["ref"])
        if found is None or found.kind != "function":
            continue
        helper_unit = linker.unit(str(found.value))
        if helper_unit is None:
            continue
        helper = helper_unit.facts["functions"].get(found.name)
        key = (helper_unit.rel, found.name)
        if helper is None or key in seen:
            continue
        seen.add(key)
        helper_prefix = f"{helper_unit.rel}:{found.name}:"
        branches = outer + _namespaced(call["branches"], prefix)
        repeated = in_loop or counts.get(call["ref"], 0) > 1
        for step in helper["steps"]:
            order += 1
            steps.append(
                _place(
                    linker,
                    helper_unit,
                    step,
                    repeated or bool(step["in_loop"]),
                    branches + _namespaced(step["branches"], helper_prefix),
                    site_line,
                    site_column,
                    (site_line, site_column, 1, order),
                )
            )
        if not call["in_step"]:
            nondet.extend((helper_unit, n) for n in helper["nondet"])
        for inner in helper["helper_calls"]:
            queue.append(
                (
                    helper_prefix,
                    inner,
                    site_line,
                    site_column,
                    repeated or bool(inner["in_loop"]),
                    branches,
                )
            )
    steps.sort(key=lambda p: p.sort_key)
    return Body(unit, name, function, steps, nondet)


def _place(
    linker: Linker,
    unit: Unit,
    step: StepFact,
    in_loop: bool,
    branches: tuple[tuple[str, int], ...],
    line: int,
    column: int,
    sort_key: tuple[int, int, int, int],
) -> PlacedStep:
    step_name = linker.string(step["step_name"])
    kind = step["type"]
    unresolved = step.get("unresolved")
    rpc_name = linker.string(step.get("rpc_name"))
    if kind == "ref":
        ref = step.get("ref", "")
        found = linker.resolve(ref)
        constant = (
            linker.string(found.value)
            if found is not None and found.kind == "constant" and isinstance(found.value, str | dict)
            else None
        )
        if constant is not None and constant != DYNAMIC:
            kind, rpc_name = "rpc", constant
        elif found is not None and found.kind == "function":
            kind = "inline"
        elif not step.get("has_data") and not linker.in_project(ref):
            kind = "inline"  # a function of an outside module (time.time, uuid.uuid4, os.getcwd)
        else:
            kind = "rpc" if step.get("has_data") else "inline"
            rpc_name = DYNAMIC
            unresolved = f"`{ref}` is not a string constant or function of the analysed sources"
    if kind == "rpc" and not isinstance(rpc_name, str):
        rpc_name = DYNAMIC
    return PlacedStep(
        unit=unit,
        fact=step,
        in_loop=in_loop,
        branches=branches,
        line=line,
        column=column,
        sort_key=sort_key,
        step_name=step_name if isinstance(step_name, str) else DYNAMIC,
        description=linker.string(step.get("description")),
        kind=kind,
        rpc_name=rpc_name if kind == "rpc" else None,
        target_name=_target_name(linker, step, kind),
        unresolved=unresolved,
    )


def _target_name(linker: Linker, step: StepFact, kind: str) -> str | None:
    if kind not in ("event", "child"):
        return None
    raw = step.get("event_name") if kind == "event" else step.get("workflow_name")
    name = linker.string(raw)
    return name if isinstance(name, str) else DYNAMIC


def _step_info(step: PlacedStep) -> StepInfo:
    fact = step.fact
    if step.kind == "event":
        return {
            "type": "event",
            "step_name": step.step_name,
            "event_name": step.target_name or DYNAMIC,
            "timeout": fact.get("timeout"),
            "description": step.description,
            "line": step.line,
            "column": step.column,
            "in_loop": step.in_loop,
        }
    if step.kind == "child":
        return {
            "type": "child",
            "step_name": step.step_name,
            "workflow_name": step.target_name or DYNAMIC,
            "wait": bool(fact.get("wait", True)),
            "description": step.description,
            "line": step.line,
            "column": step.column,
            "in_loop": step.in_loop,
        }
    if step.kind == "sleep":
        return {
            "type": "sleep",
            "step_name": step.step_name,
            "duration": fact.get("duration"),
            "description": step.description,
            "line": step.line,
            "column": step.column,
            "in_loop": step.in_loop,
        }
    info: StepInfo = {
        "type": step.kind,
        "step_name": step.step_name,
        "description": step.description,
        "line": step.line,
        "column": step.column,
        "retries": fact.get("retries"),
        "retry_delay": fact.get("retry_delay"),
        "in_loop": step.in_loop,
    }
    if step.kind == "rpc":
        info["rpc_name"] = step.rpc_name if step.rpc_name is not None else DYNAMIC
    return info


def exclusive(a: tuple[tuple[str, int], ...], b: tuple[tuple[str, int], ...]) -> bool:
    """Whether two steps are in different arms of one ``if``/``match`` (never both run)."""
    arms_a = dict(a)
    return any(bid in arms_a and arms_a[bid] != arm for bid, arm in b)
