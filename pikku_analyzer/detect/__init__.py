"""Static detection: per-file facts with the stdlib ``ast``."""

from pikku_analyzer.detect.extract import (
    extract_facts,
    find_suppressions,
    nondeterministic,
    passes_prefilter,
    prefilter_tokens,
)
from pikku_analyzer.facts import DYNAMIC, FACTS_VERSION

__all__ = [
    "DYNAMIC",
    "FACTS_VERSION",
    "extract_facts",
    "find_suppressions",
    "nondeterministic",
    "passes_prefilter",
    "prefilter_tokens",
]
