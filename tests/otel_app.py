"""The remote step worker of ``tests/test_otel.py``: ``pikku-worker otel_app:runtime --queue
<step queue>`` on PostgreSQL (``OTEL_TEST_DSN``), with the OpenTelemetry SDK exporting every
finished span as one JSON line to ``OTEL_TEST_SPANS``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import IO

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from pikku_typing import (
    PostgresQueue,
    PostgresWorkflowStateService,
    Workflow,
    WorkflowRuntime,
    pikku_func,
    wire_workflow,
)


class JsonLinesExporter(SpanExporter):
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            assert span.context is not None
            self.out.write(json.dumps({
                "name": span.name,
                "trace_id": format(span.context.trace_id, "032x"),
                "span_id": format(span.context.span_id, "016x"),
                "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                "attributes": dict(span.attributes or {}),
                "status": span.status.status_code.name,
                "pid": os.getpid(),
            }) + "\n")
        self.out.flush()
        return SpanExportResult.SUCCESS


def register() -> None:
    @pikku_func(name="otel.double")
    def double(data: int) -> int:
        return data * 2

    async def flow(workflow: Workflow, n: int) -> int:
        return int(await workflow.do("double", "otel.double", n))

    wire_workflow(name="otel_remote", func=flow, execution_mode="remote")


if "OTEL_TEST_SPANS" in os.environ:
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesExporter(open(os.environ["OTEL_TEST_SPANS"], "a")))  # noqa: SIM115
    )
    trace.set_tracer_provider(provider)
    register()
    DSN = os.environ["OTEL_TEST_DSN"]
    runtime = WorkflowRuntime(PostgresWorkflowStateService(DSN), PostgresQueue(DSN, poll_interval=0.1))
