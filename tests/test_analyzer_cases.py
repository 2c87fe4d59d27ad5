"""Fixture projects under ``tests/analyzer_cases/``: each one's JSON report is compared with
its ``expected.json`` (regenerate with ``PIKKU_UPDATE_EXPECTED=1`` and review the diff).

A project is copied to a temporary directory first; there ``*.py.txt`` files become ``*.py``
(files that must not parse are kept as ``.py.txt`` so that linters of this repository skip
them)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from pikku_analyzer import analyze, load_config, render

CASES = Path(__file__).resolve().parent / "analyzer_cases"
PROJECTS = sorted(p.parent.name for p in CASES.glob("*/pyproject.toml"))


def copy_case(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(CASES / name, root, ignore=shutil.ignore_patterns("expected.json", "__pycache__"))
    for path in root.rglob("*.py.txt"):
        path.rename(path.with_suffix(""))
    return root


@pytest.mark.parametrize("name", PROJECTS)
def test_case_report(name: str, tmp_path: Path) -> None:
    root = copy_case(name, tmp_path)
    result = analyze(load_config(root), use_cache=False)
    actual = json.loads(render(result, "json"))
    expected_path = CASES / name / "expected.json"
    if os.environ.get("PIKKU_UPDATE_EXPECTED"):
        expected_path.write_text(json.dumps(actual, indent=2) + "\n", encoding="utf-8")
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    assert actual == expected
    assert not any(m == "shop" or m.startswith("shop.") for m in sys.modules)  # never imported


def test_shop_highlights(tmp_path: Path) -> None:
    result = analyze(load_config(copy_case("shop", tmp_path)), use_cache=False)
    data = result.data
    # the second wiring of "checkout" is reported too (DUPLICATE_WORKFLOW_NAME), after the first
    assert [w["name"] for w in data["workflows"]] == ["broken-mode", "checkout", "checkout"]
    checkout = data["workflows"][1]
    assert data["workflows"][2]["execution_mode"] == "remote" and data["workflows"][2]["middleware"] == []
    assert checkout["func"] == "shop.flows.checkout:checkout"
    assert checkout["middleware"] == ["shop.flows.checkout.audit"]
    assert checkout["input_type"] == "shop.types.Order"
    steps = {(s["step_name"], s["line"]): s for s in checkout["steps"]}
    assert steps[("charge", 22)]["rpc_name"] == "payments.charge"  # constant from another module
    assert steps[("refund", 36)]["type"] == "inline"  # step name constant from another module
    assert steps[("review", 25)]["duration"] == 3600.0
    assert steps[("<dynamic>", 18)]["in_loop"] is True  # from a helper receiving the workflow
    codes = [(d.code, d.file) for d in result.diagnostics]
    assert ("SYNTAX_ERROR", "src/shop/broken.py") in codes
    assert ("DYNAMIC_STEP_NAME", "src/shop/flows/checkout.py") not in codes  # suppressed
    assert all("legacy" not in f for _, f in codes)  # excluded
    assert result.exit_code == 1
