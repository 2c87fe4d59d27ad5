"""Reports: text (tables, excerpts, summary, colour only when asked), JSON (SPEC section 4),
SARIF 2.1.0 (validated against a schema subset) and mermaid."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest

from pikku_analyzer import CODES, AnalysisResult, analyze, load_config, render

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCHEMA = Path(__file__).resolve().parent / "data" / "sarif-2.1.0-subset.schema.json"

PROBLEMS = '''
from pikku_typing import Workflow, pikku_func, wire_workflow
import time

@pikku_func(name="users.create")
async def create(data: int) -> int:
    return data

async def flow(workflow: Workflow, data: int) -> None:
    await workflow.do("a", "users.craete", data)
    await workflow.do(f"x{data}", lambda: 1)
    await workflow.sleep("nap", "5s")
    t = time.time()

wire_workflow(name="flow", func=flow, execution_mode="remote")
wire_workflow(name="flow", func=flow)
'''.lstrip("\n")


@pytest.fixture(scope="module")
def example() -> AnalysisResult:
    return analyze(load_config(EXAMPLES), use_cache=False)


@pytest.fixture()
def problems(tmp_path: Path) -> AnalysisResult:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "flow.py").write_text(textwrap.dedent(PROBLEMS), encoding="utf-8")
    return analyze(load_config(tmp_path), use_cache=False)


# --------------------------------------------------------------------------- text


def test_text_example(example: AnalysisResult) -> None:
    text = render(example, "text")
    assert "Workflows (1)" in text
    assert "onboarding" in text and "app.onboarding:onboarding" in text
    for name in ("createUser", "calcTax", "sendWelcome", "coolOff", "loadProfile", "<dynamic>"):
        assert name in text
    assert "RPCs (3)" in text and "users.create" in text and "app.types.CreateUserInput" in text
    last = text.strip().splitlines()[-1]
    assert last.startswith("1 workflow, 6 steps, 3 RPCs; 0 errors, 0 warnings")
    assert "\x1b[" not in text


def test_text_diagnostics_have_excerpts(problems: AnalysisResult) -> None:
    text = render(problems, "text")
    assert "flow.py:9:28: error UNKNOWN_RPC" in text
    assert '    await workflow.do("a", "users.craete", data)' in text
    assert "hint: did you mean 'users.create'?" in text
    # the caret is under the reported column
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if "users.craete\", data)" in line)
    caret = lines[index + 1]
    source_line = lines[index]
    assert caret.index("^") == source_line.index('"users.craete"')
    assert "2 errors, 2 warnings" in lines[-1]


def test_text_colour_only_when_asked(problems: AnalysisResult) -> None:
    assert "\x1b[31m" in render(problems, "text", color=True)
    assert "\x1b[" not in render(problems, "text", color=False)


# --------------------------------------------------------------------------- json


def test_json_shape(problems: AnalysisResult) -> None:
    data = json.loads(render(problems, "json"))
    assert list(data) == ["version", "workflows", "rpcs", "events", "diagnostics"]
    assert [d["code"] for d in data["diagnostics"]] == [
        "UNKNOWN_RPC",
        "DYNAMIC_STEP_NAME",
        "NON_DETERMINISTIC_CALL",
        "DUPLICATE_WORKFLOW_NAME",
    ]
    for diag in data["diagnostics"]:
        assert set(diag) >= {"code", "severity", "file", "line", "column", "message"}
        assert diag["file"] == "flow.py"
        assert diag["hint"]
    steps = data["workflows"][0]["steps"]
    assert steps[2] == {
        "type": "sleep", "step_name": "nap", "duration": "5s", "description": None,
        "line": 11, "column": 11, "in_loop": False,
    }


def test_json_is_deterministic(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "flow.py").write_text(textwrap.dedent(PROBLEMS), encoding="utf-8")
    first = render(analyze(load_config(tmp_path), use_cache=False), "json")
    second = render(analyze(load_config(tmp_path)), "json")
    third = render(analyze(load_config(tmp_path)), "json")  # from the cache
    assert first == second == third


# --------------------------------------------------------------------------- sarif


def test_sarif_validates_against_schema(problems: AnalysisResult, example: AnalysisResult) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    for result in (problems, example):
        document = json.loads(render(result, "sarif"))
        jsonschema.validate(document, schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_sarif_schema_rejects_mistakes(problems: AnalysisResult) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    document = json.loads(render(problems, "sarif"))
    document["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)
    document = json.loads(render(problems, "sarif"))
    document["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)


def test_sarif_rules_and_results(problems: AnalysisResult) -> None:
    document = json.loads(render(problems, "sarif"))
    run = document["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(CODES)
    for rule in rules:
        code = CODES[rule["id"]]
        assert rule["defaultConfiguration"]["level"] == code.severity
        assert rule["shortDescription"]["text"] == code.title
        assert rule["fullDescription"]["text"] and rule["help"]["text"]
    results = run["results"]
    assert len(results) == len(problems.diagnostics)
    for result, diag in zip(results, problems.diagnostics, strict=True):
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == diag.code
        assert result["level"] == diag.severity
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == "flow.py"
        assert location["region"] == {"startLine": diag.line, "startColumn": diag.column}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].startswith("file://")


# --------------------------------------------------------------------------- mermaid


def test_mermaid_example(example: AnalysisResult) -> None:
    text = render(example, "mermaid")
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert any('subgraph' in line and "onboarding (remote)" in line for line in lines)
    rpc = [line for line in lines if ":::rpc" in line]
    inline = [line for line in lines if ":::inline" in line]
    sleep = [line for line in lines if ":::sleep" in line]
    assert len(rpc) == 3 and len(inline) == 2 and len(sleep) == 1
    assert all('["' in line for line in rpc)  # rectangles
    assert all('("' in line for line in inline)  # rounded
    assert all('{{"' in line for line in sleep)  # hexagons
    assert "createUser<br/>rpc: users.create" in text
    assert "#lt;dynamic#gt;" in text  # escaped
    arrows = [line for line in lines if "-->" in line]
    assert len(arrows) == 7  # start -> 6 steps -> end
    assert text.count("classDef") == 5  # rpc, inline, sleep, event, child


def test_mermaid_escapes_quotes(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "f.py").write_text(
        "from pikku_typing import wire_workflow\n"
        "async def flow(w, d):\n    await w.do('say \"hi\" <b>', lambda: 1)\n"
        "wire_workflow(name='q\"uote', func=flow)\n",
        encoding="utf-8",
    )
    text = render(analyze(load_config(tmp_path), use_cache=False), "mermaid")
    assert '"hi"' not in text and "#quot;hi#quot;" in text and "#lt;b#gt;" in text


def test_unknown_format_raises(example: AnalysisResult) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(example, "xml")
