"""Rendering for ``pikku-runs`` (private): plain aligned text, ANSI colour on a TTY.

Everything here is pure: it takes runs and steps and returns strings, so the output can be
tested without a terminal. ``rich`` is not a dependency of the project; the tables are
aligned by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pikku_typing import _term
from pikku_typing.models import (
    ErrorInfo,
    RunStatus,
    StepAttempt,
    StepKind,
    StepState,
    StepStatus,
    WorkflowRun,
)
from pikku_typing.state.base import DamagedRun

# ------------------------------------------------------------------ colour

_STATUS_STYLE: Final[Mapping[str, str]] = {
    "completed": "green",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
    "suspended": "yellow",
    "scheduled": "yellow",
    "running": "blue",
    "pending": "dim",
}


class Painter(_term.Painter):
    """The shared painter (:mod:`pikku_typing._term`), with the colour of a run/step status."""

    def status(self, status: str) -> str:
        return self(status, _STATUS_STYLE.get(status))


use_colour = _term.use_colour
table = _term.table


# ---------------------------------------------------------------- formats


def fmt_time(value: datetime | None) -> str:
    """``2026-11-25 20:11:21`` in UTC (``-`` when unknown)."""
    if value is None:
        return "-"
    return _utc(value).strftime("%Y-%m-%d %H:%M:%S")


def fmt_clock(value: datetime | None) -> str:
    """``20:11:21.123`` in UTC: steps of one run are close together."""
    if value is None:
        return "-"
    utc = _utc(value)
    return utc.strftime("%H:%M:%S.") + f"{utc.microsecond // 1000:03d}"


def fmt_duration(delta: timedelta | float | None) -> str:
    """``850ms``, ``3.2s``, ``5m 03s``, ``2h 05m``, ``1d 3h`` (``-`` when unknown)."""
    if delta is None:
        return "-"
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def fmt_error(error: ErrorInfo | None) -> str:
    if error is None:
        return ""
    message = " ".join(error.message.split())
    return f"{error.type}: {message}" if message else error.type


def fmt_json(value: Any, limit: int = 100) -> str:
    try:
        text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


# ------------------------------------------------------------------ list


def render_list(runs: Sequence[WorkflowRun[Any, Any]], paint: Painter) -> str:
    if not runs:
        return "no runs"
    rows: list[list[str]] = []
    styles: list[list[str | None]] = []
    for run in runs:
        problem = ""
        if run.status is RunStatus.FAILED and run.error is not None:
            where = f"[{run.error.step}] " if run.error.step else ""
            problem = _truncate(where + fmt_error(run.error), 70)
        elif run.error is not None and not run.status.is_settled:  # e.g. WorkflowNotFoundError
            problem = _truncate("waiting: " + fmt_error(run.error), 70)
        elif run.status is RunStatus.SUSPENDED and run.wake_at is not None:
            problem = f"wakes {fmt_time(run.wake_at)}"
        elif run.cancel_requested and not run.status.is_settled:
            problem = "cancel requested"
        rows.append(
            [
                run.id,
                run.workflow,
                run.status.value,
                fmt_time(run.created_at),
                fmt_time(run.updated_at),
                problem,
            ]
        )
        styles.append(
            [
                None,
                "cyan",
                _STATUS_STYLE.get(run.status.value),
                None,
                None,
                "red" if run.status is RunStatus.FAILED else "dim",
            ]
        )
    headers = ["RUN ID", "WORKFLOW", "STATUS", "CREATED (UTC)", "UPDATED (UTC)", "NOTE"]
    lines = table(headers, rows, paint, styles=styles)
    lines.append(paint(f"{len(runs)} run{'s' if len(runs) != 1 else ''}", "dim"))
    return "\n".join(lines)


# ------------------------------------------------------------------ show


@dataclass(frozen=True)
class Failure:
    """Why a run failed, at a glance: which step, which attempt, which error."""

    step: StepState | None
    attempt: StepAttempt | None
    error: ErrorInfo | None
    earlier: tuple[StepAttempt, ...]
    """Earlier failed attempts of the same step (retries)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step.key if self.step is not None else None,
            "step_name": self.step.step_name if self.step is not None else None,
            "kind": self.step.kind.value if self.step is not None else None,
            "rpc_name": self.step.rpc_name if self.step is not None else None,
            "attempt": self.attempt.number if self.attempt is not None else None,
            "attempts": self.step.attempt_count if self.step is not None else None,
            "max_attempts": self.step.max_attempts if self.step is not None else None,
            "error": self.error.model_dump(mode="json") if self.error is not None else None,
            "earlier_attempts": [
                {"attempt": a.number, "error": a.error.model_dump(mode="json") if a.error else None}
                for a in self.earlier
            ],
        }


def find_failure(run: WorkflowRun[Any, Any], steps: Mapping[str, StepState]) -> Failure | None:
    """The step, attempt and error that failed ``run`` (``None`` unless it failed).

    The run's ``error.step`` names the failing step when the runtime knows it; otherwise the
    most recently finished failed step is taken; a run that failed outside any step (the
    workflow body raised, non-determinism...) has ``step=None``."""
    if run.status is not RunStatus.FAILED:
        return None
    step: StepState | None = None
    if run.error is not None and run.error.step is not None:
        step = steps.get(run.error.step)
    if step is None and (run.error is None or run.error.step is None):
        failed = [s for s in steps.values() if s.status is StepStatus.FAILED]
        if failed:
            step = max(failed, key=lambda s: _utc(s.finished_at or s.updated_at))
    if step is None:
        return Failure(None, None, run.error, ())
    failed_attempts = [a for a in step.attempts if a.status is StepStatus.FAILED]
    attempt = failed_attempts[-1] if failed_attempts else step.current_attempt
    error = (attempt.error if attempt is not None else None) or step.error or run.error
    earlier = tuple(a for a in failed_attempts if attempt is None or a.number != attempt.number)
    return Failure(step, attempt, error, earlier)


def _attempts_text(step: StepState) -> str:
    if step.kind is StepKind.SLEEP:
        return "-"
    count = max(step.attempt_count, len(step.attempts))
    return f"{count}/{step.max_attempts}" if step.max_attempts else str(count)


def _step_duration(step: StepState) -> timedelta | None:
    start = step.started_at or (step.attempts[0].started_at if step.attempts else None)
    end = step.finished_at
    if end is None and step.attempts:
        end = step.attempts[-1].finished_at
    if start is None or end is None:
        return None
    return _utc(end) - _utc(start)


def _step_start(step: StepState) -> datetime | None:
    if step.started_at is not None:
        return step.started_at
    if step.attempts and step.attempts[0].started_at is not None:
        return step.attempts[0].started_at
    return step.created_at if step.kind is StepKind.SLEEP else None


def _step_end(step: StepState) -> datetime | None:
    if step.finished_at is not None:
        return step.finished_at
    if step.attempts and step.attempts[-1].finished_at is not None:
        return step.attempts[-1].finished_at
    return None


def _step_note(step: StepState, now: datetime) -> str:
    if step.error is not None and step.status is StepStatus.FAILED:
        return fmt_error(step.error)
    if step.status is StepStatus.SCHEDULED and step.next_attempt_at is not None:
        due = _utc(step.next_attempt_at)
        what = "wakes" if step.kind is StepKind.SLEEP else "next attempt"
        rel = "due now" if due <= now else "in " + fmt_duration(due - now)
        last = step.current_attempt
        if last is not None and last.error is not None:
            return f"{what} {fmt_clock(due)} ({rel}); last: {fmt_error(last.error)}"
        return f"{what} {fmt_clock(due)} ({rel})"
    if step.status is StepStatus.SCHEDULED:
        return "queued for a worker"
    if step.status is StepStatus.RUNNING and step.current_attempt is not None:
        attempt = step.current_attempt
        since = (
            f"running for {fmt_duration(now - _utc(attempt.started_at))}"
            if attempt.started_at is not None
            else "running"
        )
        owner = attempt.owner
        if owner is not None:
            return f"{since}, held by pid {owner.pid} on {owner.host}"
        return since
    return ""


def render_show(
    run: WorkflowRun[Any, Any],
    steps: Mapping[str, StepState],
    paint: Painter,
    *,
    now: datetime | None = None,
    width: int = 100,
    traceback: bool = False,
) -> str:
    now = _utc(now or datetime.now(UTC))
    out: list[str] = []
    header = f"Run {run.id}  {paint(run.workflow, 'cyan bold')}  {paint.status(run.status.value)}"
    out.append(paint("", None) + header)
    end = run.updated_at if run.status.is_settled else now
    out.append(
        f"  created {fmt_time(run.created_at)} UTC   updated {fmt_time(run.updated_at)} UTC"
        f"   {'took' if run.status.is_settled else 'age'} {fmt_duration(_utc(end) - _utc(run.created_at))}"
    )
    if run.status is RunStatus.SUSPENDED and run.wake_at is not None:
        due = _utc(run.wake_at)
        rel = "due now" if due <= now else "in " + fmt_duration(due - now)
        out.append(f"  wakes   {fmt_time(run.wake_at)} UTC ({rel})")
    if run.cancel_requested and not run.status.is_settled:
        out.append(
            "  " + paint("cancel requested: the run stops at its next step boundary", "magenta")
        )
    if run.owner is not None and run.status is RunStatus.RUNNING:
        out.append(f"  running on {run.owner.host} (pid {run.owner.pid})")
    out.append(f"  input   {fmt_json(run.input, max(width - 10, 40))}")
    if run.status is RunStatus.COMPLETED:
        out.append(f"  output  {fmt_json(run.output, max(width - 10, 40))}")
    out.extend(_render_family(run, steps, paint))

    failure = find_failure(run, steps)
    if failure is not None:
        out.append("")
        out.extend(_render_failure(failure, run, paint, traceback=traceback))
    elif run.error is not None and not run.status.is_settled:
        # a run that waits for something it recorded (a worker without its workflow...)
        out.append("")
        out.append(paint(f"Waiting: {fmt_error(run.error)}", "yellow"))

    out.append("")
    if not steps:
        out.append(paint("No steps recorded.", "dim"))
        return "\n".join(out)
    out.append(paint(f"Steps ({len(steps)})", "bold"))
    rows: list[list[str]] = []
    styles: list[list[str | None]] = []
    for step in steps.values():
        note = _step_note(step, now)
        rows.append(
            [
                step.key,
                step.kind.value,
                step.rpc_name or "-",
                step.status.value,
                _attempts_text(step),
                fmt_clock(_step_start(step)),
                fmt_clock(_step_end(step)),
                fmt_duration(_step_duration(step)),
                _truncate(note, max(width - 90, 40)),
            ]
        )
        styles.append(
            [
                None,
                "dim",
                None,
                _STATUS_STYLE.get(step.status.value),
                None,
                "dim",
                "dim",
                None,
                "red" if step.status is StepStatus.FAILED else "dim",
            ]
        )
    out.extend(
        table(
            ["KEY", "KIND", "RPC", "STATUS", "ATTEMPTS", "STARTED", "FINISHED", "DURATION", "NOTE"],
            rows,
            paint,
            styles=styles,
            indent="  ",
        )
    )
    out.append("")
    out.extend(render_timeline(run, steps, paint, now=now, width=width))
    return "\n".join(out)


def _render_family(
    run: WorkflowRun[Any, Any], steps: Mapping[str, StepState], paint: Painter
) -> list[str]:
    """The run's parent (``pikku-runs show PARENT``) and the child runs its steps started."""
    out: list[str] = []
    if run.parent_run_id is not None:
        out.append(f"  parent  {run.parent_run_id}  (pikku-runs show {run.parent_run_id})")
    for step in steps.values():
        data = step.data if isinstance(step.data, dict) else {}
        child_id = data.get("run_id") if step.kind.value == "child" else None
        if not isinstance(child_id, str):
            continue
        result = step.result if isinstance(step.result, dict) else {}
        outcome = str(result.get("status") or ("started" if result else "running"))
        out.append(
            f"  child   {child_id}  {paint(str(step.rpc_name or data.get('workflow')), 'cyan')}"
            f"  step {step.key}  {paint.status(outcome)}"
        )
    return out


def _render_failure(
    failure: Failure, run: WorkflowRun[Any, Any], paint: Painter, *, traceback: bool
) -> list[str]:
    out: list[str] = []
    if failure.step is None:
        out.append(paint("FAILED outside any step", "red bold"))
        out.append("  error   " + paint(fmt_error(failure.error) or "(no error recorded)", "red"))
    else:
        step = failure.step
        rpc = f" (rpc {step.rpc_name})" if step.rpc_name else f" ({step.kind.value})"
        attempt = ""
        if failure.attempt is not None:
            total = f" of {step.max_attempts}" if step.max_attempts else ""
            attempt = f", attempt {failure.attempt.number}{total}"
        out.append(paint(f"FAILED at step {step.key}{rpc}{attempt}", "red bold"))
        out.append("  error   " + paint(fmt_error(failure.error) or "(no error recorded)", "red"))
        for earlier in failure.earlier:
            when = fmt_clock(earlier.finished_at)
            out.append(
                f"  attempt {earlier.number} failed at {when}: {fmt_error(earlier.error) or '-'}"
            )
    if traceback and failure.error is not None and failure.error.traceback:
        out.append("  traceback:")
        out.extend("    " + line for line in failure.error.traceback.rstrip().splitlines())
    elif failure.error is not None and failure.error.traceback:
        out.append(paint("  (--traceback shows the stored traceback)", "dim"))
    return out


# -------------------------------------------------------------- timeline


class _Bar:
    """One row of the timeline: a character and a style per column."""

    def __init__(self, cols: int) -> None:
        self.chars = [" "] * cols
        self.styles: list[str | None] = [None] * cols
        self.marks: list[tuple[int, str, str | None]] = []

    def put(self, a: int, b: int, ch: str, style: str | None) -> None:
        for i in range(a, b + 1):
            if 0 <= i < len(self.chars):
                self.chars[i] = ch
                self.styles[i] = style

    def mark(self, i: int, ch: str, style: str | None) -> None:
        """A marker (an attempt's end) is drawn after every span, so spans never hide it."""
        self.marks.append((i, ch, style))

    def render(self, paint: Painter) -> str:
        for i, ch, style in self.marks:
            self.put(i, i, ch, style)
        out: list[str] = []
        i = 0
        while i < len(self.chars):
            j = i
            while j < len(self.chars) and self.styles[j] == self.styles[i]:
                j += 1
            out.append(paint("".join(self.chars[i:j]), self.styles[i]))
            i = j
        return "".join(out)


def render_timeline(
    run: WorkflowRun[Any, Any],
    steps: Mapping[str, StepState],
    paint: Painter,
    *,
    now: datetime,
    width: int = 100,
) -> list[str]:
    """One line per step on a shared time axis from the run's creation to its end (or now).

    ``=`` an attempt that ran (``#`` once it succeeded), ``x`` the end of a failed attempt,
    ``.`` waiting (a sleep, a retry delay, a scheduled remote step), ``>`` still running."""
    start = _utc(run.created_at)
    end = _utc(run.updated_at) if run.status.is_settled else now
    for step in steps.values():
        for t in (_step_end(step), step.next_attempt_at):
            if t is not None and step.status is not StepStatus.SCHEDULED:
                end = max(end, _utc(t))
    span = max((end - start).total_seconds(), 1e-6)
    label_width = min(max(len(s.key) for s in steps.values()), 24)
    cols = max(min(width - label_width - 20, 60), 20)

    def col(t: datetime | None) -> int:
        if t is None:
            return cols - 1
        offset = (_utc(t) - start).total_seconds() / span
        return min(max(int(offset * (cols - 1) + 0.5), 0), cols - 1)

    out = [
        paint("Timeline", "bold")
        + paint(
            f"  0 .. {fmt_duration(end - start)}   (= ran, # succeeded, x failed attempt,"
            " . waiting, > running)",
            "dim",
        )
    ]
    for step in steps.values():
        bar = _Bar(cols)
        put = bar.put
        mark = bar.mark

        if step.kind is StepKind.SLEEP:
            s = col(step.started_at or step.created_at)
            e = col(step.finished_at) if step.finished_at else col(step.next_attempt_at or now)
            put(s, e, ".", "yellow")
            if step.status is StepStatus.SUCCEEDED:
                mark(e, "#", "green")
        else:
            previous_end: int | None = None
            if step.status is StepStatus.SCHEDULED and not step.attempts:
                put(col(step.created_at), col(now), ".", "yellow")
            for attempt in step.attempts:
                a = col(attempt.started_at)
                if previous_end is not None and a > previous_end + 1:
                    put(previous_end + 1, a - 1, ".", "yellow")
                if attempt.status is StepStatus.RUNNING and attempt.finished_at is None:
                    b = col(now)
                    put(a, b, "=", "blue")
                    mark(b, ">", "blue")
                else:
                    b = col(attempt.finished_at)
                    put(a, b, "=", "blue")
                    if attempt.status is StepStatus.FAILED:
                        mark(b, "x", "red")
                    elif attempt.status is StepStatus.SUCCEEDED:
                        mark(b, "#", "green")
                previous_end = b
            if step.status is StepStatus.SCHEDULED and step.attempts and previous_end is not None:
                put(previous_end + 1, col(step.next_attempt_at or now), ".", "yellow")
            if step.status is StepStatus.SUCCEEDED and step.attempts:
                last = col(step.finished_at or step.attempts[-1].finished_at)
                mark(last, "#", "green")
            elif step.status is StepStatus.SUCCEEDED:
                c = col(step.finished_at)
                mark(c, "#", "green")
        text = bar.render(paint)
        label = _truncate(step.key, label_width).ljust(label_width)
        suffix = fmt_duration(_step_duration(step))
        out.append(f"  {label} |{text}| {suffix}")
    return out


# ------------------------------------------------------------------ damaged runs


def render_damaged(damaged: Sequence[DamagedRun], paint: Painter) -> str:
    """The runs whose stored record cannot be read (``store.list_damaged()``)."""
    rows = [
        [
            d.run_id,
            d.workflow or "?",
            "damaged",
            _truncate(d.problem, 110),
        ]
        for d in damaged
    ]
    styles: list[list[str | None]] = [[None, "cyan", "red", "dim"] for _ in damaged]
    lines = table(["RUN ID", "WORKFLOW", "STATUS", "PROBLEM"], rows, paint, styles=styles)
    count = len(damaged)
    lines.append(
        paint(
            f"{count} damaged run{'s' if count != 1 else ''} (left untouched; "
            "'pikku-runs show RUN_ID' explains)",
            "red",
        )
    )
    return "\n".join(lines)


def explain_damaged(run_id: str, problem: str) -> str:
    """What ``pikku-runs show`` prints for a run whose record cannot be read."""
    return "\n".join(
        [
            f"run {run_id} is DAMAGED: its stored record cannot be read.",
            f"  problem: {problem}",
            "  The record was left untouched and the other runs are not affected: workers",
            "  and recover() skip this run. Restore the file or row from a backup (or move",
            "  it away) to make the run usable again.",
        ]
    )
