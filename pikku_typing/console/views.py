"""What the console's pages show, as plain data (no Starlette, no HTML).

The formatting (times, durations, errors, the failing step, a step's note) is the one of
``pikku-runs`` (:mod:`pikku_typing.runtime._runs_render`); the data access goes through the
store contract only, so every store (file, SQLite, PostgreSQL) is served the same way.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from pikku_typing.errors import InvalidRunIdError, RunNotFoundError
from pikku_typing.meta import DYNAMIC, AnalysisReport, WorkflowMeta
from pikku_typing.models import (
    ErrorInfo,
    RunStatus,
    StepAttempt,
    StepKind,
    StepState,
    StepStatus,
    WorkflowRun,
)
from pikku_typing.runtime import _runs_render as render
from pikku_typing.state.base import WorkflowStateService

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 500
DEFAULT_MAX_STEPS: Final = 400
"""A run page shows at most this many steps (the first and the last half); ``?steps=all``
shows every one."""
META_FILE: Final = "workflow_meta.json"
_JSON_LIMIT: Final = 20_000
"""Inputs, outputs and results longer than this (as indented JSON) are cut on the page."""


# ------------------------------------------------------------------ helpers


def _utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def pretty_json(value: Any, limit: int = _JSON_LIMIT) -> str:
    """Indented JSON for a ``<pre>`` (escaped by the template, never trusted)."""
    try:
        text = json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > limit:
        return text[:limit] + f"\n... ({len(text) - limit} more characters)"
    return text


def run_note(run: WorkflowRun[Any, Any]) -> str:
    """The list's one-line note: the error of a failed run, a sleeping run's wake-up."""
    if run.status is RunStatus.FAILED and run.error is not None:
        where = f"[{run.error.step}] " if run.error.step else ""
        text = where + render.fmt_error(run.error)
        return text if len(text) <= 120 else text[:117] + "..."
    if run.status is RunStatus.SUSPENDED and run.wake_at is not None:
        return f"wakes {render.fmt_time(run.wake_at)} UTC"
    if run.cancel_requested and not run.status.is_settled:
        return "cancel requested"
    return ""


def run_took(run: WorkflowRun[Any, Any], now: datetime) -> str:
    end = run.updated_at if run.status.is_settled else now
    return render.fmt_duration(_utc(end) - _utc(run.created_at))


# ------------------------------------------------------------------ list


@dataclass(frozen=True)
class ListQuery:
    workflow: str | None = None
    statuses: tuple[RunStatus, ...] = ()
    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE


class QueryError(ValueError):
    """A bad query parameter (shown as a 400 page)."""


def parse_list_query(params: Mapping[str, str], statuses: Sequence[str]) -> ListQuery:
    workflow = (params.get("workflow") or "").strip() or None
    chosen: list[RunStatus] = []
    for text in statuses:
        for part in text.split(","):
            part = part.strip().lower()
            if not part:
                continue
            try:
                status = RunStatus(part)
            except ValueError:
                valid = ", ".join(s.value for s in RunStatus)
                raise QueryError(f"unknown status {part!r}: use {valid}") from None
            if status not in chosen:
                chosen.append(status)
    page = _int_param(params, "page", 1, minimum=1, maximum=1_000_000)
    per_page = _int_param(params, "per_page", DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
    return ListQuery(workflow, tuple(chosen), page, per_page)


def _int_param(
    params: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int
) -> int:
    text = (params.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise QueryError(f"{name} must be a whole number, not {text[:40]!r}") from None
    if not minimum <= value <= maximum:
        raise QueryError(f"{name} must be between {minimum} and {maximum}")
    return value


@dataclass(frozen=True)
class RunRow:
    id: str
    workflow: str
    status: str
    created: str
    updated: str
    took: str
    note: str
    parent_run_id: str | None


@dataclass(frozen=True)
class RunsPage:
    query: ListQuery
    rows: list[RunRow]
    has_next: bool
    first_index: int
    """1-based index of the first row on this page."""


async def runs_page(
    store: WorkflowStateService, query: ListQuery, *, now: datetime | None = None
) -> RunsPage:
    """One page of runs, newest first. The store contract has a limit but no offset: the
    page is cut from the first ``page * per_page + 1`` runs (one more tells if a next page
    exists)."""
    now = now or datetime.now(UTC)
    offset = (query.page - 1) * query.per_page
    runs = await store.list_runs(
        workflow=query.workflow,
        status=query.statuses or None,
        limit=offset + query.per_page + 1,
    )
    shown = runs[offset : offset + query.per_page]
    rows = [
        RunRow(
            id=run.id,
            workflow=run.workflow,
            status=run.status.value,
            created=render.fmt_time(run.created_at),
            updated=render.fmt_time(run.updated_at),
            took=run_took(run, now),
            note=run_note(run),
            parent_run_id=run.parent_run_id,
        )
        for run in shown
    ]
    return RunsPage(query, rows, len(runs) > offset + query.per_page, offset + 1)


# ------------------------------------------------------------------- run


@dataclass(frozen=True)
class AttemptView:
    number: int
    status: str
    started: str
    finished: str
    duration: str
    error: ErrorInfo | None
    owner: str


@dataclass(frozen=True)
class Segment:
    """A piece of a step's bar on the timeline, in percent of the run's span."""

    left: float
    width: float
    kind: str
    """``ran``, ``ok``, ``failed``, ``wait``, ``running``."""
    title: str


@dataclass(frozen=True)
class StepView:
    index: int
    key: str
    step_name: str
    kind: str
    rpc_name: str | None
    status: str
    attempts_text: str
    started: str
    finished: str
    duration: str
    note: str
    data_json: str | None
    result_json: str | None
    error: ErrorInfo | None
    attempts: list[AttemptView]
    segments: list[Segment]
    child_run_id: str | None


@dataclass(frozen=True)
class DiagramNode:
    name: str
    type: str
    detail: str
    description: str | None
    in_loop: bool
    status: str
    """The status of the matching recorded step(s) of this run (``not reached`` if none)."""
    count: int
    """How many recorded steps match (a step in a loop has one per iteration)."""


@dataclass(frozen=True)
class Diagram:
    source: str
    """``meta``: from ``workflow_meta.json``; ``recorded``: from this run's steps."""
    nodes: list[DiagramNode]
    note: str | None = None


@dataclass(frozen=True)
class RelatedRun:
    id: str
    workflow: str
    status: str
    via: str
    """The parent's step that started it (children), or "" for the parent."""


@dataclass(frozen=True)
class EventView:
    seq: int
    name: str
    sent: str
    consumed_by: str | None
    consumed: str
    payload_json: str


@dataclass
class RunPage:
    run: WorkflowRun[Any, Any]
    status: str
    created: str
    updated: str
    took: str
    wake: str | None
    owner: str | None
    input_json: str
    output_json: str | None
    error: ErrorInfo | None
    failure: render.Failure | None
    steps: list[StepView]
    timeline_span: str
    diagram: Diagram
    parent: RelatedRun | None
    children: list[RelatedRun] = field(default_factory=list)
    can_cancel: bool = False
    can_resume: bool = False
    total_steps: int = 0
    events: list[EventView] = field(default_factory=list)


class RunNotShown(LookupError):
    """The run does not exist (or its id is not valid)."""


async def run_page(
    store: WorkflowStateService,
    run_id: str,
    *,
    meta: AnalysisReport | None = None,
    meta_problem: str | None = None,
    now: datetime | None = None,
    max_steps: int | None = DEFAULT_MAX_STEPS,
) -> RunPage:
    now = _utc(now or datetime.now(UTC))
    try:
        run = await store.get_run(run_id)
    except (RunNotFoundError, InvalidRunIdError) as exc:
        raise RunNotShown(str(exc)) from exc
    steps = await store.get_step_states(run_id)
    start, end = _span(run, steps, now)
    total = max((end - start).total_seconds(), 1e-6)
    shown = list(steps.values())
    if max_steps is not None and len(shown) > max_steps:
        # the first steps and the last ones (where a failure or a wait usually is)
        head = max_steps // 2
        shown = shown[:head] + shown[len(shown) - (max_steps - head) :]
    index = {key: i for i, key in enumerate(steps, 1)}
    step_views = [
        _step_view(index[step.key], step, now=now, start=start, total=total) for step in shown
    ]
    wake = None
    if run.status is RunStatus.SUSPENDED and run.wake_at is not None:
        due = _utc(run.wake_at)
        rel = "due now" if due <= now else "in " + render.fmt_duration(due - now)
        wake = f"{render.fmt_time(due)} UTC ({rel})"
    owner = None
    if run.owner is not None and run.status is RunStatus.RUNNING:
        owner = f"pid {run.owner.pid} on {run.owner.host}"
    parent = None
    if run.parent_run_id:
        parent = await _related(store, run.parent_run_id, via="")
    children = [
        await _related(store, child_id, via=key, workflow=workflow)
        for key, workflow, child_id in _child_runs(steps)
    ]
    return RunPage(
        run=run,
        status=run.status.value,
        created=render.fmt_time(run.created_at),
        updated=render.fmt_time(run.updated_at),
        took=run_took(run, now),
        wake=wake,
        owner=owner,
        input_json=pretty_json(run.input),
        output_json=pretty_json(run.output) if run.status is RunStatus.COMPLETED else None,
        error=run.error,
        failure=render.find_failure(run, steps),
        steps=step_views,
        timeline_span=render.fmt_duration(end - start),
        diagram=diagram(run, steps, meta, meta_problem),
        parent=parent,
        children=children,
        can_cancel=not run.status.is_settled,
        can_resume=run.status in (RunStatus.FAILED, RunStatus.SUSPENDED),
        total_steps=len(steps),
        events=await _events(store, run_id),
    )


async def _events(store: WorkflowStateService, run_id: str) -> list[EventView]:
    """The run's events in send order (none on a store that does not keep events)."""
    try:
        events = await store.list_events(run_id)
    except (NotImplementedError, RunNotFoundError):
        return []
    return [
        EventView(
            seq=event.seq,
            name=event.name,
            sent=render.fmt_time(event.sent_at),
            consumed_by=event.consumed_by,
            consumed=render.fmt_time(event.consumed_at),
            payload_json=pretty_json(event.payload),
        )
        for event in events
    ]


def _child_runs(steps: Mapping[str, StepState]) -> list[tuple[str, str, str]]:
    """``(step key, child workflow, child run id)`` of the run's child steps."""
    from pikku_typing.runtime.lifecycle import child_run_ids

    return child_run_ids(steps)


async def _related(
    store: WorkflowStateService, run_id: str, *, via: str, workflow: str = ""
) -> RelatedRun:
    try:
        run = await store.get_run(run_id)
    except (RunNotFoundError, InvalidRunIdError):
        return RelatedRun(run_id, workflow or "?", "not found", via)
    return RelatedRun(run.id, run.workflow, run.status.value, via)


def _span(
    run: WorkflowRun[Any, Any], steps: Mapping[str, StepState], now: datetime
) -> tuple[datetime, datetime]:
    start = _utc(run.created_at)
    end = _utc(run.updated_at) if run.status.is_settled else now
    for step in steps.values():
        finished = render._step_end(step)
        if finished is not None:
            end = max(end, _utc(finished))
        if step.next_attempt_at is not None and step.status is StepStatus.SCHEDULED:
            end = max(end, _utc(step.next_attempt_at))
    return start, max(end, start)


def _attempt_view(attempt: StepAttempt) -> AttemptView:
    duration = None
    if attempt.started_at is not None and attempt.finished_at is not None:
        duration = _utc(attempt.finished_at) - _utc(attempt.started_at)
    owner = f"pid {attempt.owner.pid} on {attempt.owner.host}" if attempt.owner else ""
    return AttemptView(
        number=attempt.number,
        status=attempt.status.value,
        started=render.fmt_clock(attempt.started_at),
        finished=render.fmt_clock(attempt.finished_at),
        duration=render.fmt_duration(duration),
        error=attempt.error,
        owner=owner,
    )


def _step_view(
    index: int, step: StepState, *, now: datetime, start: datetime, total: float
) -> StepView:
    child_id = None
    if step.kind is StepKind.CHILD and isinstance(step.data, dict):
        value = step.data.get("run_id")
        child_id = value if isinstance(value, str) else None
    return StepView(
        index=index,
        key=step.key,
        step_name=step.step_name,
        kind=step.kind.value,
        rpc_name=step.rpc_name,
        status=step.status.value,
        attempts_text=render._attempts_text(step),
        started=render.fmt_clock(render._step_start(step)),
        finished=render.fmt_clock(render._step_end(step)),
        duration=render.fmt_duration(render._step_duration(step)),
        note=render._step_note(step, now),
        data_json=pretty_json(step.data) if step.data is not None else None,
        result_json=(
            pretty_json(step.result) if step.status is StepStatus.SUCCEEDED else None
        ),
        error=step.error,
        attempts=[_attempt_view(a) for a in step.attempts],
        segments=_segments(step, now=now, start=start, total=total),
        child_run_id=child_id,
    )


def _segments(step: StepState, *, now: datetime, start: datetime, total: float) -> list[Segment]:
    """The step's bar: its attempts (ran, then ok or failed), the waits between them (retry
    delays, a sleep, a scheduled step) and a running attempt up to now."""

    def pos(t: datetime | None) -> float:
        when = now if t is None else _utc(t)
        return min(max((when - start).total_seconds() / total * 100.0, 0.0), 100.0)

    out: list[Segment] = []

    def add(a: float, b: float, kind: str, title: str) -> None:
        out.append(Segment(round(a, 3), round(max(b - a, 0.4), 3), kind, title))

    if step.kind is StepKind.SLEEP or (step.kind is StepKind.EVENT and not step.attempts):
        begin = step.started_at or step.created_at
        finish = step.finished_at or step.next_attempt_at
        waited = (
            render.fmt_duration(_utc(finish) - _utc(begin)) if finish is not None else "waiting"
        )
        add(pos(begin), pos(finish), "wait", f"{step.key}: waiting {waited}")
        if step.status is StepStatus.SUCCEEDED:
            add(pos(finish), pos(finish), "ok", f"{step.key}: done")
        return out
    previous: datetime | None = None
    if step.status is StepStatus.SCHEDULED and not step.attempts:
        add(pos(step.created_at), pos(step.next_attempt_at), "wait", f"{step.key}: queued")
    for attempt in step.attempts:
        if previous is not None and attempt.started_at is not None:
            add(pos(previous), pos(attempt.started_at), "wait", f"{step.key}: retry delay")
        if attempt.status is StepStatus.RUNNING and attempt.finished_at is None:
            add(pos(attempt.started_at), pos(now), "running", f"attempt {attempt.number}: running")
            previous = now
            continue
        kind = {StepStatus.FAILED: "failed", StepStatus.SUCCEEDED: "ok"}.get(attempt.status, "ran")
        took = "-"
        if attempt.started_at is not None and attempt.finished_at is not None:
            took = render.fmt_duration(_utc(attempt.finished_at) - _utc(attempt.started_at))
        what = f"attempt {attempt.number}: {attempt.status.value} after {took}"
        if attempt.error is not None:
            what += f" ({render.fmt_error(attempt.error)})"
        add(pos(attempt.started_at), pos(attempt.finished_at), kind, what)
        previous = attempt.finished_at
    if step.status is StepStatus.SCHEDULED and step.attempts and previous is not None:
        add(pos(previous), pos(step.next_attempt_at), "wait", f"{step.key}: next attempt")
    if not step.attempts and step.status is StepStatus.SUCCEEDED:
        add(pos(step.started_at or step.created_at), pos(step.finished_at), "ok", step.key)
    return out


# ---------------------------------------------------------------- diagram


def _meta_detail(step: Any) -> str:
    kind = step.type
    if kind == "rpc":
        return f"rpc {step.rpc_name}"
    if kind == "sleep":
        return f"sleep {step.duration}" if step.duration is not None else "sleep"
    if kind == "event":
        timeout = f", timeout {step.timeout}" if step.timeout is not None else ""
        return f"event {step.event_name}{timeout}"
    if kind == "child":
        return f"{'run_child' if step.wait else 'start_child'} {step.workflow_name}"
    return "inline"


def _status_of(recorded: list[StepState]) -> str:
    if not recorded:
        return "not reached"
    statuses = {s.status for s in recorded}
    for status in (
        StepStatus.FAILED,
        StepStatus.RUNNING,
        StepStatus.SCHEDULED,
        StepStatus.PENDING,
    ):
        if status in statuses:
            return status.value
    return StepStatus.SUCCEEDED.value


def diagram(
    run: WorkflowRun[Any, Any],
    steps: Mapping[str, StepState],
    meta: AnalysisReport | None,
    meta_problem: str | None = None,
) -> Diagram:
    """The workflow's steps as the analyzer saw them (``workflow_meta.json``), each with the
    status of the matching recorded steps; without the map, the steps this run recorded."""
    workflow: WorkflowMeta | None = meta.workflow(run.workflow) if meta is not None else None
    by_name: dict[str, list[StepState]] = {}
    for step in steps.values():
        by_name.setdefault(step.step_name, []).append(step)
    if workflow is None:
        if meta_problem:
            note = meta_problem
        elif meta is None:
            note = f"no {META_FILE} found: the steps this run recorded"
        else:
            note = f"{run.workflow!r} is not in {META_FILE}: the steps this run recorded"
        nodes = [
            DiagramNode(
                name=name,
                type=recorded[0].kind.value,
                detail=(
                    f"rpc {recorded[0].rpc_name}" if recorded[0].rpc_name else recorded[0].kind.value
                ),
                description=None,
                in_loop=len(recorded) > 1,
                status=_status_of(recorded),
                count=len(recorded),
            )
            for name, recorded in by_name.items()
        ]
        return Diagram("recorded", nodes, note)
    nodes = []
    claimed: set[str] = set()
    for step_meta in workflow.steps:
        name = step_meta.step_name
        recorded = [] if name == DYNAMIC else by_name.get(name, [])
        claimed.add(name)
        nodes.append(
            DiagramNode(
                name=name,
                type=step_meta.type,
                detail=_meta_detail(step_meta),
                description=step_meta.description,
                in_loop=step_meta.in_loop,
                status=_status_of(recorded) if name != DYNAMIC else "dynamic",
                count=len(recorded),
            )
        )
    extra = [name for name in by_name if name not in claimed]
    extra_note: str | None = None
    if extra:
        extra_note = (
            "recorded but not in the map (dynamic names, or the code changed): "
            + ", ".join(extra[:20])
            + (" ..." if len(extra) > 20 else "")
        )
    return Diagram("meta", nodes, extra_note)


# ------------------------------------------------------------------- meta


@dataclass
class MetaSource:
    """``workflow_meta.json``, reloaded when the file changes (a stat per page)."""

    path: Path | None
    _stamp: tuple[int, int] | None = None
    _report: AnalysisReport | None = None
    problem: str | None = None

    def get(self) -> AnalysisReport | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            self._report, self._stamp = None, None
            self.problem = f"{self.path} is missing: the steps this run recorded"
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._report = AnalysisReport.model_validate_json(self.path.read_bytes())
                self.problem = None
            except (OSError, ValidationError, ValueError) as exc:
                self._report = None
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.problem = f"{self.path} cannot be read ({first}): the steps this run recorded"
        return self._report


def find_meta(start: Path | None = None) -> Path | None:
    """``workflow_meta.json`` of the project around ``start`` (default the cwd): the first
    ``pyproject.toml`` with ``[tool.pikku]`` in it or above it (stopping at a repository
    root) names it as ``<out_dir>/<package>/workflow_meta.json``."""
    directory = (start or Path.cwd()).resolve()
    for candidate_dir in (directory, *directory.parents):
        pyproject = candidate_dir / "pyproject.toml"
        if pyproject.is_file():
            try:
                with pyproject.open("rb") as f:
                    tool = tomllib.load(f).get("tool")
            except (OSError, tomllib.TOMLDecodeError):
                tool = None
            section = tool.get("pikku") if isinstance(tool, dict) else None
            if isinstance(section, dict):
                package = str(section.get("package", "pikku_gen"))
                out_dir = candidate_dir / str(section.get("out_dir", "."))
                path = out_dir / package / META_FILE
                return path.resolve() if path.is_file() else None
        if (candidate_dir / ".git").exists() or (candidate_dir / ".hg").exists():
            return None
    return None
