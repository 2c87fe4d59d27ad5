"""``--fix`` and ``--add-ignore``: format-preserving rewrites with libcst.

* ``UNKNOWN_RPC`` with exactly one close match among the defined RPC names: the string
  literal is rewritten to that name (same quotes and prefix). The same for ``UNKNOWN_EVENT``
  (a declared event name) and ``UNKNOWN_WORKFLOW`` (a wired workflow name).
* ``NON_DETERMINISTIC_CALL`` of ``time.time()``, ``datetime.now(...)``, ``uuid.uuid4()`` or
  ``random.random()`` in an ``async`` workflow body (or helper): rewritten to the recorded
  helpers of SPEC section 8, keeping what the call returned —
  ``(await workflow.now()).timestamp()`` (a float), ``await workflow.now()`` for
  ``datetime.now(timezone.utc)`` (aware UTC), ``(await workflow.now()).astimezone(tz)`` for
  another zone, ``(await workflow.now()).astimezone().replace(tzinfo=None)`` for
  ``datetime.now()`` (naive local time: an aware value would break comparisons with other
  naive ones), ``await workflow.uuid4()``, ``await workflow.random()`` — with the workflow parameter's
  own name, parenthesised where an attribute, subscript or call follows. A call in a
  ``lambda``, a plain ``def`` or a generator expression (where ``await`` is not allowed or
  changes the meaning) is left alone. An import that the rewrite leaves unused (``import
  time``, ``datetime`` of ``from datetime import datetime, timezone``) is removed (libcst's
  ``RemoveImportsVisitor``, which keeps any import still in use).
* ``--add-ignore CODE``: ``# pikku: ignore[CODE]`` is added at the end of the line of every
  diagnostic with that code (merged into an existing ``# pikku: ignore[...]``). The comment
  is set on libcst's ``TrailingWhitespace`` of that physical line, so a line that ends
  inside a multi-line string or after a backslash is never touched.

Only files with an edit are parsed with libcst; only the changed lines change.
``apply_edits(..., dry_run=True)`` returns the unified diff instead of writing.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import RemoveImportsVisitor
from libcst.metadata import MetadataWrapper, PositionProvider

from pikku_analyzer.checks.step_kinds import close_match
from pikku_analyzer.engine import AnalysisResult
from pikku_analyzer.files import read_source
from pikku_typing._fs import atomic_write_bytes

_IGNORE_RE = re.compile(r"#\s*pikku:\s*ignore\[([^\]]*)\]", re.IGNORECASE)


@dataclass
class FileEdit:
    path: Path
    rel: str
    renames: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)
    """(line, 0-based column) of a string literal -> (old value, new value)."""
    ignores: dict[int, set[str]] = field(default_factory=dict)
    """line -> codes to add."""
    calls: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)
    """(line, 0-based column) of a non-deterministic call -> (its dotted name, the workflow
    parameter's name): rewritten to the recorded helper."""


DETERMINISTIC: dict[str, str] = {
    "time.time": "now",
    "datetime.datetime.now": "now",
    "uuid.uuid4": "uuid4",
    "random.random": "random",
}
"""Calls ``--fix`` rewrites -> the ``workflow`` helper that records the value (SPEC 8)."""
_UTC = frozenset({"timezone.utc", "datetime.timezone.utc", "UTC", "datetime.UTC", "dt.timezone.utc"})


_RENAMED: dict[str, str] = {"UNKNOWN_RPC": "rpc_name", "UNKNOWN_EVENT": "event", "UNKNOWN_WORKFLOW": "workflow"}
"""Codes whose string literal ``--fix`` renames to the one close match: code -> data key of
the unknown name."""


def plan_edits(result: AnalysisResult, *, fix: bool, add_ignore: list[str]) -> list[FileEdit]:
    edits: dict[str, FileEdit] = {}

    def edit_for(rel: str) -> FileEdit:
        if rel not in edits:
            edits[rel] = FileEdit(result.config.root / rel, rel)
        return edits[rel]

    wanted = set(add_ignore)
    for diag in result.diagnostics:
        if fix and diag.code in _RENAMED:
            old, new = diag.data.get(_RENAMED[diag.code]), diag.data.get("suggestion")
            if isinstance(old, str) and isinstance(new, str):
                edit_for(diag.file).renames[(diag.line, diag.column - 1)] = (old, new)
        if fix and diag.code == "NON_DETERMINISTIC_CALL":
            name, alias = diag.data.get("name"), diag.data.get("alias")
            if isinstance(name, str) and name in DETERMINISTIC and isinstance(alias, str):
                edit_for(diag.file).calls[(diag.line, diag.column - 1)] = (name, alias)
        if diag.code in wanted:
            edit_for(diag.file).ignores.setdefault(diag.line, set()).add(diag.code)
    return [e for _, e in sorted(edits.items())]


class _Rewriter(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, edit: FileEdit, context: CodemodContext | None = None) -> None:
        super().__init__()
        self.edit = edit
        self.context = context
        self.rewrote = False
        """A call was rewritten: imports it used may now be unused."""
        self.done_lines: set[int] = set()
        self.scopes: list[str] = ["module"]
        """Innermost last: ``async``, ``sync`` (a def), ``lambda``, ``genexp``."""

    # -- where ``await`` is allowed

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scopes.append("async" if node.asynchronous is not None else "sync")

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef:
        self.scopes.pop()
        return updated_node

    def visit_Lambda(self, node: cst.Lambda) -> None:
        self.scopes.append("lambda")

    def leave_Lambda(self, original_node: cst.Lambda, updated_node: cst.Lambda) -> cst.Lambda:
        self.scopes.pop()
        return updated_node

    def visit_GeneratorExp(self, node: cst.GeneratorExp) -> None:
        self.scopes.append("genexp")

    def leave_GeneratorExp(
        self, original_node: cst.GeneratorExp, updated_node: cst.GeneratorExp
    ) -> cst.GeneratorExp:
        self.scopes.pop()
        return updated_node

    # -- non-deterministic calls

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        if isinstance(updated_node.func, cst.Await):
            updated_node = updated_node.with_changes(func=_parenthesised(updated_node.func))
        if not self.edit.calls or self.scopes[-1] != "async":
            return updated_node
        position = self.get_metadata(PositionProvider, original_node)
        found = self.edit.calls.get((position.start.line, position.start.column))
        if found is None:
            return updated_node
        name, alias = found
        args = updated_node.args
        if any(arg.star or arg.keyword is not None for arg in args):
            return updated_node
        if args and name != "datetime.datetime.now":
            return updated_node
        helper = DETERMINISTIC[name]
        self.rewrote = True
        if self.context is not None:
            RemoveImportsVisitor.remove_unused_import_by_node(self.context, original_node)
        recorded = cst.Await(
            expression=cst.Call(func=cst.Attribute(value=cst.Name(alias), attr=cst.Name(helper)))
        )
        if name == "datetime.datetime.now" and len(args) == 1:
            zone = cst.Module([]).code_for_node(args[0].value)
            if zone in _UTC:
                return _keep_parens(recorded, updated_node)
            return _keep_parens(_method(recorded, "astimezone", [cst.Arg(args[0].value)]), updated_node)
        if args:
            return updated_node
        if name == "time.time":
            return _keep_parens(_method(recorded, "timestamp", []), updated_node)
        if name == "datetime.datetime.now":  # naive local time, as before
            local = _method(recorded, "astimezone", [])
            naive = cst.Call(
                func=cst.Attribute(value=local, attr=cst.Name("replace")),
                args=[
                    cst.Arg(
                        keyword=cst.Name("tzinfo"),
                        value=cst.Name("None"),
                        equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")),
                    )
                ],
            )
            return _keep_parens(naive, updated_node)
        return _keep_parens(recorded, updated_node)

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.Attribute:
        if isinstance(updated_node.value, cst.Await):
            return updated_node.with_changes(value=_parenthesised(updated_node.value))
        return updated_node

    def leave_Subscript(self, original_node: cst.Subscript, updated_node: cst.Subscript) -> cst.Subscript:
        if isinstance(updated_node.value, cst.Await):
            return updated_node.with_changes(value=_parenthesised(updated_node.value))
        return updated_node

    def leave_SimpleString(
        self, original_node: cst.SimpleString, updated_node: cst.SimpleString
    ) -> cst.SimpleString:
        position = self.get_metadata(PositionProvider, original_node)
        key = (position.start.line, position.start.column)
        rename = self.edit.renames.get(key)
        if rename is None:
            return updated_node
        old, new = rename
        try:
            value = original_node.evaluated_value
        except Exception:
            return updated_node
        if value != old:
            return updated_node
        prefix = original_node.prefix
        quote = original_node.quote
        if quote in new or "\\" in new or "\n" in new:
            return updated_node
        return updated_node.with_changes(value=f"{prefix}{quote}{new}{quote}")

    def leave_TrailingWhitespace(
        self, original_node: cst.TrailingWhitespace, updated_node: cst.TrailingWhitespace
    ) -> cst.TrailingWhitespace:
        position = self.get_metadata(PositionProvider, original_node)
        line = position.start.line
        codes = self.edit.ignores.get(line)
        if not codes or line in self.done_lines:
            return updated_node
        self.done_lines.add(line)
        comment = updated_node.comment
        if comment is not None:
            existing = _IGNORE_RE.search(comment.value)
            if existing is not None:
                merged = {c.strip().upper() for c in existing.group(1).split(",") if c.strip()} | codes
                text = (
                    comment.value[: existing.start()]
                    + f"# pikku: ignore[{', '.join(sorted(merged))}]"
                    + comment.value[existing.end() :]
                )
            else:
                text = f"{comment.value}  # pikku: ignore[{', '.join(sorted(codes))}]"
            return updated_node.with_changes(comment=cst.Comment(text))
        return updated_node.with_changes(
            whitespace=cst.SimpleWhitespace("  "),
            comment=cst.Comment(f"# pikku: ignore[{', '.join(sorted(codes))}]"),
        )


def _parenthesised(node: cst.Await) -> cst.Await:
    if node.lpar:
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _method(value: cst.Await, name: str, args: list[cst.Arg]) -> cst.Call:
    """``(value).name(args)``."""
    return cst.Call(func=cst.Attribute(value=_parenthesised(value), attr=cst.Name(name)), args=args)


def _keep_parens(new: cst.Await | cst.Call, old: cst.Call) -> cst.BaseExpression:
    """``new`` with the parentheses ``old`` was written with."""
    if old.lpar:
        return new.with_changes(lpar=old.lpar, rpar=old.rpar)
    return new


def rewrite(source: str, edit: FileEdit) -> str:
    """``source`` with ``edit`` applied (libcst, format-preserving)."""
    module = cst.parse_module(source)
    wrapper = MetadataWrapper(module)
    context = CodemodContext(wrapper=wrapper, full_module_name="", full_package_name="")
    rewriter = _Rewriter(edit, context if edit.calls else None)
    new_module = wrapper.visit(rewriter)
    if rewriter.rewrote:
        new_module = RemoveImportsVisitor(context).transform_module(new_module)
    return new_module.code


def apply_edits(edits: list[FileEdit], *, dry_run: bool) -> str:
    """Apply ``edits``; returns the unified diff of what changed (or would change)."""
    chunks: list[str] = []
    for edit in edits:
        raw = read_source(edit.path)
        if isinstance(raw, str):
            continue
        try:
            source = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        try:
            new = rewrite(source, edit)
        except (cst.ParserSyntaxError, RecursionError):
            continue
        if new == source:
            continue
        chunks.append(
            "".join(
                difflib.unified_diff(
                    source.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"a/{edit.rel}",
                    tofile=f"b/{edit.rel}",
                )
            )
        )
        if not dry_run:
            atomic_write_bytes(edit.path, new.encode("utf-8"))
    return "".join(chunks)


__all__ = ["DETERMINISTIC", "FileEdit", "apply_edits", "close_match", "plan_edits", "rewrite"]
