"""Cross-module linking and the diagnostics over the per-file facts.

Input: the facts of every candidate file (and a loader for any other analysed module,
parsed on demand when a ``func=`` or a constant is imported from it). Output: the report
as a plain dict in the shape of :class:`pikku_typing.meta.AnalysisReport` and the
diagnostics. Plain dicts keep ``pikku-analyze`` from importing pydantic on the fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pikku_analyzer.codes import CODES
from pikku_analyzer.detect.extract import DYNAMIC

Facts = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Diag:
    """One diagnostic (``pikku_typing.meta.Diagnostic`` as a plain value)."""

    code: str
    severity: str
    file: str
    line: int
    column: int
    message: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "hint": self.hint,
        }

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line, self.column, self.code, self.message)


def make_diag(code: str, file: str, line: int, column: int, message: str, hint: str | None = None) -> Diag:
    spec = CODES[code]
    return Diag(code, spec.severity, file, max(int(line), 1), max(int(column), 1), message, hint or spec.hint)


@dataclass(slots=True)
class Unit:
    """A parsed file: where it is and its facts."""

    rel: str
    module: str
    facts: Facts


@dataclass
class LinkResult:
    workflows: list[dict[str, Any]] = field(default_factory=list)
    rpcs: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[Diag] = field(default_factory=list)
    units: dict[str, Unit] = field(default_factory=dict)
    """Every unit looked at, by relative path (for suppressions and excerpts)."""


Loader = Callable[[str], Unit | None]


class Linker:
    def __init__(self, units: list[Unit], loader: Loader | None = None) -> None:
        self.units = units
        self.by_module: dict[str, Unit] = {}
        for unit in units:
            self.by_module.setdefault(unit.module, unit)
        self.loader = loader
        self.loaded: dict[str, Unit] = {}
        self._missing: set[str] = set()

    def unit(self, module: str) -> Unit | None:
        found = self.by_module.get(module)
        if found is not None:
            return found
        if module in self._missing or self.loader is None:
            return None
        loaded = self.loader(module)
        if loaded is None or loaded.facts.get("syntax_error") or loaded.facts.get("internal_error"):
            self._missing.add(module)
            if loaded is not None:
                self.loaded[loaded.rel] = loaded
            return None
        self.by_module[module] = loaded
        self.loaded[loaded.rel] = loaded
        return loaded

    def resolve(self, dotted: str, depth: int = 0) -> tuple[str, Any, str] | None:
        """``("function", module, name)``, ``("constant", value, "")``, ``("module", m, "")``."""
        if depth > 12 or not dotted:
            return None
        parts = dotted.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module = ".".join(parts[:cut])
            rest = parts[cut:]
            unit = self.unit(module)
            if unit is None:
                continue
            if len(rest) != 1:
                sub = self.unit(".".join(parts[: cut + 1]))
                if sub is not None:
                    continue
                return None
            return self._member(unit, rest[0], depth)
        if self.unit(dotted) is not None:
            return ("module", dotted, "")
        return None

    def _member(self, unit: Unit, name: str, depth: int) -> tuple[str, Any, str] | None:
        facts = unit.facts
        if name in facts.get("defs", ()):
            return ("function", unit.module, name)
        constants = facts.get("constants", {})
        if name in constants:
            return ("constant", constants[name], "")
        imports = facts.get("imports", {})
        if name in imports:
            return self.resolve(imports[name], depth + 1)
        if self.unit(f"{unit.module}.{name}") is not None:
            return ("module", f"{unit.module}.{name}", "")
        for base in facts.get("star_imports", ()):
            found = self.resolve(f"{base}.{name}", depth + 1)
            if found is not None:
                return found
        return None

    def string(self, value: Any) -> Any:
        """Resolve a ``{"ref": ...}`` string value (to the constant or DYNAMIC)."""
        if isinstance(value, dict) and "ref" in value:
            found = self.resolve(str(value["ref"]))
            if found is not None and found[0] == "constant" and isinstance(found[1], str):
                return found[1]
            return DYNAMIC
        return value


def _exclusive(a: list[list[int]], b: list[list[int]]) -> bool:
    arms_a = {bid: arm for bid, arm in a}
    return any(bid in arms_a and arms_a[bid] != arm for bid, arm in b)


def _where(unit_rel: str, line: int) -> str:
    return f"{unit_rel}:{line}"


def link(units: list[Unit], loader: Loader | None = None) -> LinkResult:
    linker = Linker(units, loader)
    result = LinkResult()
    diags = result.diagnostics
    ordered = sorted(units, key=lambda u: u.rel)
    for unit in ordered:
        result.units[unit.rel] = unit
        _file_errors(unit, diags)
    _link_rest(linker, ordered, result)
    for rel, unit in sorted(linker.loaded.items()):
        if rel not in result.units:
            _file_errors(unit, diags)  # a module parsed on demand (followed from func=)
            result.units[rel] = unit
    result.workflows.sort(key=lambda w: w["name"])
    result.rpcs.sort(key=lambda r: r["name"])
    return result


def _file_errors(unit: Unit, diags: list[Diag]) -> None:
    facts = unit.facts
    if facts.get("syntax_error"):
        err = facts["syntax_error"]
        diags.append(
            make_diag(
                "SYNTAX_ERROR",
                unit.rel,
                err["line"],
                err["column"],
                f"cannot parse {unit.rel}: {err['message']}",
                "fix the syntax error; the other files are still analysed",
            )
        )
    if facts.get("internal_error"):
        diags.append(
            make_diag("ANALYZER_ERROR", unit.rel, 1, 1, f"analysis failed: {facts['internal_error']}")
        )


def _link_rest(linker: Linker, ordered: list[Unit], result: LinkResult) -> None:
    diags = result.diagnostics
    # ---- RPCs
    rpc_seen: dict[str, tuple[str, int]] = {}
    for unit in ordered:
        for rpc in unit.facts.get("rpcs", ()):
            name = linker.string(rpc["name"])
            if name == DYNAMIC or not isinstance(name, str):
                diags.append(
                    make_diag(
                        "NON_LITERAL_RPC_NAME",
                        unit.rel,
                        rpc["name_line"],
                        rpc["name_column"],
                        f"the RPC name of `{rpc['func']}` is not a string literal",
                    )
                )
                continue
            if name in rpc_seen:
                first_rel, first_line = rpc_seen[name]
                diags.append(
                    make_diag(
                        "DUPLICATE_RPC_NAME",
                        unit.rel,
                        rpc["name_line"],
                        rpc["name_column"],
                        f"RPC name {name!r} is already defined at {_where(first_rel, first_line)}",
                    )
                )
                continue
            rpc_seen[name] = (unit.rel, rpc["line"])
            result.rpcs.append(
                {
                    "name": name,
                    "func": f"{unit.module}:{rpc['func']}",
                    "input_type": rpc["input_type"],
                    "output_type": rpc["output_type"],
                    "is_async": rpc["is_async"],
                    "file": unit.rel,
                    "line": rpc["line"],
                }
            )
    rpc_names = sorted(rpc_seen)

    # ---- workflows
    workflow_seen: dict[str, tuple[str, int]] = {}
    checked_functions: set[tuple[str, str]] = set()
    for unit in ordered:
        for wiring in unit.facts.get("wirings", ()):
            workflow = _workflow(linker, unit, wiring, diags, workflow_seen)
            if workflow is None:
                continue
            meta, func_unit, func_name = workflow
            if func_unit is not None and func_name is not None:
                function = func_unit.facts.get("functions", {}).get(func_name)
                if function is None:
                    diags.append(
                        make_diag(
                            "UNRESOLVED_WORKFLOW_FUNC",
                            unit.rel,
                            wiring["line"],
                            wiring["column"],
                            f"workflow {meta['name']!r}: {meta['func']} is not an `async def` taking "
                            "(workflow, data); its steps are unknown",
                            "a workflow function is `async def flow(workflow: Workflow, data: In) -> Out`",
                        )
                    )
                else:
                    key = (func_unit.rel, func_name)
                    steps = _steps(
                        linker, func_unit, func_name, function, diags, rpc_names, key not in checked_functions
                    )
                    checked_functions.add(key)
                    meta["steps"] = steps
                    meta["input_type"] = function["input_type"]
                    meta["output_type"] = function["output_type"]
                    meta["line"] = function["line"]
                    meta["file"] = func_unit.rel
            result.workflows.append(meta)


def _workflow(
    linker: Linker,
    unit: Unit,
    wiring: dict[str, Any],
    diags: list[Diag],
    seen: dict[str, tuple[str, int]],
) -> tuple[dict[str, Any], Unit | None, str | None] | None:
    rel = unit.rel
    ok = True
    name = linker.string(wiring["name"])
    if wiring["name"] is None:
        ok = False
        if wiring["starred"]:
            diags.append(
                make_diag(
                    "NON_LITERAL_WORKFLOW_NAME",
                    rel,
                    wiring["line"],
                    wiring["column"],
                    "wire_workflow: the name is passed positionally or through **kwargs and cannot be read statically",
                )
            )
        else:
            diags.append(
                make_diag("MISSING_NAME", rel, wiring["line"], wiring["column"], "wire_workflow(...) has no name=")
            )
    elif not isinstance(name, str) or name == DYNAMIC:
        ok = False
        diags.append(
            make_diag(
                "NON_LITERAL_WORKFLOW_NAME",
                rel,
                wiring["name_line"],
                wiring["name_column"],
                "wire_workflow: name= is not a string literal (or a module-level string constant)",
            )
        )
    elif not name:
        ok = False
        diags.append(
            make_diag(
                "NON_LITERAL_WORKFLOW_NAME",
                rel,
                wiring["name_line"],
                wiring["name_column"],
                "wire_workflow: name= is an empty string",
                "give the workflow a non-empty name",
            )
        )
    func = wiring["func"]
    if func is None:
        if not wiring["starred"]:
            diags.append(
                make_diag(
                    "MISSING_FUNC",
                    rel,
                    wiring["line"],
                    wiring["column"],
                    f"wire_workflow({'name=' + repr(name) if ok else '...'}) has no func=",
                )
            )
        else:
            diags.append(
                make_diag(
                    "UNRESOLVED_WORKFLOW_FUNC",
                    rel,
                    wiring["line"],
                    wiring["column"],
                    "wire_workflow: func is passed positionally or through **kwargs and cannot be read statically",
                )
            )
        return None
    if not ok:
        return None
    assert isinstance(name, str)
    if name in seen:
        first_rel, first_line = seen[name]
        diags.append(
            make_diag(
                "DUPLICATE_WORKFLOW_NAME",
                rel,
                wiring["name_line"],
                wiring["name_column"],
                f"workflow {name!r} is already wired at {_where(first_rel, first_line)}",
            )
        )
        return None
    seen[name] = (rel, wiring["line"])

    mode = linker.string(wiring["execution_mode"])
    if mode is None:
        mode = "remote"
    elif mode == DYNAMIC or not isinstance(mode, str):
        mode = DYNAMIC
        diags.append(
            make_diag(
                "NON_LITERAL_EXECUTION_MODE",
                rel,
                wiring["mode_line"],
                wiring["mode_column"],
                f"workflow {name!r}: execution_mode is not a string literal; recorded as {DYNAMIC!r}",
            )
        )
    elif mode not in ("inline", "remote"):
        shown = repr(mode)
        diags.append(
            make_diag(
                "INVALID_EXECUTION_MODE",
                rel,
                wiring["mode_line"],
                wiring["mode_column"],
                f"workflow {name!r}: execution_mode {shown} is neither 'inline' nor 'remote'",
            )
        )
    description = linker.string(wiring["description"])
    tags_raw = wiring["tags"]
    tags = [DYNAMIC] if tags_raw == DYNAMIC else [linker.string(t) if not isinstance(t, str) else t for t in tags_raw]
    tags = [t if isinstance(t, str) else DYNAMIC for t in tags]
    docs = wiring["docs"] if isinstance(wiring["docs"], dict) else None

    func_unit: Unit | None = None
    func_name: str | None = None
    func_id = DYNAMIC
    if isinstance(func, dict):
        dotted = str(func["ref"])
        found = linker.resolve(dotted)
        if found is not None and found[0] == "function":
            func_unit = linker.unit(found[1])
            func_name = found[2]
            func_id = f"{found[1]}:{found[2]}"
        else:
            module, _, attr = dotted.rpartition(".")
            func_id = f"{module}:{attr}" if module else dotted
            diags.append(
                make_diag(
                    "UNRESOLVED_WORKFLOW_FUNC",
                    rel,
                    wiring["line"],
                    wiring["column"],
                    f"workflow {name!r}: func={wiring['func_text']} ({dotted}) is not a function of the "
                    "analysed sources; its steps are unknown",
                )
            )
    else:
        diags.append(
            make_diag(
                "UNRESOLVED_WORKFLOW_FUNC",
                rel,
                wiring["line"],
                wiring["column"],
                f"workflow {name!r}: func={wiring['func_text']} is not a function name",
                "pass the workflow function itself: func=my_workflow",
            )
        )
    meta: dict[str, Any] = {
        "name": name,
        "description": description,
        "execution_mode": mode,
        "tags": tags,
        "middleware": list(wiring["middleware"]),
        "docs": docs,
        "func": func_id,
        "file": rel,
        "line": wiring["line"],
        "input_type": None,
        "output_type": None,
        "steps": [],
    }
    return meta, func_unit, func_name


@dataclass
class _Placed:
    """A step of a workflow, possibly from a helper function of another module."""

    unit: Unit
    raw: dict[str, Any]
    in_loop: bool
    branches: list[list[Any]]
    line: int
    column: int
    sort_key: tuple[int, int, int, int]


def _namespaced(branches: list[list[Any]], prefix: str) -> list[list[Any]]:
    return [[f"{prefix}{bid}", arm] for bid, arm in branches]


def _expand(
    linker: Linker,
    unit: Unit,
    name: str,
    function: dict[str, Any],
) -> tuple[list[_Placed], list[tuple[Unit, dict[str, Any]]]]:
    """The steps of a workflow function plus those of helpers imported from other modules
    that receive the workflow object as their first argument (followed recursively)."""
    placed: list[_Placed] = []
    nondet: list[tuple[Unit, dict[str, Any]]] = [(unit, n) for n in function.get("nondet", ())]
    seen = {(unit.rel, name)}
    root_prefix = f"{unit.rel}:{name}:"
    for step in function["steps"]:
        placed.append(
            _Placed(
                unit,
                step,
                bool(step["in_loop"]),
                _namespaced(step.get("branches", []), root_prefix),
                step["line"],
                step["column"],
                (step["line"], step["column"], 0, 0),
            )
        )
    # (caller unit, caller prefix, call, site line, site column, in_loop, branches)
    queue: list[tuple[Unit, str, dict[str, Any], int, int, bool, list[list[Any]]]] = [
        (unit, root_prefix, call, call["line"], call["column"], bool(call["in_loop"]), [])
        for call in function.get("helper_calls", ())
    ]
    counts: dict[str, int] = {}
    for call in function.get("helper_calls", ()):
        counts[call["ref"]] = counts.get(call["ref"], 0) + 1
    order = 0
    while queue and len(seen) < 64:
        _caller, prefix, call, site_line, site_column, in_loop, outer = queue.pop(0)
        found = linker.resolve(str(call["ref"]))
        if found is None or found[0] != "function":
            continue
        helper_unit = linker.unit(found[1])
        if helper_unit is None:
            continue
        helper = helper_unit.facts.get("functions", {}).get(found[2])
        key = (helper_unit.rel, found[2])
        if helper is None or key in seen:
            continue
        seen.add(key)
        helper_prefix = f"{helper_unit.rel}:{found[2]}:"
        branches = outer + _namespaced(call.get("branches", []), prefix)
        repeated = in_loop or counts.get(call["ref"], 0) > 1
        for step in helper["steps"]:
            order += 1
            placed.append(
                _Placed(
                    helper_unit,
                    step,
                    repeated or bool(step["in_loop"]),
                    branches + _namespaced(step.get("branches", []), helper_prefix),
                    site_line,
                    site_column,
                    (site_line, site_column, 1, order),
                )
            )
        if not call.get("in_step"):
            nondet.extend((helper_unit, n) for n in helper.get("nondet", ()))
        for inner in helper.get("helper_calls", ()):
            queue.append(
                (
                    helper_unit,
                    helper_prefix,
                    inner,
                    site_line,
                    site_column,
                    repeated or bool(inner["in_loop"]),
                    branches,
                )
            )
    placed.sort(key=lambda p: p.sort_key)
    return placed, nondet


def _steps(
    linker: Linker,
    unit: Unit,
    name: str,
    function: dict[str, Any],
    diags: list[Diag],
    rpc_names: list[str],
    report: bool,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    new_diags: list[Diag] = []
    literal_steps: dict[str, list[_Placed]] = {}
    placed, nondets = _expand(linker, unit, name, function)
    for item in placed:
        step = item.raw
        rel = item.unit.rel
        step_name = linker.string(step["step_name"])
        if not isinstance(step_name, str):
            step_name = DYNAMIC
        description = linker.string(step.get("description"))
        kind = step["type"]
        unresolved = step.get("unresolved")
        rpc_name = step.get("rpc_name")
        if kind == "ref":
            found = linker.resolve(str(step["ref"]))
            if found is not None and found[0] == "constant" and isinstance(found[1], str):
                kind, rpc_name = "rpc", found[1]
            elif found is not None and found[0] == "function":
                kind = "inline"
            else:
                kind = "rpc" if step.get("has_data") else "inline"
                rpc_name = DYNAMIC
                unresolved = f"`{step['ref']}` is not a string constant or function of the analysed sources"
        line, column = step["line"], step["column"]
        if kind == "sleep":
            meta: dict[str, Any] = {
                "type": "sleep",
                "step_name": step_name,
                "duration": step.get("duration"),
                "description": description,
                "line": item.line,
                "column": item.column,
                "in_loop": item.in_loop,
            }
        else:
            meta = {"type": kind, "step_name": step_name}
            if kind == "rpc":
                meta["rpc_name"] = rpc_name if isinstance(rpc_name, str) else DYNAMIC
            meta.update(
                {
                    "description": description,
                    "line": item.line,
                    "column": item.column,
                    "retries": step.get("retries"),
                    "retry_delay": step.get("retry_delay"),
                    "in_loop": item.in_loop,
                }
            )
        out.append(meta)
        if step_name == DYNAMIC and description is None:
            new_diags.append(
                make_diag(
                    "DYNAMIC_STEP_NAME",
                    rel,
                    line,
                    column,
                    "the step name is not a string literal and the step has no description=",
                    'use a literal step name, or add description="..." so the step stays readable',
                )
            )
        if unresolved:
            new_diags.append(
                make_diag(
                    "UNRESOLVED_STEP_KIND",
                    rel,
                    line,
                    column,
                    f"cannot tell whether step {step_name!r} is an RPC or an inline step: {unresolved}",
                )
            )
        if kind == "rpc" and isinstance(rpc_name, str) and rpc_name != DYNAMIC and rpc_name not in rpc_names:
            import difflib

            close = difflib.get_close_matches(rpc_name, rpc_names, n=3, cutoff=0.6)
            hint = (
                f"did you mean {' or '.join(repr(c) for c in close)}?"
                if close
                else "define it with @pikku_func(name=...)"
            )
            span = step.get("rpc_span")
            new_diags.append(
                make_diag(
                    "UNKNOWN_RPC",
                    rel,
                    span[0] if span else line,
                    (span[1] + 1) if span else column,
                    f"step {step_name!r} calls RPC {rpc_name!r}, which no @pikku_func defines",
                    hint,
                )
            )
        if step_name != DYNAMIC and not item.in_loop:
            literal_steps.setdefault(step_name, []).append(item)
    for step_name, group in literal_steps.items():
        for index, later in enumerate(group[1:], start=1):
            clash = next(
                (earlier for earlier in group[:index] if not _exclusive(earlier.branches, later.branches)),
                None,
            )
            if clash is not None:
                where = (
                    f"line {clash.raw['line']}"
                    if clash.unit.rel == later.unit.rel
                    else f"{clash.unit.rel}:{clash.raw['line']}"
                )
                new_diags.append(
                    make_diag(
                        "DUPLICATE_STEP_NAME",
                        later.unit.rel,
                        later.raw["line"],
                        later.raw["column"],
                        f"step name {step_name!r} is already used at {where} of this workflow",
                    )
                )
    for nondet_unit, nondet in nondets:
        new_diags.append(
            make_diag(
                "NON_DETERMINISTIC_CALL",
                nondet_unit.rel,
                nondet["line"],
                nondet["column"],
                nondet["message"],
                nondet["hint"],
            )
        )
    if report:
        diags.extend(new_diags)
    return out
