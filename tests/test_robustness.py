"""Robustness: bad files are reported, never a traceback; the other files are still
analysed. Hypothesis-generated snippets, and a representative sweep over the standard
library and site-packages (the full sweep is ``benchmarks/sweep.py``)."""

from __future__ import annotations

import json
import os
import site
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pikku_analyzer import AnalysisResult, analyze, load_config, render
from pikku_analyzer.checks import Unit, link
from pikku_analyzer.cli import main
from pikku_analyzer.detect import extract_facts
from pikku_typing.meta import AnalysisReport

GOOD = textwrap.dedent(
    """
    from pikku_typing import Workflow, wire_workflow

    async def flow(workflow: Workflow, data: int) -> None:
        await workflow.do("a", lambda: 1)

    wire_workflow(name="flow", func=flow)
    """
)


def project(tmp_path: Path, files: dict[str, bytes]) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "good.py").write_text(GOOD, encoding="utf-8")
    for name, data in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


def run(root: Path, *, check_syntax: bool = False) -> AnalysisResult:
    result = analyze(load_config(root), use_cache=False, check_syntax=check_syntax)
    assert [w["name"] for w in result.data["workflows"]] == ["flow"]  # the good file still counts
    return result


def by_file(result: AnalysisResult) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for diag in result.diagnostics:
        out.setdefault(diag.file, []).append(diag.code)
    return out


def test_syntax_error_and_others_still_analysed(tmp_path: Path) -> None:
    result = run(project(tmp_path, {"bad.py": b"from pikku_typing import rpc\ndef broken(:\n    pass\n"}))
    [diag] = result.diagnostics
    assert (diag.code, diag.file, diag.line, diag.severity) == ("SYNTAX_ERROR", "bad.py", 2, "error")
    assert "bad.py" in diag.message
    assert result.exit_code == 1


def test_syntax_errors_everywhere_with_or_without_all_files(tmp_path: Path) -> None:
    root = project(tmp_path, {"unrelated.py": b"def broken(:\n"})
    default = run(root, check_syntax=True)  # the pre-filter skips detection, not the check
    everything = analyze(load_config(root), use_cache=False, prefilter=False)
    assert [d.code for d in everything.diagnostics] == ["SYNTAX_ERROR"]
    assert default.diagnostics == everything.diagnostics
    assert default.stats.syntax_checked == 1 and default.stats.candidates == 1


WORKFLOW_FILE = b"""from pikku_typing import Workflow, wire_workflow


async def flow(workflow: Workflow, data: int) -> int:
    return await workflow.do("a", "svc.run", data)


wire_workflow(name="flow", func=flow)
"""

RPC_FILE = b"""from pikku_typing import pikku_func


@pikku_func(name="svc.run")
async def run(data: int) -> int:
    return data
"""


def _unrelated_project(tmp_path: Path, broken: bytes = b"def f(:\n") -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_bytes(b"")
    (tmp_path / "app" / "flows.py").write_bytes(WORKFLOW_FILE)
    (tmp_path / "app" / "rpcs.py").write_bytes(RPC_FILE)
    (tmp_path / "app" / "util.py").write_bytes(b"def helper() -> int:\n    return 1\n")
    (tmp_path / "broken.py").write_bytes(broken)  # never mentions pikku
    return tmp_path


def _json_run(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main([str(root), "--format", "json", "--no-generate", "--no-progress", *args])
    out, _err = capsys.readouterr()
    return code, json.loads(out)


def test_unrelated_file_with_a_syntax_error_is_reported_cold_and_warm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SPEC 4: SYNTAX_ERROR for a file that does not parse, even one that never mentions
    pikku; the workflow and the RPC are still in the report; the warm run (cache) too."""
    root = _unrelated_project(tmp_path)
    reports = []
    for _ in range(2):  # cold, then warm
        code, report = _json_run(root, capsys, "--check-syntax")
        assert code == 1
        assert [w["name"] for w in report["workflows"]] == ["flow"]
        assert [r["name"] for r in report["rpcs"]] == ["svc.run"]
        [diag] = report["diagnostics"]
        assert (diag["code"], diag["severity"], diag["file"], diag["line"], diag["column"]) == (
            "SYNTAX_ERROR", "error", "broken.py", 1, 7,
        )
        reports.append(report)
    assert reports[0] == reports[1]
    assert (root / ".pikku" / "cache" / "syntax-ok.bin").is_file()
    # the warm run parses nothing: the good files are in the syntax index, the broken one's
    # facts (its syntax error) are in the facts cache
    warm = analyze(load_config(root), check_syntax=True)
    assert (warm.stats.parsed, warm.stats.syntax_checked, warm.stats.syntax_known) == (0, 0, 2)
    assert [d.code for d in warm.diagnostics] == ["SYNTAX_ERROR"]
    # --all-files (full detection of every file) and --no-cache report the same
    assert _json_run(root, capsys, "--all-files", "--check-syntax")[1] == reports[0]
    assert _json_run(root, capsys, "--no-cache", "--check-syntax")[1] == reports[0]
    # fixed: no longer reported; broken again: reported again
    (root / "broken.py").write_bytes(b"def f():\n    pass\n")
    code, report = _json_run(root, capsys, "--check-syntax")
    assert (code, report["diagnostics"]) == (0, [])
    (root / "broken.py").write_bytes(b"x = 1\ndef f(:\n")
    code, report = _json_run(root, capsys, "--check-syntax")
    assert code == 1 and [(d["file"], d["line"]) for d in report["diagnostics"]] == [("broken.py", 2)]


@pytest.mark.parametrize(
    "data",
    [
        b"def f(:\n",
        "name = 'caf\xe9'\n".encode("latin-1"),  # not UTF-8, no coding cookie
        b"\x00\x01\x00\xff\xfe binary",
        b"\xef\xbb\xbf\xef\xbb\xbfx = 1\n",
        b"# -*- coding: no-such-codec -*-\nx = 1\n",
        "# -*- coding: latin-1 -*-\nname = 'caf\xe9'\n".encode("latin-1"),  # parses
        b"nonlocal x\n",  # ast.parse accepts it (the symbol table does not): not reported
        b"await x\n",
        b"x = " + b"(" * 5000 + b"1" + b")" * 5000 + b"\n",
        b"x = " + b" + ".join([b"a"] * 20000) + b"\n",
        b"def f(:  # pikku: ignore[SYNTAX_ERROR]\n",
        b"",
    ],
)
def test_unrelated_files_are_reported_as_with_all_files(tmp_path: Path, data: bytes) -> None:
    """Only syntax-checked or fully analysed: the same diagnostics either way."""
    root = _unrelated_project(tmp_path, data)
    everything = analyze(load_config(root), use_cache=False, prefilter=False)
    for _ in range(2):  # cold, then warm
        default = analyze(load_config(root), check_syntax=True)
        assert default.diagnostics == everything.diagnostics
        assert default.data == everything.data
        assert [w["name"] for w in default.data["workflows"]] == ["flow"]


def test_syntax_checks_in_worker_processes(tmp_path: Path) -> None:
    root = _unrelated_project(tmp_path)
    for i in range(300):
        (root / "app" / f"filler{i:03d}.py").write_bytes(b"def f(x: int) -> int:\n    return x\n" * 20)
    (root / "app" / "filler150.py").write_bytes(b"def f(x: int) -> int:\n    return x +\n")
    serial = analyze(load_config(root), use_cache=False, jobs=1, check_syntax=True)
    parallel = analyze(load_config(root), use_cache=False, jobs=2, check_syntax=True)
    assert (serial.stats.processes, parallel.stats.processes) == (1, 2)
    assert parallel.stats.syntax_checked == 303  # 300 + __init__, util, broken
    assert serial.data == parallel.data and serial.diagnostics == parallel.diagnostics
    assert sorted({d.file for d in parallel.diagnostics}) == ["app/filler150.py", "broken.py"]


@pytest.mark.parametrize(
    "garbage", [b"", b"x", b"pikku-syntax-ok\n", b"pikku-syntax-ok\n" + b"\0" * 33, b"\xff" * 64]
)
def test_corrupt_or_foreign_syntax_index_is_ignored_and_rewritten(tmp_path: Path, garbage: bytes) -> None:
    root = _unrelated_project(tmp_path)
    expected = analyze(load_config(root), use_cache=False, check_syntax=True)
    index = root / ".pikku" / "cache" / "syntax-ok.bin"
    index.parent.mkdir(parents=True)
    index.write_bytes(garbage)
    cold = analyze(load_config(root), check_syntax=True)
    assert cold.stats.syntax_checked == 3 and cold.diagnostics == expected.diagnostics
    assert index.read_bytes() != garbage
    warm = analyze(load_config(root), check_syntax=True)
    assert warm.stats.syntax_checked == 0 and warm.diagnostics == expected.diagnostics
    assert not list((root / ".pikku").rglob("*.tmp"))


def test_syntax_index_is_not_written_by_check_or_without_cache(tmp_path: Path) -> None:
    root = _unrelated_project(tmp_path)
    analyze(load_config(root), read_only_cache=True, check_syntax=True)
    analyze(load_config(root), use_cache=False, check_syntax=True)
    assert not (root / ".pikku").exists()


def test_syntax_index_keeps_entries_of_a_concurrent_run(tmp_path: Path) -> None:
    from pikku_analyzer.cache import SyntaxIndex, content_digest

    path = tmp_path / "syntax-ok.bin"
    first, second = SyntaxIndex(path), SyntaxIndex(path)  # both read an empty index
    first.add(content_digest(b"a = 1\n"))
    second.add(content_digest(b"b = 2\n"))
    assert first.save() and second.save()
    merged = SyntaxIndex(path)
    assert merged.loaded and len(merged) == 2
    assert merged.known(content_digest(b"a = 1\n")) and not merged.known(content_digest(b"c"))


@pytest.mark.parametrize(
    "data, fragment",
    [
        ("from pikku_typing import rpc\nname = 'caf\xe9'\n".encode("latin-1"), "decode"),
        (b"\x00\x01pikku_typing\x00\xff\xfe binary", ""),
        (b"\xef\xbb\xbf\xef\xbb\xbfpikku_typing = 1\n", ""),
        (b"# -*- coding: no-such-codec -*-\nimport pikku_typing\n", ""),
    ],
)
def test_undecodable_and_binary_files(tmp_path: Path, data: bytes, fragment: str) -> None:
    result = run(project(tmp_path, {"weird.py": data}))
    assert by_file(result) == {"weird.py": ["SYNTAX_ERROR"]}
    assert fragment in result.diagnostics[0].message


def test_coding_cookie_is_honoured(tmp_path: Path) -> None:
    source = "# -*- coding: latin-1 -*-\nfrom pikku_typing import wire_workflow\nNAME = 'caf\xe9'\n"
    result = run(project(tmp_path, {"latin.py": source.encode("latin-1")}))
    assert result.diagnostics == []


def test_empty_and_whitespace_files(tmp_path: Path) -> None:
    result = run(project(tmp_path, {"empty.py": b"", "blank.py": b"\n\n   \n", "pk.py": b"# pikku_typing\n"}))
    assert result.diagnostics == []


def test_huge_file_is_reported_not_parsed(tmp_path: Path) -> None:
    big = b"import pikku_typing\n" + b"x = 1\n" * (9 * 1024 * 1024 // 6)
    result = run(project(tmp_path, {"huge.py": big, "huge_unrelated.py": b"y = 2\n" * (9 * 1024 * 1024 // 6)}))
    assert by_file(result) == {"huge.py": ["FILE_TOO_LARGE"]}
    assert result.diagnostics[0].severity == "warning"


def test_deeply_nested_source(tmp_path: Path) -> None:
    deep = b"import pikku_typing\nx = " + b"(" * 5000 + b"1" + b")" * 5000 + b"\n"
    long_chain = b"import pikku_typing\nx = " + b" + ".join([b"a"] * 20000) + b"\n"
    result = run(project(tmp_path, {"deep.py": deep, "chain.py": long_chain}))
    codes = by_file(result)
    assert codes.get("deep.py") == ["SYNTAX_ERROR"]  # too deeply nested for the parser
    assert "chain.py" not in codes


def test_deep_workflow_body_is_analysed_or_reported(tmp_path: Path) -> None:
    body = "    x = " + " + ".join(["a"] * 3000) + "\n"
    source = GOOD.replace("async def flow", "async def other(workflow, data):\n" + body + "\nasync def flow")
    result = analyze(load_config(project(tmp_path, {})), use_cache=False)
    assert result.diagnostics == []
    (tmp_path / "good.py").write_text(source, encoding="utf-8")
    result = analyze(load_config(tmp_path), use_cache=False)
    assert all(d.code != "ANALYZER_ERROR" for d in result.diagnostics)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_symlink_loops_and_broken_links(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    os.symlink(root / "loop_b.py", root / "loop_a.py")
    os.symlink(root / "loop_a.py", root / "loop_b.py")
    os.symlink(root / "missing.py", root / "broken.py")
    (root / "pkg").mkdir()
    os.symlink(root, root / "pkg" / "back_to_root")  # a directory loop
    result = run(root)
    codes = by_file(result)
    assert codes["loop_a.py"] == ["UNREADABLE_FILE"] and codes["loop_b.py"] == ["UNREADABLE_FILE"]
    assert "symlink loop" in next(d.message for d in result.diagnostics if d.file == "loop_a.py")
    assert codes["broken.py"] == ["UNREADABLE_FILE"]
    assert codes["pkg/back_to_root"] == ["SYMLINK_LOOP"]
    assert main([str(root), "--no-generate", "--no-cache"]) == 1  # no traceback, exit 1


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads anything")
def test_unreadable_file(tmp_path: Path) -> None:  # pragma: no cover - not run as root
    root = project(tmp_path, {"secret.py": b"import pikku_typing\n"})
    (root / "secret.py").chmod(0)
    try:
        assert by_file(run(root)) == {"secret.py": ["UNREADABLE_FILE"]}
    finally:
        (root / "secret.py").chmod(0o644)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_fifo_named_py_is_reported_not_read(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    os.mkfifo(root / "pipe.py")  # opening it for reading would block forever
    result = run(root)
    assert by_file(result) == {"pipe.py": ["UNREADABLE_FILE"]}
    assert "not a regular file" in result.diagnostics[0].message
    assert "pipe.py:1:1: error UNREADABLE_FILE" in render(result, "text")  # excerpt: no read


# --------------------------------------------------------------------------- hypothesis

FRAGMENTS = [
    "await wf.do({name}, {target})",
    "await wf.do({name}, {target}, {expr})",
    "await wf.sleep({name}, {expr})",
    "await wf.do({name}, {target}, description={expr}, retries={expr}, retry_delay={expr})",
    "for i in {expr}:\n    {inner}",
    "if {expr}:\n    {inner}\nelse:\n    {inner}",
    "while {expr}:\n    {inner}",
    "try:\n    {inner}\nexcept Exception:\n    {inner}\nfinally:\n    {inner}",
    "async def helper(x):\n    {inner}",
    "match {expr}:\n    case 1:\n        {inner}\n    case _:\n        {inner}",
    "x = [{inner_expr} for i in {expr}]",
    "x = lambda: {inner_expr}",
    "import time\nx = time.time()",
    "await helper(wf)",
]
NAMES = ['"a"', '"b"', "f'x{i}'", "data", "NAME", "wf", "''", "None"]
TARGETS = ['"svc.a"', "lambda: 1", "helper", "functools.partial(helper, 1)", "data", "RPC", "make()", "wf", "1"]
EXPRS = ["1", "data", "'1s'", "[1, 2]", "time.time()", "wf.do('n', 'x', 1)", "None", "-1.5"]


@st.composite
def workflow_source(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 8))):
        fragment = draw(st.sampled_from(FRAGMENTS))
        inner = draw(st.sampled_from(FRAGMENTS[:4])).format(
            name=draw(st.sampled_from(NAMES)), target=draw(st.sampled_from(TARGETS)), expr=draw(st.sampled_from(EXPRS))
        )
        text = fragment.format(
            name=draw(st.sampled_from(NAMES)),
            target=draw(st.sampled_from(TARGETS)),
            expr=draw(st.sampled_from(EXPRS)),
            inner=inner.replace("\n", "\n    "),
            inner_expr=inner.replace("await ", ""),
        )
        lines.append(text)
    body = textwrap.indent("\n".join(lines), "    ")
    wiring = draw(
        st.sampled_from(
            [
                'wire_workflow(name="w", func=flow)',
                "wire_workflow(name=NAME, func=flow, execution_mode=data)",
                "wire_workflow(func=flow)",
                "wire_workflow(name='w', func=helper, tags=data, docs={1: 2})",
                "wire_workflow(**opts)",
                "wire_workflow('w', flow)",
            ]
        )
    )
    noise = draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
    source = (
        "import functools\nfrom pikku_typing import wire_workflow, pikku_func\nNAME = 'n'\nRPC = 'svc.a'\n"
        f"async def flow(wf, data):\n{body}\n\n{wiring}\n"
    )
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(source)))
        source = source[:cut] + noise + source[cut:]
    return source


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflow_source())
def test_generated_snippets_never_crash(source: str) -> None:
    facts = extract_facts(source.encode("utf-8", "surrogatepass"), module="m", filename="m.py")
    assert facts["internal_error"] is None, facts["internal_error"]
    result = link([Unit("m.py", "m", facts)])
    for workflow in result.workflows:
        for step in workflow["steps"]:
            assert step["type"] in ("rpc", "inline", "sleep")
    for diag in result.diagnostics:
        assert diag.line >= 1 and diag.column >= 1
    # whatever was found is a valid report for codegen, the plugin and the runtime
    AnalysisReport.model_validate(
        {
            "workflows": result.workflows,
            "rpcs": result.rpcs,
            "diagnostics": [d.to_dict() for d in result.diagnostics],
        }
    )


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    facts = extract_facts(b"import pikku_typing\n" + data, module="m")
    assert facts["internal_error"] is None


# --------------------------------------------------------------------------- sweep slice


def _python_files(directory: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        out.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    return out


def _slice(files: list[Path], count: int) -> list[Path]:
    if len(files) <= count:
        return files
    step = len(files) / count
    return [files[int(i * step)] for i in range(count)]


def _site_packages() -> list[Path]:
    roots = {Path(p) for p in site.getsitepackages() if Path(p).is_dir()}
    purelib = Path(sysconfig.get_paths()["purelib"])
    if purelib.is_dir():
        roots.add(purelib)
    files: list[Path] = []
    for root in sorted(roots):
        files.extend(_python_files(root))
    return files


def test_sweep_slice_of_stdlib_and_site_packages() -> None:
    """300 stdlib + 300 site-packages files (every n-th of the sorted list), parsed and
    detected with the pre-filter bypassed: zero crashes (the full sweep: benchmarks/sweep.py)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    stdlib_files = [p for p in _python_files(stdlib) if "site-packages" not in p.parts]
    chosen = _slice(stdlib_files, 300) + _slice(_site_packages(), 300)
    assert len(chosen) >= 300
    units = []
    for path in chosen:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        facts = extract_facts(data, module=path.stem, filename=str(path))
        assert facts["internal_error"] is None, (path, facts["internal_error"])
        units.append(Unit(str(path), path.stem, facts))
    result = link(units)
    assert all(d.code != "ANALYZER_ERROR" for d in result.diagnostics)
    assert sys.version_info >= (3, 11)


def test_followed_module_with_syntax_error_is_reported(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "wiring.py": b"from pikku_typing import wire_workflow\nfrom impl import other\n"
            b"wire_workflow(name='other', func=other)\n",
            "impl.py": b"async def other(wf, data)\n    pass\n",  # no pikku mention: parsed when followed
        },
    )
    result = analyze(load_config(root), use_cache=False)
    codes = by_file(result)
    assert codes["impl.py"] == ["SYNTAX_ERROR"]
    assert codes["wiring.py"] == ["UNRESOLVED_WORKFLOW_FUNC"]


@pytest.mark.parametrize("check_syntax", [False, True])
def test_check_syntax_modes(tmp_path: Path, capsys: pytest.CaptureFixture[str], check_syntax: bool) -> None:
    """issue 16: a broken file that never mentions pikku is reported only with --check-syntax
    (SPEC 4 allows skipping it); a broken candidate is SYNTAX_ERROR either way; cold and warm."""
    root = _unrelated_project(tmp_path)  # broken.py: "def f(:", never mentions pikku
    flags = ["--check-syntax"] if check_syntax else []
    for _ in range(2):  # cold, then warm
        code, report = _json_run(root, capsys, *flags)
        assert [w["name"] for w in report["workflows"]] == ["flow"]
        found = [(d["code"], d["file"]) for d in report["diagnostics"]]
        assert found == ([("SYNTAX_ERROR", "broken.py")] if check_syntax else [])
        assert code == (1 if check_syntax else 0)
    default = analyze(load_config(root), check_syntax=check_syntax)
    # warm: with the check, __init__ and util are known to parse (syntax index); without, untouched
    assert (default.stats.syntax_checked, default.stats.syntax_known) == ((0, 2) if check_syntax else (0, 0))
    (root / "app" / "rpcs.py").write_bytes(RPC_FILE + b"\ndef broken(:\n")  # a candidate
    for _ in range(2):
        code, report = _json_run(root, capsys, *flags)
        found = [(d["code"], d["file"]) for d in report["diagnostics"]]
        assert ("SYNTAX_ERROR", "app/rpcs.py") in found and code == 1
        assert (("SYNTAX_ERROR", "broken.py") in found) is check_syntax


def test_broken_module_imported_by_a_workflow_is_reported_without_check_syntax(tmp_path: Path) -> None:
    """The default skips the syntax check of files that do not mention pikku, but one the
    linker must read (a workflow imports its func from it) is parsed and reported."""
    root = _unrelated_project(tmp_path)
    (root / "broken.py").write_bytes(b"def f() -> int:\n    return 1\n")
    (root / "app" / "impl.py").write_bytes(b"async def body(workflow, data):\n    return (\n")
    (root / "app" / "flows2.py").write_bytes(
        b"from pikku_typing import wire_workflow\nfrom app.impl import body\n\n"
        b"wire_workflow(name='other', func=body)\n"
    )
    result = analyze(load_config(root), use_cache=False)
    assert ("SYNTAX_ERROR", "app/impl.py") in {(d.code, d.file) for d in result.diagnostics}
