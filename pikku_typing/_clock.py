"""The one clock of the runtime and the stores: ``now()``.

Production code reads the wall clock (``datetime.now(UTC)``). A test environment
(:class:`pikku_typing.testing.WorkflowTestEnv`) installs a fake clock for the work it drives
with :func:`using`: the override is a context variable, so it reaches every task created
while it is set (orchestrator passes, step jobs) and nothing else: two environments never
see each other's time, and code outside them keeps the real clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

Clock = Callable[[], datetime]

_override: ContextVar[Clock | None] = ContextVar("pikku_clock", default=None)


def now() -> datetime:
    """The current time (timezone-aware, UTC): the installed fake clock, else the wall clock."""
    clock = _override.get()
    return datetime.now(UTC) if clock is None else clock()


@contextlib.contextmanager
def using(clock: Clock) -> Iterator[None]:
    """Read time from ``clock`` in this context (and in the tasks created inside it)."""
    token = _override.set(clock)
    try:
        yield
    finally:
        _override.reset(token)


__all__ = ["Clock", "now", "using"]
