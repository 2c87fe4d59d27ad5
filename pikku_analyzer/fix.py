"""``--fix`` and ``--add-ignore``: format-preserving rewrites with libcst.

* ``UNKNOWN_RPC`` with exactly one close match among the defined RPC names: the string
  literal is rewritten to that name (same quotes and prefix).
* ``--add-ignore CODE``: ``# pikku: ignore[CODE]`` is added at the end of the line of every
  diagnostic with that code (merged into an existing ``# pikku: ignore[...]``). The comment
  is set on libcst's ``TrailingWhitespace`` of that physical line, so a line that ends
  inside a multi-line string or after a backslash is never touched.

Only files with an edit are parsed with libcst; only the changed lines change.
``apply_edits(..., dry_run=True)`` returns the unified diff instead of writing.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from pikku_analyzer.checks.step_kinds import close_match
from pikku_analyzer.engine import AnalysisResult
from pikku_analyzer.files import read_source

_IGNORE_RE = re.compile(r"#\s*pikku:\s*ignore\[([^\]]*)\]", re.IGNORECASE)


@dataclass
class FileEdit:
    path: Path
    rel: str
    renames: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)
    """(line, 0-based column) of a string literal -> (old value, new value)."""
    ignores: dict[int, set[str]] = field(default_factory=dict)
    """line -> codes to add."""


def plan_edits(result: AnalysisResult, *, fix: bool, add_ignore: list[str]) -> list[FileEdit]:
    edits: dict[str, FileEdit] = {}

    def edit_for(rel: str) -> FileEdit:
        if rel not in edits:
            edits[rel] = FileEdit(result.config.root / rel, rel)
        return edits[rel]

    wanted = set(add_ignore)
    for diag in result.diagnostics:
        if fix and diag.code == "UNKNOWN_RPC":
            old, new = diag.data.get("rpc_name"), diag.data.get("suggestion")
            if isinstance(old, str) and isinstance(new, str):
                edit_for(diag.file).renames[(diag.line, diag.column - 1)] = (old, new)
        if diag.code in wanted:
            edit_for(diag.file).ignores.setdefault(diag.line, set()).add(diag.code)
    return [e for _, e in sorted(edits.items())]


class _Rewriter(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, edit: FileEdit) -> None:
        super().__init__()
        self.edit = edit
        self.done_lines: set[int] = set()

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


def rewrite(source: str, edit: FileEdit) -> str:
    """``source`` with ``edit`` applied (libcst, format-preserving)."""
    module = cst.parse_module(source)
    wrapper = MetadataWrapper(module)
    new_module = wrapper.visit(_Rewriter(edit))
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
            _atomic_write(edit.path, new.encode("utf-8"))
    return "".join(chunks)


def _atomic_write(path: Path, data: bytes) -> None:
    mode = None
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


__all__ = ["FileEdit", "apply_edits", "close_match", "plan_edits", "rewrite"]
