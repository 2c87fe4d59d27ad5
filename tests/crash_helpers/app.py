"""A workflow app run in real processes to test crash recovery.

    python app.py STORE_URL COUNTS_FILE MODE start N        -> prints one run id per line
    python app.py STORE_URL COUNTS_FILE MODE drain          -> recover, then drain until every
                                                               run is settled (waits for sleeps)
    python app.py STORE_URL COUNTS_FILE MODE serve          -> recover, then serve until every
                                                               run is settled

Every step appends ``<run_id> <step>`` to COUNTS_FILE (O_APPEND + fsync) *before* it returns,
so the test can count side effects. ``PIKKU_EAGER=0`` turns eager remote steps off (every
remote step is a step job). ``PIKKU_CRASH`` makes the process die on purpose, once
(a marker file next to COUNTS_FILE remembers that it happened):

* ``in-step:<name>``      ``os._exit`` inside step <name>, after its side effect
* ``kill-in-step:<name>`` SIGKILL inside RPC step <name>, after its side effect
* ``after-store:<name>``  SIGKILL after step <name>'s result is stored, before the
                          orchestrator is woken (remote mode: the step worker's wake-up)
* ``after-code:<name>``   SIGKILL once the pass handed step <name>'s result to the store
                          (``complete_step_later``: SQLite and PostgreSQL hold it back until
                          the pass's next statement), before anything else is stored
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

from pikku_typing import Workflow, WorkflowRuntime, pikku_func, wire_workflow
from pikku_typing.models import RunStatus, StepStatus
from pikku_typing.runtime.queues.base import Job
from pikku_typing.runtime.queues.memory import InProcessQueue
from pikku_typing.state import open_store

STORE_URL, COUNTS, MODE, COMMAND = sys.argv[1:5]
ARGS = sys.argv[5:]
CRASH = os.environ.get("PIKKU_CRASH", "")
MARKER = Path(COUNTS + ".crashed")
SLEEP = os.environ.get("PIKKU_SLEEP", "300ms")
CLOCK_OFFSET = float(os.environ.get("PIKKU_CLOCK_OFFSET", "0"))
"""Seconds this process's clock (the runtime's ``steps.now`` and the queue's) is ahead of the
real one: a test ends a long sleep by starting the next process "later"."""


def _clock() -> float:
    return time.time() + CLOCK_OFFSET


if CLOCK_OFFSET:
    from datetime import UTC, datetime, timedelta

    from pikku_typing.runtime import steps as _steps

    _steps.now = lambda: datetime.now(UTC) + timedelta(seconds=CLOCK_OFFSET)  # type: ignore[assignment]


def record(run_id: str, step: str) -> None:
    fd = os.open(COUNTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{run_id} {step}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def maybe_crash(kind: str, step: str) -> None:
    if f"always-{kind}:{step}" == CRASH:  # a step that kills its process every time
        os._exit(17)
    if f"{kind}:{step}" == CRASH and not MARKER.exists():
        MARKER.write_text(str(os.getpid()))
        if kind == "in-step":
            os._exit(17)
        os.kill(os.getpid(), signal.SIGKILL)


class StepIn(TypedDict):
    run_id: str
    n: int


class Out(TypedDict):
    total: int
    run_id: str


def _rpc(step: str) -> Any:
    async def rpc(data: StepIn) -> int:
        record(data["run_id"], step)
        maybe_crash("in-step", step)
        maybe_crash("kill-in-step", step)
        return data["n"] * 10

    rpc.__name__ = f"step_{step}"
    return rpc


for _name in ("a", "b", "d"):
    pikku_func(name=f"crash.{_name}")(_rpc(_name))


async def crashflow(workflow: Workflow, data: int) -> Out:
    rid = workflow.run_id
    a = await workflow.do("a", "crash.a", {"run_id": rid, "n": 1})
    b = await workflow.do("b", "crash.b", {"run_id": rid, "n": 2})

    def c() -> int:
        record(rid, "c")
        maybe_crash("in-step", "c")
        return 300

    cv = await workflow.do("c", c)
    await workflow.sleep("nap", SLEEP)
    d = await workflow.do("d", "crash.d", {"run_id": rid, "n": 4})
    return {"total": a + b + cv + d + data, "run_id": rid}


wire_workflow(name="crashflow", func=crashflow, execution_mode=MODE)  # type: ignore[arg-type]


class CrashQueue(InProcessQueue):
    """Dies right after a step's result is stored, before the orchestrator hears of it."""

    def __init__(self, runtime_state: Any) -> None:
        super().__init__(clock=_clock)
        self.state = runtime_state

    async def enqueue(self, job: Job) -> None:
        if CRASH.startswith("after-store:") and job.kind == "orchestrate":
            step = await self.state.get_step(job.run_id, CRASH.split(":", 1)[1])
            if step is not None and step.status is StepStatus.SUCCEEDED:
                maybe_crash("after-store", CRASH.split(":", 1)[1])
        await super().enqueue(job)


async def all_settled(runtime: WorkflowRuntime) -> bool:
    runs = await runtime.state.list_runs(status=(RunStatus.RUNNING, RunStatus.SUSPENDED))
    return not runs


async def main() -> None:
    state = open_store(STORE_URL)
    runtime = WorkflowRuntime(
        state, CrashQueue(state), lease_seconds=120.0,
        eager_steps=os.environ.get("PIKKU_EAGER", "1") == "1",
    )
    # continued in the step worker, a pass is not queued: die where it would have been
    after_step = runtime.orchestrator._after_step

    async def crashing_after_step(workflow: str, run_id: str, step: Any) -> None:
        if f"after-store:{step.key}" == CRASH and step.status is StepStatus.SUCCEEDED:
            maybe_crash("after-store", step.key)
        await after_step(workflow, run_id, step)

    runtime.orchestrator._after_step = crashing_after_step  # type: ignore[method-assign]
    complete_later = state.complete_step_later

    async def crashing_complete_later(run_id: str, key: str, **kwargs: Any) -> bool:
        stored = await complete_later(run_id, key, **kwargs)
        maybe_crash("after-code", key)
        return stored

    state.complete_step_later = crashing_complete_later  # type: ignore[method-assign]
    try:
        if COMMAND == "start":
            client = runtime.client("crashflow")
            for i in range(int(ARGS[0])):
                handle = await client.start(i)
                print(handle.run_id, flush=True)
            return
        await runtime.recover()
        if COMMAND == "drain":
            for _ in range(3000):
                await runtime.drain()
                if await all_settled(runtime):
                    return
                await asyncio.sleep(0.02)
                if len(runtime.queue) == 0:  # type: ignore[arg-type]
                    await runtime.recover()  # another process may have left work for us
            raise SystemExit("runs did not settle")
        if COMMAND == "serve":
            stop = asyncio.Event()
            server = asyncio.create_task(runtime.serve(stop=stop, concurrency=2))
            for _ in range(3000):
                if await all_settled(runtime):
                    break
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
