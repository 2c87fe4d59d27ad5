"""Eager remote steps (issue 16): a process that serves (``serve()``/``drain()``) a remote
step's queue with the default job handler runs a new remote step in the pass that reaches it
(claimed by its insert, like a local first attempt) instead of queueing a step job and an
orchestrator job. Off with ``WorkflowRuntime(eager_steps=False)``, for a queue this process
does not serve, for a queue with a custom worker, and beyond ``concurrency`` attempts at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn
from registry_support import isolated_registry
from test_runtime_crash import App

from pikku_typing import (
    InProcessQueue,
    RunStatus,
    StepCall,
    StepStatus,
    Workflow,
    WorkflowRuntime,
    WorkflowStateService,
    pikku_func,
    wire_workflow,
)
from pikku_typing.runtime.queues.base import Job, WorkflowQueue, orchestrator_queue, step_queue
from pikku_typing.runtime.services import EagerSlots
from pikku_typing.runtime.workers import run_step_job
from pikku_typing.state import open_store

CAP = 60.0
"""Seconds a wait may take before the test gives up (a cap on a condition, not a timing)."""


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    with isolated_registry():
        yield


BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("file", id="file-storequeue"),
    pytest.param("sqlite", id="sqlite-storequeue"),
    pytest.param("sqlite-inprocess", id="sqlite-inprocess"),
    pytest.param("postgres", id="postgres", marks=POSTGRES_MARKS),
    pytest.param("postgres-queue", id="postgres-pgqueue", marks=POSTGRES_MARKS),
]


class Backend:
    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.dsn: str | None = None
        if kind == "memory":
            url = "memory:"
        elif kind == "file":
            url = f"file:{tmp_path / 'state'}"
        elif kind.startswith("sqlite"):
            url = f"sqlite:{tmp_path / 'state.db'}"
        else:
            self.dsn = create_schema_dsn("pikku_eager_")
            url = f"postgres:{self.dsn}"
        self.store: WorkflowStateService = open_store(url)
        self.queue: WorkflowQueue | None = None
        if kind in ("sqlite-inprocess", "postgres"):
            self.queue = InProcessQueue()
        elif kind == "postgres-queue":
            from pikku_typing.runtime.queues.postgres import PostgresQueue

            assert self.dsn is not None
            self.queue = PostgresQueue(self.dsn, poll_interval=0.05)
        self.runtimes: list[WorkflowRuntime] = []

    def runtime(self, **kw: Any) -> WorkflowRuntime:
        rt = WorkflowRuntime(self.store, self.queue, **kw)
        self.runtimes.append(rt)
        return rt

    async def close(self) -> None:
        for rt in self.runtimes:
            await rt.close()
        if self.queue is not None:
            await self.queue.close()
        await self.store.close()
        if self.dsn is not None:
            drop_schema_dsn(self.dsn)


@pytest.fixture
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    made = Backend(request.param, tmp_path)
    try:
        yield made
    finally:
        await made.close()


class Counts:
    """What the runtime ran: passes and step jobs (the handlers of the two job kinds)."""

    def __init__(self, rt: WorkflowRuntime) -> None:
        self.passes = 0
        self.step_jobs = 0
        orchestrator = rt.orchestrator
        run_pass, run_step = orchestrator.run_pass, orchestrator.run_step

        async def counting_pass(run_id: str, fresh: Any = None) -> None:
            self.passes += 1
            await run_pass(run_id, fresh)

        async def counting_step(workflow: str, run_id: str, key: str) -> None:
            self.step_jobs += 1
            await run_step(workflow, run_id, key)

        orchestrator.run_pass = counting_pass  # type: ignore[method-assign]
        orchestrator.run_step = counting_step  # type: ignore[method-assign]


async def drain_until_settled(rt: WorkflowRuntime, run_id: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CAP
    while not (await rt.state.get_run(run_id)).status.is_settled:
        assert loop.time() < deadline, f"run {run_id} did not settle"
        await rt.drain()
        await asyncio.sleep(0.01)


def _wire_three(seen: list[StepCall]) -> None:
    @pikku_func(name="eager.add")
    def add(data: int) -> int:
        return data + 1

    async def mw(call: StepCall, call_next: Any) -> Any:
        seen.append(call)
        return await call_next()

    async def flow(workflow: Workflow, n: int) -> int:
        a = await workflow.do("a", "eager.add", n)
        b = await workflow.do("b", "eager.add", a)
        return int(await workflow.do("c", "eager.add", b))

    wire_workflow(name="eager3", func=flow, execution_mode="remote", middleware=[mw])


# ------------------------------------------------------------ on and off


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("eager", [True, False], ids=["eager", "queued"])
async def test_remote_steps_run_in_the_pass_when_eager(backend: Backend, eager: bool) -> None:
    seen: list[StepCall] = []
    _wire_three(seen)
    rt = backend.runtime(eager_steps=eager)
    counts = Counts(rt)
    handle = await rt.client("eager3").start(1)
    await drain_until_settled(rt, handle.run_id)
    assert await handle.result(timeout=CAP) == 4
    steps = await rt.client("eager3").get_steps(handle.run_id)
    assert all(s.status is StepStatus.SUCCEEDED and s.attempt_count == 1 for s in steps.values())
    # the middleware sees every attempt either way
    assert [(c.step_key, c.attempt, c.rpc_name) for c in seen] == [
        ("a", 1, "eager.add"), ("b", 1, "eager.add"), ("c", 1, "eager.add")
    ]
    owners = {s.attempts[0].owner.token for s in steps.values() if s.attempts[0].owner}
    if eager:  # one pass, no step job: the pass's owner held every first attempt
        assert (counts.passes, counts.step_jobs) == (1, 0)
        assert len(owners) == 1
    else:  # a step job per step, and a pass after each
        assert counts.step_jobs == 3 and counts.passes >= 3
        assert len(owners) == 3


@pytest.mark.parametrize("backend", BACKENDS[:1], indirect=True)
async def test_a_step_queue_served_elsewhere_stays_queued(backend: Backend) -> None:
    seen: list[StepCall] = []
    _wire_three(seen)
    rt = backend.runtime()
    counts = Counts(rt)
    handle = await rt.client("eager3").start(1)
    await rt.drain(queues=[orchestrator_queue("eager3")])  # this process: passes only
    assert counts.step_jobs == 0 and seen == []
    run = await rt.state.get_run(handle.run_id)
    assert run.status is RunStatus.SUSPENDED
    step = await rt.state.get_step(handle.run_id, "a")
    assert step is not None and step.status is StepStatus.SCHEDULED
    # a worker that serves the step queue runs it; the next steps are eager there
    await drain_until_settled(rt, handle.run_id)
    assert await handle.result(timeout=CAP) == 4
    assert counts.step_jobs == 1


@pytest.mark.parametrize("backend", BACKENDS[:1], indirect=True)
@pytest.mark.parametrize("generated", [True, False], ids=["generated-worker", "custom-worker"])
async def test_a_custom_step_worker_keeps_its_queue(backend: Backend, generated: bool) -> None:
    """A ``workers`` entry that only dispatches (what pikku-analyze generates) keeps eager
    dispatch; any other custom worker gets every job of its queue."""
    seen: list[StepCall] = []
    _wire_three(seen)
    custom: list[str | None] = []

    async def generated_worker(runtime: WorkflowRuntime, job: Job) -> None:
        await run_step_job(runtime, job)

    async def custom_worker(runtime: WorkflowRuntime, job: Job) -> None:
        custom.append(job.step_key)
        await run_step_job(runtime, job)

    worker = generated_worker if generated else custom_worker
    rt = backend.runtime(workers={step_queue("eager3", "eager.add"): worker})
    counts = Counts(rt)
    handle = await rt.client("eager3").start(1)
    await drain_until_settled(rt, handle.run_id)
    assert await handle.result(timeout=CAP) == 4
    if generated:
        assert counts.step_jobs == 0
    else:
        assert custom == ["a", "b", "c"] and counts.step_jobs == 3


# ------------------------------------------------------------ the bound


@pytest.mark.parametrize("backend", [BACKENDS[0], BACKENDS[2]], indirect=True)
async def test_at_most_concurrency_eager_attempts_at_a_time(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workflow gathering 10 steps with ``concurrency=3``: 3 run in the pass, 7 go through
    the queue (the other workers' share). Each first attempt waits until all 10 steps were
    dispatched, so the eager ones surely overlap."""
    decided: list[bool] = []
    all_decided = asyncio.Event()
    running = 0
    peak = 0

    @pikku_func(name="eager.slow")
    async def slow(data: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.wait_for(all_decided.wait(), CAP)
        finally:
            running -= 1
        return data

    async def flow(workflow: Workflow, n: int) -> int:
        values = await asyncio.gather(*(workflow.do("s", "eager.slow", i) for i in range(n)))
        return sum(values)

    wire_workflow(name="eager_fan", func=flow, execution_mode="remote")
    rt = backend.runtime(concurrency=3)
    take = EagerSlots.take

    def counting_take(slots: EagerSlots, queue: str) -> bool:
        got = take(slots, queue)
        decided.append(got)
        if len(decided) == 10:
            all_decided.set()
        return got

    monkeypatch.setattr(EagerSlots, "take", counting_take)
    counts = Counts(rt)
    handle = await rt.client("eager_fan").start(10)
    await drain_until_settled(rt, handle.run_id)
    assert await handle.result(timeout=CAP) == 45
    assert decided.count(True) == 3 and decided.count(False) == 7
    assert peak == 3  # drain runs one step job at a time: the 3 are the eager ones
    assert counts.step_jobs == 7
    assert rt.services.eager.running == 0


# ------------------------------------------------------------ failures


@pytest.mark.parametrize("backend", BACKENDS[:1], indirect=True)
async def test_a_failed_eager_attempt_is_retried_through_the_queue(backend: Backend) -> None:
    calls: list[int] = []

    @pikku_func(name="eager.flaky")
    def flaky(data: int) -> int:
        calls.append(data)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails")
        return data * 2

    async def flow(workflow: Workflow, n: int) -> int:
        return int(await workflow.do("f", "eager.flaky", n, retry_delay=0))

    wire_workflow(name="eager_retry", func=flow, execution_mode="remote")
    rt = backend.runtime()
    counts = Counts(rt)
    handle = await rt.client("eager_retry").start(5)
    await drain_until_settled(rt, handle.run_id)
    assert await handle.result(timeout=CAP) == 10
    step = await rt.state.get_step(handle.run_id, "f")
    assert step is not None and step.attempt_count == 2
    assert step.attempts[0].error is not None and step.attempts[0].error.type == "RuntimeError"
    assert counts.step_jobs == 1  # attempt 2 was a step job


def test_a_process_killed_mid_eager_step_is_counted_and_another_finishes(
    tmp_path: Path,
) -> None:
    """SIGKILL inside an eager step (after its side effect): the next process abandons the
    dead holder's attempt at once (it is counted), runs the step again through the queue,
    and completes the run."""
    app = App(tmp_path, "sqlite", "remote")
    [run_id] = app.start(1)
    app.run("drain", crash="kill-in-step:b", expect=-signal.SIGKILL)
    assert app.counts_by_run()[run_id] == {"a": 1, "b": 1}
    app.run("drain")
    counts = app.counts_by_run()[run_id]
    assert counts["a"] == 1 and counts["b"] == 2 and counts["c"] == 1 and counts["d"] == 1
    app.assert_completed([run_id])
    [(_, steps)] = app.runs()
    b = steps["b"]
    assert b.attempt_count == 2
    assert b.attempts[0].error is not None and b.attempts[0].error.type == "AbandonedAttempt"
    # eager: the killed pass held the first attempts of a and b itself (no step job)
    a_owner, b_owner = steps["a"].attempts[0].owner, b.attempts[0].owner
    assert a_owner is not None and b_owner is not None and a_owner.token == b_owner.token
    assert b_owner.pid != os.getpid()


# ------------------------------------------------ the queued path: continue in the step worker


class RecordingQueue(InProcessQueue):
    def __init__(self) -> None:
        super().__init__()
        self.kinds: list[str] = []

    async def enqueue(self, job: Job) -> None:
        self.kinds.append(job.kind)
        await super().enqueue(job)


@pytest.mark.parametrize("backend", BACKENDS[:1], indirect=True)
async def test_a_step_job_continues_the_live_pass_instead_of_queueing_it(
    backend: Backend,
) -> None:
    """Eager off: each step is a step job; the job that stored the result holds the run's
    live continuation and serves the orchestrator queue, so it goes on with the pass itself:
    one orchestrator job (the start's) instead of one per step, and the stored step is not
    read again."""
    seen: list[StepCall] = []
    _wire_three(seen)
    queue = RecordingQueue()
    rt = WorkflowRuntime(backend.store, queue, eager_steps=False)
    backend.runtimes.append(rt)
    counts = Counts(rt)
    reads: list[str] = []
    get_step = backend.store.get_step

    async def counting_get_step(run_id: str, key: str) -> Any:
        reads.append(key)
        return await get_step(run_id, key)

    backend.store.get_step = counting_get_step  # type: ignore[method-assign]
    handle = await rt.client("eager3").start(1)
    await drain_until_settled(rt, handle.run_id)
    assert await handle.result(timeout=CAP) == 4
    assert queue.kinds == ["orchestrate", "step", "step", "step"]
    assert counts.step_jobs == 3 and counts.passes == 4  # 3 passes ran inside the step jobs
    # each step read once, by its step job (get_step_and_run); the pass did not read it again
    assert reads == ["a", "b", "c"]


@pytest.mark.parametrize("backend", BACKENDS[:1], indirect=True)
async def test_a_step_job_queues_the_pass_when_the_orchestrator_queue_is_served_elsewhere(
    backend: Backend,
) -> None:
    seen: list[StepCall] = []
    _wire_three(seen)
    queue = RecordingQueue()
    rt = WorkflowRuntime(backend.store, queue, eager_steps=False)
    backend.runtimes.append(rt)
    handle = await rt.client("eager3").start(1)
    # the first pass parks on step a: its continuation is live here
    await rt.drain(queues=[orchestrator_queue("eager3")])
    assert queue.kinds == ["orchestrate", "step"]
    await rt.drain(queues=[step_queue("eager3", "eager.add")])  # a step worker only
    assert queue.kinds == ["orchestrate", "step", "orchestrate"]
    await drain_until_settled(rt, handle.run_id)
    assert await handle.result(timeout=CAP) == 4


@pytest.mark.parametrize("backend", BACKENDS[:1], indirect=True)
async def test_a_pass_resuming_its_live_continuation_does_not_read_the_run(
    backend: Backend,
) -> None:
    """Resuming a live continuation marks the run running with one conditional update (the
    updated run tells whether the continuation is still the run's): no read of the run. Only
    the first pass, which starts the function, reads it."""
    seen: list[StepCall] = []
    _wire_three(seen)
    rt = backend.runtime(eager_steps=False)
    in_pass = False
    reads_in_passes = 0
    orchestrator = rt.orchestrator
    run_pass = orchestrator.run_pass

    async def flagged_pass(run_id: str, fresh: Any = None) -> None:
        nonlocal in_pass
        in_pass = True
        try:
            await run_pass(run_id, fresh)
        finally:
            in_pass = False

    get_run = backend.store.get_run

    async def counting_get_run(run_id: str) -> Any:
        nonlocal reads_in_passes
        reads_in_passes += in_pass
        return await get_run(run_id)

    orchestrator.run_pass = flagged_pass  # type: ignore[method-assign]
    backend.store.get_run = counting_get_run  # type: ignore[method-assign]
    counts = Counts(rt)
    handle = await rt.client("eager3").start(1)
    await drain_until_settled(rt, handle.run_id)
    assert await handle.result(timeout=CAP) == 4
    assert counts.passes == 4
    assert reads_in_passes == 1
