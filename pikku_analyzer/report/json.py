"""``--format json``: ``AnalysisReport`` dumped (SPEC section 4)."""

from __future__ import annotations

import json

from pikku_analyzer.engine import AnalysisResult


def render_json(result: AnalysisResult) -> str:
    """The JSON report: the pydantic ``AnalysisReport`` validated and dumped, two-space indent."""
    data = result.report.model_dump(mode="json")
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
