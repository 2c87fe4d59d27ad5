"""What the runtime reports about runs and steps: log records (``pikku.runtime``) and, when
OpenTelemetry is on, spans (:mod:`pikku_typing._otel`). One call site per event in the
runtime, so logs and traces always agree.

* :func:`job` wraps every job: a ``pikku.run_pass`` span for an orchestrator pass (a child
  of the context the job carries); for a step job, the carried context becomes current so
  the attempt's span joins the trace.
* :class:`StepAttempt` is one step attempt: started (INFO), then succeeded (INFO) or failed
  (WARNING, with the retry delay, or that no attempt is left); its span ends with it.
* :func:`run_started`, :func:`run_settled`, :func:`recovery` log run events.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from pikku_typing import _otel
from pikku_typing._log import describe, fields, runtime_log

if TYPE_CHECKING:
    from pikku_typing.models import ErrorInfo, RunStatus
    from pikku_typing.runtime.queues.base import Job

__all__ = ["StepAttempt", "job", "recovery", "run_settled", "run_started"]

_NO_SPAN: Final = contextlib.nullcontext()
"""The scope of an attempt while tracing is off (reusable: it holds nothing)."""

log = runtime_log

_passes: dict[str, Any] = {}
"""The span of the pass of each run that this process is running now: a step attempt of a
live continuation (a workflow task created by an earlier pass) is parented to the pass that
resumed it, not to the one that created its task."""


@contextlib.contextmanager
def job(current: Job) -> Iterator[None]:
    """The observation scope of one job (see the module doc)."""
    if not _otel.active():
        yield
        return
    if current.kind == "orchestrate":
        with _otel.span(
            "pikku.run_pass",
            carrier=current.trace,
            workflow=current.workflow,
            run_id=current.run_id,
        ) as span:
            _passes[current.run_id] = span
            try:
                yield
            finally:
                if _passes.get(current.run_id) is span:
                    del _passes[current.run_id]
    else:
        with _otel.attached(current.trace):
            yield


def run_started(workflow: str, run_id: str) -> None:
    log.info(
        "run %s of %s started", run_id, workflow, extra=fields(run_id=run_id, workflow=workflow)
    )


def run_settled(
    workflow: str | None, run_id: str, status: RunStatus, error: ErrorInfo | None = None
) -> None:
    """A run completed, failed or was cancelled (INFO; WARNING when it failed). The current
    span (the pass) records a failure."""
    value = getattr(status, "value", str(status))
    extra = fields(run_id=run_id, workflow=workflow, status=value)
    name = workflow or "?"
    if error is not None:
        where = f" in step {error.step}" if error.step else ""
        log.warning(
            "run %s of %s %s%s: %s: %s", run_id, name, value, where, error.type, error.message,
            extra=extra,
        )
        if _otel.active():
            from opentelemetry import trace

            _otel.record_error(trace.get_current_span(), None, f"{error.type}: {error.message}")
    else:
        log.info("run %s of %s %s", run_id, name, value, extra=extra)


def recovery(message: str, *args: Any, run_id: str | None = None, workflow: str | None = None,
             step_key: str | None = None, level: int = logging.INFO) -> None:
    """A recovery decision (a pass queued for an unsettled run, a run left to its live
    holder, an attempt of a dead holder abandoned)."""
    log.log(level, message, *args, extra=fields(run_id=run_id, workflow=workflow, step_key=step_key))


class StepAttempt:
    """One attempt of a step: logs and (with OpenTelemetry) a ``pikku.step_attempt`` span.

    ``attempt = StepAttempt(...)`` logs "started" and starts the span; run the step inside
    ``with attempt.current():`` (the span is current, so the step's own spans and the jobs
    it queues are its children); then call :meth:`succeeded` or :meth:`failed`, which end it.
    An interruption (cancellation, suspension) propagating out of ``current()`` ends it too.
    """

    __slots__ = ("_extra", "_span", "_started", "attempt", "rpc", "run_id", "step_key", "workflow")

    _extra: dict[str, Any] | None

    def __init__(
        self, *, workflow: str, run_id: str, step_key: str, attempt: int, rpc: str | None
    ) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.step_key = step_key
        self.attempt = attempt
        self.rpc = rpc
        self._extra = None
        self._started = time.perf_counter()
        if log.isEnabledFor(logging.INFO):
            log.info(
                "step %s of run %s (%s) attempt %d started", step_key, run_id, workflow, attempt,
                extra=self._fields(),
            )
        self._span: Any = (
            _otel.start_span(
                "pikku.step_attempt",
                parent=_passes.get(run_id),
                workflow=workflow, run_id=run_id, step=step_key, attempt=attempt, rpc=rpc,
            )
            if _otel.active()
            else None
        )

    def _fields(self) -> dict[str, Any]:
        """The ``extra`` of this attempt's records (built only when a record is)."""
        extra = self._extra
        if extra is None:
            extra = self._extra = fields(
                run_id=self.run_id, workflow=self.workflow, step_key=self.step_key,
                attempt=self.attempt, rpc=self.rpc,
            )
        return extra

    def current(self) -> contextlib.AbstractContextManager[None]:
        """The scope of the attempt's code: its span is current (nothing when tracing is
        off); an interruption (``BaseException``) ends the span."""
        return _NO_SPAN if self._span is None else self._in_span()

    @contextlib.contextmanager
    def _in_span(self) -> Iterator[None]:
        try:
            with _otel.use_span(self._span):
                yield
        except Exception:
            raise  # the caller decides (failed() with or without a retry)
        except BaseException:
            self._end()
            raise

    def _elapsed_ms(self) -> float:
        return (time.perf_counter() - self._started) * 1000

    def _end(self) -> None:
        span, self._span = self._span, None
        if span is not None:
            span.end()

    def succeeded(self) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info(
                "step %s of run %s (%s) attempt %d succeeded in %.1fms",
                self.step_key, self.run_id, self.workflow, self.attempt, self._elapsed_ms(),
                extra=self._fields(),
            )
        if self._span is not None:
            self._end()

    def failed(self, exc: BaseException, retry_at: datetime | None, now: datetime) -> None:
        """The attempt raised ``exc``; the step is retried at ``retry_at`` (``None``: no
        attempt left, the step failed)."""
        if retry_at is not None:
            delay = max((retry_at - now).total_seconds(), 0.0)
            log.warning(
                "step %s of run %s (%s) attempt %d failed after %.1fms: %s; retrying in %.2fs",
                self.step_key, self.run_id, self.workflow, self.attempt, self._elapsed_ms(),
                describe(exc), delay,
                extra={**self._fields(), "delay": round(delay, 3)},
            )
        else:
            log.warning(
                "step %s of run %s (%s) attempt %d failed after %.1fms: %s; no attempt left",
                self.step_key, self.run_id, self.workflow, self.attempt, self._elapsed_ms(),
                describe(exc),
                extra=self._fields(),
            )
        if self._span is not None:
            if retry_at is not None:
                self._span.set_attribute("pikku.retry_delay", delay)
            _otel.record_error(self._span, exc, describe(exc))
        self._end()

    def abandoned(self) -> None:
        """The attempt's claim was lost (its holder was presumed dead): end without a verdict."""
        self._end()
