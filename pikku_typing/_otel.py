"""OpenTelemetry tracing (the optional extra ``pikku-workflows[otel]``): zero cost without it.

pikku never imports OpenTelemetry itself: tracing is on in a process once the application has
imported ``opentelemetry.trace`` (which it does to configure a tracer provider and exporter).
Until then every function here is one dictionary lookup that returns at once, so a process
without the extra (or one that does not trace) pays nothing and imports nothing.

What is traced (SPEC section 10):

* a span ``pikku.run_pass`` per orchestrator pass, and ``pikku.step_attempt`` per step
  attempt (inline or on a remote step worker), with the attributes ``pikku.workflow``,
  ``pikku.run_id``, ``pikku.step``, ``pikku.attempt``, ``pikku.rpc``; an error is recorded on
  the span (exception event, status ``ERROR``);
* the trace context travels with the jobs: a :class:`~pikku_typing.runtime.queues.base.Job`
  made while a span is current carries it (W3C ``traceparent`` in ``Job.trace``), so the
  first pass of a run is a child of the span around ``client.start``, a remote step attempt a
  child of the pass that queued it, and so on across processes and ``PostgresQueue``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any, Final

__all__ = [
    "active",
    "attached",
    "inject_current",
    "job_carrier",
    "record_error",
    "span",
    "start_span",
    "use_span",
]

Carrier = Mapping[str, str] | tuple[tuple[str, str], ...]
"""A propagation carrier: a mapping, or ``Job.trace``'s pairs."""

TRACER_NAME: Final = "pikku_typing"
_MODULE: Final = "opentelemetry.trace"


def active() -> bool:
    """Is tracing on in this process (the application imported OpenTelemetry)?"""
    return _MODULE in sys.modules


def inject_current() -> dict[str, str] | None:
    """The current trace context as a carrier (``{"traceparent": ...}``), or ``None`` when
    tracing is off or no span is current. The default of ``Job.trace``."""
    if _MODULE not in sys.modules:
        return None
    from opentelemetry import propagate, trace

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def job_carrier() -> tuple[tuple[str, str], ...] | None:
    """:func:`inject_current` as the hashable value of ``Job.trace``."""
    if _MODULE not in sys.modules:
        return None
    carrier = inject_current()
    return None if carrier is None else tuple(sorted(carrier.items()))


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"pikku.{k}": v for k, v in values.items() if v is not None}


def _tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer(TRACER_NAME)


@contextlib.contextmanager
def span(
    name: str, *, carrier: Carrier | None = None, **attributes: Any
) -> Iterator[Any]:
    """A current span named ``name`` (attributes ``pikku.<name>``), child of the context in
    ``carrier`` when given, else of the current span; exceptions are recorded on it. Yields
    the span, or ``None`` when tracing is off."""
    if _MODULE not in sys.modules:
        yield None
        return
    from opentelemetry import propagate

    context = propagate.extract(dict(carrier)) if carrier else None
    with _tracer().start_as_current_span(
        name, context=context, attributes=_attributes(attributes)
    ) as current:
        yield current


@contextlib.contextmanager
def attached(carrier: Carrier | None) -> Iterator[None]:
    """Make the context in ``carrier`` current (no span of its own): spans started inside
    are its children."""
    if not carrier or _MODULE not in sys.modules:
        yield
        return
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        context.detach(token)


def start_span(name: str, *, parent: Any = None, **attributes: Any) -> Any:
    """A span (child of ``parent``, else of the current span) that the caller ends, or
    ``None`` when off."""
    if _MODULE not in sys.modules:
        return None
    context = None
    if parent is not None:
        from opentelemetry import trace

        context = trace.set_span_in_context(parent)
    return _tracer().start_span(name, context=context, attributes=_attributes(attributes))


@contextlib.contextmanager
def use_span(current: Any) -> Iterator[None]:
    """Make ``current`` (from :func:`start_span`) the current span, without ending it."""
    if current is None:
        yield
        return
    from opentelemetry import trace

    with trace.use_span(
        current, end_on_exit=False, record_exception=False, set_status_on_exception=False
    ):
        yield


def record_error(current: Any, exc: BaseException | None, description: str) -> None:
    """Record an error on ``current`` (an exception event when ``exc`` is given) and set its
    status to ``ERROR``."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    if exc is not None:
        current.record_exception(exc)
    current.set_status(Status(StatusCode.ERROR, description))
