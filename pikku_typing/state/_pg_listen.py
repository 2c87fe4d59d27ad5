"""Settle notices from PostgreSQL: ``result()`` waits on LISTEN/NOTIFY instead of polling.

The store's ``update_run`` statement sends ``NOTIFY pikku_settled, '<run id>'`` when it sets a
run's status to completed, failed or cancelled (delivered at commit, to every process
listening on the database). :class:`SettleListener` holds ONE listening connection per store
and event loop, opened on the first wait, and wakes the waiters of the run named by each
notice. A notice is a hint: the waiter reads the run again. When the connection cannot be
opened or breaks, waiters fall back to sleeping their timeout (the caller's poll), and the
listener tries again at most every ``RETRY_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final

__all__ = ["CHANNEL", "SettleListener"]

log = logging.getLogger("pikku.runtime")

CHANNEL: Final = "pikku_settled"
RECENT: Final = 4096
"""Run ids settled since the listener started, kept so that a notice that arrives between a
caller's read of the run and its wait is not lost."""
RETRY_SECONDS: Final = 5.0


class SettleListener:
    def __init__(self, connect: Callable[[], Awaitable[Any]]) -> None:
        self._connect = connect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[bool] | None = None
        self._failed_at = 0.0
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()

    async def wait(self, run_id: str, timeout: float) -> None:
        """Return when ``run_id`` settles (a notice arrived, or arrived since the listener
        started and was not consumed yet) or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        if not await self._listening(timeout):
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            return
        if run_id in self._recent:
            del self._recent[run_id]
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(run_id, set())
        waiters.add(future)
        try:
            await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            pass
        finally:
            waiters.discard(future)
            if not waiters and self._waiters.get(run_id) is waiters:
                del self._waiters[run_id]

    async def _listening(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop: the old one is gone
            self._loop, self._task, self._ready = loop, None, None
            self._waiters.clear()
            self._recent.clear()
        if self._task is None:
            if time.monotonic() - self._failed_at < RETRY_SECONDS:
                return False
            self._ready = loop.create_future()
            self._task = loop.create_task(self._serve(self._ready), name="pikku-settle-listener")
        ready = self._ready
        assert ready is not None
        if not ready.done():
            try:
                await asyncio.wait_for(asyncio.shield(ready), timeout)
            except TimeoutError:
                return False
        return ready.result()

    async def _serve(self, ready: asyncio.Future[bool]) -> None:
        conn: Any = None
        try:
            conn = await self._connect()
            await conn.execute(f"LISTEN {CHANNEL}")
            ready.set_result(True)
            async for notice in conn.notifies():
                self._settled(notice.payload)
        except Exception as exc:  # the connection failed or broke: waiters fall back to polling
            log.debug("settle listener stopped: %s", exc)
            self._failed_at = time.monotonic()
        finally:
            if not ready.done():
                ready.set_result(False)
            if self._task is asyncio.current_task():
                self._task = None
            for waiters in self._waiters.values():  # wake everyone: they read their run again
                for future in waiters:
                    if not future.done():
                        future.set_result(None)
            if conn is not None:
                try:
                    await conn.close()
                except Exception as exc:  # closing is best effort
                    log.debug("closing the settle listener failed: %s", exc)

    def _settled(self, run_id: str) -> None:
        waiters = self._waiters.pop(run_id, None)
        if waiters:
            for future in waiters:
                if not future.done():
                    future.set_result(None)
            return
        self._recent[run_id] = None
        self._recent.move_to_end(run_id)
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    async def close(self) -> None:
        """Stop listening (idempotent); from another event loop it does nothing."""
        task = self._task
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            return
        task.cancel()
        await asyncio.wait({task})
