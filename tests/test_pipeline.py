"""One analysis pipeline (issue 12.3): ``analyze`` and ``--watch`` run the same public stages
(``engine.read``/``too_large`` → ``FactsStore`` → ``conclude``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pikku_analyzer
from pikku_analyzer import analyze, load_config
from pikku_analyzer.engine import FactsStore, Stats, conclude, read, too_large
from pikku_analyzer.facts import Unit
from pikku_analyzer.files import discover

FLOW = """
from pikku_typing import Workflow, pikku_func, wire_workflow

@pikku_func(name="users.create")
async def create(data: int) -> int:
    return data

async def flow(workflow: Workflow, data: int) -> None:
    await workflow.do("a", "users.create", data)
    await workflow.do("b", "users.craete", data)

wire_workflow(name="flow", func=flow)
"""


def test_the_stages_give_what_analyze_gives(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "flow.py").write_text(FLOW, encoding="utf-8")
    config = load_config(tmp_path)
    store = FactsStore(config)
    units = []
    for source_file in discover(config).files:
        data = read(source_file)
        assert isinstance(data, bytes) and too_large(source_file, data) is None
        facts, hit = store.facts(source_file, data)
        assert not hit
        assert store.facts(source_file, data) == (facts, True)  # the cache layer
        units.append(Unit(source_file.rel, source_file.module, facts))
    staged = conclude(config, units, None, [], Stats())
    whole = analyze(config, use_cache=False)
    assert staged.data == whole.data and staged.diagnostics == whole.diagnostics
    assert [d.code for d in staged.diagnostics] == ["UNKNOWN_RPC"]


def test_no_module_reaches_into_the_engine_privately() -> None:
    package = Path(pikku_analyzer.__file__).parent
    for path in sorted(package.rglob("*.py")):
        if path.name == "engine.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "pikku_analyzer.engine":
                assert not [a.name for a in node.names if a.name.startswith("_")], path
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert not (node.value.id == "engine" and node.attr.startswith("_")), path
