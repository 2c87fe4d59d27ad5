"""``pikku-analyze`` without ``[tool.pikku]`` says which defaults it used (issue 10), on
stderr only (``--format json`` output stays a JSON document)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pikku_analyzer.cli import main
from pikku_analyzer.config import defaults_warning, load_config

FLOW = "from pikku_typing import pikku_func\n\n@pikku_func(name='a.b')\nasync def f(data: int) -> int:\n    return data\n"


@pytest.mark.parametrize("pyproject", [None, '[project]\nname = "x"\n'])
def test_no_tool_pikku_warns_with_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pyproject: str | None
) -> None:
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    (tmp_path / "flow.py").write_text(FLOW, encoding="utf-8")
    code = main([str(tmp_path), "--format", "json", "--no-cache"])
    out, err = capsys.readouterr()
    assert code == 0
    assert json.loads(out)["rpcs"][0]["name"] == "a.b"  # stdout is only the report
    warning = next(line for line in err.splitlines() if "warning" in line)
    assert 'src = ["."]' in warning and 'package = "pikku_gen"' in warning
    assert str(tmp_path / "pikku_gen") in warning
    assert ("no [tool.pikku] table" in warning) == (pyproject is not None)


def test_a_configured_project_gets_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "flow.py").write_text(FLOW, encoding="utf-8")
    assert defaults_warning(load_config(tmp_path)) is None
    assert main([str(tmp_path), "--no-cache"]) == 0
    assert "warning" not in capsys.readouterr().err
