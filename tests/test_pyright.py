"""Typing through the generated stubs alone (SPEC sections 1-2, 5 and 8).

Two groups of usage files:

* ``tests/pyright_cases/``: written against the generated package of ``examples/``
  (``from pikku_gen import Workflow, wire_workflow, workflow_client``) and against the plain
  ``from pikku_typing import ...`` API through the partial stubs ``stubs/pikku_typing/``;
* ``tests/typed_api/``: a user's project set up as the README says (``[tool.pikku] stub_dir =
  "typings"``, ``mypy_path = "typings"``, no pyright configuration at all), copied to a
  temporary directory where ``pikku-analyze`` generates ``typings/``; its ``usage/`` files use
  the plain API only: RPC steps, ``rpc.invoke``, events, child runs, the typed client.

A line that
must be rejected is marked by an ``# expect-error`` comment, a ``reveal_type`` line by
``# expect-type`` (its fragment is the exact revealed type); the marker ends the line, or is a
comment line of its own that marks the next line. A marker may give message fragments per
checker::

    # expect-error pyright: "Literal['users.nope']" is not assignable to "KnownRPCName" | mypy: No overload
    await workflow.do("a", "users.nope", {"email": "x"})

Real pyright (no plugin: it has none), real plain mypy (``--strict``, no plugin) and mypy
with the pikku plugin (on top of the same stubs) run once each per group over all of its files;
the exact set of lines with an error must equal the set of ``expect-error`` lines, for every
checker, and each fragment must occur in a message on its line. The pyright run of the first
group checks the generated package and the partial stubs themselves (strict, no diagnostic
allowed).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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

from pikku_analyzer.codegen import render_package, write_generated
from pikku_analyzer.config import load_config
from pikku_typing.meta import AnalysisReport, EventMeta

CASES = REPO / "tests" / "pyright_cases"
TYPED_API = REPO / "tests" / "typed_api"
GROUPS = ("cases", "typed_api")
TYPED_API_EVENTS = [
    EventMeta(
        name="payment.received",
        payload_type="app.types.PaymentReceived",
        file="app/shop.py",
        line=33,
    )
]
"""The events of ``tests/typed_api/app`` (used while the analyzer does not report events)."""
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


def case_files(group: str = "cases") -> list[Path]:
    if group == "cases":
        return sorted(CASES.glob("*.py"))
    return sorted((typed_api_project() / "usage").glob("*_shop.py"))


def expectations(group: str = "cases") -> list[Expectation]:
    found: list[Expectation] = []
    for path in case_files(group):
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


_RUN_UID = os.environ.get("PYTEST_XDIST_TESTRUNUID")
RUN_DIR = Path(tempfile.gettempdir()) / f"pikku-typecheck-{_RUN_UID}" if _RUN_UID else None
"""Under pytest-xdist, the workers of one run share the checkers' results through this
directory (the first worker runs them, under a lock; the others read them)."""


@contextmanager
def _shared_lock() -> Iterator[None]:
    if RUN_DIR is None:
        yield
        return
    RUN_DIR.mkdir(exist_ok=True)
    with (RUN_DIR / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@cache
def typed_api_project() -> Path:
    """``tests/typed_api`` copied to a temporary directory, with ``pikku-analyze`` run in it
    (the real command, as a user runs it: it writes ``pikku_gen/`` and ``typings/``)."""
    with _shared_lock():
        if RUN_DIR is not None and (RUN_DIR / "project" / ".ready").exists():
            return RUN_DIR / "project"
        base = RUN_DIR if RUN_DIR is not None else Path(tempfile.mkdtemp(prefix="pikku-api-"))
        project = _make_typed_api_project(base / "project")
        (project / ".ready").touch()
        return project


def _make_typed_api_project(project: Path) -> Path:
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(TYPED_API, project, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pikku_analyzer.cli", ".", "--format", "json"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = AnalysisReport.model_validate_json(proc.stdout)
    assert (project / "typings" / "pikku_typing" / "py.typed").read_text() == "partial\n"
    if not report.events:  # the analyzer does not detect wire_event yet: add what it would find
        report = report.model_copy(update={"events": TYPED_API_EVENTS})
        write_generated(render_package(report, load_config(project)))
    return project


def _checker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@cache
def findings(group: str = "cases") -> dict[str, list[Finding]]:
    """The three checkers' findings over every file of ``group`` (run once per test run)."""
    if group == "typed_api":
        typed_api_project()  # before the lock below: it takes the lock itself
    with _shared_lock():
        saved = RUN_DIR / f"findings-{group}.json" if RUN_DIR is not None else None
        if saved is not None and saved.exists():
            data = json.loads(saved.read_text(encoding="utf-8"))
            return {
                checker: [Finding(Path(f[0]), f[1], f[2], f[3]) for f in items]
                for checker, items in data.items()
            }
        result = _run_checkers(group)
        if saved is not None:
            data = {
                checker: [[str(f.file), f.line, f.kind, f.message] for f in items]
                for checker, items in result.items()
            }
            saved.write_text(json.dumps(data), encoding="utf-8")
        return result


def _run_checkers(group: str) -> dict[str, list[Finding]]:
    """Run the three checkers once (concurrently) over every file of ``group``."""
    if group == "typed_api":
        return typed_api_findings()
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


def typed_api_findings() -> dict[str, list[Finding]]:
    """pyright with no configuration file (its default ``stubPath`` is ``typings``), mypy with
    the project's ``[tool.mypy]`` (``mypy_path = "typings"``), and mypy with the plugin."""
    project = typed_api_project()
    cache_root = Path(tempfile.mkdtemp(prefix="pikku-typecheck-"))
    targets = ["usage", "app"]
    pyright = subprocess.Popen(
        ["pyright", "--outputjson", "--pythonpath", sys.executable, *targets],
        cwd=project,
        env=_checker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    plain = start_mypy(targets, cwd=project, cache_dir=cache_root / "plain")
    plugin = start_mypy(
        ["--config-file", "mypy_plugin.ini", *targets],
        cwd=project,
        cache_dir=cache_root / "plugin",
    )
    result = {
        "pyright": pyright_findings(pyright),
        "mypy": mypy_findings(plain, project),
        "mypy-plugin": mypy_findings(plugin, project),
    }
    shutil.rmtree(cache_root, ignore_errors=True)
    return result


def in_cases(items: list[Finding], group: str = "cases") -> Iterator[Finding]:
    if group == "cases":
        return (f for f in items if f.file.parent == CASES.resolve())
    project = typed_api_project().resolve()
    return (f for f in items if f.file.parent in (project / "usage", project / "app"))


def test_every_case_file_has_markers_or_is_valid() -> None:
    names = {p.name for p in case_files()}
    assert {"valid_workflow.py", "invalid_workflow.py", "valid_client.py"} <= names
    marked = {e.file.name for e in expectations() if e.kind == "error"}
    for name in names:
        assert name.startswith("valid_") != (name in marked), name


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("checker", CHECKERS)
def test_errors_exactly_on_the_marked_lines(checker: str, group: str) -> None:
    expected = {(e.file.name, e.line) for e in expectations(group) if e.kind == "error"}
    found = list(in_cases(findings(group)[checker], group))
    got = {(f.file.name, f.line) for f in found if f.kind == "error"}
    details = [
        f"{f.file.name}:{f.line}: {f.message}"
        for f in found
        if f.kind == "error" and (f.file.name, f.line) not in expected
    ]
    assert got - expected == set(), "unexpected errors:\n" + "\n".join(details)
    assert expected - got == set(), "missing errors"


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("checker", CHECKERS)
def test_messages_name_the_problem(checker: str, group: str) -> None:
    by_line: dict[tuple[str, int], list[str]] = {}
    for f in in_cases(findings(group)[checker], group):
        by_line.setdefault((f.file.name, f.line), []).append(f.message)
    keys = [checker] if checker != "mypy-plugin" else ["mypy-plugin"]
    for e in expectations(group):
        for key in keys:
            fragment = e.fragments.get(key)
            if fragment is None:
                continue
            messages = by_line.get((e.file.name, e.line), [])
            assert any(fragment in m for m in messages), (
                f"{e.file.name}:{e.line}: {fragment!r} not in {messages}"
            )


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("checker", CHECKERS)
def test_revealed_types(checker: str, group: str) -> None:
    reveals = {(f.file.name, f.line): f.message for f in in_cases(findings(group)[checker], group)}
    for e in expectations(group):
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
    """The same pyright run includes ``examples/pikku_gen``, ``stubs/pikku_gen`` and the partial
    stubs ``stubs/pikku_typing``."""
    generated = [
        f"{f.file}:{f.line}: {f.message}"
        for f in findings()["pyright"]
        if f.kind == "error" and {"pikku_gen", "stubs"} & set(f.file.parts)
    ]
    assert generated == []
    checked = {f.file for f in findings()["pyright"]}
    assert checked  # the run produced diagnostics for the cases at least


def test_typed_api_project_uses_pyright_defaults() -> None:
    """No pyright configuration in the user's project: the stubs are found through pyright's
    default ``stubPath`` (``typings``), the library through the environment."""
    project = typed_api_project()
    assert not (project / "pyrightconfig.json").exists()
    assert "tool.pyright" not in (project / "pyproject.toml").read_text(encoding="utf-8")
    init = (project / "typings" / "pikku_typing" / "__init__.pyi").read_text(encoding="utf-8")
    assert 'Literal["payment.received"]' in init
    meta = json.loads((project / "pikku_gen" / "workflow_meta.json").read_text(encoding="utf-8"))
    assert [e["name"] for e in meta["events"]] == ["payment.received"]


def test_plugin_without_a_map_leaves_the_stubs_checking(tmp_path: Path) -> None:
    """With the stubs on mypy_path but no map for the plugin (not found, not generated), the
    plugin does not relax the stubs' overloads: mypy still rejects every marked line."""
    project = tmp_path / "project"
    shutil.copytree(typed_api_project(), project, ignore=shutil.ignore_patterns(".mypy_cache"))
    (project / "pikku_gen" / "workflow_meta.json").unlink()
    proc = start_mypy(
        ["--config-file", "mypy_plugin.ini", "usage/invalid_shop.py"],
        cwd=project,
        cache_dir=tmp_path / "cache",
    )
    found = mypy_findings(proc, project)
    got = {f.line for f in found if f.kind == "error" and f.file.name == "invalid_shop.py"}
    expected = {
        e.line
        for e in expectations("typed_api")
        if e.kind == "error" and e.file.name == "invalid_shop.py"
    }
    assert got == expected
