"""The global registry (``pikku_typing.wiring.registry``) kept apart per test.

``wire_workflow``/``@pikku_func`` register into one process-wide registry, and test modules
register at import time. A test that clears it must give it back whole (workflows, RPCs and
events), or a later test of an already-imported module in the same worker finds its
workflows gone ("registered: none"), depending on how xdist spread the tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pikku_typing.wiring import Registry, registry

__all__ = ["isolated_registry"]


@contextlib.contextmanager
def isolated_registry(*, clear: bool = True) -> Iterator[Registry]:
    """Inside: the registry, emptied (unless ``clear=False``: as it was, to add to).
    After: exactly what it held before, whatever the block registered or removed."""
    saved = dict(registry.workflows), dict(registry.rpcs), dict(registry.events)
    if clear:
        registry.clear()
    try:
        yield registry
    finally:
        registry.clear()
        registry.workflows.update(saved[0])
        registry.rpcs.update(saved[1])
        registry.events.update(saved[2])
