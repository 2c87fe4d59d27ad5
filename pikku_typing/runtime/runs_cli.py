"""``pikku-runs``: inspect and operate workflow runs on any state store.

    pikku-runs [--store URL] list [--workflow NAME] [--status STATUS[,STATUS]] [--limit N]
    pikku-runs [--store URL] show RUN_ID [--traceback]
    pikku-runs [--store URL] cancel RUN_ID
    pikku-runs [--store URL] resume RUN_ID [--attempts N]
    pikku-runs [--store URL] serve [--host 127.0.0.1] [--port 8765] [--token TOKEN]
    pikku-runs [--store URL] export RUN_ID
    pikku-runs [--store URL] replay [RUN_ID ...] [--all-unsettled] [--from FILE] [--app MODULE]

``--store`` is ``file:DIR``, ``sqlite:PATH`` or ``postgres:DSN`` (a ``postgresql://`` URL is
accepted as it is); the default is the embedded store ``file:.pikku/state``. Every command
takes ``--format text|json`` (before or after the command). Exit codes: 0 done, 1 the run is
unknown or the action is refused (already settled, not safe to resume), 2 usage error,
3 the store cannot be reached. Errors are one line on stderr, never a traceback.

``cancel`` goes through ``WorkflowRuntime(state=store).cancel_run`` (:func:`cancel_run`);
``resume`` is defined in :func:`resume_run_in_store`. Neither imports user code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from pikku_typing._term import one_line
from pikku_typing.errors import (
    InvalidRunIdError,
    RunNotFoundError,
    StateCorruptedError,
    StoreUnavailableError,
)
from pikku_typing.models import RunStatus, StepState, StepStatus, WorkflowRun
from pikku_typing.runtime import _runs_render as render
from pikku_typing.state.base import DamagedRun, RunChanges, WorkflowStateService

DEFAULT_STORE: Final = "file:.pikku/state"
DEFAULT_LIMIT: Final = 50

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_STORE: Final = 3


class CliError(Exception):
    """An expected failure: printed as one line, exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------ store


async def open_store(url: str) -> WorkflowStateService:
    """Open an EXISTING store for inspection: the URL is read by
    :func:`pikku_typing.state.open_store` (one parser: ``file:``, ``sqlite:`` with their
    ``///`` and ``?option`` forms, ``postgres:``, ``memory:``), and a missing directory or
    database file is an error (never created by a read)."""
    from pikku_typing.state import FileWorkflowStateService, SqliteWorkflowStateService
    from pikku_typing.state import open_store as open_state_store

    try:
        store = open_state_store(url)
    except ValueError as exc:  # not a store URL: a usage error
        raise CliError(f"unknown store {url!r}: {exc}", EXIT_USAGE) from exc
    except Exception as exc:  # any backend failure is one line, not a traceback
        raise CliError(f"cannot open store {url}: {one_line(exc)}", EXIT_STORE) from exc
    if isinstance(store, FileWorkflowStateService) and not store.directory.is_dir():
        raise CliError(
            f"no file store at {store.directory} (the directory does not exist)", EXIT_STORE
        )
    if isinstance(store, SqliteWorkflowStateService) and not store.path.is_file():
        raise CliError(f"no SQLite store at {store.path} (the file does not exist)", EXIT_STORE)
    return store


async def _get_run(store: WorkflowStateService, run_id: str) -> WorkflowRun[Any, Any]:
    try:
        return await store.get_run(run_id)
    except RunNotFoundError as exc:
        raise CliError(f"no run {run_id!r} in this store") from exc
    except InvalidRunIdError as exc:
        raise CliError(str(exc)) from exc


# ----------------------------------------------------------- cancel/resume


@dataclass
class ActionResult:
    run: WorkflowRun[Any, Any]
    done: bool
    action: str
    message: str
    reset_steps: list[str] = field(default_factory=list)

    def to_json(self, key: str) -> dict[str, Any]:
        return {
            "run_id": self.run.id,
            key: self.done,
            "action": self.action,
            "status": self.run.status.value,
            "cancel_requested": self.run.cancel_requested,
            "reset_steps": self.reset_steps,
            "message": self.message,
        }


async def cancel_run_in_store(store: WorkflowStateService, run_id: str) -> ActionResult:
    """Cancel a run with the runtime's semantics, on the store alone.

    * settled (completed, failed, cancelled): refused, nothing changes;
    * ``suspended``: no process holds it, so it becomes ``cancelled`` at once (compare-and-set
      from ``suspended``), with ``cancel_requested`` set and its wake-up cleared; nothing of
      it runs again (a settled run is never replayed, its queued jobs are ignored);
    * ``running``: an orchestrator pass holds it, so only ``cancel_requested`` is set
      (compare-and-set from ``running``); the pass stops at its next step boundary and
      settles the run as ``cancelled`` (``recover()`` does the same for a dead holder).
    """
    for _ in range(5):
        run = await _get_run(store, run_id)
        if run.status.is_settled:
            return ActionResult(run, False, "none", f"run {run_id} is already {run.status.value}")
        if run.status is RunStatus.SUSPENDED:
            updated = await store.transition_run(
                run_id,
                (RunStatus.SUSPENDED,),
                RunChanges(status=RunStatus.CANCELLED, cancel_requested=True, wake_at=None),
            )
            if updated is not None:
                return ActionResult(updated, True, "cancelled", f"run {run_id} cancelled")
        else:
            updated = await store.transition_run(
                run_id, (RunStatus.RUNNING,), RunChanges(cancel_requested=True)
            )
            if updated is not None:
                return ActionResult(
                    updated,
                    True,
                    "cancel_requested",
                    f"cancel requested for run {run_id}: it is running and stops at its next "
                    "step boundary",
                )
    run = await _get_run(store, run_id)
    raise CliError(f"run {run_id} kept changing status (now {run.status.value}); try again")


async def cancel_run(store: WorkflowStateService, run_id: str) -> ActionResult:
    """Cancel through the runtime: ``WorkflowRuntime(state=store).cancel_run(run_id)`` (the
    same semantics as :func:`cancel_run_in_store`; it also queues an orchestrator pass on its
    in-process queue, which this short-lived process never runs: a worker or
    ``runtime.recover()`` settles a running run that a dead process left behind). Falls back
    to :func:`cancel_run_in_store` when the runtime cannot be built."""
    run = await _get_run(store, run_id)
    if run.status.is_settled:
        return ActionResult(run, False, "none", f"run {run_id} is already {run.status.value}")
    try:
        from pikku_typing.runtime.runtime import WorkflowRuntime

        runtime = WorkflowRuntime(state=store)
    except Exception:  # a runtime that cannot be built: the store-level semantics
        return await cancel_run_in_store(store, run_id)
    try:
        done = await runtime.cancel_run(run_id)
    finally:
        with contextlib.suppress(Exception):
            await runtime.close()
    run = await _get_run(store, run_id)
    if not done:
        return ActionResult(run, False, "none", f"run {run_id} is already {run.status.value}")
    if run.status is RunStatus.CANCELLED:
        return ActionResult(run, True, "cancelled", f"run {run_id} cancelled")
    return ActionResult(
        run,
        True,
        "cancel_requested",
        f"cancel requested for run {run_id}: it is running and stops at its next step boundary",
    )


NON_RESUMABLE_ERRORS: Final = frozenset({"WorkflowNonDeterminismError", "WorkflowCancelledError"})


async def resume_run_in_store(
    store: WorkflowStateService, run_id: str, *, attempts: int = 1
) -> ActionResult:
    """Make a failed or suspended run due again, when that is safe.

    "Safe" means: no step that succeeded runs again (replay returns its stored result), no
    attempt that may still be in flight is duplicated, and the replay cannot attach recorded
    results to a different path. Precisely:

    * ``failed`` is resumable when no step is ``running`` and no cancel was requested, and
      the error is not a ``WorkflowNonDeterminismError`` (the code no longer matches the
      recorded steps). If it failed at a step (its ``error.step``, else the last ``failed``
      step), that step is reset for ``attempts`` new attempts: ``scheduled``, due now, error
      cleared, ``max_attempts = attempt_count + attempts``; earlier attempts stay recorded.
      If it failed outside any step (the workflow body raised) nothing is reset and the
      replay runs the (presumably fixed) body again. Then the run goes ``failed`` ->
      ``suspended`` (compare-and-set), error cleared, ``wake_at`` now.
    * ``suspended`` is always safe: its wake-up is set to now (never later than it was). The
      orchestrator re-checks every step on replay, so a sleep that has not ended or a retry
      that is not due keeps the run suspended; this only re-offers a run whose job was lost.
    * ``running``, ``completed``, ``cancelled``: refused.

    A worker must then pick the run up: ``pikku-worker --recover`` or ``runtime.recover()`` (the store
    has no queue of its own).
    """
    if attempts < 1:
        raise CliError("--attempts must be at least 1", EXIT_USAGE)
    run = await _get_run(store, run_id)
    now = datetime.now(UTC)
    if run.status is RunStatus.SUSPENDED:
        wake = now if run.wake_at is None else min(_aware(run.wake_at), now)
        updated = await store.transition_run(
            run_id, (RunStatus.SUSPENDED,), RunChanges(wake_at=wake)
        )
        if updated is None:
            raise CliError(f"run {run_id} changed status while resuming; try again")
        return ActionResult(
            updated,
            True,
            "woken",
            f"run {run_id} is due now; a worker picks it up (pikku-worker --recover, or runtime.recover())",
        )
    if run.status is not RunStatus.FAILED:
        raise CliError(_not_resumable(run))
    try:
        async with store.lock_run(run_id, timeout=10):
            return await _resume_failed(store, run_id, attempts=attempts, now=now)
    except TimeoutError:
        raise CliError(
            f"cannot resume run {run_id}: another process holds its lock; try again"
        ) from None


def _not_resumable(run: WorkflowRun[Any, Any]) -> str:
    why = {
        RunStatus.RUNNING: "it is running",
        RunStatus.COMPLETED: "it completed",
        RunStatus.CANCELLED: "it was cancelled",
    }.get(run.status, f"it is {run.status.value}")
    return f"cannot resume run {run.id}: {why} (only failed or suspended runs)"


async def _resume_failed(
    store: WorkflowStateService, run_id: str, *, attempts: int, now: datetime
) -> ActionResult:
    """The ``failed`` case of :func:`resume_run_in_store`, under the run's lock."""
    run = await _get_run(store, run_id)
    if run.status is not RunStatus.FAILED:
        raise CliError(_not_resumable(run))
    if run.cancel_requested:
        raise CliError(f"cannot resume run {run_id}: a cancel was requested")
    if run.error is not None and run.error.type in NON_RESUMABLE_ERRORS:
        raise CliError(
            f"cannot resume run {run_id}: it failed with {run.error.type}; the workflow code no "
            "longer matches its recorded steps, so a replay is not safe"
        )
    steps = await store.get_step_states(run_id)
    in_flight = [s.key for s in steps.values() if s.status is StepStatus.RUNNING]
    if in_flight:
        raise CliError(
            f"cannot resume run {run_id}: step {', '.join(in_flight)} still has an attempt "
            "running (a worker may hold it)"
        )
    failure = render.find_failure(run, steps)
    reset: list[str] = []
    if failure is not None and failure.step is not None:
        step = failure.step
        if step.status is StepStatus.FAILED:
            await _reset_step(store, run_id, step, attempts=attempts, now=now)
            reset.append(step.key)
    updated = await store.transition_run(
        run_id,
        (RunStatus.FAILED,),
        RunChanges(status=RunStatus.SUSPENDED, error=None, wake_at=now, owner=None),
    )
    if updated is None:
        raise CliError(f"run {run_id} changed status while resuming; try again")
    what = f"step {reset[0]} reset for a new attempt" if reset else "no step to reset"
    return ActionResult(
        updated,
        True,
        "resumed",
        f"run {run_id} resumed ({what}); a worker picks it up "
        "(pikku-worker --recover, or runtime.recover())",
        reset,
    )


async def _reset_step(
    store: WorkflowStateService, run_id: str, step: StepState, *, attempts: int, now: datetime
) -> None:
    """Give a failed step ``attempts`` new attempts, due ``now``
    (:meth:`WorkflowStateService.reset_step`: guarded by ``status == failed``, atomic)."""
    key = step.key
    if await store.reset_step(run_id, key, attempts=attempts, at=now) is None:
        raise CliError(f"step {key} of run {run_id} changed while resuming; try again")


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# ---------------------------------------------------------------- commands


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"file:DIR, sqlite:PATH or postgres:DSN (default {DEFAULT_STORE})",
    )
    common.add_argument(
        "--format",
        choices=("text", "json"),
        default=argparse.SUPPRESS,
        help="output format (default text)",
    )
    parser = argparse.ArgumentParser(
        prog="pikku-runs",
        description="Inspect and operate workflow runs on a state store.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p_list = sub.add_parser("list", parents=[common], help="list runs, newest first")
    p_list.add_argument("--workflow", metavar="NAME")
    p_list.add_argument(
        "--status",
        metavar="STATUS",
        help="running, suspended, completed, failed, cancelled (comma-separated)",
    )
    p_list.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N runs (default {DEFAULT_LIMIT}; 0 for all)",
    )

    p_show = sub.add_parser("show", parents=[common], help="a run, its steps and a timeline")
    p_show.add_argument("run_id", metavar="RUN_ID")
    p_show.add_argument(
        "--traceback", action="store_true", help="print the stored traceback of the failing error"
    )

    p_cancel = sub.add_parser("cancel", parents=[common], help="cancel a run")
    p_cancel.add_argument("run_id", metavar="RUN_ID")

    p_resume = sub.add_parser(
        "resume", parents=[common], help="make a failed or suspended run due again, when safe"
    )
    p_resume.add_argument("run_id", metavar="RUN_ID")
    p_resume.add_argument(
        "--attempts",
        type=int,
        default=1,
        metavar="N",
        help="new attempts for the failed step (default 1)",
    )
    _add_serve_parser(sub, common)
    _add_deploy_parsers(sub, common)
    return parser


def _add_deploy_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """``export`` and ``replay`` (SPEC section 9, :mod:`pikku_typing.runtime.replayer`)."""
    p_export = sub.add_parser(
        "export", parents=[common], help="a run and its steps as a JSON history (for replay --from)"
    )
    p_export.add_argument("run_id", metavar="RUN_ID")
    p_replay = sub.add_parser(
        "replay",
        parents=[common],
        help="replay recorded runs against the current code without running any step",
    )
    p_replay.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    p_replay.add_argument(
        "--all-unsettled", action="store_true", help="every running or suspended run of the store"
    )
    p_replay.add_argument(
        "--from",
        dest="from_files",
        action="append",
        default=[],
        metavar="FILE",
        help="an exported history (pikku-runs export), '-' for stdin; repeatable",
    )
    p_replay.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="MODULE",
        help=(
            "module that wires the workflows (repeatable; default: the generated "
            "<package>.workflow_wirings of [tool.pikku] found from the current directory)"
        ),
    )


def _add_serve_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``serve``: the web console (``pikku_typing.console``, extra ``pikku-workflows[console]``)."""
    p_serve = sub.add_parser(
        "serve", parents=[common], help="the web console (needs pikku-workflows[console])"
    )
    p_serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p_serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p_serve.add_argument(
        "--token",
        default=None,
        help="required on every request (default $PIKKU_CONSOLE_TOKEN); needed off loopback",
    )
    p_serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host header name to answer (repeatable)",
    )
    p_serve.add_argument(
        "--meta", metavar="PATH", help="workflow_meta.json for step diagrams (default: found)"
    )
    p_serve.add_argument(
        "--page-size", type=int, default=50, metavar="N", help="runs per page (default 50)"
    )


def _serve(args: argparse.Namespace) -> int:
    from pikku_typing.console import missing_extra

    problem = missing_extra()
    if problem is not None:
        raise CliError(problem, EXIT_USAGE)
    from pikku_typing.console.server import serve

    return serve(
        store_url=getattr(args, "store", DEFAULT_STORE),
        host=args.host,
        port=args.port,
        token=args.token,
        allow_hosts=args.allow_host,
        meta=args.meta,
        page_size=args.page_size,
    )


def _parse_statuses(text: str | None) -> list[RunStatus] | None:
    if not text:
        return None
    statuses = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            statuses.append(RunStatus(part))
        except ValueError:
            valid = ", ".join(s.value for s in RunStatus)
            raise CliError(f"unknown status {part!r}: use {valid}", EXIT_USAGE) from None
    return statuses


def _matching_damaged(
    damaged: Sequence[DamagedRun], workflow: str | None, statuses: Sequence[RunStatus] | None
) -> list[DamagedRun]:
    """Damaged runs a filtered ``list`` shows: those whose known workflow/status match (a
    run whose workflow or status cannot be read is always shown)."""
    return [
        d
        for d in damaged
        if (workflow is None or d.workflow in (None, workflow))
        and (not statuses or d.status is None or d.status in statuses)
    ]


def _emit_json(stream: TextIO, payload: Any) -> None:
    stream.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


async def _run_command(args: argparse.Namespace, out: TextIO) -> int:
    fmt: str = getattr(args, "format", "text")
    store_url: str = getattr(args, "store", DEFAULT_STORE)
    if args.command in ("replay", "export"):
        from pikku_typing.runtime.deploys_cli import run_deploy_command

        return await run_deploy_command(args, out, fmt=fmt, store_url=store_url)
    if args.command == "list" and args.limit < 0:
        raise CliError("--limit must be 0 or more", EXIT_USAGE)
    statuses = _parse_statuses(args.status) if args.command == "list" else None
    store = await open_store(store_url)
    paint = render.Painter(fmt == "text" and render.use_colour(out))
    try:
        if args.command == "list":
            runs = await store.list_runs(
                workflow=args.workflow, status=statuses, limit=args.limit or None
            )
            damaged = _matching_damaged(await store.list_damaged(), args.workflow, statuses)
            damaged_ids = {d.run_id for d in damaged}
            runs = [r for r in runs if r.id not in damaged_ids]  # shown as damaged instead
            if fmt == "json":
                _emit_json(
                    out,
                    {
                        "runs": [r.model_dump(mode="json") for r in runs],
                        "damaged": [d.to_json() for d in damaged],
                    },
                )
            else:
                out.write(render.render_list(runs, paint) + "\n")
                if args.limit and len(runs) == args.limit:
                    out.write(
                        paint(f"(limited to {args.limit}; --limit 0 lists all)", "dim") + "\n"
                    )
                if damaged:
                    out.write(render.render_damaged(damaged, paint) + "\n")
            return EXIT_OK
        if args.command == "show":
            try:
                run = await _get_run(store, args.run_id)
                steps = await store.get_step_states(args.run_id)
            except StateCorruptedError as exc:
                if fmt == "json":
                    _emit_json(
                        out,
                        DamagedRun(run_id=args.run_id, problem=str(exc)).to_json(),
                    )
                else:
                    out.write(render.explain_damaged(args.run_id, str(exc)) + "\n")
                return EXIT_REFUSED
            if fmt == "json":
                failure = render.find_failure(run, steps)
                _emit_json(
                    out,
                    {
                        "run": run.model_dump(mode="json"),
                        "steps": [s.model_dump(mode="json") for s in steps.values()],
                        "failure": failure.to_json() if failure is not None else None,
                    },
                )
            else:
                width = shutil.get_terminal_size((100, 24)).columns
                out.write(
                    render.render_show(run, steps, paint, width=width, traceback=args.traceback)
                    + "\n"
                )
            return EXIT_OK
        if args.command == "cancel":
            result = await cancel_run(store, args.run_id)
            if fmt == "json":
                _emit_json(out, result.to_json("cancelled"))
            elif not result.done:
                raise CliError(f"nothing to cancel: {result.message}")
            else:
                out.write(result.message + "\n")
            return EXIT_OK if result.done else EXIT_REFUSED
        if args.command == "resume":
            result = await resume_run_in_store(store, args.run_id, attempts=args.attempts)
            if fmt == "json":
                _emit_json(out, result.to_json("resumed"))
            else:
                out.write(result.message + "\n")
            return EXIT_OK
        raise CliError(f"unknown command {args.command!r}", EXIT_USAGE)  # pragma: no cover
    finally:
        with contextlib.suppress(Exception):  # closing must not turn a result into a traceback
            await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    out = sys.stdout
    try:
        if args.command == "serve":
            return _serve(args)
        return asyncio.run(_run_command(args, out))
    except CliError as exc:
        print(f"pikku-runs: {exc}", file=sys.stderr)
        return exc.code
    except (StoreUnavailableError, OSError, TimeoutError) as exc:
        print(f"pikku-runs: store unavailable: {one_line(exc)}", file=sys.stderr)
        return EXIT_STORE
    except StateCorruptedError as exc:
        print(f"pikku-runs: store is corrupt: {one_line(exc)}", file=sys.stderr)
        return EXIT_STORE
    except RunNotFoundError as exc:
        print(f"pikku-runs: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the inspector never ends in a traceback
        print(f"pikku-runs: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_STORE


if __name__ == "__main__":  # python -m: run the imported module (one CliError class)
    from pikku_typing.runtime.runs_cli import main as _main

    raise SystemExit(_main())
