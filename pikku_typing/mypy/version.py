"""The plugin's version: mypy records it with its cache, so bump it on every change."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

__version__: Final = "0.2.0"


def _source_digest() -> str:
    """Hash of the plugin's sources: caches refresh even if ``__version__`` was not bumped."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


PLUGIN_FINGERPRINT: Final = f"{__version__}:{_source_digest()}"
"""Reported with every module's cache data (``report_config_data``)."""
