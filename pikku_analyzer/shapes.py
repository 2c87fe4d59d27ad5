"""Field-level type shapes: what ``workflow_meta.json`` (schema version 2) records about the
types of workflow inputs and outputs, RPC inputs and outputs and event payloads, so that
``pikku-analyze --baseline`` can tell whether values stored by runs in flight still
rehydrate into the types of the new code (:mod:`pikku_analyzer.compat`).

Read statically like everything else: the modules that define the types are parsed with
:mod:`ast` (never imported). A shape is plain JSON:

* ``{"kind": "scalar", "name": N}`` with ``N`` one of :data:`SCALARS`
  (``str int float bool bytes none decimal datetime date time timedelta uuid``);
* ``{"kind": "any"}``: ``Any``, ``object``, no annotation;
* ``{"kind": "list", "item": S}`` (``list``, ``set``, ``frozenset``, ``Sequence``,
  ``tuple[X, ...]``...), ``{"kind": "tuple", "items": [S, ...]}``,
  ``{"kind": "dict", "key": S, "value": S}``;
* ``{"kind": "union", "options": [S, ...]}`` (``X | Y``, ``Optional[X]``: ``X | None``);
* ``{"kind": "literal", "values": [...]}``;
* ``{"kind": "ref", "name": "app.types.User"}``: a named type, described in the meta's
  ``types`` table (below);
* ``{"kind": "unknown", "name": "lib.Thing"}``: a type the analyzer cannot see (defined
  outside the analysed sources); compared by name.

The ``types`` table maps a dotted name to a named shape:
``{"kind": "object", "class": "typeddict"|"model"|"dataclass"|"namedtuple", "fields":
{NAME: {"type": S, "required": bool}}}`` (a pydantic model, a TypedDict, a dataclass or a
NamedTuple, base classes' fields included), ``{"kind": "enum", "values": [...]}``,
``{"kind": "alias", "type": S}`` (``X = list[Y]``, ``type X = ...``) or
``{"kind": "class"}`` (any other class: compared by name).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import json
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pikku_analyzer.config import PikkuConfig
from pikku_analyzer.files import _module_base

Shape = dict[str, Any]

SCALARS: Final = (
    "str",
    "int",
    "float",
    "bool",
    "bytes",
    "none",
    "decimal",
    "datetime",
    "date",
    "time",
    "timedelta",
    "uuid",
)

_SCALAR_NAMES: Final = {
    "builtins.str": "str",
    "builtins.int": "int",
    "builtins.float": "float",
    "builtins.bool": "bool",
    "builtins.bytes": "bytes",
    "builtins.None": "none",
    "None": "none",
    "decimal.Decimal": "decimal",
    "datetime.datetime": "datetime",
    "datetime.date": "date",
    "datetime.time": "time",
    "datetime.timedelta": "timedelta",
    "uuid.UUID": "uuid",
    "typing.LiteralString": "str",
}
_ANY_NAMES: Final = frozenset({"typing.Any", "builtins.object", "typing_extensions.Any"})
_LIST_NAMES: Final = frozenset(
    {
        "builtins.list",
        "builtins.set",
        "builtins.frozenset",
        "typing.List",
        "typing.Set",
        "typing.FrozenSet",
        "typing.Sequence",
        "typing.MutableSequence",
        "typing.AbstractSet",
        "typing.MutableSet",
        "typing.Iterable",
        "typing.Collection",
        "collections.abc.Sequence",
        "collections.abc.MutableSequence",
        "collections.abc.Set",
        "collections.abc.MutableSet",
        "collections.abc.Iterable",
        "collections.abc.Collection",
        "collections.deque",
        "typing.Deque",
    }
)
_TUPLE_NAMES: Final = frozenset({"builtins.tuple", "typing.Tuple"})
_DICT_NAMES: Final = frozenset(
    {
        "builtins.dict",
        "typing.Dict",
        "typing.Mapping",
        "typing.MutableMapping",
        "collections.abc.Mapping",
        "collections.abc.MutableMapping",
        "collections.OrderedDict",
        "collections.defaultdict",
        "typing.DefaultDict",
        "typing.OrderedDict",
    }
)
_WRAPPERS: Final = frozenset(
    {"Annotated", "Required", "NotRequired", "ReadOnly", "Final", "ClassVar"}
)
_TYPEDDICT: Final = frozenset({"typing.TypedDict", "typing_extensions.TypedDict"})
_MODEL: Final = frozenset({"pydantic.BaseModel", "pydantic.main.BaseModel"})
_NAMEDTUPLE: Final = frozenset({"typing.NamedTuple", "typing_extensions.NamedTuple"})
_ENUM: Final = frozenset(
    {"enum.Enum", "enum.IntEnum", "enum.StrEnum", "enum.Flag", "enum.IntFlag"}
)
_DATACLASS: Final = frozenset({"dataclasses.dataclass", "pydantic.dataclasses.dataclass"})
_TYPING_MODULES: Final = ("typing", "typing_extensions", "collections.abc")
_BUILTIN_NAMES: Final = frozenset(dir(builtins)) | {"None"}
_MAX_BYTES: Final = 8 * 1024 * 1024
_TYPE_ALIAS: Final[type[ast.stmt] | None] = getattr(ast, "TypeAlias", None)


def _typing_name(canonical: str) -> str | None:
    """``typing.Optional`` / ``typing_extensions.Optional`` -> ``Optional``."""
    for module in _TYPING_MODULES:
        if canonical.startswith(module + ".") and "." not in canonical[len(module) + 1 :]:
            return canonical[len(module) + 1 :]
    return None


def _norm(canonical: str) -> str:
    """One spelling for the typing names: ``typing_extensions.X`` -> ``typing.X``."""
    name = _typing_name(canonical)
    return f"typing.{name}" if name is not None and not canonical.startswith("collections.") else canonical


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


@dataclass
class _Module:
    name: str
    is_package: bool
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)
    aliases: dict[str, ast.expr] = field(default_factory=dict)
    imports: dict[str, str] = field(default_factory=dict)
    """Local name -> dotted name it stands for."""


def _body(statements: Iterable[ast.stmt]) -> Iterable[ast.stmt]:
    """Module-level statements, also inside if/try blocks."""
    for stmt in statements:
        yield stmt
        if isinstance(stmt, ast.If):
            yield from _body(stmt.body)
            yield from _body(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            yield from _body(stmt.body)
            for handler in stmt.handlers:
                yield from _body(handler.body)
            yield from _body(stmt.orelse)


_RELEVANT: Final = re.compile(
    r"(class|import|from|if|try|type)\b|[A-Za-z_]\w*\s*(:[^=\n]*)?=[^=]"
)
"""Top-level statements that can define or import a type (the others are not parsed)."""
_CONTINUATION: Final = re.compile(r"(elif|else|except|finally)\b")
_QUOTES: Final = re.compile(r"\"\"\"|\'\'\'")


def _relevant_source(source: bytes) -> str | None:
    """The module's top-level statements that matter for types (classes, imports, aliases,
    ``if``/``try`` blocks), without function definitions and other statements: a much
    smaller text to parse. ``None`` when the text cannot be split safely."""
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        return None
    chunks: list[list[str]] = []
    keep: list[bool] = []
    quote: str | None = None
    decorators = False
    for line in text.splitlines(keepends=True):
        starts = quote is None and line[:1] not in ("", " ", "\t", "\n", "\r", "#", ")", "]", "}")
        if starts and chunks and _CONTINUATION.match(line):
            starts = False
        if starts and not decorators:
            chunks.append([])
            keep.append(False)
        if starts:
            decorators = line.startswith("@")
            if not decorators:
                keep[-1] = bool(_RELEVANT.match(line))
        if chunks:
            chunks[-1].append(line)
        if "'''" not in line and '"""' not in line:
            continue
        for found in _QUOTES.finditer(line):
            token = found.group(0)
            if quote is None:
                quote = token
            elif token == quote:
                quote = None
    if quote is not None:
        return None
    return "".join(line for chunk, wanted in zip(chunks, keep, strict=True) if wanted for line in chunk)


def _parse_module(name: str, is_package: bool, source: bytes) -> _Module | None:
    tree: ast.Module | None = None
    relevant = _relevant_source(source)
    if relevant is not None:
        with contextlib.suppress(SyntaxError, ValueError, RecursionError, MemoryError):
            tree = ast.parse(relevant)
    if tree is None:  # the split was not safe: the whole file
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
    module = _Module(name, is_package)
    package = name if is_package else name.rpartition(".")[0]
    for stmt in _body(tree.body):
        if isinstance(stmt, ast.ClassDef):
            module.classes[stmt.name] = stmt
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    module.imports[alias.asname] = alias.name
                else:
                    head = alias.name.partition(".")[0]
                    module.imports[head] = head
        elif isinstance(stmt, ast.ImportFrom):
            base = stmt.module or ""
            if stmt.level:
                parts = package.split(".") if package else []
                if stmt.level - 1 > len(parts):
                    continue
                parts = parts[: len(parts) - (stmt.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            for alias in stmt.names:
                if alias.name != "*":
                    module.imports[alias.asname or alias.name] = f"{base}.{alias.name}" if base else alias.name
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            if _dotted(stmt.annotation) in ("TypeAlias", "typing.TypeAlias", "typing_extensions.TypeAlias"):
                module.aliases[stmt.target.id] = stmt.value
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            if isinstance(stmt.value, (ast.Subscript, ast.BinOp)):
                module.aliases[stmt.targets[0].id] = stmt.value
        elif _TYPE_ALIAS is not None and isinstance(stmt, _TYPE_ALIAS):  # `type X = ...` (3.12)
            alias_name, alias_value = getattr(stmt, "name", None), getattr(stmt, "value", None)
            if isinstance(alias_name, ast.Name) and isinstance(alias_value, ast.expr):
                module.aliases[alias_name.id] = alias_value
    return module


_PARSED: dict[tuple[str, str], tuple[tuple[int, int], _Module | None]] = {}
"""Parsed modules by (path, module) with their (mtime, size): ``pikku-analyze --watch``
regenerates without parsing the type modules again."""


class ShapeBuilder:
    """Builds shapes from type expressions, resolving names through the analysed sources.

    ``config`` None: no sources (only the names of the expressions and the ``known`` table)."""

    def __init__(self, config: PikkuConfig | None) -> None:
        self.bases = [_module_base(src) for src in config.src] if config is not None else []
        self.modules: dict[str, _Module | None] = {}
        self.types: dict[str, Shape] = {}
        self._building: set[str] = set()

    # -- modules -------------------------------------------------------------------------
    def module(self, name: str) -> _Module | None:
        if name in self.modules:
            return self.modules[name]
        found: _Module | None = None
        rel = Path(*name.split(".")) if name else None
        for base in self.bases:
            if rel is None:
                break
            for path, is_package in ((base / rel.with_suffix(".py"), False), (base / rel / "__init__.py", True)):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_BYTES:
                    continue
                key = (str(path), name)
                cached = _PARSED.get(key)
                if cached is not None and cached[0] == (st.st_mtime_ns, st.st_size):
                    found = cached[1]
                else:
                    try:
                        source = path.read_bytes()
                    except OSError:
                        continue
                    found = _parse_module(name, is_package, source)
                    if len(_PARSED) > 4096:
                        _PARSED.clear()
                    _PARSED[key] = ((st.st_mtime_ns, st.st_size), found)
                if found is not None:
                    break
            if found is not None:
                break
        self.modules[name] = found
        return found

    def lookup(self, dotted: str, depth: int = 0) -> tuple[str, _Module, str] | None:
        """The definition of ``dotted`` in the sources: (canonical name, module, local name),
        following re-exports (``from .models import User`` in ``app/__init__.py``)."""
        if depth > 10:
            return None
        parts = dotted.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module = self.module(".".join(parts[:cut]))
            if module is None:
                continue
            rest = parts[cut:]
            local = rest[0]
            if len(rest) == 1 and (local in module.classes or local in module.aliases):
                return (f"{module.name}.{local}", module, local)
            target = module.imports.get(local)
            if target is not None and target != dotted:
                return self.lookup(".".join([target, *rest[1:]]), depth + 1)
            return None
        return None

    def canonical(self, node: ast.expr, module: _Module | None) -> str | None:
        """The dotted name ``node`` stands for in ``module`` (``None``: in a meta expression)."""
        dotted = _dotted(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        if module is not None:
            if head in module.imports:
                target = module.imports[head]
                return _norm(f"{target}.{rest}" if rest else target)
            if head in module.classes or head in module.aliases:
                return f"{module.name}.{dotted}"
        if not rest and head in _BUILTIN_NAMES:
            return "None" if head == "None" else f"builtins.{head}"
        if not rest and module is None and head in _KNOWN_BARE:
            return _KNOWN_BARE[head]
        return _norm(dotted)

    # -- shapes --------------------------------------------------------------------------
    def expr(self, text: str | None) -> Shape:
        """The shape of a type expression of the metadata (dotted, importable names)."""
        if text is None or not text.strip() or text == "<dynamic>":
            return {"kind": "any"}
        try:
            node = ast.parse(text.strip(), mode="eval").body
        except (SyntaxError, ValueError, RecursionError):
            return {"kind": "unknown", "name": text.strip()}
        return self.shape(node, None)

    def shape(self, node: ast.expr, module: _Module | None, depth: int = 0) -> Shape:
        if depth > 40:
            return {"kind": "any"}
        if isinstance(node, ast.Constant):
            if node.value is None:
                return {"kind": "scalar", "name": "none"}
            if isinstance(node.value, str):
                try:
                    inner = ast.parse(node.value.strip(), mode="eval").body
                except (SyntaxError, ValueError, RecursionError):
                    return {"kind": "unknown", "name": node.value}
                return self.shape(inner, module, depth + 1)
            return {"kind": "unknown", "name": repr(node.value)}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return union([self.shape(node.left, module, depth + 1), self.shape(node.right, module, depth + 1)])
        if isinstance(node, ast.Subscript):
            return self._subscript(node, module, depth)
        name = self.canonical(node, module)
        if name is None:
            return {"kind": "unknown", "name": ast.unparse(node)}
        return self.named(name)

    def _args(self, node: ast.Subscript) -> list[ast.expr]:
        return list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]

    def _subscript(self, node: ast.Subscript, module: _Module | None, depth: int) -> Shape:
        base = self.canonical(node.value, module) or ""
        args = self._args(node)
        sub = [self.shape(a, module, depth + 1) for a in args] if base != "typing.Literal" else []
        bare = _typing_name(base) or ""
        if bare in _WRAPPERS and args:
            return self.shape(args[0], module, depth + 1)
        if base == "typing.Optional" and sub:
            return union([sub[0], {"kind": "scalar", "name": "none"}])
        if base == "typing.Union":
            return union(sub)
        if base == "typing.Literal":
            return {"kind": "literal", "values": _literal_values(args)}
        if base in _LIST_NAMES:
            return {"kind": "list", "item": sub[0] if sub else {"kind": "any"}}
        if base in _TUPLE_NAMES:
            if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
                return {"kind": "list", "item": sub[0]}
            return {"kind": "tuple", "items": sub}
        if base in _DICT_NAMES:
            key = sub[0] if sub else {"kind": "any"}
            value = sub[1] if len(sub) > 1 else {"kind": "any"}
            return {"kind": "dict", "key": key, "value": value}
        return self.named(base) if base else {"kind": "unknown", "name": ast.unparse(node)}

    def named(self, name: str) -> Shape:
        """The shape of a dotted name: a scalar, ``any``, a bare container, or a ref."""
        name = _norm(name)
        if name in _SCALAR_NAMES:
            return {"kind": "scalar", "name": _SCALAR_NAMES[name]}
        if name in _ANY_NAMES:
            return {"kind": "any"}
        if name in _LIST_NAMES:
            return {"kind": "list", "item": {"kind": "any"}}
        if name in _TUPLE_NAMES:
            return {"kind": "list", "item": {"kind": "any"}}
        if name in _DICT_NAMES:
            return {"kind": "dict", "key": {"kind": "any"}, "value": {"kind": "any"}}
        if name in self.types:
            return {"kind": "ref", "name": name}
        found = self.lookup(name)
        if found is None:
            return {"kind": "unknown", "name": name}
        canonical, module, local = found
        if canonical not in self.types and canonical not in self._building:
            self._building.add(canonical)
            try:
                if local in module.classes:
                    self.types[canonical] = self._class(module.classes[local], module)
                else:
                    self.types[canonical] = {"kind": "alias", "type": self.shape(module.aliases[local], module)}
            finally:
                self._building.discard(canonical)
        if canonical != name and canonical in self.types:
            self.types[name] = self.types[canonical]
        return {"kind": "ref", "name": name if name in self.types else canonical}

    def _class_kind(self, cls: ast.ClassDef, module: _Module, depth: int = 0) -> tuple[str, list[Shape]]:
        """(``typeddict``/``model``/``dataclass``/``namedtuple``/``enum``/``class``, shapes of the
        analysed base classes, nearest last)."""
        for decorator in cls.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if self.canonical(target, module) in _DATACLASS:
                return "dataclass", self._base_shapes(cls, module)
        for base in cls.bases:
            canonical = self.canonical(base, module) or ""
            if canonical in _TYPEDDICT:
                return "typeddict", []
            if canonical in _MODEL:
                return "model", []
            if canonical in _NAMEDTUPLE:
                return "namedtuple", []
            if canonical in _ENUM:
                return "enum", []
        inherited = self._base_shapes(cls, module)
        for shape in reversed(inherited):
            if shape.get("kind") == "object":
                return str(shape.get("class", "class")), inherited
            if shape.get("kind") == "enum":
                return "enum", inherited
        return "class", inherited

    def _base_shapes(self, cls: ast.ClassDef, module: _Module) -> list[Shape]:
        out: list[Shape] = []
        for base in cls.bases:
            node = base.value if isinstance(base, ast.Subscript) else base
            canonical = self.canonical(node, module)
            if canonical is None:
                continue
            ref = self.named(canonical)
            if ref.get("kind") == "ref":
                out.append(self.types.get(ref["name"], {}))
        return out

    def _class(self, cls: ast.ClassDef, module: _Module) -> Shape:
        kind, inherited = self._class_kind(cls, module)
        if kind == "enum":
            values: list[Any] = []
            for shape in inherited:
                values.extend(shape.get("values", []))
            for stmt in cls.body:
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant):
                    values.append(stmt.value.value)
            return {"kind": "enum", "values": values}
        if kind == "class":
            return {"kind": "class"}
        fields: dict[str, Any] = {}
        for shape in inherited:
            fields.update(shape.get("fields", {}))
        total = True
        for keyword in cls.keywords:
            if keyword.arg == "total" and isinstance(keyword.value, ast.Constant):
                total = bool(keyword.value.value)
        for stmt in cls.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            annotation = stmt.annotation
            if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
                with contextlib.suppress(SyntaxError, ValueError, RecursionError):
                    annotation = ast.parse(annotation.value.strip(), mode="eval").body
            outer = self.canonical(
                annotation.value if isinstance(annotation, ast.Subscript) else annotation, module
            )
            outer_name = _typing_name(outer or "") or ""
            if outer_name == "ClassVar" or (stmt.target.id.startswith("_") and kind == "model"):
                continue
            if kind == "typeddict":
                required = total
                if outer_name == "NotRequired":
                    required = False
                elif outer_name == "Required":
                    required = True
            else:
                required = _no_default(stmt.value, self, module)
            fields[stmt.target.id] = {"type": self.shape(annotation, module), "required": required}
        return {"kind": "object", "class": kind, "fields": fields}


_KNOWN_BARE: Final = {
    **{name: f"typing.{name}" for name in (
        "Any", "Optional", "Union", "Literal", "List", "Dict", "Set", "FrozenSet", "Tuple",
        "Sequence", "Mapping", "Annotated", "Required", "NotRequired",
    )},
    "Decimal": "decimal.Decimal",
    "UUID": "uuid.UUID",
}
"""Bare names a meta expression may use (the analyzer writes builtins and ``typing`` names bare)."""


def _literal_values(args: list[ast.expr]) -> list[Any]:
    values: list[Any] = []
    for arg in args:
        if isinstance(arg, ast.Constant):
            values.append(arg.value)
        elif isinstance(arg, ast.Attribute):
            values.append(ast.unparse(arg))
    return values


def _no_default(value: ast.expr | None, builder: ShapeBuilder, module: _Module) -> bool:
    """Whether a model/dataclass field without ``= value`` (or with ``Field(...)``) is required."""
    if value is None:
        return True
    if isinstance(value, ast.Call):
        name = builder.canonical(value.func, module) or ""
        if name.rpartition(".")[2] in ("Field", "field"):
            if any(k.arg in ("default", "default_factory") for k in value.keywords):
                return False
            if value.args:
                first = value.args[0]
                return isinstance(first, ast.Constant) and first.value is Ellipsis
            return True
    return False


def union(options: list[Shape]) -> Shape:
    """A union, flattened, without duplicates, in a stable order; one option is itself."""
    flat: list[Shape] = []
    for option in options:
        flat.extend(option["options"] if option.get("kind") == "union" else [option])
    unique = {json.dumps(o, sort_keys=True): o for o in flat}
    if len(unique) == 1:
        return next(iter(unique.values()))
    return {"kind": "union", "options": [unique[k] for k in sorted(unique)]}


def type_shapes(expressions: Iterable[str | None], config: PikkuConfig | None) -> dict[str, Shape]:
    """The ``types`` table for ``expressions``: every named type they reach, by dotted name."""
    builder = ShapeBuilder(config)
    for text in expressions:
        builder.expr(text)
    return {name: builder.types[name] for name in sorted(builder.types)}


def report_expressions(report: Any) -> list[str | None]:
    """The type expressions of a report: workflow inputs/outputs, RPC inputs/outputs, events."""
    out: list[str | None] = []
    for workflow in report.workflows:
        out += [workflow.input_type, workflow.output_type]
    for rpc in report.rpcs:
        out += [rpc.input_type, rpc.output_type]
    for event in report.events:
        out.append(event.payload_type)
    return out


def with_type_shapes(report: Any, config: PikkuConfig | None) -> Any:
    """``report`` with its ``types`` table filled from the sources of ``config``."""
    return report.model_copy(update={"types": type_shapes(report_expressions(report), config)})


def describe(shape: Shape) -> str:
    """A short text for messages: ``list[str] | None``, ``app.types.User``."""
    kind = shape.get("kind")
    if kind == "scalar":
        return "None" if shape["name"] == "none" else str(shape["name"])
    if kind == "any":
        return "Any"
    if kind in ("ref", "unknown"):
        return str(shape.get("name"))
    if kind == "list":
        return f"list[{describe(shape['item'])}]"
    if kind == "tuple":
        return "tuple[" + ", ".join(describe(s) for s in shape["items"]) + "]"
    if kind == "dict":
        return f"dict[{describe(shape['key'])}, {describe(shape['value'])}]"
    if kind == "union":
        return " | ".join(describe(s) for s in shape["options"])
    if kind == "literal":
        return "Literal[" + ", ".join(repr(v) for v in shape["values"]) + "]"
    return str(kind)
