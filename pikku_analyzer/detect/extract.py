"""Per-file facts, extracted statically with the stdlib ``ast`` (never importing user code).

``extract_facts`` turns one file's bytes into a JSON-able dict (the unit of the cache):
its imports, module-level string constants, RPC functions (``@pikku_func``), the
``wire_workflow(...)`` calls and, for every module-level ``async def`` with a first
parameter, the steps called on that parameter and the non-deterministic calls made
outside steps. Everything that needs other modules (``func=`` imported from elsewhere,
imported constants, RPC names) is kept as a ``{"ref": "dotted.name"}`` and resolved by
:mod:`pikku_analyzer.checks`.

Values not known statically are ``"<dynamic>"``.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import io
import re
import sys
import tokenize
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pikku_analyzer.facts import (
    DYNAMIC,
    JSON,
    EventFact,
    FileFacts,
    FunctionFact,
    HelperCallFact,
    NestedFact,
    NondetFact,
    RpcFact,
    StepFact,
    SyntaxErrorFact,
    UseFact,
    WiringFact,
    empty_facts,
)

_BUILTINS: Final = frozenset(dir(builtins))
_SUPPRESS_RE: Final = re.compile(r"#\s*pikku:\s*ignore(?:\[([^\]]*)\])?", re.IGNORECASE)
_FUNCS: Final = (ast.FunctionDef, ast.AsyncFunctionDef)
_SPECIAL_NODES: Final = frozenset(
    {
        ast.Attribute, ast.Name, ast.Call, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
        ast.ClassDef, ast.Assign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.While, ast.If,
        ast.IfExp, ast.Match, ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp,
    }
)
"""The node types :meth:`StepWalker._visit` handles itself (the others: their children)."""

_NOW_HINT: Final = "use `await {alias}.now()`: the time (UTC), recorded once and the same on every replay"
_UUID_HINT: Final = "use `await {alias}.uuid4()`: a UUID recorded once and the same on every replay"
_RANDOM_HINT: Final = (
    "use `await {alias}.random()` (a float recorded once and the same on every replay), "
    "or move the call into a step"
)

# dotted name -> (what it is, specific hint; "{alias}" is the workflow parameter)
_NONDET_EXACT: Final[dict[str, tuple[str, str]]] = {
    "time.time": ("the current time", _NOW_HINT),
    "time.time_ns": ("the current time", _NOW_HINT),
    "time.monotonic": ("a clock", ""),
    "time.monotonic_ns": ("a clock", ""),
    "time.perf_counter": ("a clock", ""),
    "time.perf_counter_ns": ("a clock", ""),
    "time.process_time": ("a clock", ""),
    "time.localtime": ("the current time", ""),
    "time.gmtime": ("the current time", ""),
    "time.sleep": ("a blocking sleep", "use await workflow.sleep(\"name\", duration): it is durable"),
    "asyncio.sleep": ("a non-durable sleep", "use await workflow.sleep(\"name\", duration): it is durable"),
    "datetime.datetime.now": ("the current time", _NOW_HINT),
    "datetime.datetime.utcnow": ("the current time", _NOW_HINT),
    "datetime.datetime.today": ("the current date", _NOW_HINT),
    "datetime.date.today": ("the current date", _NOW_HINT),
    "uuid.uuid1": ("a random UUID", _UUID_HINT),
    "uuid.uuid4": ("a random UUID", _UUID_HINT),
    "os.environ": ("the environment", ""),
    "os.getenv": ("the environment", ""),
    "os.getenvb": ("the environment", ""),
    "os.urandom": ("randomness", ""),
    "os.listdir": ("file-system I/O", ""),
    "os.scandir": ("file-system I/O", ""),
    "os.stat": ("file-system I/O", ""),
    "os.path.exists": ("file-system I/O", ""),
    "os.system": ("a subprocess", ""),
    "builtins.open": ("file I/O", ""),
    "builtins.input": ("console input", ""),
    "io.open": ("file I/O", ""),
    "pathlib.Path.read_text": ("file I/O", ""),
    "pathlib.Path.read_bytes": ("file I/O", ""),
    "pathlib.Path.write_text": ("file I/O", ""),
    "pathlib.Path.write_bytes": ("file I/O", ""),
    "pikku_typing.rpc.invoke": (
        "an RPC call",
        "call the RPC as a step: await workflow.do(\"name\", \"rpc.name\", data)",
    ),
    "pikku_typing.interaction.rpc.invoke": (
        "an RPC call",
        "call the RPC as a step: await workflow.do(\"name\", \"rpc.name\", data)",
    ),
}
_NONDET_PREFIXES: Final[tuple[tuple[str, str], ...]] = (
    ("random.", "randomness"),  # random.random: _RANDOM_HINT (see nondeterministic)
    ("secrets.", "randomness"),
    ("os.environ.", "the environment"),
    ("requests.", "network I/O"),
    ("httpx.", "network I/O"),
    ("aiohttp.", "network I/O"),
    ("urllib3.", "network I/O"),
    ("urllib.request.", "network I/O"),
    ("http.client.", "network I/O"),
    ("socket.", "network I/O"),
    ("smtplib.", "network I/O"),
    ("ftplib.", "network I/O"),
    ("subprocess.", "a subprocess"),
    ("asyncio.subprocess.", "a subprocess"),
    ("asyncio.open_connection", "network I/O"),
    ("aiofiles.", "file I/O"),
)
_NONDET_ALLOWED: Final = frozenset({"random.Random", "random.seed", "secrets.compare_digest"})


def nondeterministic(dotted: str) -> tuple[str, str] | None:
    """What ``dotted`` (a resolved name) is when it is non-deterministic, else ``None``."""
    hit = _NONDET_EXACT.get(dotted)
    if hit is not None:
        return hit
    if dotted == "random.random":
        return ("randomness", _RANDOM_HINT)
    if dotted in _NONDET_ALLOWED:
        return None
    for prefix, what in _NONDET_PREFIXES:
        if dotted.startswith(prefix):
            return (what, "")
    return None


def wire_targets(package: str) -> frozenset[str]:
    return frozenset(
        {
            "pikku_typing.wire_workflow",
            "pikku_typing.wiring.wire_workflow",
            f"{package}.wire_workflow",
            f"{package}.workflow_types.wire_workflow",
        }
    )


def event_targets(package: str) -> frozenset[str]:
    return frozenset(
        {
            "pikku_typing.wire_event",
            "pikku_typing.wiring.wire_event",
            f"{package}.wire_event",
            f"{package}.workflow_types.wire_event",
        }
    )


def client_targets(package: str) -> frozenset[str]:
    """``workflow_client(runtime, "name")`` of the generated package."""
    return frozenset({f"{package}.workflow_client", f"{package}.workflow_map.workflow_client"})


STEP_METHODS: Final = frozenset({"do", "sleep", "wait_for_event", "run_child", "start_child"})
"""Methods of the workflow object that start a step (SPEC sections 3 and 8)."""
VALUE_METHODS: Final = frozenset({"now", "uuid4", "random"})
"""Deterministic helpers of the workflow object: recorded once, replayed after (SPEC 8)."""
_RUNTIME_CLASSES: Final = frozenset({"WorkflowRuntime", "WorkflowTestEnv"})
_CLIENT_CLASSES: Final = frozenset({"WorkflowClient"})
_RUNTIME_FIXTURES: Final = frozenset({"workflow_env"})
"""Parameter names bound to a runtime-like object by pikku's pytest plugin."""

_RUNTIME_TOKENS: Final = (b"send_event", b".client(", b"workflow_client", b"WorkflowRuntime", b"WorkflowClient", b"WorkflowTestEnv")

_STAR_NAMES: Final = frozenset({"wire_workflow", "wire_event", "pikku_func", "rpc", "Workflow"})
"""Names taken from the first ``from <module> import *`` when nothing else binds them."""

_PIKKU_FUNC: Final = frozenset({"pikku_typing.pikku_func", "pikku_typing.wiring.pikku_func"})
_PARTIAL: Final = frozenset({"functools.partial"})
_TIMEDELTA: Final = frozenset({"datetime.timedelta"})
_TIMEDELTA_UNITS: Final[dict[str, float]] = {
    "weeks": 604800.0,
    "days": 86400.0,
    "hours": 3600.0,
    "minutes": 60.0,
    "seconds": 1.0,
    "milliseconds": 0.001,
    "microseconds": 0.000001,
}


def prefilter_tokens(package: str) -> tuple[bytes, ...]:
    """Substrings of which a file must contain one to be parsed at all."""
    return (
        b"wire_workflow",
        b"wire_event",
        b"pikku_func",
        b"pikku_typing",
        package.encode(),
        b"send_event",  # a web handler sending an event through an imported runtime or client
        b".client(",  # a client of an imported runtime (names checked: UNKNOWN_WORKFLOW)
    )


def passes_prefilter(source: bytes, tokens: Iterable[bytes]) -> bool:
    return any(token in source for token in tokens)


# --------------------------------------------------------------------------- module scope


def resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str | None:
    """The absolute module of ``from <level dots><target> import ...`` in ``module``."""
    if level == 0:
        return target
    parts = module.split(".") if module else []
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        if level - 1 > len(parts):
            return None
        parts = parts[: len(parts) - (level - 1)]
    if target:
        parts.append(target)
    return ".".join(parts) if parts else None


def _module_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, looking inside if/try/with blocks (not defs or classes)."""
    stack = list(reversed(body))
    while stack:
        stmt = stack.pop()
        yield stmt
        if isinstance(stmt, ast.If):
            stack.extend(reversed(stmt.orelse))
            stack.extend(reversed(stmt.body))
        elif isinstance(stmt, ast.Try | ast.TryStar):
            for block in (stmt.finalbody, stmt.orelse):
                stack.extend(reversed(block))
            for handler in reversed(stmt.handlers):
                stack.extend(reversed(handler.body))
            stack.extend(reversed(stmt.body))
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            stack.extend(reversed(stmt.body))


class ModuleScope:
    """Names bound at module level: imports, functions, classes, constants."""

    def __init__(self, tree: ast.Module, module: str, is_package: bool, source: bytes) -> None:
        self.module = module
        self.is_package = is_package
        self.imports: dict[str, str] = {}
        self.star_imports: list[str] = []
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.bound: set[str] = set()
        self.constants: dict[str, str | int | float] = {}
        reassigned: set[str] = set()
        self._source = source
        self._ascii = source.isascii()
        self._lines: list[bytes] | None = None
        for stmt in _module_statements(tree.body):
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        self.imports[alias.asname] = alias.name
                    else:
                        head = alias.name.split(".", 1)[0]
                        self.imports[head] = head
            elif isinstance(stmt, ast.ImportFrom):
                base = resolve_relative(module, is_package, stmt.level, stmt.module)
                if base is None:
                    continue
                for alias in stmt.names:
                    if alias.name == "*":
                        if base.startswith("pikku_typing"):
                            self.star_imports.insert(0, base)
                        else:
                            self.star_imports.append(base)
                    else:
                        self.imports[alias.asname or alias.name] = f"{base}.{alias.name}"
            elif isinstance(stmt, _FUNCS):
                self.functions[stmt.name] = stmt
                self.bound.add(stmt.name)
            elif isinstance(stmt, ast.ClassDef):
                self.bound.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    for name in _target_names(target):
                        self._bind_value(name, stmt.value, reassigned)
            elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
                for name in _target_names(stmt.target):
                    value = stmt.value if isinstance(stmt, ast.AnnAssign) else None
                    if isinstance(stmt, ast.AugAssign):
                        reassigned.add(name)
                    self._bind_value(name, value, reassigned)
        for name in reassigned:
            self.constants.pop(name, None)

    def _bind_value(self, name: str, value: ast.expr | None, reassigned: set[str]) -> None:
        if name in self.bound:
            reassigned.add(name)
        self.bound.add(name)
        self.imports.pop(name, None)
        if (
            isinstance(value, ast.Constant)
            and isinstance(value.value, str | int | float)
            and not isinstance(value.value, bool)
        ):
            self.constants[name] = value.value
        elif isinstance(value, ast.BinOp | ast.JoinedStr | ast.Name | ast.Attribute):
            folded = self.string(value)
            if isinstance(value, ast.Name | ast.Attribute) and isinstance(folded, dict):
                return  # an alias of an imported name: resolved through imports, not here
            if folded != DYNAMIC and folded is not None:
                self.constants[name] = folded  # a string built from constants only

    # -- positions

    def column(self, node: ast.expr | ast.stmt) -> int:
        """1-based column in characters."""
        return self.char_offset(node.lineno, node.col_offset) + 1

    def char_offset(self, lineno: int, offset: int) -> int:
        """0-based character offset of a UTF-8 byte offset on a line."""
        if self._ascii:
            return offset
        if self._lines is None:
            self._lines = self._source.splitlines()
        index = lineno - 1
        if 0 <= index < len(self._lines):
            return len(self._lines[index][:offset].decode("utf-8", "replace"))
        return offset

    # -- names

    def dotted(self, node: ast.expr, shadow: frozenset[str] | set[str] = frozenset()) -> str | None:
        """Resolved dotted name of a Name/Attribute chain through imports and module names."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id in shadow:
            return None
        base = node.id
        if base in self.imports:
            head = self.imports[base]
        elif base in self.bound:
            head = f"{self.module}.{base}" if self.module else base
        elif base in _BUILTINS:
            head = f"builtins.{base}"
        elif base in _STAR_NAMES and self.star_imports:
            head = f"{self.star_imports[0]}.{base}"
        else:
            return None
        parts.append(head)
        return ".".join(reversed(parts))

    def imported(
        self,
        node: ast.expr,
        shadow: frozenset[str] | set[str] = frozenset(),
        local_imports: Mapping[str, str] | None = None,
    ) -> str | None:
        """Like :meth:`dotted` but only through imports and builtins (for external APIs)."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id in shadow:
            return None
        base = node.id
        if local_imports and base in local_imports:
            head = local_imports[base]
        elif base in self.imports:
            head = self.imports[base]
        elif base in _BUILTINS and base not in self.bound:
            head = f"builtins.{base}"
        elif base in _STAR_NAMES and self.star_imports and base not in self.bound:
            head = f"{self.star_imports[0]}.{base}"
        else:
            return None
        parts.append(head)
        return ".".join(reversed(parts))

    def string(self, node: ast.expr | None, shadow: frozenset[str] | set[str] = frozenset()) -> JSON:
        """A string value: the literal, a module constant, a string built from constants only
        (implicit concatenation, ``+``, f-strings whose parts are constants), ``{"ref": ...}``
        (an imported name), ``{"concat": [...]}`` (parts of which some are imported names,
        joined when linking) or DYNAMIC."""
        if node is None:
            return None
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        return self._fold(node, shadow, 0)

    def _fold(self, node: ast.expr, shadow: frozenset[str] | set[str], depth: int) -> JSON:
        if depth > 50:
            return DYNAMIC
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else DYNAMIC
        if isinstance(node, ast.Name):
            if node.id in shadow:
                return DYNAMIC
            value = self.constants.get(node.id)
            if isinstance(value, str | dict):
                return value
            if node.id in self.imports:
                return {"ref": self.imports[node.id]}
            return DYNAMIC
        if isinstance(node, ast.Attribute):
            dotted = self.imported(node, shadow)
            return {"ref": dotted} if dotted is not None else DYNAMIC
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return _concat([self._fold(node.left, shadow, depth + 1), self._fold(node.right, shadow, depth + 1)])
        if isinstance(node, ast.JoinedStr):
            parts: list[JSON] = []
            for piece in node.values:
                if isinstance(piece, ast.FormattedValue):
                    parts.append(self._formatted(piece, shadow, depth + 1))
                else:
                    parts.append(self._fold(piece, shadow, depth + 1))
            return _concat(parts)
        return DYNAMIC

    def _formatted(self, node: ast.FormattedValue, shadow: frozenset[str] | set[str], depth: int) -> JSON:
        """``{value!conv:spec}`` of an f-string when its value is a constant."""
        number = self._literal_number(node.value, shadow)
        value: JSON = number if number is not None else self._fold(node.value, shadow, depth)
        plain = node.conversion == -1 and node.format_spec is None
        if plain and isinstance(value, dict):
            return value  # an imported constant, joined when linking
        if not isinstance(value, str | int | float) or value == DYNAMIC:
            return DYNAMIC
        spec = ""
        if node.format_spec is not None:
            folded = self._fold(node.format_spec, shadow, depth + 1)
            if not isinstance(folded, str) or folded == DYNAMIC:
                return DYNAMIC
            spec = folded
            if any(int(width) > MAX_FOLDED for width in re.findall(r"\d+", spec)):
                return DYNAMIC  # f"{X:>999999999}": not a name, and not worth the memory
        converted: object = value
        if node.conversion == ord("r"):
            converted = repr(value)
        elif node.conversion == ord("a"):
            converted = ascii(value)
        elif node.conversion == ord("s"):
            converted = str(value)
        try:
            return format(converted, spec)
        except (ValueError, TypeError):
            return DYNAMIC

    def number(self, node: ast.expr | None, shadow: frozenset[str] | set[str] = frozenset()) -> JSON:
        if node is None or (isinstance(node, ast.Constant) and node.value is None):
            return None
        value = self._literal_number(node, shadow)
        if value is None:
            return DYNAMIC
        return value

    def _literal_number(self, node: ast.expr, shadow: frozenset[str] | set[str]) -> int | float | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return None if isinstance(node.value, bool) else node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self._literal_number(node.operand, shadow)
            return None if inner is None else -inner
        if isinstance(node, ast.Name) and node.id not in shadow:
            value = self.constants.get(node.id)
            if isinstance(value, int | float):
                return value
        return None

    def duration(self, node: ast.expr | None, shadow: frozenset[str] | set[str] = frozenset()) -> JSON:
        """A duration: a string (``"1d"``), seconds as a float, or DYNAMIC."""
        if node is None or (isinstance(node, ast.Constant) and node.value is None):
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name) and isinstance(self.constants.get(node.id), str) and node.id not in shadow:
            return self.constants[node.id]
        number = self._literal_number(node, shadow)
        if number is not None:
            return float(number)
        if isinstance(node, ast.Call) and self.imported(node.func, shadow) in _TIMEDELTA:
            units = ("days", "seconds", "microseconds", "milliseconds", "minutes", "hours", "weeks")
            total = 0.0
            for unit, arg in zip(units, node.args, strict=False):
                value = self._literal_number(arg, shadow)
                if value is None:
                    return DYNAMIC
                total += value * _TIMEDELTA_UNITS[unit]
            for keyword in node.keywords:
                if keyword.arg not in _TIMEDELTA_UNITS:
                    return DYNAMIC
                value = self._literal_number(keyword.value, shadow)
                if value is None:
                    return DYNAMIC
                total += value * _TIMEDELTA_UNITS[keyword.arg]
            return total
        return DYNAMIC

    def type_expr(self, node: ast.expr | None) -> str | None:
        """A type expression with every name resolved to an importable dotted name."""
        if node is None:
            return None
        return self._type(node, 0)

    def _type(self, node: ast.expr, depth: int) -> str:
        if depth > 50:
            return ast.unparse(node)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                try:
                    inner = ast.parse(node.value.strip(), mode="eval").body
                except (SyntaxError, ValueError, RecursionError, MemoryError):
                    return node.value
                return self._type(inner, depth + 1)
            if node.value is None:
                return "None"
            return repr(node.value)
        if isinstance(node, ast.Name | ast.Attribute):
            dotted = self.dotted(node)
            if dotted is None:
                return ast.unparse(node)
            if dotted.startswith("builtins."):
                return dotted[len("builtins.") :]
            return dotted
        if isinstance(node, ast.Subscript):
            base = self._type(node.value, depth + 1)
            inner = node.slice
            if isinstance(inner, ast.Tuple):
                args = ", ".join(self._type(e, depth + 1) for e in inner.elts)
            else:
                args = self._type(inner, depth + 1)
            return f"{base}[{args}]"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return f"{self._type(node.left, depth + 1)} | {self._type(node.right, depth + 1)}"
        if isinstance(node, ast.List):
            return "[" + ", ".join(self._type(e, depth + 1) for e in node.elts) + "]"
        if isinstance(node, ast.Tuple):
            return ", ".join(self._type(e, depth + 1) for e in node.elts)
        return ast.unparse(node)


MAX_FOLDED: Final = 4096
"""Longest string built from constants that is folded (longer: DYNAMIC)."""
MAX_FOLDED_PARTS: Final = 64


def _concat(parts: list[JSON]) -> JSON:
    """Join folded string parts: a str when all are known, ``{"concat": [...]}`` when some
    are imported names, DYNAMIC when one is not static."""
    flat: list[JSON] = []
    for part in parts:
        if part == DYNAMIC or part is None or not isinstance(part, str | dict):
            return DYNAMIC
        if isinstance(part, dict) and "concat" in part:
            flat.extend(part["concat"])
        else:
            flat.append(part)
    merged: list[JSON] = []
    for part in flat:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] = merged[-1] + part
        else:
            merged.append(part)
    if len(merged) > MAX_FOLDED_PARTS or sum(len(p) for p in merged if isinstance(p, str)) > MAX_FOLDED:
        return DYNAMIC  # X = A + A; Y = X + X; ... grows exponentially: not a name
    if len(merged) == 1:
        return merged[0]
    if not merged:
        return ""
    return {"concat": merged}


def _target_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _target_names(element)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _positional_params(func: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> list[ast.arg]:
    return [*func.args.posonlyargs, *func.args.args]


def _param_names(func: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    args = func.args
    names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    if args.vararg:
        names.add(args.vararg.arg)
    if args.kwarg:
        names.add(args.kwarg.arg)
    return names


def _local_names(
    func: ast.FunctionDef | ast.AsyncFunctionDef, module: str, is_package: bool
) -> tuple[set[str], dict[str, str]]:
    """Parameters and names assigned in ``func`` (not in nested functions), and the
    names it imports (``{"t": "time"}``), which are not shadows but imports."""
    names = _param_names(func)
    imports: dict[str, str] = {}
    stack: list[ast.AST] = list(func.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (*_FUNCS, ast.ClassDef)):
            names.add(node.name)
            continue
        elif isinstance(node, ast.Lambda):
            continue
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    imports[alias.asname] = alias.name
                else:
                    head = alias.name.split(".", 1)[0]
                    imports[head] = head
        elif isinstance(node, ast.ImportFrom):
            base = resolve_relative(module, is_package, node.level, node.module)
            for alias in node.names:
                if base is not None and alias.name != "*":
                    imports[alias.asname or alias.name] = f"{base}.{alias.name}"
        stack.extend(ast.iter_child_nodes(node))
    return names - set(imports), imports


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class _Ctx:
    aliases: frozenset[str]
    shadow: frozenset[str]
    in_loop: bool = False
    in_step: bool = False
    outer: JSON = None
    """The name of the inline step whose function is being walked (``in_step``)."""
    branches: tuple[tuple[int, int], ...] = ()
    imports: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def replace(self, **changes: Any) -> _Ctx:
        return dataclasses.replace(self, **changes)


class StepWalker:
    """Finds the steps called on a workflow function's first parameter, at any nesting.

    Nested functions (``def``/``async def``/``lambda`` in the workflow) that close over
    the workflow parameter are walked at their first call site (so a loop around the call
    marks their steps ``in_loop``), or at the end when never called. A function that
    receives the workflow object as an argument (a nested helper, or a module-level
    function of the same module) is walked with that parameter as an alias. A function
    or lambda passed as the inline step's callable runs inside the step: its calls are
    not reported as non-deterministic (also through a local ``fn = lambda: ...``). A call of
    a function imported from another module with the workflow object as its first argument
    is recorded in ``helper_calls``; the linker merges that function's steps (its own facts
    were computed with its first parameter as the workflow).
    """

    def __init__(self, scope: ModuleScope, func: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope = scope
        self.func = func
        self.steps: list[StepFact] = []
        self.nondet: list[NondetFact] = []
        self.helper_calls: list[HelperCallFact] = []
        self.nested: list[NestedFact] = []
        """Steps started inside the function of an inline step (``NESTED_STEP``)."""
        self._branch_ids = 0
        self._walked: set[int] = set()
        self._walked_modes: set[tuple[int, bool]] = set()
        """(function, in_step): a function is walked once as part of the body (its steps are
        the workflow's) and once inside a step (its steps are nested), as it is used."""
        self._pending: dict[int, tuple[ast.FunctionDef | ast.AsyncFunctionDef, _Ctx]] = {}
        self._local_funcs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self._pending_lambdas: dict[str, tuple[ast.Lambda, _Ctx]] = {}
        """``fn = lambda: ...`` in the workflow: its body is visited where ``fn`` is used."""
        self._local_callables: set[str] = set()
        """Local names bound to a lambda or a ``functools.partial(...)``."""

    def run(self) -> None:
        params = _positional_params(self.func)
        if not params:
            return
        ctx = _Ctx(aliases=frozenset({params[0].arg}), shadow=frozenset())
        self._walk_function(self.func, ctx, {params[0].arg})
        while self._pending or self._pending_lambdas:
            if self._pending_lambdas:
                _, (lam, lam_ctx) = self._pending_lambdas.popitem()
                self._visit_lambda(lam, lam_ctx)
                continue
            key = next(iter(self._pending))
            node, def_ctx = self._pending.pop(key)
            if key not in self._walked:
                self._walk_function(node, def_ctx, set())
        self.steps.sort(key=lambda s: (s["line"], s["column"]))

    # -- functions

    def _walk_function(
        self,
        node: ast.FunctionDef | ast.AsyncFunctionDef,
        ctx: _Ctx,
        new_aliases: set[str],
    ) -> None:
        self._walked.add(id(node))
        self._walked_modes.add((id(node), ctx.in_step))
        self._pending.pop(id(node), None)
        params = _param_names(node)
        aliases = (ctx.aliases - params) | new_aliases
        local, imports = _local_names(node, self.scope.module, self.scope.is_package)
        shadow = frozenset(local - aliases)
        merged = {**ctx.imports, **imports} if imports else ctx.imports
        for name in local:
            if name in merged:
                merged = {k: v for k, v in merged.items() if k not in local}
                break
        inner = ctx.replace(aliases=frozenset(aliases), shadow=shadow, imports=merged)
        for stmt in node.body:
            self._visit(stmt, inner)

    def _call_local(
        self,
        node: ast.FunctionDef | ast.AsyncFunctionDef,
        call: ast.Call,
        ctx: _Ctx,
        closure: bool = True,
    ) -> None:
        if (id(node), ctx.in_step) in self._walked_modes:
            return
        params = _positional_params(node)
        new_aliases: set[str] = set()
        for index, arg in enumerate(call.args):
            if isinstance(arg, ast.Name) and arg.id in ctx.aliases and index < len(params):
                new_aliases.add(params[index].arg)
        for keyword in call.keywords:
            if isinstance(keyword.value, ast.Name) and keyword.value.id in ctx.aliases and keyword.arg:
                new_aliases.add(keyword.arg)
        if not closure:
            if not new_aliases:
                return
            ctx = ctx.replace(aliases=frozenset(), shadow=frozenset(), imports={})
        self._walk_function(node, ctx, new_aliases)

    # -- generic visit

    def _visit(self, node: ast.AST, ctx: _Ctx) -> None:
        if type(node) not in _SPECIAL_NODES:  # most nodes: one set lookup, then the children
            for sub in ast.iter_child_nodes(node):
                self._visit(sub, ctx)
            return
        match node:
            case ast.Attribute() | ast.Name():
                if not ctx.in_step and isinstance(node.ctx, ast.Load) and self._check_nondet(node, ctx):
                    return
                if isinstance(node, ast.Attribute):
                    self._visit(node.value, ctx)
            case ast.Call():
                self._visit_call(node, ctx)
            case ast.FunctionDef() | ast.AsyncFunctionDef():
                self._visit_def(node, ctx)
            case ast.Lambda():
                self._visit_lambda(node, ctx)
            case ast.ClassDef():
                return  # classes are skipped
            case ast.Assign() | ast.AnnAssign() if self._bind_callable(node, ctx):
                return  # `fn = lambda: ...` is visited where fn is used
            case ast.For() | ast.AsyncFor():
                self._visit(node.iter, ctx)
                looped = ctx.replace(in_loop=True)
                self._visit(node.target, looped)
                self._visit_all(node.body, looped)
                self._visit_all(node.orelse, ctx)
            case ast.While():
                looped = ctx.replace(in_loop=True)
                self._visit(node.test, looped)
                self._visit_all(node.body, looped)
                self._visit_all(node.orelse, ctx)
            case ast.If():
                self._visit(node.test, ctx)
                arm0, arm1 = self._arms(ctx, 2)
                self._visit_all(node.body, arm0)
                self._visit_all(node.orelse, arm1)
            case ast.IfExp():
                self._visit(node.test, ctx)
                arm0, arm1 = self._arms(ctx, 2)
                self._visit(node.body, arm0)
                self._visit(node.orelse, arm1)
            case ast.Match():
                self._visit(node.subject, ctx)
                for case, arm in zip(node.cases, self._arms(ctx, len(node.cases)), strict=True):
                    if case.guard is not None:
                        self._visit(case.guard, arm)
                    self._visit_all(case.body, arm)
            case ast.ListComp() | ast.SetComp() | ast.GeneratorExp():
                inner = self._visit_generators(node.generators, ctx)
                self._visit(node.elt, inner)
            case ast.DictComp():
                inner = self._visit_generators(node.generators, ctx)
                self._visit(node.key, inner)
                self._visit(node.value, inner)
            case _:  # an Assign/AnnAssign that binds no callable
                for sub in ast.iter_child_nodes(node):
                    self._visit(sub, ctx)

    def _visit_all(self, nodes: Iterable[ast.AST], ctx: _Ctx) -> None:
        for node in nodes:
            self._visit(node, ctx)

    def _visit_def(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, ctx: _Ctx) -> None:
        """A nested function: its decorators and defaults run here; its body is walked at its
        first call (or at the end)."""
        for expr in (*fn.decorator_list, *fn.args.defaults, *fn.args.kw_defaults):
            if expr is not None:
                self._visit(expr, ctx)
        self._local_funcs[fn.name] = fn
        if id(fn) not in self._walked:
            self._pending[id(fn)] = (fn, ctx)

    def _arms(self, ctx: _Ctx, count: int) -> list[_Ctx]:
        """The contexts of the ``count`` exclusive arms of a new ``if``/``match``."""
        self._branch_ids += 1
        bid = self._branch_ids
        return [ctx.replace(branches=(*ctx.branches, (bid, arm))) for arm in range(count)]

    def _visit_generators(self, generators: list[ast.comprehension], ctx: _Ctx) -> _Ctx:
        """Visit a comprehension's ``for``/``if`` clauses; returns the context of its element
        (in a loop, the targets shadowing outer names)."""
        names = {n for g in generators for n in _target_names(g.target)}
        inner = ctx.replace(in_loop=True, aliases=ctx.aliases - names, shadow=ctx.shadow | names)
        for index, generator in enumerate(generators):
            self._visit(generator.iter, inner if index else ctx)
            for condition in generator.ifs:
                self._visit(condition, inner)
        return inner

    def _visit_lambda(self, lam: ast.Lambda, ctx: _Ctx) -> None:
        params = _param_names(lam)
        for default in (*lam.args.defaults, *lam.args.kw_defaults):
            if default is not None:
                self._visit(default, ctx)
        self._visit(lam.body, ctx.replace(aliases=ctx.aliases - params, shadow=ctx.shadow | params))

    def _bind_callable(self, node: ast.Assign | ast.AnnAssign, ctx: _Ctx) -> bool:
        """``fn = lambda: ...`` / ``fn = functools.partial(...)``: remember ``fn`` as a callable
        (the lambda's body is visited where it is used). True when ``node`` was handled."""
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value = node.value
        if len(targets) != 1 or not isinstance(targets[0], ast.Name) or value is None:
            return False
        name = targets[0].id
        self._pending_lambdas.pop(name, None)
        self._local_callables.discard(name)
        if isinstance(value, ast.Lambda):
            self._pending_lambdas[name] = (value, ctx)
            self._local_callables.add(name)
            return True
        if isinstance(value, ast.Call) and self.scope.imported(value.func, ctx.shadow, ctx.imports) in _PARTIAL:
            self._local_callables.add(name)
        return False

    def _check_nondet(self, node: ast.expr, ctx: _Ctx) -> bool:
        dotted = self.scope.imported(node, ctx.shadow, ctx.imports)
        if dotted is None:
            return False
        hit = nondeterministic(dotted)
        if hit is None:
            return False
        what, hint = hit
        shown = dotted[len("builtins.") :] if dotted.startswith("builtins.") else dotted
        written = _short(node)
        alias = sorted(ctx.aliases)[0] if ctx.aliases else "workflow"
        self.nondet.append(
            {
                "line": node.lineno,
                "column": self.scope.column(node),
                "name": shown,
                "alias": alias,
                "message": (
                    f"`{written}` ({what}) is used in workflow function `{self.func.name}` outside "
                    "a step: the workflow body is re-run on every replay, so it can differ between passes"
                ),
                "hint": hint.replace("{alias}", alias)
                if hint
                else f'move `{written}` into a step: await {alias}.do("name", lambda: ...)',
            }
        )
        return True

    def _visit_call(self, node: ast.Call, ctx: _Ctx) -> None:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in STEP_METHODS
            and isinstance(func.value, ast.Name)
            and func.value.id in ctx.aliases
        ):
            if ctx.in_step:
                self._record_nested(node, func.attr, ctx)
                return
            self._record_step(node, func.attr, ctx)
            return
        handled = False
        if isinstance(func, ast.Name) and func.id not in ctx.aliases:
            local = self._local_funcs.get(func.id)
            if local is not None:
                handled = True
                self._call_local(local, node, ctx)
            elif func.id not in ctx.shadow:
                top = self.scope.functions.get(func.id)
                if top is not None:
                    handled = True
                    if top is not self.func:
                        # a module-level helper receiving the workflow object: its own scope
                        self._call_local(top, node, ctx, closure=False)
        first = node.args[0] if node.args else None
        if not handled and isinstance(first, ast.Name) and first.id in ctx.aliases:
            # a helper imported from another module, called with the workflow as its first
            # argument: its steps are merged when linking (its facts have them)
            dotted = self.scope.imported(func, ctx.shadow, ctx.imports)
            if dotted is not None and not dotted.startswith("builtins."):
                self.helper_calls.append(
                    {
                        "ref": dotted,
                        "line": node.lineno,
                        "column": self.scope.column(node),
                        "in_loop": ctx.in_loop,
                        "in_step": ctx.in_step,
                        "branches": [list(b) for b in ctx.branches],
                    }
                )
        for child in ast.iter_child_nodes(node):
            self._visit(child, ctx)

    # -- steps

    def _record_nested(self, node: ast.Call, method: str, ctx: _Ctx) -> None:
        """``workflow.<method>(...)`` reached from the function of an inline step: at run
        time a ``NestedStepError``; not a step of the workflow."""
        name_node = node.args[0] if node.args else None
        alias = node.func.value.id if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) else "workflow"
        self.nested.append(
            {
                "line": node.lineno,
                "column": self.scope.column(node),
                "call": f"{alias}.{method}",
                "step_name": self.scope.string(name_node, ctx.shadow) if name_node is not None else DYNAMIC,
                "outer": ctx.outer,
            }
        )
        for child in (*node.args, *(k.value for k in node.keywords)):
            self._visit(child, ctx)

    def _record_step(self, node: ast.Call, method: str, ctx: _Ctx) -> None:
        scope = self.scope
        shadow = ctx.shadow
        args = list(node.args)
        keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
        starred = any(isinstance(a, ast.Starred) for a in args) or any(
            k.arg is None for k in node.keywords
        )
        name_node = args[0] if args else keywords.get("step_name")
        step_name = scope.string(name_node, shadow) if name_node is not None else DYNAMIC
        description = scope.string(keywords.get("description"), shadow)
        step: StepFact = {
            "step_name": step_name,
            "description": description,
            "line": node.lineno,
            "column": scope.column(node),
            "in_loop": ctx.in_loop,
            "branches": [list(b) for b in ctx.branches],
        }
        # expressions evaluated in the workflow body (checked for non-determinism)
        body_exprs: list[ast.expr] = [k.value for k in node.keywords]
        if name_node is not None and args:
            body_exprs.append(name_node)
        if method == "wait_for_event" or method in ("run_child", "start_child"):
            event = method == "wait_for_event"
            target_node = args[1] if len(args) > 1 else keywords.get("event_name" if event else "workflow_name")
            target = scope.string(target_node, shadow) if target_node is not None else DYNAMIC
            step["type"] = "event" if event else "child"
            step["event_name" if event else "workflow_name"] = DYNAMIC if target is None else target
            if target_node is not None:
                step["name_span"] = [target_node.lineno, scope.column(target_node)]
                if len(args) > 1:
                    body_exprs.append(target_node)
            if event:
                timeout_node = args[2] if len(args) > 2 else keywords.get("timeout")
                step["timeout"] = scope.duration(timeout_node, shadow) if timeout_node is not None else None
            else:
                step["wait"] = method == "run_child"
            body_exprs.extend(args[2:])
        elif method == "sleep":
            duration_node = args[1] if len(args) > 1 else keywords.get("duration")
            step["type"] = "sleep"
            step["duration"] = scope.duration(duration_node, shadow) if duration_node is not None else DYNAMIC
            if duration_node is not None and len(args) > 1:
                body_exprs.append(duration_node)
            body_exprs.extend(args[2:])
        else:
            target = args[1] if len(args) > 1 else None
            step["retries"] = scope.number(keywords.get("retries"), shadow)
            if isinstance(step["retries"], float):
                step["retries"] = DYNAMIC
            step["retry_delay"] = scope.duration(keywords.get("retry_delay"), shadow)
            body_exprs.extend(args[2:])
            self._classify(step, target, len(args) >= 3 or starred, ctx)
        self.steps.append(step)
        for expr in body_exprs:
            self._visit(expr, ctx)

    def _classify(self, step: StepFact, target: ast.expr | None, has_data: bool, ctx: _Ctx) -> None:
        scope = self.scope
        in_step = ctx.replace(in_step=True, outer=step["step_name"])
        if target is None:
            step["type"] = "rpc" if has_data else "inline"
            step["rpc_name"] = DYNAMIC
            step["unresolved"] = "the call has no second argument"
            return
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            step["type"] = "rpc"
            step["rpc_name"] = target.value
            end_line = target.end_lineno or target.lineno
            step["rpc_span"] = [
                target.lineno,
                scope.char_offset(target.lineno, target.col_offset),
                end_line,
                scope.char_offset(end_line, target.end_col_offset or 0),
            ]
            return
        if isinstance(target, ast.JoinedStr | ast.BinOp) and _is_stringish(target):
            step["type"] = "rpc"
            folded = scope.string(target, ctx.shadow)
            step["rpc_name"] = folded  # a str, DYNAMIC or a Concat (joined when linking)
            if isinstance(folded, str) and folded != DYNAMIC:
                end_line = target.end_lineno or target.lineno
                step["rpc_span"] = [
                    target.lineno,
                    scope.char_offset(target.lineno, target.col_offset),
                    end_line,
                    scope.char_offset(end_line, target.end_col_offset or 0),
                ]
            self._visit(target, ctx)
            return
        if isinstance(target, ast.Lambda):
            step["type"] = "inline"
            self._visit_lambda(target, in_step)
            return
        if isinstance(target, ast.Call):
            if scope.imported(target.func, ctx.shadow, ctx.imports) in _PARTIAL:
                step["type"] = "inline"
                if target.args:
                    self._inline_ref(step, target.args[0], ctx, in_step)
                    self._partial_with_workflow(target, in_step)
                for arg in target.args[1:]:
                    self._visit(arg, ctx)
                for keyword in target.keywords:
                    self._visit(keyword.value, ctx)
                return
            self._visit(target, ctx)
            self._unresolved(step, has_data, "it is a call that is not functools.partial")
            return
        if isinstance(target, ast.Name | ast.Attribute):
            self._inline_ref(step, target, ctx, in_step, has_data=has_data)
            return
        self._visit(target, ctx)
        self._unresolved(step, has_data, f"`{_short(target)}` is neither a string nor a callable")

    def _partial_with_workflow(self, partial: ast.Call, in_step: _Ctx) -> None:
        """``functools.partial(fn, workflow, ...)`` as an inline step: ``fn`` runs inside the
        step with the workflow object, so its steps are nested."""
        fn_node = partial.args[0]
        if not isinstance(fn_node, ast.Name) or fn_node.id in in_step.shadow:
            return
        call = ast.Call(func=fn_node, args=partial.args[1:], keywords=partial.keywords)
        local = self._local_funcs.get(fn_node.id)
        if local is not None:
            self._call_local(local, call, in_step)
            return
        top = self.scope.functions.get(fn_node.id)
        if top is not None and top is not self.func:
            self._call_local(top, call, in_step, closure=False)

    def _inline_ref(
        self, step: StepFact, target: ast.expr, ctx: _Ctx, in_step: _Ctx, has_data: bool = False
    ) -> None:
        """``target`` names a function (inline), a string constant (RPC) or a reference."""
        scope = self.scope
        if isinstance(target, ast.Name):
            local = self._local_funcs.get(target.id)
            if local is not None:
                step.setdefault("type", "inline")
                if (id(local), True) not in self._walked_modes:
                    self._walk_function(local, in_step, set())
                return
            pending = self._pending_lambdas.pop(target.id, None)
            if pending is not None:
                step.setdefault("type", "inline")
                self._visit_lambda(pending[0], pending[1].replace(in_step=True, outer=in_step.outer))
                return
            if target.id in self._local_callables:
                step.setdefault("type", "inline")
                return
            if target.id in ctx.shadow or target.id in ctx.aliases:
                if step.get("type") == "inline":
                    return
                self._unresolved(step, has_data, f"`{target.id}` is a local value")
                return
            if target.id in scope.functions:
                step.setdefault("type", "inline")
                return
            constant = scope.constants.get(target.id)
            if isinstance(constant, str | dict) and step.get("type") is None:
                step["type"] = "rpc"
                step["rpc_name"] = constant
                return
            imported = ctx.imports.get(target.id) or scope.imports.get(target.id)
            if imported is not None:
                if step.get("type") == "inline":
                    return
                step["type"] = "ref"
                step["ref"] = imported
                step["has_data"] = has_data
                return
            if target.id in _BUILTINS and step.get("type") is None:
                step["type"] = "inline"
                return
        elif isinstance(target, ast.Attribute):
            dotted = scope.imported(target, ctx.shadow, ctx.imports)
            if dotted is not None and step.get("type") is None:
                step["type"] = "ref"
                step["ref"] = dotted
                step["has_data"] = has_data
                return
            if step.get("type") == "inline":
                self._visit(target, ctx)
                return
            self._visit(target, ctx)
            self._unresolved(step, has_data, f"`{_short(target)}` cannot be resolved statically")
            return
        if step.get("type") == "inline":
            return
        self._unresolved(step, has_data, f"`{_short(target)}` cannot be resolved statically")

    @staticmethod
    def _unresolved(step: StepFact, has_data: bool, why: str) -> None:
        step["type"] = "rpc" if has_data else "inline"
        if has_data:
            step["rpc_name"] = DYNAMIC
        step["unresolved"] = why


def _is_stringish(node: ast.expr) -> bool:
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_stringish(node.left) or _is_stringish(node.right)
    return False


def _short(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- rpcs / wirings


def _rpc_record(
    scope: ModuleScope,
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    call: ast.Call | None,
    anchor: ast.expr,
) -> RpcFact:
    """An RPC: ``fn`` registered by ``@pikku_func``/``@pikku_func(...)`` (``call`` the
    decorator call) or by ``pikku_func(name=...)(fn)`` / ``pikku_func(fn)``."""
    name: JSON = fn.name
    name_node: ast.expr | None = None
    if call is not None:
        for keyword in call.keywords:
            if keyword.arg == "name":
                name_node = keyword.value
        if name_node is None and call.args:
            name_node = call.args[0]
    if name_node is not None and not (isinstance(name_node, ast.Constant) and name_node.value is None):
        name = scope.string(name_node)
    params = _positional_params(fn)
    data = params[0] if params else None
    return {
        "name": name,
        "func": fn.name,
        "line": fn.lineno,
        "column": scope.column(fn),
        "name_line": name_node.lineno if name_node is not None else anchor.lineno,
        "name_column": scope.column(name_node if name_node is not None else anchor),
        "is_async": isinstance(fn, ast.AsyncFunctionDef),
        "input_type": scope.type_expr(data.annotation) if data is not None else None,
        "output_type": scope.type_expr(fn.returns),
    }


def _rpc_facts(scope: ModuleScope, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> RpcFact | None:
    for decorator in fn.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call is not None else decorator
        if scope.dotted(target) in _PIKKU_FUNC:
            return _rpc_record(scope, fn, call, decorator)
    return None


def _rpc_call_facts(scope: ModuleScope, tree: ast.Module, decorated: set[str]) -> list[RpcFact]:
    """Module-level ``pikku_func(name="x")(fn)`` and ``pikku_func(fn)`` of a module function."""
    out: list[RpcFact] = []
    for stmt in _module_statements(tree.body):
        value = stmt.value if isinstance(stmt, ast.Expr | ast.Assign | ast.AnnAssign) else None
        if not isinstance(value, ast.Call) or len(value.args) != 1 or value.keywords:
            continue
        arg = value.args[0]
        fn = scope.functions.get(arg.id) if isinstance(arg, ast.Name) else None
        if fn is None or fn.name in decorated:
            continue
        outer = value.func
        if isinstance(outer, ast.Call) and scope.dotted(outer.func) in _PIKKU_FUNC:
            out.append(_rpc_record(scope, fn, outer, outer))
        elif isinstance(outer, ast.Name | ast.Attribute) and scope.dotted(outer) in _PIKKU_FUNC:
            out.append(_rpc_record(scope, fn, None, outer))
    return out


def _list_of_strings(scope: ModuleScope, node: ast.expr | None) -> JSON:
    if node is None or (isinstance(node, ast.Constant) and node.value is None):
        return []
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        out: list[JSON] = []
        for element in node.elts:
            value = scope.string(element)
            out.append(value)
        return out
    return DYNAMIC


def _middleware(scope: ModuleScope, node: ast.expr | None) -> JSON:
    if node is None or (isinstance(node, ast.Constant) and node.value is None):
        return []
    if isinstance(node, ast.List | ast.Tuple):
        out: list[str] = []
        for element in node.elts:
            dotted = scope.dotted(element) if isinstance(element, ast.Name | ast.Attribute) else None
            if dotted is not None and dotted.startswith("builtins."):
                dotted = dotted[len("builtins.") :]
            out.append(dotted if dotted is not None else ast.unparse(element))
        return out
    return [DYNAMIC]


def _literal(node: ast.expr, scope: ModuleScope, depth: int = 0) -> JSON:
    if depth > 20:
        return DYNAMIC
    if isinstance(node, ast.Constant) and (
        node.value is None or isinstance(node.value, str | int | float | bool)
    ):
        return node.value
    if isinstance(node, ast.Name) and node.id in scope.constants:
        return scope.constants[node.id]
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e, scope, depth + 1) for e in node.elts]
    if isinstance(node, ast.Dict):
        out: dict[str, JSON] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                out[key.value] = _literal(value, scope, depth + 1)
        return out
    return DYNAMIC


def _wiring_facts(scope: ModuleScope, call: ast.Call) -> WiringFact:
    keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
    starred = any(k.arg is None for k in call.keywords) or bool(call.args)
    name_node = keywords.get("name")
    func_node = keywords.get("func")
    func: JSON = None
    if func_node is not None:
        dotted = scope.dotted(func_node) if isinstance(func_node, ast.Name | ast.Attribute) else None
        func = {"ref": dotted} if dotted is not None else DYNAMIC
    mode_node = keywords.get("execution_mode")
    docs_node = keywords.get("docs")
    docs: JSON = None
    if docs_node is not None and not (isinstance(docs_node, ast.Constant) and docs_node.value is None):
        value = _literal(docs_node, scope)
        docs = value if isinstance(value, dict) else DYNAMIC
    return {
        "line": call.lineno,
        "column": scope.column(call),
        "name": scope.string(name_node) if name_node is not None else None,
        "name_line": name_node.lineno if name_node is not None else call.lineno,
        "name_column": scope.column(name_node) if name_node is not None else scope.column(call),
        "func": func,
        "func_text": _short(func_node) if func_node is not None else None,
        "description": scope.string(keywords.get("description")),
        "execution_mode": scope.string(mode_node) if mode_node is not None else None,
        "mode_line": mode_node.lineno if mode_node is not None else call.lineno,
        "mode_column": scope.column(mode_node) if mode_node is not None else scope.column(call),
        "tags": _list_of_strings(scope, keywords.get("tags")),
        "middleware": _middleware(scope, keywords.get("middleware")),
        "docs": docs,
        "starred": starred,
    }


def _event_facts(scope: ModuleScope, call: ast.Call) -> EventFact:
    """``wire_event(name="payment.received", payload=PaymentReceived)``."""
    keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
    name_node = keywords.get("name")
    payload_node = keywords.get("payload")
    return {
        "line": call.lineno,
        "column": scope.column(call),
        "name": scope.string(name_node) if name_node is not None else None,
        "name_line": name_node.lineno if name_node is not None else call.lineno,
        "name_column": scope.column(name_node) if name_node is not None else scope.column(call),
        "payload_type": scope.type_expr(payload_node)
        if payload_node is not None and not (isinstance(payload_node, ast.Constant) and payload_node.value is None)
        else None,
        "starred": any(k.arg is None for k in call.keywords) or bool(call.args),
    }


def _annotation_class(scope: ModuleScope, node: ast.expr | None) -> str | None:
    """The class name (``WorkflowRuntime``...) of a pikku annotation, else None."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value.strip(), mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
    if isinstance(node, ast.Subscript):
        node = node.value
    if not isinstance(node, ast.Name | ast.Attribute):
        return None
    dotted = scope.imported(node)
    if dotted is None or not dotted.startswith("pikku_typing"):
        return None
    return dotted.rsplit(".", 1)[-1]


def _runtime_uses(
    scope: ModuleScope, tree: ast.Module, package: str
) -> tuple[list[UseFact], dict[str, str]]:
    """Workflow and event names used outside workflow bodies: ``runtime.client("x")``,
    ``workflow_client(runtime, "x")``, ``client.send_event(run_id, "e", payload)`` and
    ``runtime.send_event(...)``, where the receiver is statically known to be a pikku runtime,
    client or test environment (constructed, annotated, or the ``workflow_env`` fixture), or
    is imported (then the use carries the ``receiver`` and counts when linking finds that name
    bound to a runtime or client in its module). Also the module-level names bound to a
    runtime or client here (``{"runtime": "runtime", "orders": "client"}``), for the modules
    that import them. Names are tracked per module (not per scope)."""
    runtimes: set[str] = set(_RUNTIME_FIXTURES)
    clients: set[str] = set()
    remote_clients: dict[str, str] = {}
    """Clients built from an imported receiver: name -> the receiver's dotted name."""
    factories = client_targets(package)

    def imported_ref(node: ast.expr) -> str | None:
        if isinstance(node, ast.Name) and (node.id in runtimes or node.id in clients):
            return None
        return scope.imported(node) if isinstance(node, ast.Name | ast.Attribute) else None

    def constructed(value: ast.expr | None) -> str | None:
        if isinstance(value, ast.Await):
            value = value.value
        if not isinstance(value, ast.Call):
            return None
        func = value.func
        if isinstance(func, ast.Name | ast.Attribute):
            cls = _annotation_class(scope, func)
            if cls in _RUNTIME_CLASSES:
                return "runtime"
            if cls in _CLIENT_CLASSES:
                return "client"
            if scope.imported(func) in factories:
                return "client"
        if isinstance(func, ast.Attribute) and func.attr == "client" and is_runtime(func.value):
            return "client"
        return None

    def is_runtime(node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in runtimes
        return constructed(node) == "runtime"

    def bind(target: ast.expr | None, kind: str | None) -> None:
        if isinstance(target, ast.Name) and kind is not None:
            (runtimes if kind == "runtime" else clients).add(target.id)

    def bind_remote(target: ast.expr | None, value: ast.expr | None) -> None:
        if isinstance(value, ast.Await):
            value = value.value
        if (
            isinstance(target, ast.Name)
            and isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr == "client"
        ):
            ref = imported_ref(value.func.value)
            if ref is not None:
                remote_clients[target.id] = ref

    nodes = list(ast.walk(tree))
    for _ in range(2):  # clients are built from runtimes bound anywhere in the module
        for node in nodes:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    bind(target, constructed(node.value))
                    bind_remote(target, node.value)
            elif isinstance(node, ast.AnnAssign):
                cls = _annotation_class(scope, node.annotation)
                kind = "runtime" if cls in _RUNTIME_CLASSES else "client" if cls in _CLIENT_CLASSES else None
                bind(node.target, kind or constructed(node.value))
            elif isinstance(node, ast.withitem):
                bind(node.optional_vars, constructed(node.context_expr))
            elif isinstance(node, ast.arg):
                cls = _annotation_class(scope, node.annotation)
                if cls in _RUNTIME_CLASSES:
                    runtimes.add(node.arg)
                elif cls in _CLIENT_CLASSES:
                    clients.add(node.arg)
    uses: list[UseFact] = []

    def use(kind: str, via: str, node: ast.expr | None, receiver: str | None = None) -> None:
        if node is None:
            return
        fact: UseFact = {
            "kind": kind,
            "via": via,
            "name": scope.string(node),
            "line": node.lineno,
            "column": scope.column(node),
        }
        if receiver is not None:
            fact["receiver"] = receiver
        uses.append(fact)

    for node in nodes:
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
        if isinstance(func, ast.Attribute):
            receiver = func.value
            if func.attr == "client":
                name_node = node.args[0] if node.args else keywords.get("name", keywords.get("workflow"))
                if is_runtime(receiver):
                    use("workflow", "client", name_node)
                elif (ref := imported_ref(receiver)) is not None:
                    use("workflow", "client", name_node, ref)
            elif func.attr == "send_event":
                name_node = node.args[1] if len(node.args) > 1 else keywords.get("name", keywords.get("event_name"))
                if is_runtime(receiver) or (isinstance(receiver, ast.Name) and receiver.id in clients):
                    use("event", "send_event", name_node)
                elif isinstance(receiver, ast.Name) and receiver.id in remote_clients:
                    use("event", "send_event", name_node, remote_clients[receiver.id])
                elif (ref := imported_ref(receiver)) is not None:
                    use("event", "send_event", name_node, ref)
        if isinstance(func, ast.Name | ast.Attribute) and scope.imported(func) in factories:
            use("workflow", "workflow_client", node.args[1] if len(node.args) > 1 else keywords.get("name"))
    uses.sort(key=lambda u: (u["line"], u["column"]))
    exports = {name: "runtime" for name in runtimes - _RUNTIME_FIXTURES if name in scope.bound}
    exports.update({name: "client" for name in clients if name in scope.bound})
    return uses, dict(sorted(exports.items()))


# --------------------------------------------------------------------------- suppressions


def find_suppressions(source: bytes) -> dict[str, list[str]]:
    """``{"<line>": [codes]}`` of ``# pikku: ignore[...]`` comments (``["*"]``: every code)."""
    if b"pikku" not in source or b"ignore" not in source:
        return {}
    out: dict[str, list[str]] = {}
    try:
        tokens = list(tokenize.tokenize(io.BytesIO(source).readline))
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError, ValueError):
        # fall back to a line scan (may also match inside strings; harmless)
        tokens = []
        for index, raw in enumerate(source.splitlines(), start=1):
            text = raw.decode("utf-8", "replace")
            if "#" in text:
                tokens.append(
                    tokenize.TokenInfo(tokenize.COMMENT, text[text.index("#") :], (index, 0), (index, 0), text)
                )
    for token in tokens:
        if token.type != tokenize.COMMENT:
            continue
        for match in _SUPPRESS_RE.finditer(token.string):
            codes = match.group(1)
            line = str(token.start[0])
            entry = out.setdefault(line, [])
            if codes is None or not codes.strip():
                entry.append("*")
            else:
                entry.extend(c.strip().upper() for c in codes.split(",") if c.strip())
    return out


# --------------------------------------------------------------------------- entry point


def source_encoding(source: bytes) -> str | None:
    """The encoding CPython reads ``source`` with (PEP 263 cookie, BOM, else UTF-8), or None
    when the declaration itself is invalid (``ast.parse`` reports that)."""
    if not source.startswith(b"\xef\xbb\xbf") and b"coding" not in source[:512]:
        return "utf-8"
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    except (SyntaxError, LookupError):
        return None
    return encoding


def decode_problem(source: bytes) -> tuple[int, int, str] | None:
    """Why CPython would refuse to decode ``source`` — (line, column, message) — or None.

    ``ast.parse`` and ``compile`` on bytes accept some undecodable bytes that ``python
    file.py`` refuses (for example in a comment), so the whole file is decoded first."""
    encoding = source_encoding(source)
    if encoding is None:
        return None
    try:
        source.decode(encoding)
    except UnicodeDecodeError as exc:
        line = source.count(b"\n", 0, exc.start) + 1
        line_start = source.rfind(b"\n", 0, exc.start) + 1
        column = exc.start - line_start + 1
        if encoding in ("utf-8", "utf-8-sig"):
            message = (
                f"cannot decode the file: Non-UTF-8 code starting with '\\x{source[exc.start]:02x}' on line {line}, but no "
                "encoding declared; see https://peps.python.org/pep-0263/ for details"
            )
        else:
            message = f"cannot decode the file with its declared encoding {encoding!r}: {exc.reason} on line {line}"
        return line, column, message
    except LookupError:
        return None
    return None


def _syntax_error(line: int, column: int, message: str) -> SyntaxErrorFact:
    return {"line": max(line, 1), "column": max(column, 1), "message": message}


def extract_facts(
    source: bytes,
    *,
    module: str,
    is_package: bool = False,
    filename: str = "<unknown>",
    package: str = "pikku_gen",
) -> FileFacts:
    """The facts of one file. Never raises for bad input: a file that does not parse
    gives ``{"syntax_error": {...}}``; an internal failure ``{"internal_error": ...}``."""
    facts = empty_facts(module)
    problem = decode_problem(source)
    if problem is not None:
        facts["syntax_error"] = _syntax_error(*problem)
        return facts
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        message = exc.msg or "invalid syntax"
        facts["syntax_error"] = _syntax_error(exc.lineno or 1, exc.offset or 1, message)
        facts["suppressions"] = find_suppressions(source)
        return facts
    except UnicodeDecodeError as exc:
        facts["syntax_error"] = _syntax_error(1, 1, f"cannot decode the file: {exc.reason}")
        return facts
    except ValueError as exc:  # e.g. null bytes (older Pythons)
        facts["syntax_error"] = _syntax_error(1, 1, str(exc))
        return facts
    except (RecursionError, MemoryError):
        facts["syntax_error"] = _syntax_error(1, 1, "the file is too deeply nested to parse")
        return facts
    try:
        _fill(facts, tree, source, module, is_package, package)
    except RecursionError:
        facts["internal_error"] = "the file is too deeply nested to analyse"
    except Exception as exc:  # pragma: no cover - reported, never a traceback
        facts["internal_error"] = f"{type(exc).__name__}: {exc}"
    return facts


def _fill(
    facts: FileFacts, tree: ast.Module, source: bytes, module: str, is_package: bool, package: str
) -> None:
    encoding = source_encoding(source)
    if encoding not in (None, "utf-8", "utf-8-sig"):
        # ast positions are UTF-8 byte offsets of the decoded text (PEP 263 cookie honoured)
        source = source.decode(encoding).encode("utf-8")
    scope = ModuleScope(tree, module, is_package, source)
    facts["imports"] = dict(scope.imports)
    facts["star_imports"] = list(scope.star_imports)
    facts["constants"] = dict(scope.constants)
    facts["defs"] = sorted(scope.functions)
    functions: dict[str, FunctionFact] = {}
    rpcs: list[RpcFact] = []
    decorated: set[str] = set()
    for name, fn in scope.functions.items():
        rpc = _rpc_facts(scope, fn) if fn.decorator_list else None
        if rpc is not None:
            rpcs.append(rpc)
            decorated.add(name)
        params = _positional_params(fn)
        if not isinstance(fn, ast.AsyncFunctionDef) or not params:
            continue
        walker = StepWalker(scope, fn)
        walker.run()
        functions[name] = {
            "line": fn.lineno,
            "column": scope.column(fn),
            "params": [p.arg for p in params],
            "input_type": scope.type_expr(params[1].annotation) if len(params) > 1 else None,
            "output_type": scope.type_expr(fn.returns),
            "steps": walker.steps,
            "nondet": walker.nondet,
            "helper_calls": walker.helper_calls,
            "nested": walker.nested,
        }
    facts["functions"] = functions
    if b"pikku_func" in source:
        rpcs.extend(_rpc_call_facts(scope, tree, decorated))
    facts["rpcs"] = rpcs
    wirings: list[WiringFact] = []
    if b"wire_workflow" in source or package.encode() in source:
        targets = wire_targets(package)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name | ast.Attribute)
                and scope.dotted(node.func) in targets
            ):
                wirings.append(_wiring_facts(scope, node))
    wirings.sort(key=lambda w: (w["line"], w["column"]))
    facts["wirings"] = wirings
    events: list[EventFact] = []
    if b"wire_event" in source or package.encode() in source:
        targets = event_targets(package)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name | ast.Attribute)
                and scope.dotted(node.func) in targets
            ):
                events.append(_event_facts(scope, node))
    events.sort(key=lambda e: (e["line"], e["column"]))
    facts["events"] = events
    if any(token in source for token in _RUNTIME_TOKENS):
        facts["uses"], facts["runtimes"] = _runtime_uses(scope, tree, package)
    facts["suppressions"] = find_suppressions(source)


def _raise_recursion_limit() -> None:
    if sys.getrecursionlimit() < 10000:
        sys.setrecursionlimit(10000)


_raise_recursion_limit()
