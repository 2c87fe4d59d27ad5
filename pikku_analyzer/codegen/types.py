"""Type expressions of the metadata (``app.types.User``, ``list[app.types.User] | None``) turned
into annotations for the generated stubs, with the imports they need.

The metadata names types by dotted, importable names. An expression is parsed with :mod:`ast`
and written back in the formatter's style (double quotes, ``X | Y``); every dotted name is
imported as its module (``import app.types``) and used fully qualified, so two modules that
both define ``User`` never collide. Anything that cannot be written safely becomes ``Any``.
"""

from __future__ import annotations

import ast
import builtins
import json
import keyword
from dataclasses import dataclass, field
from typing import Final

from pikku_typing.meta import DYNAMIC

ANY: Final = "Any"

_BUILTIN_TYPES: Final = frozenset(
    name
    for name in dir(builtins)
    if isinstance(getattr(builtins, name), type) and not name.startswith("_")
) | {"None"}

_TYPING_NAMES: Final = frozenset(
    {
        "Any",
        "Literal",
        "Optional",
        "Union",
        "Callable",
        "Mapping",
        "Sequence",
        "Iterable",
        "Annotated",
        "TypedDict",
        "NotRequired",
        "Required",
        "Never",
        "NoReturn",
        "Self",
        "LiteralString",
    }
)
"""Bare names the analyzer may leave unqualified: taken from ``typing``."""


@dataclass
class TypeRenderer:
    """Renders type expressions and collects the ``import`` lines they need."""

    modules: set[str] = field(default_factory=set)
    typing_names: set[str] = field(default_factory=set)

    def render(self, expr: str | None) -> str:
        """The annotation text for ``expr`` (``Any`` when unknown or not renderable)."""
        if expr is None or expr == DYNAMIC or not expr.strip():
            self.typing_names.add(ANY)
            return ANY
        try:
            node = ast.parse(expr.strip(), mode="eval").body
        except SyntaxError:
            self.typing_names.add(ANY)
            return ANY
        modules: set[str] = set()
        typing_names: set[str] = set()
        try:
            text = _Writer(modules, typing_names).write(node)
        except _Unrenderable:
            self.typing_names.add(ANY)
            return ANY
        self.modules |= modules
        self.typing_names |= typing_names
        return text


class _Unrenderable(Exception):
    pass


def _dotted(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def split_module(parts: list[str]) -> tuple[str, str]:
    """``["app", "types", "Outer", "Inner"]`` -> (``"app.types"``, ``"Outer.Inner"``).

    The module is everything before the first capitalised segment (PEP 8: modules are lower
    case, classes CapWords); when no segment is capitalised, everything but the last.
    """
    for index, part in enumerate(parts):
        if index > 0 and part[:1].isupper():
            return ".".join(parts[:index]), ".".join(parts[index:])
    return ".".join(parts[:-1]), parts[-1]


@dataclass
class _Writer:
    modules: set[str]
    typing_names: set[str]

    def write(self, node: ast.expr) -> str:
        if isinstance(node, ast.Constant):
            return self._constant(node.value)
        if isinstance(node, ast.Name | ast.Attribute):
            return self._name(node)
        if isinstance(node, ast.Subscript):
            union = self._union(node)
            if union is not None:
                return union
            base = self.write(node.value)
            inner = node.slice
            if isinstance(inner, ast.Tuple):
                args = ", ".join(self.write(e) for e in inner.elts)
            else:
                args = self.write(inner)
            return f"{base}[{args}]"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return f"{self.write(node.left)} | {self.write(node.right)}"
        if isinstance(node, ast.List):
            return "[" + ", ".join(self.write(e) for e in node.elts) + "]"
        if isinstance(node, ast.Tuple) and not node.elts:
            return "()"
        raise _Unrenderable(ast.dump(node))

    def _union(self, node: ast.Subscript) -> str | None:
        """``Optional[X]`` -> ``X | None`` and ``Union[X, Y]`` -> ``X | Y`` (PEP 604)."""
        parts = _dotted(node.value)
        if parts is None or parts[-1] not in ("Optional", "Union"):
            return None
        if len(parts) > 1 and parts[:-1] not in (["typing"], ["typing_extensions"]):
            return None
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if not items:
            return None
        written = [self.write(item) for item in items]
        if parts[-1] == "Optional":
            written.append("None")
        return " | ".join(written)

    def _constant(self, value: object) -> str:
        if value is None:
            return "None"
        if value is Ellipsis:
            return "..."
        if isinstance(value, bool):
            return repr(value)
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            return json.dumps(value, ensure_ascii=False)
        raise _Unrenderable(repr(value))

    def _name(self, node: ast.Name | ast.Attribute) -> str:
        parts = _dotted(node)
        if parts is None or any(keyword.iskeyword(p) for p in parts):
            raise _Unrenderable(ast.dump(node))
        if len(parts) == 1:
            name = parts[0]
            if name in _BUILTIN_TYPES:
                return name
            if name in _TYPING_NAMES:
                self.typing_names.add(name)
                return name
            raise _Unrenderable(name)  # a bare name we cannot import
        module, _ = split_module(parts)
        if module in ("typing", "typing_extensions") and len(parts) == 2:
            self.typing_names.add(parts[1])
            return parts[1]
        if module == "builtins":
            return parts[-1]
        self.modules.add(module)
        return ".".join(parts)
