"""Report renderers: text, json, sarif, mermaid."""

from __future__ import annotations

from typing import Final

from pikku_analyzer.engine import AnalysisResult

FORMATS: Final = ("text", "json", "sarif", "mermaid")


def render(result: AnalysisResult, fmt: str, *, color: bool = False) -> str:
    """The report of ``result`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "text":
        from pikku_analyzer.report.text import render_text

        return render_text(result, color=color)
    if fmt == "json":
        from pikku_analyzer.report.json import render_json

        return render_json(result)
    if fmt == "sarif":
        from pikku_analyzer.report.sarif import render_sarif

        return render_sarif(result)
    if fmt == "mermaid":
        from pikku_analyzer.report.mermaid import render_mermaid

        return render_mermaid(result)
    raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


__all__ = ["FORMATS", "render"]
