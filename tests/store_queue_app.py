"""The app of ``tests/test_store_queue.py``: served by ``pikku-worker store_queue_app:runtime``
(store URL in ``SQ_STORE``, step log in ``SQ_LOG``) and used by its "web" processes; the
``*_worker`` functions run in ``spawn``-ed child processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any, TypedDict

from pikku_typing import Workflow, WorkflowRuntime, pikku_func, wire_event, wire_workflow
from pikku_typing.runtime.queues.base import Job
from pikku_typing.runtime.queues.store import StoreQueue
from pikku_typing.state import open_store


class Ping(TypedDict):
    n: int


@pikku_func(name="sq.mark")
def mark(data: str) -> str:
    """Append one line (one ``write`` on an ``O_APPEND`` file: lines never interleave)."""
    fd = os.open(os.environ["SQ_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{data} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return data


@pikku_func(name="sq.hang")
async def hang(data: str) -> str:
    """Log the start; hang while the marker file ``SQ_LOG.hang`` exists (to be killed)."""
    mark(f"start:{data}")
    while os.path.exists(os.environ["SQ_LOG"] + ".hang"):
        await asyncio.sleep(0.05)
    mark(f"end:{data}")
    return data


async def hanger(workflow: Workflow, data: None) -> str:
    return str(await workflow.do("hang", "sq.hang", workflow.run_id))


async def chain(workflow: Workflow, n: int) -> int:
    for i in range(n):
        await workflow.do("mark", "sq.mark", f"{workflow.run_id}:{i}")
    return n


async def waiter(workflow: Workflow, data: None) -> int:
    ping = await workflow.wait_for_event("wait", "sq.ping")
    return ping["n"]


def _fragile() -> str:
    if not os.path.exists(os.environ["SQ_LOG"] + ".ok"):
        raise RuntimeError("not yet")
    return "ok"


async def fragile(workflow: Workflow, data: None) -> str:
    return str(await workflow.do("try", _fragile, retries=0))


async def sleeper(workflow: Workflow, data: None) -> None:
    await workflow.sleep("nap", "1h")


wire_event(name="sq.ping", payload=Ping)
wire_workflow(name="sq_sleeper", func=sleeper, execution_mode="inline")
wire_workflow(name="sq_fragile", func=fragile, execution_mode="inline")
wire_workflow(name="sq_hanger", func=hanger, execution_mode="remote")
wire_workflow(name="sq_chain", func=chain, execution_mode="remote")
wire_workflow(name="sq_waiter", func=waiter, execution_mode="inline")

runtime = WorkflowRuntime(open_store(os.environ.get("SQ_STORE", "memory:")))


async def _web(argv: list[str]) -> Any:
    """What a web process does: ``start N STEPS`` / ``wait`` / ``send RUN N`` / ``cancel RUN``;
    prints the result as JSON. It never runs jobs itself (no ``result()``, no ``serve()``)."""
    action, *rest = argv
    try:
        if action == "start":
            count, steps = int(rest[0]), int(rest[1])
            client = runtime.client("sq_chain")
            return [(await client.start(steps)).run_id for _ in range(count)]
        if action == "wait":
            return (await runtime.client("sq_waiter").start(None)).run_id
        if action == "hang":
            return (await runtime.client("sq_hanger").start(None)).run_id
        if action == "fragile":
            return (await runtime.client("sq_fragile").start(None)).run_id
        if action == "sleep":
            return (await runtime.client("sq_sleeper").start(None)).run_id
        if action == "send":
            return await runtime.send_event(rest[0], "sq.ping", {"n": int(rest[1])})
        if action == "cancel":
            return await runtime.cancel_run(rest[0])
        raise SystemExit(f"unknown action {action!r}")
    finally:
        await runtime.close()


def claim_worker(path: str, barrier: Any, results: Any) -> None:
    """Claim jobs from the queue at ``path`` until none is left; report their run ids."""
    queue = StoreQueue(path)
    barrier.wait(60)
    got: list[str] = []
    while claimed := queue._claim(None, 3):
        for row_id, job, _ in claimed:
            got.append(job.run_id)
            queue._done(row_id)
    results.put(got)


def hold_claim_worker(path: str) -> None:
    """Claim one job, say so, then hang until killed."""
    queue = StoreQueue(path)
    claimed = queue._claim(None, 1)
    print(json.dumps([job.run_id for _, job, _ in claimed]), flush=True)
    asyncio.run(asyncio.sleep(3600))


def make_job(run_id: str, dedupe: str | None = None) -> Job:
    return Job(queue="q", kind="orchestrate", workflow="w", run_id=run_id, dedupe_key=dedupe)


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        hold_claim_worker(sys.argv[2])
    else:
        print(json.dumps(asyncio.run(_web(sys.argv[1:]))))
