"""The web console of ``pikku-runs serve`` (SPEC section 10), the optional extra
``pikku-workflows[console]`` (Starlette + uvicorn).

Server-rendered HTML (Jinja2, autoescaped), no build step, no external asset: it works
offline. Importing this package does not import Starlette; :func:`missing_extra` tells
whether the extra is installed.
"""

from __future__ import annotations

import importlib.util
from typing import Final

__all__ = ["EXTRA_HINT", "missing_extra"]

EXTRA_HINT: Final = "pip install 'pikku-workflows[console]'"
_EXTRA_MODULES: Final = ("starlette", "uvicorn")


def missing_extra() -> str | None:
    """A one-line message naming the extra when Starlette or uvicorn is missing, else None."""
    missing = []
    for name in _EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules
            found = False
        if not found:
            missing.append(name)
    if not missing:
        return None
    return (
        f"the web console needs the 'console' extra ({', '.join(missing)} not installed): "
        f"{EXTRA_HINT}"
    )
