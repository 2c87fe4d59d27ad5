"""The plugin's version: mypy records it with its cache, so bump it on every change."""

from __future__ import annotations

from typing import Final

__version__: Final = "0.1.2"
