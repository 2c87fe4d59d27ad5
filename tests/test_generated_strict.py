"""The generated code itself passes ``mypy --strict``, ``pyright`` strict and ``ruff format``.

Several packages are rendered side by side (the example's report, an empty report, and an
awkward one: names with dots, dashes and keywords, ``Optional``/``Union``/``Literal`` and
long types, unannotated RPCs, an inline-mode workflow, duplicates and ``<dynamic>`` names),
then each checker runs once over all of them: the ``.py`` files (as the runtime imports them)
and the ``.pyi`` files (as the type checkers read them). The committed example package is
checked the same way. The stubs' ``# mypy: ignore-errors`` line (which spares users' mypy
runs the quadratic overload-overlap check) is removed from the copies mypy checks here, so that
mypy really checks them.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from codegen_fixture import (
    REPO,
    Finding,
    example_report,
    examples_config,
    mypy_findings,
    pyright_findings,
    start_mypy,
    start_pyright,
)

from pikku_analyzer.codegen import MYPY_SKIP, render_package, write_generated
from pikku_analyzer.codegen.render import render_typed_api
from pikku_analyzer.config import PikkuConfig
from pikku_typing.meta import (
    AnalysisReport,
    EventMeta,
    InlineStepMeta,
    RpcMeta,
    RpcStepMeta,
    SleepStepMeta,
    WorkflowMeta,
)

pytestmark = pytest.mark.skipif(shutil.which("pyright") is None, reason="pyright not installed")

EDGE_TYPES = """from typing import TypedDict


class VeryLongTypeNameForTheBillingInputModelOfTheMonthAndTheYear(TypedDict):
    amount: int


class Outer:
    class Inner(TypedDict):
        x: int
"""


def awkward_report() -> AnalysisReport:
    return AnalysisReport(
        workflows=[
            WorkflowMeta(
                name="billing.monthly-close",
                func="app.billing:close",
                file="app/billing.py",
                line=1,
                execution_mode="inline",
                input_type=(
                    "dict[str, app.edge_types."
                    "VeryLongTypeNameForTheBillingInputModelOfTheMonthAndTheYear]"
                ),
                output_type="typing.Optional[list[app.types.User]]",
                description='He said "hi"\nand left \\ quietly',
                steps=[
                    RpcStepMeta(step_name="a", rpc_name="users.get", line=3),
                    InlineStepMeta(step_name="b", line=4),
                    SleepStepMeta(step_name="c", duration=5.0, line=5),
                ],
            ),
            WorkflowMeta(
                name="class",
                func="app.other:wf",
                file="app/other.py",
                line=1,
                output_type="<dynamic>",
                steps=[
                    RpcStepMeta(step_name="d", rpc_name="<dynamic>", line=2),
                    RpcStepMeta(step_name="e", rpc_name="a-b.c", line=3),
                ],
            ),
            WorkflowMeta(name="class", func="app.other:again", file="app/other.py", line=9),
            WorkflowMeta(name="<dynamic>", func="app.other:dyn", file="app/other.py", line=12),
        ],
        rpcs=[
            RpcMeta(
                name="users.get",
                func="app.rpcs:get_user",
                input_type="app.types.GetUserInput",
                output_type="Union[app.types.User, None]",
            ),
            RpcMeta(
                name="a-b.c",
                func="app.rpcs:get_user",
                input_type="Literal['x', 'y']",
                output_type="decimal.Decimal",
            ),
            RpcMeta(
                name="nested",
                func="app.rpcs:get_user",
                input_type="app.edge_types.Outer.Inner",
                output_type="collections.abc.Sequence[datetime.datetime]",
            ),
            RpcMeta(name="noann", func="app.rpcs:get_user"),
            RpcMeta(name="lambda", func="app.rpcs:get_user", input_type="int", output_type="int"),
        ],
        events=[
            EventMeta(name="order.paid-v2", payload_type="app.types.User", file="app/x.py", line=1),
            EventMeta(name="ping", file="app/x.py", line=1),
            EventMeta(name="maybe", payload_type="Optional[int]", file="app/x.py", line=1),
            EventMeta(name="ping", payload_type="int", file="app/y.py", line=2),
            EventMeta(name="<dynamic>", payload_type="int", file="app/y.py", line=2),
        ],
    )


VARIANTS = {
    "gen_example": example_report,
    "gen_empty": AnalysisReport,
    "gen_awkward": awkward_report,
}


@dataclass(frozen=True)
class Tree:
    py: Path
    """``<py>/<package>/*.py`` and the user's ``app`` package."""
    stubs: Path
    """``<stubs>/<package>/*.pyi``."""
    generated: list[Path]
    api: dict[str, Path]
    """Variant -> a directory holding its partial stubs ``pikku_typing/``."""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    base = tmp_path_factory.mktemp("generated")
    py, stubs = base / "py", base / "stubs"
    shutil.copytree(
        REPO / "examples" / "app", py / "app", ignore=shutil.ignore_patterns("__pycache__")
    )
    (py / "app" / "edge_types.py").write_text(EDGE_TYPES, encoding="utf-8")
    for name in ("billing", "other", "x", "y"):
        (py / "app" / f"{name}.py").write_text('"""A wiring module."""\n', encoding="utf-8")
    generated: list[Path] = []
    api: dict[str, Path] = {}
    for package, report in VARIANTS.items():
        config = PikkuConfig(root=py, package=package, out_dir=py, stub_dir=stubs)
        generated += [
            p
            for p in write_generated(render_package(report(), config))
            if p.parent.name != "pikku_typing"  # one per variant, below
        ]
        api[package] = base / "api" / package
        for name, content in render_typed_api(report(), package).items():
            path = api[package] / "pikku_typing" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            generated.append(path)
    return Tree(py=py, stubs=stubs, generated=generated, api=api)


def committed() -> list[Path]:
    config = examples_config()
    return sorted(
        [*config.package_dir.glob("*.py"), *config.stub_package_dir.glob("*.pyi")],
    )


def checkable_copy(stubs: Path, dest: Path) -> Path:
    """A copy of a stub directory without the ``# mypy: ignore-errors`` lines."""
    shutil.copytree(stubs, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for path in dest.rglob("*.pyi"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(MYPY_SKIP + "\n", ""), encoding="utf-8")
    return dest


def relocate(findings: list[Finding], copy: Path, original: Path) -> list[Finding]:
    """Findings in ``copy`` reported against the same file in ``original``."""
    copy = copy.resolve()
    return [
        replace(f, file=original.resolve() / f.file.relative_to(copy))
        if f.file.is_relative_to(copy)
        else f
        for f in findings
    ]


@dataclass(frozen=True)
class Results:
    mypy_py: list[Finding]
    mypy_pyi: list[Finding]
    mypy_committed_py: list[Finding]
    mypy_committed_pyi: list[Finding]
    mypy_api: dict[str, list[Finding]]
    pyright: list[Finding]


@pytest.fixture(scope="module")
def results(tree: Tree, tmp_path_factory: pytest.TempPathFactory) -> Results:
    """Every checker once, concurrently."""
    work = tmp_path_factory.mktemp("checkers")
    packages = [arg for name in VARIANTS for arg in ("-p", name)]
    strict = ["--strict", "--config-file", str(work / "none.ini")]
    (work / "none.ini").write_text("[mypy]\n", encoding="utf-8")
    # .py: the stubs are not on the path, mypy reads the runtime modules
    mypy_py = start_mypy([*strict, *packages], cwd=tree.py, cache_dir=work / "c1", mypy_path=[REPO])
    # .pyi: the stub directory comes first on mypy's path
    checked_stubs = checkable_copy(tree.stubs, work / "stubs")
    mypy_pyi = start_mypy(
        [*strict, *packages],
        cwd=tree.py,
        cache_dir=work / "c2",
        mypy_path=[checked_stubs, REPO],
    )
    examples = REPO / "examples"
    mypy_committed_py = start_mypy(
        [*strict, "-p", "pikku_gen"], cwd=examples, cache_dir=work / "c3", mypy_path=[REPO]
    )
    mypy_committed_pyi = start_mypy(
        [*strict, "-p", "pikku_gen"],
        cwd=examples,
        cache_dir=work / "c4",
        mypy_path=[checkable_copy(REPO / "stubs", work / "committed-stubs"), REPO],
    )
    api_runs = {
        variant: start_mypy(
            [*strict, "-p", "pikku_typing"],
            cwd=tree.py,
            cache_dir=work / f"c-api-{variant}",
            mypy_path=[checkable_copy(directory, work / f"api-{variant}"), tree.py],
        )
        for variant, directory in tree.api.items()
    }
    config = work / "pyrightconfig.json"
    api_dirs = ", ".join(f'"{d}"' for d in tree.api.values())
    config.write_text(
        "{\n"
        f'  "include": ["{tree.py}", "{tree.stubs}", {api_dirs}],\n'
        '  "exclude": ["**/app"],\n'
        f'  "stubPath": "{tree.stubs}",\n'
        f'  "extraPaths": ["{tree.py}", "{REPO}"],\n'
        '  "pythonVersion": "3.11",\n'
        '  "typeCheckingMode": "strict"\n'
        "}\n",
        encoding="utf-8",
    )
    pyright = start_pyright(config)
    return Results(
        mypy_py=mypy_findings(mypy_py, tree.py),
        mypy_pyi=relocate(mypy_findings(mypy_pyi, tree.py), checked_stubs, tree.stubs),
        mypy_committed_py=mypy_findings(mypy_committed_py, examples),
        mypy_committed_pyi=relocate(
            mypy_findings(mypy_committed_pyi, examples),
            work / "committed-stubs",
            REPO / "stubs",
        ),
        mypy_api={
            variant: relocate(
                mypy_findings(run, tree.py), work / f"api-{variant}", tree.api[variant]
            )
            for variant, run in api_runs.items()
        },
        pyright=pyright_findings(pyright),
    )


def errors_in(findings: list[Finding], roots: list[Path]) -> Iterator[str]:
    """Errors in generated files (mypy also reports on the modules it follows)."""
    for f in findings:
        if f.kind == "error" and any(f.file.is_relative_to(r) for r in roots):
            yield f"{f.file}:{f.line}: {f.message}"


def generated_roots(tree: Tree) -> list[Path]:
    return [d / name for d in (tree.py, tree.stubs) for name in VARIANTS] + list(tree.api.values())


def test_every_variant_has_every_file(tree: Tree) -> None:
    for package in VARIANTS:
        assert len(list((tree.py / package).glob("*.py"))) == 6
        assert len(list((tree.stubs / package).glob("*.pyi"))) == 6
        assert (tree.py / package / "workflow_meta.json").is_file()


def test_mypy_strict_on_the_runtime_modules(tree: Tree, results: Results) -> None:
    assert list(errors_in(results.mypy_py, generated_roots(tree))) == []


def test_mypy_strict_on_the_stubs(tree: Tree, results: Results) -> None:
    assert list(errors_in(results.mypy_pyi, generated_roots(tree))) == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_mypy_strict_on_the_partial_stubs(tree: Tree, results: Results, variant: str) -> None:
    """``<stub_dir>/pikku_typing/__init__.pyi`` (without its ``ignore-errors`` line) checked as
    the ``pikku_typing`` package mypy sees, merged with the installed library."""
    findings = results.mypy_api[variant]
    assert list(errors_in(findings, [tree.api[variant]])) == []
    assert any(f.file.name == "__init__.pyi" for f in findings) or findings == []


def test_mypy_strict_on_the_committed_example(results: Results) -> None:
    config = examples_config()
    assert list(errors_in(results.mypy_committed_py, [config.package_dir])) == []
    assert list(errors_in(results.mypy_committed_pyi, [config.stub_package_dir])) == []


def test_pyright_strict(tree: Tree, results: Results) -> None:
    assert list(errors_in(results.pyright, generated_roots(tree))) == []
    checked = {f.file for f in results.pyright}
    assert checked <= {p.resolve() for p in tree.generated} | set(checked)


@pytest.mark.parametrize("line_length", [None, 100, 120])
def test_ruff_format_accepts_the_output(tree: Tree, line_length: int | None) -> None:
    """Already formatted: at ruff's default width and at wider ones (exploded constructs carry
    a magic trailing comma, so a wider setting does not join them)."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed")
    files = [p for p in [*tree.generated, *committed()] if p.suffix in (".py", ".pyi")]
    width = [] if line_length is None else ["--line-length", str(line_length)]
    proc = subprocess.run(
        [ruff, "format", "--isolated", *width, "--check", "--diff", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_only_the_overloaded_stubs_skip_mypy(tree: Tree) -> None:
    for path in tree.generated:
        skips = path.read_text(encoding="utf-8").splitlines()[1:2] == [MYPY_SKIP]
        overloaded = path.name in ("workflow_types.pyi", "workflow_map.pyi") or (
            path.parent.name == "pikku_typing" and path.name == "__init__.pyi"
        )
        assert skips == overloaded, path
