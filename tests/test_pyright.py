"""Typing through the generated stubs alone (SPEC sections 1-2 and 5).

``tests/pyright_cases/`` holds usage files written against the generated package of
``examples/`` (``from pikku_gen import Workflow, wire_workflow, workflow_client``). A line that
must be rejected is marked by an ``# expect-error`` comment, a ``reveal_type`` line by
``# expect-type`` (its fragment is the exact revealed type); the marker ends the line, or is a
comment line of its own that marks the next line. A marker may give message fragments per
checker::

    # expect-error pyright: "Literal['users.nope']" is not assignable to "KnownRPCName" | mypy: No overload
    await workflow.do("a", "users.nope", {"email": "x"})

Real pyright (strict, no plugin: it has none), real plain mypy (``--strict``, no plugin) and mypy
with the pikku plugin run once each over all of the files; the exact set of lines with an error
must equal the set of ``expect-error`` lines, for every checker, and each fragment must occur in
a message on its line. The same pyright run checks the generated package itself (strict, no
diagnostic allowed).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from codegen_fixture import (
    REPO,
    Finding,
    mypy_findings,
    pyright_findings,
    start_mypy,
    start_pyright,
)

CASES = REPO / "tests" / "pyright_cases"
CHECKERS = ("pyright", "mypy", "mypy-plugin")
MARKER = re.compile(r"#\s*expect-(error|type)\b(.*)$")
REVEALED = re.compile(r'(?:Type of ".*" is|Revealed type is) "(.*)"$', re.S)
FRAGMENT_SPLIT = re.compile(r"\s+\|\s+(?=(?:pyright|mypy|mypy-plugin):)")

pytestmark = pytest.mark.skipif(shutil.which("pyright") is None, reason="pyright not installed")


@dataclass(frozen=True)
class Expectation:
    file: Path
    line: int
    kind: str  # "error" or "type"
    fragments: dict[str, str]


def case_files() -> list[Path]:
    return sorted(CASES.glob("*.py"))


def expectations() -> list[Expectation]:
    found: list[Expectation] = []
    for path in case_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, text in enumerate(lines, 1):
            match = MARKER.search(text)
            if match is None:
                continue
            if text.lstrip().startswith("#"):  # a marker line of its own: the next code line
                number += next(
                    i
                    for i, later in enumerate(lines[number:], 1)
                    if later.strip() and not later.lstrip().startswith("#")
                )
            fragments: dict[str, str] = {}
            rest = match.group(2).strip()
            if rest:
                for part in FRAGMENT_SPLIT.split(rest):
                    checker, _, fragment = part.partition(":")
                    assert checker.strip() in CHECKERS, f"{path.name}:{number}: {part!r}"
                    fragments[checker.strip()] = fragment.strip()
            found.append(Expectation(path.resolve(), number, match.group(1), fragments))
    return found


@cache
def findings() -> dict[str, list[Finding]]:
    """Run the three checkers once (concurrently) over every case file."""
    files = [str(p) for p in case_files()]
    cache_root = Path(tempfile.mkdtemp(prefix="pikku-typecheck-"))
    pyright = start_pyright(CASES)
    plain = start_mypy(
        ["--config-file", str(CASES / "mypy.ini"), *files],
        cwd=REPO,
        cache_dir=cache_root / "plain",
    )
    plugin = start_mypy(
        ["--config-file", str(CASES / "mypy_plugin.ini"), *files],
        cwd=REPO,
        cache_dir=cache_root / "plugin",
    )
    result = {
        "pyright": pyright_findings(pyright),
        "mypy": mypy_findings(plain, REPO),
        "mypy-plugin": mypy_findings(plugin, REPO),
    }
    shutil.rmtree(cache_root, ignore_errors=True)
    return result


def in_cases(items: list[Finding]) -> Iterator[Finding]:
    return (f for f in items if f.file.parent == CASES.resolve())


def test_every_case_file_has_markers_or_is_valid() -> None:
    names = {p.name for p in case_files()}
    assert {"valid_workflow.py", "invalid_workflow.py", "valid_client.py"} <= names
    marked = {e.file.name for e in expectations() if e.kind == "error"}
    for name in names:
        assert name.startswith("valid_") != (name in marked), name


@pytest.mark.parametrize("checker", CHECKERS)
def test_errors_exactly_on_the_marked_lines(checker: str) -> None:
    expected = {(e.file.name, e.line) for e in expectations() if e.kind == "error"}
    got = {(f.file.name, f.line) for f in in_cases(findings()[checker]) if f.kind == "error"}
    details = [
        f"{f.file.name}:{f.line}: {f.message}"
        for f in in_cases(findings()[checker])
        if f.kind == "error" and (f.file.name, f.line) not in expected
    ]
    assert got - expected == set(), "unexpected errors:\n" + "\n".join(details)
    assert expected - got == set(), "missing errors"


@pytest.mark.parametrize("checker", CHECKERS)
def test_messages_name_the_problem(checker: str) -> None:
    by_line: dict[tuple[str, int], list[str]] = {}
    for f in in_cases(findings()[checker]):
        by_line.setdefault((f.file.name, f.line), []).append(f.message)
    keys = [checker] if checker != "mypy-plugin" else ["mypy-plugin"]
    for e in expectations():
        for key in keys:
            fragment = e.fragments.get(key)
            if fragment is None:
                continue
            messages = by_line.get((e.file.name, e.line), [])
            assert any(fragment in m for m in messages), (
                f"{e.file.name}:{e.line}: {fragment!r} not in {messages}"
            )


@pytest.mark.parametrize("checker", CHECKERS)
def test_revealed_types(checker: str) -> None:
    reveals = {(f.file.name, f.line): f.message for f in in_cases(findings()[checker])}
    for e in expectations():
        if e.kind != "type":
            continue
        message = reveals.get((e.file.name, e.line))
        assert message is not None, f"{e.file.name}:{e.line}: no reveal_type output"
        expected = e.fragments.get("mypy" if checker == "mypy-plugin" else checker)
        revealed = REVEALED.search(message)
        assert revealed is not None, message
        if expected is not None:
            assert revealed.group(1) == expected, f"{e.file.name}:{e.line}: {message}"


def test_generated_package_is_clean_under_pyright_strict() -> None:
    """The same pyright run includes ``examples/pikku_gen`` and ``stubs/pikku_gen``."""
    generated = [
        f"{f.file}:{f.line}: {f.message}"
        for f in findings()["pyright"]
        if f.kind == "error" and "pikku_gen" in f.file.parts
    ]
    assert generated == []
