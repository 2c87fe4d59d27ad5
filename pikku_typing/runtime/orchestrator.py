"""The replay pass: one orchestrator job of a run, and the live continuations of a process.

A pass (:meth:`Orchestrator.run_pass`) holds the run's lock (``lock_run``) from start to end:

1. read the run; a settled run is never replayed; a cancel request ends it;
2. mark it ``running`` with this process as owner;
3. either **resume** the run's live continuation (see below; steps 1-2 are then one
   conditional update, see :meth:`Orchestrator._resume`), or **replay**: read all step
   states ONCE (``get_step_states``) and call the workflow function again from the top with
   a :class:`~pikku_typing.runtime.context.RunContext`;
4. every step call computes its step key (``name``, ``name#1``...), checks the recorded
   step (same kind, same RPC name, same data digest, else
   :class:`WorkflowNonDeterminismError`), returns a succeeded step's stored result rebuilt
   with its type, runs a new inline step (or schedules a remote one), and *parks* when the
   step is scheduled elsewhere, sleeping, or waiting for a retry delay (the step kinds are
   the modules of :mod:`pikku_typing.runtime.kinds`);
5. when the function is blocked only on parked steps, the pass ends (:meth:`_finish_pass`):
   the run becomes ``suspended`` (``wake_at`` = the earliest sleep/retry) and a wake-up job
   is queued; when the function returned or raised, the run is settled.

**Live continuations.** A parked workflow function is not thrown away: its task stays in
memory, awaiting its parked step. The next pass of that run in this process resumes it after
re-reading only the parked steps, if no other process ran a pass in between (the run's
``owner.token`` is still the one this continuation wrote). Otherwise — another process, a
restart, eviction (``live_runs``) — the continuation is unwound by raising the private
:class:`~pikku_typing.runtime.signals.Suspend` from its parked step and the run is replayed
from the store. This keeps a remote-mode run linear in its number of steps instead of
quadratic.

Every attempt of a local step is claimed before it runs and holds a lease kept by a heartbeat.
The first attempt is claimed by the insert of the step itself (``running``, attempt 1 held by
the pass's owner), later ones (retries, abandoned attempts) by ``claim_step``; one more write
records the result or the error (:func:`pikku_typing.runtime.attempt.run_attempt`, shared with
the remote step jobs of :mod:`pikku_typing.runtime.step_jobs`). So a crash mid-attempt is
counted: recovery abandons the attempt of the dead holder (at once on the same host, after
the lease elsewhere), the step runs again (at least once), and the retry limit applies, so a
step that always kills its process ends ``failed`` instead of looping. The cost is a second
write per inline step: ``benchmarks/runtime.py`` section 1 (1000 inline steps, SQLite, 2
CPUs) measured 437 us/step with first attempts written only when they ended, 847 us/step with
the claim, against DBOS at about 3400-3750 us/step: 0.12x -> 0.25x DBOS, within the <= 0.5x
target.

Errors of the store (:class:`StoreUnavailableError`) are never a workflow's failure: a pass
or step job that hits one is abandoned and raised to the queue, which delivers it again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pikku_typing.errors import (
    StepSerializationError,
    StoreUnavailableError,
    WorkflowNotFoundError,
)
from pikku_typing.models import ClaimOwner, ErrorInfo, RunStatus, StepState, WorkflowRun
from pikku_typing.runtime import _observe, codec, lifecycle, process, step_jobs, steps
from pikku_typing.runtime.context import Outcome, RunContext
from pikku_typing.runtime.queues.base import Job, orchestrator_queue
from pikku_typing.runtime.services import Services, enqueue_orchestrator
from pikku_typing.runtime.signals import (
    Cancelled,
    Interrupted,
    JobInterrupted,
    StepFailedError,
    Suspend,
    Unavailable,
)
from pikku_typing.state.base import RunChanges
from pikku_typing.wiring import WorkflowDefinition

__all__ = ["Orchestrator"]

log = logging.getLogger("pikku.runtime")


@dataclass
class _Live:
    ctx: RunContext
    task: asyncio.Task[Outcome]
    owner: ClaimOwner


class Orchestrator:
    """Runs orchestrator passes and step jobs; holds this process's live continuations."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self._live: OrderedDict[str, _Live] = OrderedDict()

    # ---------------------------------------------------------------- passes
    async def run_pass(self, run_id: str, fresh: StepState | None = None) -> None:
        """One pass of the run (see the module doc). ``fresh``: a parked step as it was just
        stored by this process (a step job that continues the pass here): a live
        continuation resumes it without reading it again."""
        state = self.s.state
        async with state.lock_run(run_id):
            live = self._live.pop(run_id, None)
            if live is not None and (
                live.task.done() or live.task.get_loop() is not asyncio.get_running_loop()
            ):
                live = None  # its event loop is gone (another asyncio.run): replay instead
            if live is not None and await self._resume(run_id, live, fresh):
                return
            run = await state.get_run(run_id)
            if run.status.is_settled:
                self.s.on_settled(run_id)
                return
            if run.cancel_requested:
                await self._settle(run_id, RunStatus.CANCELLED)
                return
            try:
                definition = self.s.registry.get_workflow(run.workflow)
            except WorkflowNotFoundError as exc:
                await self._unknown_workflow(run, exc)
                return
            owner = process.new_owner()
            started_live: _Live | None = None
            with process.holding(owner.token):  # a store outage: its attempts are not counted
                try:
                    changes = RunChanges(status=RunStatus.RUNNING, owner=owner, wake_at=None)
                    if run.error is not None and run.error.type == WorkflowNotFoundError.__name__:
                        # a worker that has the workflow now: the run goes on, the note goes
                        changes = RunChanges(
                            status=RunStatus.RUNNING, owner=owner, wake_at=None, error=None
                        )
                    started = await state.transition_run(
                        run_id, (RunStatus.RUNNING, RunStatus.SUSPENDED), changes
                    )
                    if started is None:  # settled meanwhile
                        self.s.on_settled(run_id)
                        return
                    started_live = await self._start(started, definition, owner)
                    if started_live is None:
                        return
                    outcome = await started_live.ctx.settle(started_live.task)
                    await self._finish_pass(run_id, definition, started_live, outcome)
                except BaseException:
                    # e.g. the store went away: drop the continuation (the redelivered job
                    # replays the run from the store)
                    await self._drop(run_id, started_live)
                    raise

    async def _resume(self, run_id: str, live: _Live, fresh: StepState | None) -> bool:
        """A pass that resumes the run's live continuation, if it is still the run's.

        One statement where a replay takes two: the run goes from ``suspended`` to
        ``running`` (its owner unchanged) only if it is still suspended, and the run as
        updated says whether the continuation may go on: its owner token is the one this
        continuation wrote (no other process ran a pass since), no cancel request, no note.
        Else the continuation is discarded and ``False`` returned: the caller reads the run
        and replays it (the run may now be ``running``, which a replay accepts)."""
        with process.holding(live.owner.token):
            try:
                started = await self.s.state.transition_run(
                    run_id, (RunStatus.SUSPENDED,),
                    RunChanges(status=RunStatus.RUNNING, wake_at=None),
                )
                definition = (
                    None if started is None else self.s.registry.workflows.get(started.workflow)
                )
                if (
                    started is None
                    or definition is None
                    or started.cancel_requested
                    or started.error is not None
                    or started.owner is None
                    or started.owner.token != live.owner.token
                ):
                    await self._discard(live)
                    return False
                await live.ctx.resume(fresh)
                outcome = await live.ctx.settle(live.task)
                await self._finish_pass(run_id, definition, live, outcome)
                return True
            except BaseException:
                await self._drop(run_id, live)
                raise

    async def _drop(self, run_id: str, live: _Live | None) -> None:
        """A pass failed (e.g. the store went away): drop its continuation; the redelivered
        job replays the run from the store."""
        if live is None:
            return
        if self._live.get(run_id) is live:
            del self._live[run_id]
        await self._discard(live)

    async def _unknown_workflow(
        self, run: WorkflowRun[Any, Any], exc: WorkflowNotFoundError
    ) -> None:
        """This process does not have the run's workflow (a deploy removed it, or the worker
        imports the wrong module). The run is not failed: it records why
        (``error.type == "WorkflowNotFoundError"``, visible in ``get_run`` and ``pikku-runs
        show``), stays ``suspended`` and is woken again after
        ``Services.unknown_workflow_retry`` seconds, so a worker that has the workflow
        finishes it (and clears the note). This worker goes on serving other runs."""
        delay = self.s.unknown_workflow_retry
        wake = steps.now() + timedelta(seconds=delay)
        message = (
            f"workflow {run.workflow!r} is not registered in the worker that picked up run "
            f"{run.id!r} ({process.hostname()} pid {os.getpid()}): {exc}; the run waits for "
            f"a worker that has it (retried every {delay:g}s)"
        )
        log.error("%s", message)
        await self.s.state.transition_run(
            run.id,
            (RunStatus.RUNNING, RunStatus.SUSPENDED),
            RunChanges(
                status=RunStatus.SUSPENDED,
                wake_at=wake,
                error=ErrorInfo(type=WorkflowNotFoundError.__name__, message=message),
            ),
        )
        await enqueue_orchestrator(self.s.queue, run.workflow, run.id, wake)

    async def _start(
        self, run: WorkflowRun[Any, Any], definition: WorkflowDefinition, owner: ClaimOwner
    ) -> _Live | None:
        recorded = await self.s.state.get_step_states(run.id)
        ctx = RunContext(self.s, definition, run, recorded, owner)
        try:
            data = codec.decode(run.input, definition.input_type, what=f"run {run.id!r} input")
        except Exception as exc:
            await self._settle(run.id, RunStatus.FAILED, error=steps.error_info(exc))
            return None
        task = asyncio.create_task(self._body(ctx, definition, data))
        return _Live(ctx, task, owner)

    async def _body(self, ctx: RunContext, definition: WorkflowDefinition, data: Any) -> Outcome:
        try:
            outcome = await self._call_workflow(ctx, definition, data)
        except StoreUnavailableError as exc:
            ctx.infra = ctx.infra or exc
        if ctx.infra is not None:
            # the store failed under the pass: not the workflow's fault, the job runs again
            raise ctx.infra
        return outcome

    async def _call_workflow(
        self, ctx: RunContext, definition: WorkflowDefinition, data: Any
    ) -> Outcome:
        try:
            result = await definition.func(ctx, data)
        except Cancelled:
            return Outcome("cancelled")
        except Suspend:
            return Outcome("unwound")
        except Unavailable as exc:
            ctx.infra = ctx.infra or exc.error
            raise ctx.infra from None
        except Interrupted as exc:  # a step was interrupted: the worker stops
            raise JobInterrupted(exc.original) from None
        except StoreUnavailableError:
            raise
        except StepFailedError as exc:
            if ctx.fatal is not None:
                return Outcome("failed", error=steps.error_info(ctx.fatal))
            return Outcome("failed", error=exc.info)
        except Exception as exc:
            if ctx.fatal is not None and ctx.fatal is not exc:
                return Outcome("failed", error=steps.error_info(ctx.fatal))
            return Outcome("failed", error=steps.error_info(exc))
        if ctx.fatal is not None:
            return Outcome("failed", error=steps.error_info(ctx.fatal))
        try:
            encoded, _ = codec.encode(
                result, definition.output_type,
                what=f"workflow {definition.name!r} run {ctx.run_id!r} output",
            )
        except StepSerializationError as exc:
            return Outcome("failed", error=steps.error_info(exc))
        return Outcome("completed", output=encoded)

    async def _finish_pass(
        self, run_id: str, definition: WorkflowDefinition, live: _Live, outcome: Outcome
    ) -> None:
        if outcome.kind == "suspended":
            wake_at = live.ctx.wake_at()
            updated = await self.s.state.transition_run(
                run_id, (RunStatus.RUNNING,), RunChanges(status=RunStatus.SUSPENDED, wake_at=wake_at)
            )
            if updated is None:
                await self._discard(live)
                return
            self._keep(run_id, live)
            if wake_at is not None:
                await enqueue_orchestrator(self.s.queue, definition.name, run_id, wake_at)
            if await live.ctx.ready_now():  # an event or a child came during the pass
                await enqueue_orchestrator(self.s.queue, definition.name, run_id)
            return
        await self._discard(live)
        if outcome.kind == "completed":
            await self._settle(run_id, RunStatus.COMPLETED, output=outcome.output)
        elif outcome.kind == "failed":
            await self._settle(run_id, RunStatus.FAILED, error=outcome.error)
        elif outcome.kind == "cancelled":
            await self._settle(run_id, RunStatus.CANCELLED)
        else:  # unwound without being asked to: replay it
            await enqueue_orchestrator(self.s.queue, definition.name, run_id)

    async def _settle(
        self, run_id: str, status: RunStatus, *, output: Any = None, error: ErrorInfo | None = None
    ) -> None:
        changes = RunChanges(status=status, wake_at=None)
        if status is RunStatus.COMPLETED:
            changes = RunChanges(status=status, output=output, wake_at=None)
        elif error is not None:
            changes = RunChanges(status=status, error=error, wake_at=None)
        settled = await self.s.state.transition_run(
            run_id, (RunStatus.RUNNING, RunStatus.SUSPENDED), changes
        )
        if settled is not None:
            _observe.run_settled(settled.workflow, run_id, status, error)
        self.s.on_settled(run_id)
        if settled is not None:  # wake a waiting parent, cancel children of a cancelled run
            await lifecycle.after_settled(self.s, settled)

    def _keep(self, run_id: str, live: _Live) -> None:
        self._live[run_id] = live
        self._live.move_to_end(run_id)
        while len(self._live) > max(self.s.live_runs, 0):
            _, oldest = self._live.popitem(last=False)
            oldest.ctx.unwind()

    async def _discard(self, live: _Live | None) -> None:
        if live is None:
            return
        busy = not live.ctx.parked
        live.ctx.unwind()
        if not live.task.done():
            if busy:
                live.task.cancel()
            await asyncio.wait({live.task})

    # ------------------------------------------------------------ step jobs
    async def run_step(self, workflow: str, run_id: str, key: str) -> None:
        """Run a remote step's due attempt (a step job): see :mod:`~pikku_typing.runtime.step_jobs`."""
        await step_jobs.run_step(self.s, workflow, run_id, key, wake=self._after_step)

    async def _after_step(self, workflow: str, run_id: str, step: StepState) -> None:
        """A step job stored its step's outcome: the run goes on. When this process holds
        the run's live continuation and serves the workflow's orchestrator queue, the pass
        continues right here, in the step job ("continue in the step worker": no
        orchestrator job queued and picked up again, and the stored step is not read
        again); it takes ``lock_run`` like any pass. Otherwise an orchestrator pass is
        queued (another process may hold the continuation, or serve the queue)."""
        if run_id not in self._live or not self.s.serves_orchestrator(workflow):
            await enqueue_orchestrator(self.s.queue, workflow, run_id)
            return
        # the pass's span and logs, as if its job had been picked up
        job = Job(queue=orchestrator_queue(workflow), kind="orchestrate", workflow=workflow,
                  run_id=run_id)
        with _observe.job(job):
            await self.run_pass(run_id, step)

    async def close(self) -> None:
        """Unwind every live continuation (they are replayed from the store if needed)."""
        lives = list(self._live.values())
        self._live.clear()
        loop = asyncio.get_running_loop()
        for live in lives:
            if live.task.get_loop() is loop:
                await self._discard(live)
