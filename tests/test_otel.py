"""OpenTelemetry (SPEC section 10, extra ``pikku-workflows[otel]``): spans per run pass and
step attempt with the pikku attributes, errors recorded, the trace context carried from
``client.start`` into the run and across ``PostgresQueue`` into a remote step worker; nothing
imported and nothing done when OpenTelemetry is absent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel test needs opentelemetry-sdk (dev extra)")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode
from postgres_support import create_schema_dsn, drop_schema_dsn, requires_postgres
from registry_support import isolated_registry

from pikku_typing import (
    InMemoryWorkflowStateService,
    InProcessQueue,
    Workflow,
    WorkflowRuntime,
    pikku_func,
    wire_workflow,
)
from pikku_typing.runtime.queues.base import Job

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

_EXPORTER = InMemorySpanExporter()


def _install_provider() -> None:
    """One SDK provider for the process (OpenTelemetry allows setting it once)."""
    current = trace.get_tracer_provider()
    if not getattr(current, "_pikku_test", False):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        provider._pikku_test = True  # type: ignore[attr-defined]
        trace.set_tracer_provider(provider)


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    _install_provider()
    _EXPORTER.clear()
    with isolated_registry():
        yield _EXPORTER


def _named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


@pytest.mark.parametrize("mode", ["inline", "remote"])
async def test_spans_per_pass_and_attempt_in_the_trace_of_client_start(
    spans: InMemorySpanExporter, mode: str
) -> None:
    calls = 0

    @pikku_func(name="otel.flaky")
    def flaky(data: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first time")
        return data + 1

    async def flow(workflow: Workflow, n: int) -> int:
        return int(await workflow.do("inc", "otel.flaky", n, retries=2, retry_delay=0))

    wire_workflow(name="otel_flow", func=flow, execution_mode=mode)  # type: ignore[arg-type]
    tracer = trace.get_tracer("test")
    async with WorkflowRuntime(InMemoryWorkflowStateService(), InProcessQueue()) as rt:
        with tracer.start_as_current_span("http request") as request:
            handle = await rt.client("otel_flow").start(41)
        assert await handle.result(timeout=30) == 42
    trace_id = request.get_span_context().trace_id

    passes = _named(spans, "pikku.run_pass")
    assert passes, spans.get_finished_spans()
    assert all(_attrs(p) == {"pikku.workflow": "otel_flow", "pikku.run_id": handle.run_id}
               for p in passes)
    assert all(p.context is not None and p.context.trace_id == trace_id for p in passes)
    first = min(passes, key=lambda p: p.start_time or 0)
    assert first.parent is not None and first.parent.span_id == request.get_span_context().span_id

    attempts = sorted(_named(spans, "pikku.step_attempt"), key=lambda s: _attrs(s)["pikku.attempt"])
    assert [_attrs(a)["pikku.attempt"] for a in attempts] == [1, 2]
    for a in attempts:
        assert a.context is not None and a.context.trace_id == trace_id
        assert _attrs(a)["pikku.step"] == "inc" and _attrs(a)["pikku.rpc"] == "otel.flaky"
        assert _attrs(a)["pikku.run_id"] == handle.run_id
        assert _attrs(a)["pikku.workflow"] == "otel_flow"
    failed, succeeded = attempts
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert failed.events[0].attributes is not None
    assert failed.events[0].attributes["exception.type"] == "ValueError"
    assert succeeded.status.status_code is not StatusCode.ERROR
    pass_ids = {p.context.span_id for p in passes if p.context is not None}
    if mode == "remote":  # each attempt ran in a step job queued by a pass
        assert all(a.parent is not None and a.parent.span_id in pass_ids for a in attempts)


async def test_a_resumed_continuation_parents_its_steps_to_the_resuming_pass(
    spans: InMemorySpanExporter,
) -> None:
    @pikku_func(name="otel.triple")
    def triple(data: int) -> int:
        return data * 3

    async def flow(workflow: Workflow, n: int) -> int:
        tripled = int(await workflow.do("remote", "otel.triple", n))  # parks the pass
        return int(await workflow.do("local", lambda: tripled + 1))  # runs in the next pass

    wire_workflow(name="otel_resume", func=flow, execution_mode="remote")
    # eager off: the remote step parks the pass (eager, it would run in the first pass)
    async with WorkflowRuntime(
        InMemoryWorkflowStateService(), InProcessQueue(), eager_steps=False
    ) as rt:
        handle = await rt.client("otel_resume").start(2)
        assert await handle.result(timeout=30) == 7
    passes = sorted(_named(spans, "pikku.run_pass"), key=lambda p: p.start_time or 0)
    assert len(passes) >= 2
    (local,) = [a for a in _named(spans, "pikku.step_attempt") if _attrs(a)["pikku.step"] == "local"]
    assert local.parent is not None and passes[0].context is not None
    assert local.parent.span_id != passes[0].context.span_id  # not the pass that made the task
    assert local.parent.span_id in {p.context.span_id for p in passes[1:] if p.context is not None}


async def test_a_failed_run_marks_its_pass_span_as_an_error(spans: InMemorySpanExporter) -> None:
    def broken() -> int:
        raise RuntimeError("always")

    async def flow(workflow: Workflow, n: int) -> int:
        return int(await workflow.do("crash", broken, retries=0))

    wire_workflow(name="otel_bad", func=flow)
    async with WorkflowRuntime(InMemoryWorkflowStateService(), InProcessQueue()) as rt:
        handle = await rt.client("otel_bad").start(1)
        with pytest.raises(Exception, match="always"):
            await handle.result(timeout=30)
    (attempt,) = _named(spans, "pikku.step_attempt")
    assert attempt.status.status_code is StatusCode.ERROR
    last_pass = max(_named(spans, "pikku.run_pass"), key=lambda p: p.end_time or 0)
    assert last_pass.status.status_code is StatusCode.ERROR
    assert "RuntimeError: always" in (last_pass.status.description or "")


def test_jobs_carry_the_current_trace_context() -> None:
    assert Job(queue="q", kind="step", workflow="w", run_id="r").trace is None  # no span
    with trace.get_tracer("test").start_as_current_span("outer") as outer:
        job = Job(queue="q", kind="step", workflow="w", run_id="r")
    assert job.trace is not None
    carrier = dict(job.trace)
    assert format(outer.get_span_context().trace_id, "032x") in carrier["traceparent"]
    assert Job.model_validate_json(job.model_dump_json()) == job  # survives a queue


NO_OTEL = textwrap.dedent(
    """
    import asyncio, sys

    class Block:  # opentelemetry "not installed"
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"No module named {name!r} (blocked)")
            return None

    if sys.argv[1] == "blocked":
        sys.meta_path.insert(0, Block())

    from pikku_typing import InMemoryWorkflowStateService, Workflow, WorkflowRuntime, wire_workflow
    from pikku_typing.runtime.queues.base import Job

    async def flow(workflow: Workflow, n: int) -> int:
        return int(await workflow.do("inc", lambda: n + 1))

    wire_workflow(name="plain", func=flow)

    async def main() -> None:
        async with WorkflowRuntime(InMemoryWorkflowStateService()) as rt:
            handle = await rt.client("plain").start(1)
            assert await handle.result(timeout=30) == 2

    asyncio.run(main())
    assert Job(queue="q", kind="step", workflow="w", run_id="r").trace is None
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
    """
)


@pytest.mark.parametrize("how", ["blocked", "installed"])
def test_without_opentelemetry_nothing_is_imported(how: str) -> None:
    """Not installed (imports blocked), or installed but not used by the application: runs
    work and pikku never imports OpenTelemetry."""
    proc = subprocess.run(
        [sys.executable, "-c", NO_OTEL, how], env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@requires_postgres
@pytest.mark.postgres
def test_the_trace_crosses_postgres_queue_into_a_remote_step_worker(tmp_path: Path) -> None:
    """This process runs the orchestrator passes; a ``pikku-worker`` process serving only the
    step queue runs the step: its attempt span is a child of the pass span of this process,
    in the trace of the span around ``client.start``."""
    import otel_app

    from pikku_typing import PostgresQueue, PostgresWorkflowStateService
    from pikku_typing.runtime.queues.base import orchestrator_queue, step_queue

    dsn = create_schema_dsn()
    span_file = tmp_path / "spans.jsonl"
    env = {**os.environ, "OTEL_TEST_DSN": dsn, "OTEL_TEST_SPANS": str(span_file),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    worker: subprocess.Popen[str] | None = None
    try:
        otel_app.register()

        async def main() -> tuple[str, Any]:
            nonlocal worker
            runtime = WorkflowRuntime(PostgresWorkflowStateService(dsn),
                                      PostgresQueue(dsn, poll_interval=0.1))
            await runtime.queue.migrate()  # type: ignore[attr-defined]
            await runtime.state.migrate()  # type: ignore[attr-defined]
            worker = subprocess.Popen(
                [sys.executable, "-c", "from pikku_typing.runtime.worker_cli import main; "
                 "raise SystemExit(main())", "otel_app:runtime",
                 "--queue", step_queue("otel_remote", "otel.double")],
                cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            stop = asyncio.Event()
            passes = asyncio.create_task(
                runtime.serve(stop=stop, queues=[orchestrator_queue("otel_remote")])
            )
            try:
                with trace.get_tracer("test").start_as_current_span("http request") as request:
                    handle = await runtime.client("otel_remote").start(21)
                assert await handle.result(timeout=120) == 42
            finally:
                stop.set()
                await passes
                await runtime.close()
                await runtime.queue.close()
                await runtime.state.close()
            return handle.run_id, request.get_span_context()

        run_id, request = asyncio.run(main())
        assert worker is not None
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err[-3000:]
        deadline = time.monotonic() + 30
        while not span_file.exists() and time.monotonic() < deadline:  # pragma: no cover
            time.sleep(0.05)
        remote = [json.loads(line) for line in span_file.read_text().splitlines()]
        local = _named(_EXPORTER, "pikku.run_pass")
        trace_id = format(request.trace_id, "032x")
        (attempt,) = [s for s in remote if s["name"] == "pikku.step_attempt"]
        assert attempt["pid"] != os.getpid()
        assert attempt["trace_id"] == trace_id
        assert attempt["attributes"] == {
            "pikku.workflow": "otel_remote", "pikku.run_id": run_id, "pikku.step": "double",
            "pikku.attempt": 1, "pikku.rpc": "otel.double",
        }
        local_ids = {format(p.context.span_id, "016x") for p in local if p.context is not None}
        assert attempt["parent_id"] in local_ids  # the pass that queued the step job
        assert all(p.context is not None and format(p.context.trace_id, "032x") == trace_id
                   for p in local)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.communicate()
        drop_schema_dsn(dsn)


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "queued"])
async def test_an_eager_remote_attempt_is_a_span_of_its_pass_and_is_logged(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture, eager: bool
) -> None:
    """An eager remote step runs inside the pass that reached it: its attempt span is a child
    of that pass's span, with the same attributes and log lines as a step job's attempt."""

    @pikku_func(name="otel.eager")
    def inc(data: int) -> int:
        return data + 1

    async def flow(workflow: Workflow, n: int) -> int:
        return int(await workflow.do("e", "otel.eager", n))

    wire_workflow(name="otel_eager", func=flow, execution_mode="remote")
    caplog.set_level("INFO", logger="pikku")
    async with WorkflowRuntime(
        InMemoryWorkflowStateService(), InProcessQueue(), eager_steps=eager
    ) as rt:
        handle = await rt.client("otel_eager").start(1)
        assert await handle.result(timeout=30) == 2
    (attempt,) = _named(spans, "pikku.step_attempt")
    assert _attrs(attempt) | {"pikku.run_id": ""} == {
        "pikku.workflow": "otel_eager", "pikku.run_id": "", "pikku.step": "e", "pikku.attempt": 1,
        "pikku.rpc": "otel.eager",
    }
    passes = _named(spans, "pikku.run_pass")
    first = min(passes, key=lambda p: p.start_time or 0)
    assert first.context is not None and attempt.parent is not None
    # both ways the pass that reached the step is the parent: eager, in this very task;
    # queued, through the context its step job carried
    assert attempt.parent.span_id == first.context.span_id
    assert attempt.parent.is_remote is not eager
    assert len(passes) == (1 if eager else 2)
    messages = [r.getMessage() for r in caplog.records if getattr(r, "run_id", None) == handle.run_id]
    assert any("step e of run" in m and "attempt 1 started" in m for m in messages), messages
    assert any("attempt 1 succeeded" in m for m in messages), messages
