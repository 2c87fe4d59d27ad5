"""pikku_analyzer: the static analyzer behind ``pikku-analyze``.

The public API (pinned by ``tests/test_analyzer_api.py``)::

    from pikku_analyzer import analyze, load_config

    result = analyze(load_config("examples"))
    result.report          # pikku_typing.meta.AnalysisReport (the JSON report)
    result.diagnostics     # list[Diag], sorted by file, line, column, code
    result.exit_code       # 1 when there is an error diagnostic

Importing this package does not import pydantic; ``result.report`` does.

Design (issue 3, speed): files are pre-filtered by substring (``wire_workflow``,
``pikku_func``, ``pikku_typing``, the generated package's name); the candidates are parsed
with the stdlib ``ast`` (about 20x faster than libcst with position metadata), which
locates, positions and resolves everything; suppression comments are read with
``tokenize`` only in files that contain ``pikku: ignore``; libcst is used only where
concrete syntax matters, to rewrite files format-preserving (``--fix``, ``--add-ignore``).
Per-file facts are cached by content hash under ``<root>/.pikku/cache/`` and parsed in
worker processes when many files miss the cache. Modules that do not pass the pre-filter
cannot hold a workflow, an RPC or an event: by default they are not parsed at all (SPEC
section 4 allows skipping them), only for facts on demand when a ``func=`` or a constant is
imported from them. ``check_syntax=True`` (``--check-syntax``) syntax-checks them too (a
file that does not parse is reported), in the same worker processes; the content digests of
those known to parse are kept in one index file, ``<root>/.pikku/cache/syntax-ok.bin``, so a
warm run checks nothing again. A candidate that does not parse is always ``SYNTAX_ERROR``.
``--all-files`` (``prefilter=False``) runs the full detection on every file instead.
"""

from pikku_analyzer.checks import Diag
from pikku_analyzer.codes import CODES, SPEC_CODES, Code
from pikku_analyzer.config import ConfigError, PikkuConfig, load_config
from pikku_analyzer.engine import AnalysisResult, analyze
from pikku_analyzer.report import FORMATS, render

__all__ = [
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
