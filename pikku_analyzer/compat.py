"""``pikku-analyze --baseline PATH|git:REF``: is this change safe for the runs in flight?

The workflows found now are compared with a baseline ``workflow_meta.json`` (a committed copy
of the generated one, or the one a git ref holds, read with ``git show REF:path`` without a
checkout), and what would break a run started with the baseline's code is reported with the
codes of SPEC section 9 (:data:`pikku_analyzer.codes.COMPAT_CODES`). Exactly what is compared
is written down in ``docs/deploys.md``; in short:

* a workflow of the baseline that is no longer wired: ``WORKFLOW_REMOVED``;
* its input type no longer accepts every value the old one did (field-level shapes of the
  meta, :mod:`pikku_analyzer.shapes`): ``WORKFLOW_INPUT_CHANGED``;
* a step name (its replay key) that now names another RPC, event, child workflow or another
  kind of step: ``STEP_TARGET_CHANGED``; the same RPC whose output type no longer accepts the
  old results: ``STEP_OUTPUT_CHANGED``;
* a step gone and a new one with the same target at the same place: ``STEP_RENAMED``; a new
  step before steps the baseline already had: ``STEP_INSERTED`` (warnings).

Steps in the new branch of ``if workflow.patched("id"):`` are new code that runs recorded
before the patch never take; they are not compared. Nothing here imports user code.
"""

from __future__ import annotations

import ast
import json
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pikku_analyzer.checks import Diag, make_diag
from pikku_analyzer.shapes import Shape, ShapeBuilder, describe, with_type_shapes

if TYPE_CHECKING:
    from pikku_analyzer.config import PikkuConfig
    from pikku_analyzer.engine import AnalysisResult
    from pikku_typing.meta import AnalysisReport, WorkflowMeta

DYNAMIC: Final = "<dynamic>"
META_JSON: Final = "workflow_meta.json"
READABLE_VERSIONS: Final = (1, 2)
_WIDENING: Final = frozenset({("int", "float"), ("int", "decimal"), ("float", "decimal")})
"""Scalar changes every stored value survives (pydantic's lax mode converts them)."""
_LITERAL_SCALARS: Final = {str: "str", int: "int", bool: "bool", float: "float", bytes: "bytes"}


class BaselineError(Exception):
    """The baseline cannot be read: one line for the user (exit code 2)."""


@dataclass(frozen=True)
class Finding:
    """One incompatibility (a diagnostic before it has a code's metadata)."""

    code: str
    workflow: str
    message: str
    file: str
    line: int
    column: int = 1
    step: str | None = None

    def to_diag(self) -> Diag:
        return make_diag(self.code, self.file, self.line, self.column, self.message)


# -- type shapes ---------------------------------------------------------------------------


class TypeCompat:
    """Whether every value of an old type (shapes + ``types`` table of the baseline) still
    validates as the new type: the list of reasons why not (empty: compatible)."""

    def __init__(self, old_types: dict[str, Any], new_types: dict[str, Any]) -> None:
        self.old_types = old_types
        self.new_types = new_types
        self._seen: set[tuple[str, str]] = set()

    def _resolve(self, shape: Shape, types: dict[str, Any]) -> tuple[Shape, str | None]:
        name: str | None = None
        for _ in range(20):
            kind = shape.get("kind")
            if kind == "ref":
                name = str(shape.get("name"))
                named = types.get(name)
                if not isinstance(named, dict):
                    return {"kind": "unknown", "name": name}, name
                shape = named
            elif kind == "alias":
                shape = shape.get("type") or {"kind": "any"}
            else:
                if kind == "unknown" and name is None:
                    name = str(shape.get("name"))
                return shape, name
        return {"kind": "any"}, name

    def check(self, old: Shape, new: Shape, path: str = "") -> list[str]:
        old_r, old_name = self._resolve(old, self.old_types)
        new_r, new_name = self._resolve(new, self.new_types)
        if old_name is not None and new_name is not None:
            key = (old_name, new_name)
            if key in self._seen:
                return []  # a recursive type: assumed compatible while being compared
            self._seen.add(key)
            try:
                return self._check(old_r, new_r, path, old_name, new_name)
            finally:
                self._seen.discard(key)
        return self._check(old_r, new_r, path, old_name, new_name)

    def _check(self, old: Shape, new: Shape, path: str, old_name: str | None, new_name: str | None) -> list[str]:
        ok, nk = old.get("kind"), new.get("kind")
        where = f"{path}: " if path else ""
        if nk == "any" or ok == "any":
            return []
        if "unknown" in (ok, nk) and old_name is not None and old_name == new_name:
            return []  # one side has no shape (a version-1 baseline, a type outside the sources)
        # recurse with the names, so that a recursive type meets its guard in check()
        old_again: Shape = {"kind": "ref", "name": old_name} if old_name in self.old_types else old
        new_again: Shape = {"kind": "ref", "name": new_name} if new_name in self.new_types else new
        if ok == "union":
            out: list[str] = []
            for option in old["options"]:
                out.extend(self.check(option, new_again, path))
            return out
        if nk == "union":
            options = new["options"]
            if any(not self.check(old_again, option, path) for option in options):
                return []
            rest = [o for o in options if o != {"kind": "scalar", "name": "none"}]
            if len(rest) == 1:
                return self.check(old_again, rest[0], path)
            return [f"{where}{self._text(old, old_name)} -> {self._text(new, new_name)}"]
        changed = [f"{where}{self._text(old, old_name)} -> {self._text(new, new_name)}"]
        if ok == "scalar" and nk == "scalar":
            same = old["name"] == new["name"] or (old["name"], new["name"]) in _WIDENING
            return [] if same else changed
        if ok == "literal":
            values = list(old.get("values", []))
            if nk == "literal" or nk == "enum":
                allowed = list(new.get("values", []))
            elif nk == "scalar":
                scalar = new["name"]
                bad = [v for v in values if _LITERAL_SCALARS.get(type(v)) != scalar and not (
                    type(v) is int and scalar in ("float", "decimal"))]
                return [f"{where}value(s) {', '.join(map(repr, bad))} no longer accepted"] if bad else []
            else:
                return changed
            missing = [v for v in values if v not in allowed]
            return [f"{where}value(s) {', '.join(map(repr, missing))} no longer accepted"] if missing else []
        if ok == "enum":
            values = list(old.get("values", []))
            if nk in ("enum", "literal"):
                missing = [v for v in values if v not in new.get("values", [])]
                return [f"{where}value(s) {', '.join(map(repr, missing))} removed"] if missing else []
            if nk == "scalar":
                bad = [v for v in values if _LITERAL_SCALARS.get(type(v)) != new["name"]]
                return changed if bad else []
            return changed
        if ok == "list" and nk == "list":
            return self.check(old["item"], new["item"], f"{path}[]")
        if ok == "tuple" and nk == "list":
            return [r for item in old["items"] for r in self.check(item, new["item"], f"{path}[]")]
        if ok == "tuple" and nk == "tuple":
            if len(old["items"]) != len(new["items"]):
                return changed
            return [
                r
                for index, (a, b) in enumerate(zip(old["items"], new["items"], strict=True))
                for r in self.check(a, b, f"{path}[{index}]")
            ]
        if ok == "dict" and nk == "dict":
            return self.check(old["key"], new["key"], f"{path}{{key}}") + self.check(
                old["value"], new["value"], f"{path}{{}}"
            )
        if ok == "object" and nk == "object":
            return self._fields(old, new, path)
        if ok == "object" and nk == "dict":
            return [
                r
                for name, spec in old.get("fields", {}).items()
                for r in self.check(spec["type"], new["value"], _join(path, name))
            ]
        if ok in ("class", "unknown") and nk in ("class", "unknown"):
            return [] if old_name is not None and old_name == new_name else changed
        return changed

    def _fields(self, old: Shape, new: Shape, path: str) -> list[str]:
        out: list[str] = []
        old_fields: dict[str, Any] = old.get("fields", {})
        new_fields: dict[str, Any] = new.get("fields", {})
        for name, spec in new_fields.items():
            before = old_fields.get(name)
            if spec.get("required") and before is None:
                out.append(f"new required field '{_join(path, name)}'")
            elif spec.get("required") and before is not None and not before.get("required"):
                out.append(f"field '{_join(path, name)}' became required")
        for name, spec in old_fields.items():
            after = new_fields.get(name)
            if after is None:
                if spec.get("required"):
                    out.append(f"required field '{_join(path, name)}' removed")
                continue
            out.extend(self.check(spec["type"], after["type"], _join(path, name)))
        return out

    @staticmethod
    def _text(shape: Shape, name: str | None) -> str:
        return name if name is not None else describe(shape)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# -- steps ---------------------------------------------------------------------------------


def _target(step: Any) -> tuple[str, str | None]:
    """The part of a step that its replay key must keep: its kind and what it calls."""
    kind = str(step.type)
    if kind == "rpc":
        return kind, step.rpc_name
    if kind == "event":
        return kind, step.event_name
    if kind == "child":
        return kind, step.workflow_name
    return kind, None


def _target_text(target: tuple[str, str | None]) -> str:
    kind, name = target
    return f"{kind} {name}" if name else kind


def patched_ranges(source: bytes) -> list[tuple[int, int]]:
    """Line ranges that only new code reaches: the body of ``if <w>.patched("id"):`` (the
    ``else`` of ``if not <w>.patched("id"):``). Runs recorded before the patch take the other
    branch, so the steps in these ranges are not compared with the baseline."""
    if b"patched" not in source:
        return []  # most files: no parse
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    out: list[tuple[int, int]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test, negated = node.test, False
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            test, negated = test.operand, True
        if isinstance(test, ast.Await):
            test = test.value
        if not (
            isinstance(test, ast.Call)
            and isinstance(test.func, ast.Attribute)
            and test.func.attr == "patched"
            and test.args
            and isinstance(test.args[0], ast.Constant)
            and isinstance(test.args[0].value, str)
        ):
            continue
        arm = node.orelse if negated else node.body
        if arm:
            out.append((arm[0].lineno, max(getattr(s, "end_lineno", s.lineno) or s.lineno for s in arm)))
    return out


class _PatchedLines:
    """:func:`patched_ranges` of the files of the current code, read once each."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._ranges: dict[str, list[tuple[int, int]]] = {}

    def __call__(self, file: str, line: int) -> bool:
        if self.root is None:
            return False
        ranges = self._ranges.get(file)
        if ranges is None:
            try:
                ranges = patched_ranges((self.root / file).read_bytes())
            except OSError:
                ranges = []
            self._ranges[file] = ranges
        return any(start <= line <= end for start, end in ranges)


def _named(steps: Iterable[Any]) -> list[Any]:
    return [s for s in steps if s.step_name != DYNAMIC]


def _anchor(index: int, steps: Sequence[Any], common: set[str]) -> str | None:
    for step in reversed(steps[:index]):
        if step.step_name in common:
            return str(step.step_name)
    return None


def _outputs(
    kind: str, target: str, baseline: AnalysisReport, current: AnalysisReport
) -> tuple[str | None, str | None, str] | None:
    """(old type, new type, what is stored) of the value a step returns on replay: an RPC's
    output, an event's payload, a child workflow's output; ``None`` when not comparable."""
    if kind == "rpc":
        old_rpc, new_rpc = baseline.rpc(target), current.rpc(target)
        if old_rpc is not None and new_rpc is not None:
            return old_rpc.output_type, new_rpc.output_type, f"results of rpc {target}"
    elif kind == "event":
        old_event, new_event = baseline.event(target), current.event(target)
        if old_event is not None and new_event is not None:
            return old_event.payload_type, new_event.payload_type, f"payloads of event {target}"
    elif kind == "child":
        old_child, new_child = baseline.workflow(target), current.workflow(target)
        if old_child is not None and new_child is not None:
            return old_child.output_type, new_child.output_type, f"outputs of child workflow {target}"
    return None


def compare(
    baseline: AnalysisReport,
    current: AnalysisReport,
    *,
    root: Path | None = None,
    unreadable: frozenset[str] = frozenset(),
) -> list[Finding]:
    """Every incompatibility of ``current`` for runs started with ``baseline`` (both with
    their ``types`` tables; a version-1 baseline has none: its types compare by name).
    ``root``: where the current sources are, to leave out steps in ``workflow.patched(...)``
    branches (:func:`patched_ranges`)."""
    patched = _PatchedLines(root)
    # ``unreadable``: files that do not parse now (SYNTAX_ERROR, ...): their workflows are not
    # "removed", they are unknown until the file parses again
    types = TypeCompat(dict(baseline.types), dict(current.types))
    old_shapes = ShapeBuilder(None)
    old_shapes.types = dict(baseline.types)
    new_shapes = ShapeBuilder(None)
    new_shapes.types = dict(current.types)
    now: dict[str, WorkflowMeta] = {}
    for workflow in current.workflows:  # a duplicate name (DUPLICATE_WORKFLOW_NAME): the first
        if workflow.name != DYNAMIC:
            now.setdefault(workflow.name, workflow)
    findings: list[Finding] = []
    for old in sorted(baseline.workflows, key=lambda w: w.name):
        if old.name == DYNAMIC:
            continue
        new = now.get(old.name)
        if new is None and old.file in unreadable:
            continue
        if new is None:
            findings.append(
                Finding(
                    "WORKFLOW_REMOVED",
                    old.name,
                    f"workflow '{old.name}' is in the baseline but no longer wired: its runs in "
                    "flight can neither resume nor replay",
                    old.file,
                    old.line,
                )
            )
            continue
        if old.input_type != DYNAMIC and new.input_type != DYNAMIC:
            reasons = types.check(old_shapes.expr(old.input_type), new_shapes.expr(new.input_type))
            if reasons:
                findings.append(
                    Finding(
                        "WORKFLOW_INPUT_CHANGED",
                        old.name,
                        f"workflow '{old.name}': the stored input of runs in flight no longer "
                        f"fits {new.input_type}: " + "; ".join(reasons),
                        new.file,
                        new.line,
                    )
                )
        findings.extend(_compare_steps(old, new, baseline, current, types, old_shapes, new_shapes, patched))
    return findings


def _compare_steps(
    old_wf: WorkflowMeta,
    new_wf: WorkflowMeta,
    baseline: AnalysisReport,
    current: AnalysisReport,
    types: TypeCompat,
    old_shapes: ShapeBuilder,
    new_shapes: ShapeBuilder,
    patched: _PatchedLines,
) -> list[Finding]:
    findings: list[Finding] = []
    old_steps = _named(old_wf.steps)
    new_steps = [s for s in _named(new_wf.steps) if not patched(new_wf.file, s.line)]
    old_names = {s.step_name for s in old_steps}
    new_names = {s.step_name for s in new_steps}
    common = old_names & new_names
    name = new_wf.name

    def at(step: Any, code: str, message: str) -> Finding:
        return Finding(code, name, message, new_wf.file, step.line, max(step.column, 1), step.step_name)

    reported: set[str] = set()
    for step in new_steps:
        key = step.step_name
        if key not in common or key in reported:
            continue
        reported.add(key)
        before = [_target(s) for s in old_steps if s.step_name == key]
        after = [_target(s) for s in new_steps if s.step_name == key]
        lost = [t for t in before if t not in after]
        if lost:
            findings.append(
                at(
                    step,
                    "STEP_TARGET_CHANGED",
                    f"step '{key}' of workflow '{name}' was {_target_text(lost[0])}, now "
                    f"{_target_text(_target(step))}: runs in flight that recorded it fail with "
                    "WorkflowNonDeterminismError on replay",
                )
            )
            continue
        for kind, target in sorted({t for t in before if t[1] and t[1] != DYNAMIC}, key=str):
            outputs = _outputs(kind, str(target), baseline, current)
            if outputs is None:
                continue
            old_type, new_type, what = outputs
            reasons = types.check(old_shapes.expr(old_type), new_shapes.expr(new_type))
            if reasons:
                findings.append(
                    at(
                        step,
                        "STEP_OUTPUT_CHANGED",
                        f"step '{key}' of workflow '{name}': {what} stored by runs in flight no "
                        f"longer fit {new_type}: " + "; ".join(reasons),
                    )
                )
    removed = [(i, s) for i, s in enumerate(old_steps) if s.step_name not in new_names]
    renamed: set[int] = set()
    for index, step in enumerate(new_steps):
        if step.step_name in old_names:
            continue
        anchor = _anchor(index, new_steps, common)
        match = next(
            (
                (i, s)
                for i, s in removed
                if i not in renamed
                and _target(s) == _target(step)
                and _anchor(i, old_steps, common) == anchor
            ),
            None,
        )
        if match is not None:
            renamed.add(match[0])
            findings.append(
                at(
                    step,
                    "STEP_RENAMED",
                    f"step '{match[1].step_name}' of workflow '{name}' seems renamed to "
                    f"'{step.step_name}' (same {_target_text(_target(step))} at the same place): "
                    f"runs in flight that recorded '{match[1].step_name}' run it again",
                )
            )
            continue
        later = next((s for s in new_steps[index + 1 :] if s.step_name in common), None)
        if later is not None:
            findings.append(
                at(
                    step,
                    "STEP_INSERTED",
                    f"new step '{step.step_name}' of workflow '{name}' comes before "
                    f"'{later.step_name}': runs in flight that recorded '{later.step_name}' run "
                    "it late, after the steps they already passed",
                )
            )
    return findings


# -- the baseline --------------------------------------------------------------------------


def parse_baseline(text: str | bytes, source: str) -> AnalysisReport:
    """A ``workflow_meta.json`` (version 1 or 2) as the report model."""
    from pydantic import ValidationError

    from pikku_typing.meta import AnalysisReport

    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{source} is not JSON ({exc})") from None
    if not isinstance(data, dict) or "workflows" not in data:
        raise BaselineError(f"{source} is not a workflow_meta.json (no 'workflows')")
    version = data.get("version")
    if version not in READABLE_VERSIONS:
        raise BaselineError(
            f"{source} has schema version {version!r}; this pikku-analyze reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} (upgrade pikku-workflows)"
        )
    try:
        return AnalysisReport.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BaselineError(f"{source} is not a valid workflow_meta.json ({where}: {first.get('msg')})") from None


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60, check=False)
    except FileNotFoundError:
        raise BaselineError("git is not installed (needed for --baseline git:REF)") from None
    except subprocess.TimeoutExpired:
        raise BaselineError(f"git {' '.join(args)} did not answer within 60 s") from None


def read_baseline(spec: str, config: PikkuConfig, cwd: Path | None = None) -> AnalysisReport:
    """The baseline of ``--baseline SPEC``: ``git:REF`` (the generated ``workflow_meta.json``
    as committed at REF, read with ``git show``: no checkout), a file, or a directory that
    holds ``workflow_meta.json``."""
    if spec.startswith("git:"):
        ref = spec[4:]
        if not ref:
            raise BaselineError("git:REF needs a ref (for example git:origin/main)")
        root = config.root
        top = _git(["rev-parse", "--show-toplevel"], root)
        if top.returncode != 0:
            raise BaselineError(f"{root} is not in a git repository (git:{ref} needs one; pass the path of a workflow_meta.json instead)")
        toplevel = Path(top.stdout.decode("utf-8", "replace").strip()).resolve()
        meta = (config.package_dir / META_JSON).resolve()
        try:
            rel = meta.relative_to(toplevel).as_posix()
        except ValueError:
            raise BaselineError(f"{meta} is outside the git repository {toplevel}") from None
        if _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], toplevel).returncode != 0:
            raise BaselineError(f"unknown git ref {ref!r} (fetch it first, e.g. git fetch origin main)")
        shown = _git(["show", f"{ref}:{rel}"], toplevel)
        if shown.returncode != 0:
            raise BaselineError(
                f"{rel} does not exist at {ref}: commit the generated workflow_meta.json "
                "(see docs/ci.md)"
            )
        return parse_baseline(shown.stdout, f"{ref}:{rel}")
    path = Path(spec)
    if not path.is_absolute() and cwd is not None:
        path = cwd / path
    if path.is_dir():
        path = path / META_JSON
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BaselineError(f"{spec}: no such file") from None
    except OSError as exc:
        raise BaselineError(f"cannot read {spec}: {exc.strerror or exc}") from None
    return parse_baseline(data, spec)


def check_baseline(result: AnalysisResult, spec: str) -> list[Diag]:
    """Compare ``result`` with the baseline of ``spec``; add the diagnostics to ``result``
    (its ``# pikku: ignore[CODE]`` comments apply) and return them."""
    from pikku_analyzer.engine import apply_suppressions

    baseline = read_baseline(spec, result.config, cwd=Path.cwd())
    current = with_type_shapes(result.report, result.config)
    broken = frozenset(
        d.file for d in result.diagnostics if d.code in ("SYNTAX_ERROR", "UNREADABLE_FILE", "FILE_TOO_LARGE")
    )
    findings = compare(baseline, current, root=result.config.root, unreadable=broken)
    diags = [f.to_diag() for f in findings]
    diags = apply_suppressions(diags, result.suppressions)
    merged = sorted(set(result.diagnostics) | set(diags), key=Diag.sort_key)
    result.diagnostics[:] = merged
    result.data["diagnostics"] = [d.to_dict() for d in merged]
    return diags


__all__ = [
    "BaselineError",
    "Finding",
    "TypeCompat",
    "check_baseline",
    "compare",
    "parse_baseline",
    "read_baseline",
]
