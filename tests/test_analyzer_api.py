"""The public API of ``pikku_analyzer`` (pinned), and the fast path staying light."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pikku_analyzer
from pikku_analyzer.engine import print_progress_factory

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

PUBLIC = [
    "CODES",
    "FORMATS",
    "SPEC_CODES",
    "AnalysisResult",
    "Code",
    "ConfigError",
    "Diag",
    "PikkuConfig",
    "analyze",
    "load_config",
    "render",
]


def test_public_names() -> None:
    assert pikku_analyzer.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(pikku_analyzer, name) is not None


def test_analyze_and_report() -> None:
    result = pikku_analyzer.analyze(pikku_analyzer.load_config(EXAMPLES), use_cache=False)
    assert isinstance(result, pikku_analyzer.AnalysisResult)
    report = result.report
    assert type(report).__name__ == "AnalysisReport"
    assert report.workflow("onboarding") is not None
    assert result.exit_code == 0 and not result.has_errors
    assert pikku_analyzer.FORMATS == ("text", "json", "sarif", "mermaid")


def test_text_report_does_not_import_pydantic_or_user_code() -> None:
    code = (
        "import sys\n"
        "from pikku_analyzer.cli import main\n"
        f"rc = main([{str(EXAMPLES)!r}, '--no-generate', '--no-cache'])\n"
        "assert rc == 0, rc\n"
        "loaded = [m for m in ('pydantic', 'app', 'app.onboarding', 'libcst') if m in sys.modules]\n"
        "light = {'pikku_typing', 'pikku_typing._term', 'pikku_typing._log'}\n"
        "loaded += sorted(m for m in sys.modules if m.startswith('pikku_typing') and m not in light)\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # only the stdlib-only terminal helpers of pikku_typing (its __init__ is lazy): no pydantic
    assert "LOADED []" in done.stderr


def test_progress_bar_only_after_the_delay() -> None:
    stream = io.StringIO()
    quiet = print_progress_factory(stream, delay=3600)
    quiet(1, 10)
    assert stream.getvalue() == ""
    shown = print_progress_factory(stream, delay=0)
    shown(5, 10)
    shown(10, 10)
    text = stream.getvalue()
    assert "5/10 files" in text and text.endswith("10/10 files\n") and "\r" in text
