"""Events and child runs in real processes, to test crash recovery (``tests/test_events_crash.py``).

    python events_app.py STORE_URL COUNTS_FILE MODE start WORKFLOW INPUT -> prints the run id
    python events_app.py STORE_URL COUNTS_FILE MODE send RUN_ID N        -> sends tick 1..N
    python events_app.py STORE_URL COUNTS_FILE MODE drain                -> recover, then drain
                                                                            until every run settled
    python events_app.py STORE_URL COUNTS_FILE MODE serve                -> recover, then serve
                                                                            until killed (or settled)

Workflows: ``pay`` (a step, then waits for two ``tick`` events), ``parent`` (a step, then
``run_child("kid", "kid", n)``), ``kid`` (step ``k1``, a sleep of ``PIKKU_SLEEP``, step ``k2``).
Every step appends ``<run_id> <step>`` to COUNTS_FILE (O_APPEND + fsync) before it returns.
``PIKKU_CRASH``:

* ``after-consume``  SIGKILL right after ``consume_event`` handed an event to a step (before
                     the step's result is recorded), once (a marker file remembers it)
* ``in-step:<name>`` ``os._exit(17)`` inside step <name>, after its side effect, once
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

from pikku_typing import Workflow, WorkflowRuntime, wire_event, wire_workflow
from pikku_typing.models import RunStatus
from pikku_typing.runtime import steps as _steps
from pikku_typing.runtime.queues.memory import InProcessQueue
from pikku_typing.state import open_store

STORE_URL, COUNTS, MODE, COMMAND = sys.argv[1:5]
ARGS = sys.argv[5:]
CRASH = os.environ.get("PIKKU_CRASH", "")
MARKER = Path(COUNTS + ".crashed")
SLEEP = os.environ.get("PIKKU_SLEEP", "1h")
CLOCK_OFFSET = float(os.environ.get("PIKKU_CLOCK_OFFSET", "0"))
"""Seconds this process's clock is ahead of the real one (a test ends a long sleep by
starting the next process "later")."""

if CLOCK_OFFSET:
    _steps.now = lambda: datetime.now(UTC) + timedelta(seconds=CLOCK_OFFSET)  # type: ignore[assignment]


def record(run_id: str, step: str) -> None:
    fd = os.open(COUNTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{run_id} {step}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def crash_once(what: str, hard: bool) -> None:
    if what == CRASH and not MARKER.exists():
        MARKER.write_text(str(os.getpid()))
        if hard:
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(17)


class Tick(TypedDict):
    n: int


wire_event(name="tick", payload=Tick)


def side_effect(workflow: Workflow, step: str, value: int) -> Any:
    def run() -> int:
        record(workflow.run_id, step)
        crash_once(f"in-step:{step}", hard=False)
        return value

    return run


async def pay(workflow: Workflow, data: int) -> list[int]:
    await workflow.do("before", side_effect(workflow, "before", 1))
    first = await workflow.wait_for_event("first", "tick")
    second = await workflow.wait_for_event("second", "tick", timeout="30d")
    assert second is not None
    return [first["n"], second["n"]]


async def parent(workflow: Workflow, data: int) -> int:
    base = await workflow.do("p", side_effect(workflow, "p", 100))
    out = await workflow.run_child("kid", "kid", data)
    return int(base) + int(out)


async def kid(workflow: Workflow, data: int) -> int:
    a = await workflow.do("k1", side_effect(workflow, "k1", data))
    await workflow.sleep("nap", SLEEP)
    b = await workflow.do("k2", side_effect(workflow, "k2", data * 10))
    return int(a) + int(b)


for _name, _func in (("pay", pay), ("parent", parent), ("kid", kid)):
    wire_workflow(name=_name, func=_func, execution_mode=MODE)  # type: ignore[arg-type]


def _clock() -> float:
    return time.time() + CLOCK_OFFSET


async def all_settled(runtime: WorkflowRuntime) -> bool:
    return not await runtime.state.list_runs(status=(RunStatus.RUNNING, RunStatus.SUSPENDED))


async def main() -> None:
    state = open_store(STORE_URL)
    if CRASH == "after-consume":
        consume = state.consume_event

        async def consume_then_die(run_id: str, name: str, step_key: str) -> Any:
            event = await consume(run_id, name, step_key)
            if event is not None:
                crash_once("after-consume", hard=True)
            return event

        state.consume_event = consume_then_die  # type: ignore[method-assign]
    runtime = WorkflowRuntime(state, InProcessQueue(clock=_clock), lease_seconds=120.0)
    try:
        if COMMAND == "start":
            handle = await runtime.client(ARGS[0]).start(int(ARGS[1]))
            print(handle.run_id, flush=True)
            return
        if COMMAND == "send":
            for n in range(1, int(ARGS[1]) + 1):
                assert await runtime.send_event(ARGS[0], "tick", {"n": n})
            return
        await runtime.recover()
        if COMMAND == "drain":
            for _ in range(3000):
                await runtime.drain()
                if await all_settled(runtime):
                    return
                await asyncio.sleep(0.02)
                await runtime.recover()
            raise SystemExit("runs did not settle")
        if COMMAND == "serve":
            stop = asyncio.Event()
            server = asyncio.create_task(runtime.serve(stop=stop, concurrency=2))
            while not await all_settled(runtime):
                await asyncio.sleep(0.02)
            stop.set()
            await server
            return
        raise SystemExit(f"unknown command {COMMAND}")
    finally:
        await runtime.close()
        await state.close()


if __name__ == "__main__":
    asyncio.run(main())
