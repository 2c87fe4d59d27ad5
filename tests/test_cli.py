"""``pikku-analyze``: flags, formats, exit codes (0 / 1 / 2), never a traceback, and the
codegen integration (render, write, ``--check``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pikku_analyzer.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

GOOD = """
from pikku_typing import Workflow, pikku_func, wire_workflow

@pikku_func(name="users.create")
async def create(data: int) -> int:
    return data

async def flow(workflow: Workflow, data: int) -> int:
    return await workflow.do("create", "users.create", data)

wire_workflow(name="flow", func=flow)
"""

BAD = GOOD.replace('"users.create", data', '"users.craete", data')
WARN = GOOD.replace('"create", "users.create"', 'f"c{data}", "users.create"')


def project(tmp_path: Path, source: str = GOOD, table: str = "") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pyproject.toml").write_text(f"[tool.pikku]\n{table}\n", encoding="utf-8")
    (tmp_path / "flow.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_example_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(EXAMPLES), "--format", "json", "--no-generate", "--no-cache")
    assert code == 0
    report = json.loads(out)
    assert report["version"] == 1
    assert [w["name"] for w in report["workflows"]] == ["onboarding"]
    assert "Traceback" not in err


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = project(tmp_path / "good")
    assert run(capsys, str(good), "--no-generate")[0] == 0
    warn = project(tmp_path / "warn", WARN)
    code, out, _ = run(capsys, str(warn), "--no-generate")
    assert code == 0 and "DYNAMIC_STEP_NAME" in out
    bad = project(tmp_path / "bad", BAD)
    code, out, _ = run(capsys, str(bad), "--no-generate")
    assert code == 1 and "UNKNOWN_RPC" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--format", "xml"],
        ["--jobs", "0"],
        ["--jobs", "many"],
        ["--add-ignore", "NOT_A_CODE"],
        ["--unknown-flag"],
        ["a", "b"],
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    project(tmp_path)
    code, _, err = run(capsys, str(tmp_path), *args) if args[0] != "a" else run(capsys, *args)
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for flag in ("--format", "--output", "--check", "--no-generate", "--fix", "--diff",
                 "--add-ignore", "--no-cache", "--jobs"):
        assert flag in out


@pytest.mark.parametrize(
    "table, fragment",
    [
        ("srcs = ['.']", "unknown key"),
        ("src = 3", "src must be a list"),
        ("src = ['missing']", "not a directory"),
        ("package = 'not-valid'", "not a valid Python package name"),
        ("exclude = [1]", "exclude must be a list"),
        ("out_dir = 5", "out_dir"),
    ],
)
def test_config_errors_exit_2_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, fragment: str
) -> None:
    project(tmp_path, table=table)
    code, out, err = run(capsys, str(tmp_path))
    assert code == 2
    assert out == ""
    assert fragment in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_invalid_toml_and_missing_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku\n", encoding="utf-8")
    code, _, err = run(capsys, str(tmp_path))
    assert code == 2 and "invalid TOML" in err
    code, _, err = run(capsys, str(tmp_path / "nope"))
    assert code == 2 and "no such file" in err


def test_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p")
    target = tmp_path / "out" / "report.sarif"
    code, out, _ = run(capsys, str(root), "--format", "sarif", "--output", str(target), "--no-generate")
    assert code == 0 and out == ""
    assert json.loads(target.read_text(encoding="utf-8"))["version"] == "2.1.0"


def test_output_unwritable_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path / "p")
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    code, _, err = run(capsys, str(root), "--output", str(blocker / "sub" / "r.txt"), "--no-generate")
    assert code == 2 and "cannot write" in err


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "mermaid"])
def test_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    root = project(tmp_path, BAD)
    code, out, _ = run(capsys, str(root), "--format", fmt, "--no-generate")
    assert code == 1
    assert out
    if fmt in ("json", "sarif"):
        json.loads(out)
    if fmt == "mermaid":
        assert out.startswith("flowchart TD")
    if fmt == "text":
        assert "\x1b[" not in out  # not a TTY: no colour


def test_default_root_is_cwd(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    project(tmp_path, BAD)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "--no-generate", "--format", "json")
    assert code == 1 and json.loads(out)["diagnostics"][0]["code"] == "UNKNOWN_RPC"


def test_no_cache_writes_no_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path)
    run(capsys, str(root), "--no-generate", "--no-cache")
    assert not (root / ".pikku").exists()
    run(capsys, str(root), "--no-generate")
    assert list((root / ".pikku" / "cache").rglob("*.json"))


def test_jobs_flag_gives_same_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(80):
        (tmp_path / f"m{i:03d}.py").write_text(GOOD.replace('"flow"', f'"flow{i}"').replace(
            '"users.create")\nasync def create', f'"users.create{i}")\nasync def create'
        ), encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    one = run(capsys, str(tmp_path), "--format", "json", "--no-generate", "--no-cache", "--jobs", "1")
    two = run(capsys, str(tmp_path), "--format", "json", "--no-generate", "--no-cache", "--jobs", "2")
    assert one[1] == two[1]
    assert len(json.loads(two[1])["workflows"]) == 80


def test_internal_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pikku_analyzer.engine as engine

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "analyze", explode)
    code, _, err = run(capsys, str(project(tmp_path)), "--no-generate")
    assert code == 2
    assert "internal error" in err and "boom" in err and "Traceback" not in err


# --------------------------------------------------------------------------- codegen


@dataclass(frozen=True)
class FakeFile:
    path: Path
    content: str


def fake_codegen(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    module = types.ModuleType("pikku_analyzer.codegen")

    def render_package(report: Any, config: Any) -> list[FakeFile]:
        calls.append(f"render:{len(report.workflows)}")
        return [FakeFile(config.package_dir / "out.txt", ",".join(w.name for w in report.workflows))]

    def write_generated(files: list[FakeFile]) -> list[Path]:
        calls.append("write")
        written = []
        for f in files:
            if not f.path.exists() or f.path.read_text() != f.content:
                f.path.parent.mkdir(parents=True, exist_ok=True)
                f.path.write_text(f.content)
                written.append(f.path)
        return written

    def stale_generated(files: list[FakeFile]) -> list[Path]:
        calls.append("stale")
        return [f.path for f in files if not f.path.exists() or f.path.read_text() != f.content]

    module.render_package = render_package  # type: ignore[attr-defined]
    module.write_generated = write_generated  # type: ignore[attr-defined]
    module.stale_generated = stale_generated  # type: ignore[attr-defined]
    module.obsolete_generated = lambda files, config: []  # type: ignore[attr-defined]
    module.remove_obsolete = lambda files, config: []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pikku_analyzer.codegen", module)


def test_generate_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake_codegen(monkeypatch, calls)
    root = project(tmp_path)
    out_file = root / "pikku_gen" / "out.txt"
    code, _, err = run(capsys, str(root), "--check")
    assert code == 1 and "stale" in err and "pikku_gen/out.txt" in err
    assert not out_file.exists()  # --check writes nothing: no generated files, no cache
    assert not (root / ".pikku").exists()
    assert calls == ["render:1", "stale"]
    calls.clear()
    code, _, err = run(capsys, str(root))
    assert code == 0 and out_file.read_text() == "flow"
    assert calls == ["render:1", "write"]
    code, _, _ = run(capsys, str(root), "--check")
    assert code == 0
    code, _, _ = run(capsys, str(root), "--no-generate")
    assert calls[-1] == "stale"  # --no-generate: codegen not called


def test_no_generation_on_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake_codegen(monkeypatch, calls)
    root = project(tmp_path)
    (root / "broken.py").write_text("import pikku_typing\ndef (:\n", encoding="utf-8")
    code, _, err = run(capsys, str(root))
    assert code == 1
    assert calls == []
    assert "not generating" in err


def test_console_script_runs(tmp_path: Path) -> None:
    """The installed entry point and ``python -m`` both work (a real subprocess)."""
    root = project(tmp_path, BAD)
    done = subprocess.run(
        [sys.executable, "-m", "pikku_analyzer.cli", str(root), "--no-generate", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["diagnostics"][0]["code"] == "UNKNOWN_RPC"


def test_codegen_failure_is_one_line_after_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType("pikku_analyzer.codegen")

    def render_package(report: Any, config: Any) -> list[FakeFile]:
        raise ValueError("template exploded")

    module.render_package = render_package  # type: ignore[attr-defined]
    module.write_generated = lambda files: []  # type: ignore[attr-defined]
    module.stale_generated = lambda files: []  # type: ignore[attr-defined]
    module.obsolete_generated = lambda files, config: []  # type: ignore[attr-defined]
    module.remove_obsolete = lambda files, config: []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pikku_analyzer.codegen", module)
    code, out, err = run(capsys, str(project(tmp_path)))
    assert code == 2 and "Workflows (1)" in out
    assert "code generation failed: ValueError: template exploded" in err and "Traceback" not in err


def test_real_codegen_on_a_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the real pikku_analyzer.codegen: generate, then --check is clean."""
    root = project(tmp_path)
    code, _, err = run(capsys, str(root))
    assert code == 0, err
    assert (root / "pikku_gen").is_dir()
    code, _, err = run(capsys, str(root), "--check")
    assert code == 0, err
