"""Let a process exit when a psycopg connection pool was never closed.

psycopg_pool's maintenance workers run each task (e.g. opening a connection) under
``except (Exception, CancelledError)`` and then wait on their queue again. ``asyncio.run()``
cancels every task left when its main coroutine returns and waits for them: a worker that was
connecting at that moment swallows the cancellation and waits forever, so a script that
returns without closing its runtime hung about one time in eight (stderr: ``error connecting
in 'pikku-queue'``).

:func:`close_on_loop_shutdown` fixes that with public APIs only: a guard task per pool sleeps
until it is cancelled (by ``asyncio.run()``'s shutdown, or by :meth:`PoolGuard.close`) and
then closes the pool with ``pool.close()``, which queues a stop message each worker reads once
it is back at its queue, whether or not it swallowed its own cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

__all__ = ["PoolGuard", "close_on_loop_shutdown"]

log = logging.getLogger("pikku.runtime")

SHUTDOWN_CLOSE_TIMEOUT: Final = 2.0
"""Seconds a pool closed at loop shutdown waits for its workers (its ``close(timeout=)``)."""

_guards: set[asyncio.Task[None]] = set()
"""The running guard tasks (the event loop keeps only weak references to tasks)."""


class PoolGuard:
    """The guard of one pool: :meth:`close` closes the pool and ends the guard."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._close_timeout = SHUTDOWN_CLOSE_TIMEOUT
        self._task = asyncio.get_running_loop().create_task(
            self._guard(), name=f"pikku-pool-guard-{getattr(pool, 'name', '?')}"
        )
        _guards.add(self._task)
        self._task.add_done_callback(_guards.discard)

    async def _guard(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            try:
                await self.pool.close(timeout=self._close_timeout)
            except Exception as exc:  # closing is best effort: the process is going away
                log.debug("closing pool %s failed: %s", getattr(self.pool, "name", "?"), exc)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool, waiting up to ``timeout`` s for its workers (idempotent). From
        another event loop than the pool's, it does nothing (that loop's end closes it)."""
        task = self._task
        if task.done() or task.get_loop() is not asyncio.get_running_loop():
            return
        self._close_timeout = timeout
        task.cancel()
        await asyncio.wait({task})


def close_on_loop_shutdown(pool: Any) -> PoolGuard:
    """Start the guard of ``pool`` (an open or opening ``psycopg_pool.AsyncConnectionPool``)
    in the running event loop; close the pool through the returned guard."""
    return PoolGuard(pool)
