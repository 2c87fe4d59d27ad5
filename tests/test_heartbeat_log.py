"""A failed heartbeat is logged with its reason, never swallowed silently (issue 12.7)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from pikku_typing.runtime import steps


class FlakyStore:
    """``heartbeat_step`` fails once, then reports the claim as gone (the beat stops)."""

    def __init__(self) -> None:
        self.calls = 0

    async def heartbeat_step(self, run_id: str, key: str, *, token: str, lease_seconds: float) -> bool:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("the database went away")
        return False


async def test_a_failed_heartbeat_is_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sleep = asyncio.sleep

    async def no_wait(_seconds: float) -> None:  # no wall-clock wait between beats
        await real_sleep(0)

    loop = asyncio.get_running_loop()
    soon = SimpleNamespace(call_later=lambda _delay, callback: loop.call_soon(callback))
    fake = SimpleNamespace(
        sleep=no_wait, create_task=asyncio.create_task, CancelledError=asyncio.CancelledError,
        get_running_loop=lambda: soon,  # the first beat is due at once
    )
    monkeypatch.setattr(steps, "asyncio", fake)
    store: Any = FlakyStore()
    with caplog.at_level(logging.WARNING, logger="pikku.runtime"):
        async with steps.heartbeat(store, "run-1", "charge", "token", 30.0):
            for _ in range(20):
                if store.calls >= 2:
                    break
                await real_sleep(0)
    assert store.calls == 2  # the beat went on after the failure
    messages = [r.getMessage() for r in caplog.records if r.name == "pikku.runtime"]
    assert any(
        "heartbeat of step charge of run run-1 failed: ConnectionError: the database went away" in m
        for m in messages
    ), messages


async def test_an_attempt_shorter_than_its_first_beat_starts_no_task() -> None:
    """The beat starts when it is first due (a timer, no task per attempt): a short
    attempt creates no task and makes no store call (issue 16)."""
    store: Any = FlakyStore()
    before = asyncio.all_tasks()
    async with steps.heartbeat(store, "run-1", "quick", "token", 30.0):
        assert asyncio.all_tasks() == before
    assert asyncio.all_tasks() == before and store.calls == 0
