"""Static detection: per-file facts with the stdlib ``ast``."""

from pikku_analyzer.detect.extract import (
    DYNAMIC,
    FACTS_VERSION,
    extract_facts,
    find_suppressions,
    nondeterministic,
    passes_prefilter,
    prefilter_tokens,
)

__all__ = [
    "DYNAMIC",
    "FACTS_VERSION",
    "extract_facts",
    "find_suppressions",
    "nondeterministic",
    "passes_prefilter",
    "prefilter_tokens",
]
