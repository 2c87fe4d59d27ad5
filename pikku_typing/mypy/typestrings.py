"""Type expressions of the map (``"app.types.User"``, ``"list[app.types.User] | None"``) as mypy types.

The analyzer writes every input/output type as an expression over importable dotted names. It is
parsed with ``ast`` and resolved against mypy's symbol tables; anything this module cannot
resolve is reported as ``None`` and the caller falls back to ``Any`` (never a wrong verdict).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable

from mypy.expandtype import expand_type_by_instance
from mypy.nodes import SymbolTableNode, TypeAlias, TypeInfo, type_aliases
from mypy.types import (
    AnyType,
    Instance,
    LiteralType,
    NoneType,
    TupleType,
    Type,
    TypeAliasType,
    TypedDictType,
    TypeOfAny,
    UnionType,
)
from mypy.typevars import fill_typevars_with_any

from pikku_typing.mypy import names

Lookup = Callable[[str], SymbolTableNode | None]

DYNAMIC = "<dynamic>"


class _Unresolvable(Exception):
    pass


@functools.lru_cache(maxsize=4096)
def parse(type_str: str) -> ast.expr | None:
    """The expression's syntax tree, or None when it is not a type expression we can read."""
    text = type_str.strip()
    if not text or text == DYNAMIC:
        return None
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError:
        return None


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def dotted_names(type_str: str) -> set[str]:
    """Every dotted name the expression refers to (``{"list", "app.types.User"}``)."""
    found: set[str] = set()
    tree = parse(type_str)
    if tree is None:
        return found

    def visit(node: ast.AST) -> None:
        name = dotted(node) if isinstance(node, ast.expr) else None
        if name is not None:
            found.add(name)
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(dotted_names(node.value))
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def resolve(type_str: str | None, lookup: Lookup) -> Type | None:
    """The mypy type of ``type_str``, or None when it is absent or cannot be resolved."""
    if type_str is None:
        return None
    tree = parse(type_str)
    if tree is None:
        return None
    try:
        return _Converter(lookup).convert(tree)
    except (_Unresolvable, RecursionError):
        return None


class _Converter:
    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup

    def convert(self, node: ast.expr) -> Type:
        if isinstance(node, ast.Constant):
            if node.value is None:
                return NoneType()
            if isinstance(node.value, str):
                inner = parse(node.value)
                if inner is not None:
                    return self.convert(inner)
            raise _Unresolvable
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return UnionType.make_union([self.convert(node.left), self.convert(node.right)])
        if isinstance(node, ast.Subscript):
            base = dotted(node.value)
            if base is None:
                raise _Unresolvable
            elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            return self.subscripted(base, elts)
        name = dotted(node)
        if name is None:
            raise _Unresolvable
        return self.named(name, [])

    def subscripted(self, base: str, elts: list[ast.expr]) -> Type:
        if base in names.OPTIONAL_NAMES and len(elts) == 1:
            return UnionType.make_union([self.convert(elts[0]), NoneType()])
        if base in names.UNION_NAMES:
            return UnionType.make_union([self.convert(e) for e in elts])
        if base in names.LITERAL_NAMES:
            return UnionType.make_union([self.literal(e) for e in elts])
        if base.rsplit(".", 1)[-1] == "Annotated" and elts:
            return self.convert(elts[0])
        if (
            base in ("tuple", "builtins.tuple", "typing.Tuple")
            and len(elts) == 2
            and isinstance(elts[1], ast.Constant)
            and elts[1].value is Ellipsis
        ):
            return self.named("builtins.tuple", [self.convert(elts[0])])
        return self.named(base, [self.convert(e) for e in elts])

    def literal(self, node: ast.expr) -> Type:
        if isinstance(node, ast.Constant):
            value = node.value
            if value is None:
                return NoneType()
            if isinstance(value, bool):
                return LiteralType(value, self.builtin("bool"))
            if isinstance(value, int):
                return LiteralType(value, self.builtin("int"))
            if isinstance(value, str):
                return LiteralType(value, self.builtin("str"))
        raise _Unresolvable

    def builtin(self, name: str) -> Instance:
        sym = self.lookup(f"builtins.{name}")
        if sym is None or not isinstance(sym.node, TypeInfo):
            raise _Unresolvable
        return Instance(sym.node, [])

    def named(self, name: str, args: list[Type]) -> Type:
        if name in names.ANY_NAMES:
            return AnyType(TypeOfAny.explicit)
        if name in names.NONE_NAMES:
            return NoneType()
        candidates = [name] if "." in name else [f"builtins.{name}", f"typing.{name}"]
        for fullname in candidates:
            fullname = type_aliases.get(fullname, fullname)
            sym = self.lookup(fullname)
            node = sym.node if sym is not None else None
            if isinstance(node, TypeInfo):
                return self.instance(node, args)
            if isinstance(node, TypeAlias):
                wanted = len(node.alias_tvars)
                if len(args) != wanted:
                    args = [AnyType(TypeOfAny.special_form)] * wanted
                return TypeAliasType(node, args)
        raise _Unresolvable

    def instance(self, info: TypeInfo, args: list[Type]) -> Type:
        type_vars = info.defn.type_vars
        if not args or info.has_type_var_tuple_type or len(args) != len(type_vars):
            filled = fill_typevars_with_any(info)
            if not isinstance(filled, Instance):
                return filled
            inst = filled
        else:
            inst = Instance(info, args)
        # As mypy's type analyzer does: a TypedDict or NamedTuple class named in an annotation is
        # its structural type with the class itself as fallback (so it prints by its name).
        if info.typeddict_type is not None:
            typeddict = expand_type_by_instance(info.typeddict_type, inst)
            if isinstance(typeddict, TypedDictType):
                return typeddict.copy_modified(fallback=inst)
        if info.tuple_type is not None:
            tuple_t = expand_type_by_instance(info.tuple_type, inst)
            if isinstance(tuple_t, TupleType):
                return tuple_t.copy_modified(fallback=inst)
        return inst
