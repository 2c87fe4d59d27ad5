"""``WorkflowRuntime``, its typed ``WorkflowClient`` and ``RunHandle``.

.. code-block:: python

    runtime = WorkflowRuntime()                 # file store under .pikku/state and its job queue
    client = runtime.client("onboarding")
    handle = await client.start({"email": "a@example.com", ...})
    await runtime.drain()                       # run every due job (sleeps not due stay suspended)
    output = await client.result(handle.run_id, timeout=10)

* ``drain()`` runs every job that is due, including jobs queued meanwhile, until none is due.
* ``serve(stop=...)`` runs the workers until ``stop`` is set (or the task is cancelled).
* ``recover()`` rebuilds the queue from the store after a restart: a pass for every run that is
  not settled (except runs a live process on this host is running); each pass re-queues the
  remote steps it waits for, abandons step attempts of dead holders and re-arms sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from pikku_typing._log import runtime_log
from pikku_typing.errors import (
    RunAlreadyExistsError,
    RunExistsError,
    StateCorruptedError,
    StepSerializationError,
    StoreUnavailableError,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowInputError,
)
from pikku_typing.models import RunStatus, StepState, StepStatus, WorkflowRun
from pikku_typing.runtime import _observe, codec, lifecycle, process
from pikku_typing.runtime import steps as steps_module
from pikku_typing.runtime import workers as workers_module
from pikku_typing.runtime.orchestrator import Orchestrator
from pikku_typing.runtime.queues.base import Job, WorkflowQueue, orchestrator_queue
from pikku_typing.runtime.services import EagerSlots, Services, enqueue_orchestrator, typed_run
from pikku_typing.runtime.signals import Interrupted, JobInterrupted
from pikku_typing.runtime.workers import handle_job as dispatch_job
from pikku_typing.state.base import WorkflowStateService
from pikku_typing.wiring import Registry, WorkflowDefinition, registry, workflow_version

log = runtime_log

InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")

WorkerFunc = Callable[["WorkflowRuntime", Job], Awaitable[None]]
"""A job handler for one queue: ``async def worker(runtime, job) -> None``."""

DEFAULT_STATE_DIR = ".pikku/state"

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (StoreUnavailableError, TimeoutError)

START_RETRIES = 5
"""How many times ``client.start`` retries a transient failure (0.05, 0.1 ... 0.8 s apart)."""
START_RETRY_DELAY = 0.05
"""Errors that mean "the infrastructure is briefly away", not "the job is wrong": a job that
raises one is redelivered by its queue instead of being marked done."""



POLL_FIRST = 0.005
"""Seconds ``result()`` first waits between two reads of the run; the wait grows 1.5x per read."""
POLL_MAX = 0.25
"""The longest wait between two reads on a store that cannot push settle notices."""
POLL_MAX_PUSHED = 2.0
"""The longest wait on a store that pushes them (a notice ends the wait at once; the reads are
a safety net for a listener that is down)."""

class RunHandle(Generic[OutputT]):
    """What ``client.start`` returns: the run's id, and shortcuts to wait for it."""

    __slots__ = ("_client", "run_id")

    def __init__(self, client: WorkflowClient[Any, OutputT], run_id: str) -> None:
        self._client = client
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"RunHandle(workflow={self._client.name!r}, run_id={self.run_id!r})"

    async def result(self, timeout: float | None = None) -> OutputT:
        return await self._client.result(self.run_id, timeout=timeout)

    async def get_run(self) -> WorkflowRun[Any, OutputT]:
        return await self._client.get_run(self.run_id)

    async def cancel(self) -> bool:
        return await self._client.cancel_run(self.run_id)


class WorkflowClient(Generic[InputT, OutputT]):
    """Starts and inspects the runs of one workflow. Get one from ``runtime.client(name)``
    (typed by the generated ``workflow_client(runtime, name)``)."""

    def __init__(self, runtime: WorkflowRuntime, definition: WorkflowDefinition) -> None:
        self._runtime = runtime
        self._definition = definition

    @property
    def name(self) -> str:
        return self._definition.name

    def __repr__(self) -> str:
        return f"WorkflowClient({self.name!r})"

    async def start(self, input: InputT, *, run_id: str | None = None) -> RunHandle[OutputT]:
        """Validate ``input`` against the workflow's input annotation (raise
        :class:`WorkflowInputError`), store a new run and queue its first pass.

        With ``run_id`` the start is idempotent (one atomic insert in the store, across
        processes): when a run with that id already exists for this workflow with the same
        input, its handle is returned (and its pass queued again if it has not settled, in
        case the first start crashed before queueing it); with another input, or for another
        workflow, :class:`RunExistsError` is raised.

        A transient failure of the store or queue (:class:`StoreUnavailableError`,
        ``TimeoutError``) is retried ``START_RETRIES`` times with a doubling backoff before
        it is raised; the run id is drawn before the first try, so a retry after an insert
        whose reply was lost finds that run instead of starting a second one."""
        try:
            typed, encoded = codec.coerce(input, self._definition.input_type, what="input")
        except StepSerializationError as exc:
            raise WorkflowInputError(
                f"invalid input for workflow {self.name!r}: {exc}"
            ) from exc
        the_id = run_id if run_id is not None else uuid.uuid4().hex
        delay = START_RETRY_DELAY
        for attempt in range(START_RETRIES + 1):
            try:
                return await self._start_once(the_id, encoded, typed)
            except TRANSIENT_ERRORS as exc:
                if attempt >= START_RETRIES:
                    raise
                log.warning(
                    "client.start(%r): %s; retry %d/%d in %.2fs",
                    self.name, exc, attempt + 1, START_RETRIES, delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _start_once(self, run_id: str, encoded: Any, typed: Any) -> RunHandle[OutputT]:
        rt = self._runtime
        try:
            run = await rt.state.create_run(
                self.name, encoded, run_id=run_id, version=workflow_version(self.name)
            )
        except RunAlreadyExistsError:
            run = await rt.state.get_run(run_id)
            if run.workflow != self.name or not self._same_input(run.input, encoded, typed):
                what = (
                    "with another input"
                    if run.workflow == self.name
                    else f"for workflow {run.workflow!r}"
                )
                raise RunExistsError(
                    f"client.start({self.name!r}, run_id={run_id!r}): a run with that id "
                    f"already exists {what}"
                ) from None
            if run.status.is_settled:
                return RunHandle(self, run.id)
        else:
            _observe.run_started(self.name, run.id)
        await enqueue_orchestrator(rt.queue, self.name, run.id)
        return RunHandle(self, run.id)

    def _same_input(self, stored: Any, encoded: Any, typed: Any) -> bool:
        """Is a stored run input the same as a new one (same JSON, or equal typed values:
        ``Decimal("9.5")`` and ``Decimal("9.50")`` are the same input)?"""
        if codec.digest(stored) == codec.digest(encoded):
            return True
        try:
            return bool(
                codec.decode(stored, self._definition.input_type, what="stored input") == typed
            )
        except Exception:
            return False

    async def send_event(self, run_id: str, name: str, payload: Any) -> bool:
        """Send event ``name`` (declared with ``wire_event``) to run ``run_id``: see
        :meth:`WorkflowRuntime.send_event`."""
        return await self._runtime.send_event(run_id, name, payload)

    async def get_run(self, run_id: str) -> WorkflowRun[InputT, OutputT]:
        """The stored run, with ``input`` and ``output`` rebuilt to the workflow's types."""
        run = await self._runtime.state.get_run(run_id)
        definition = self._definition if run.workflow == self.name else None
        return typed_run(run, definition)

    async def get_steps(self, run_id: str) -> dict[str, StepState]:
        """Every step of the run (one read)."""
        return await self._runtime.state.get_step_states(run_id)

    async def cancel_run(self, run_id: str) -> bool:
        """Cancel the run at its next step boundary. ``False`` if it is already settled."""
        return await self._runtime.cancel_run(run_id)

    async def result(self, run_id: str, timeout: float | None = None) -> OutputT:
        """Wait for the run to settle and return its output. Raises
        :class:`WorkflowFailedError`, :class:`WorkflowCancelledError` or ``TimeoutError``.

        Something must run the jobs meanwhile: ``serve()`` in a task, or other workers. With
        the in-process queue and no ``serve()`` running in this runtime, ``result`` runs the
        due jobs itself (``drain()``) while it waits."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_FIRST
        while True:
            if self._runtime._self_driving():
                await self._runtime.drain()
            run = await self.get_run(run_id)
            if run.status is RunStatus.COMPLETED:
                return run.output  # type: ignore[return-value]
            if run.status is RunStatus.FAILED:
                error = run.error
                raise WorkflowFailedError(
                    f"run {run_id!r} of workflow {run.workflow!r} failed: "
                    + (f"{error.type}: {error.message}" if error else "unknown error"),
                    error_type=error.type if error else None,
                    step=error.step if error else None,
                )
            if run.status is RunStatus.CANCELLED:
                raise WorkflowCancelledError(f"run {run_id!r} of workflow {run.workflow!r} was cancelled")
            wait = delay
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"run {run_id!r} of workflow {run.workflow!r} did not settle within "
                        f"{timeout}s (status {run.status.value})"
                    )
                wait = min(wait, remaining)
            await self._runtime._wait_settled(run_id, wait)
            # a store that pushes settle notices wakes the wait at once: poll rarely
            pushed = self._runtime.state.pushes_settled
            delay = min(delay * 1.5, POLL_MAX_PUSHED if pushed else POLL_MAX)


class WorkflowRuntime:
    """Runs workflows durably on a state store and a queue.

    ``WorkflowRuntime()`` uses the embedded defaults: ``FileWorkflowStateService(".pikku/state")``
    and its :class:`~pikku_typing.runtime.queues.store.StoreQueue` (jobs shared by every
    process on the store). Without a queue, the file and SQLite stores get their
    ``StoreQueue``, other stores an :class:`InProcessQueue`.

    Options: ``lease_seconds`` (a step attempt's lease, renewed by a heartbeat; a holder on
    another host is abandoned when it runs out), ``max_inline_wait`` (retry delays up to this
    many seconds are waited for inside the worker; longer ones suspend the run durably),
    ``concurrency`` (``serve()`` default), ``live_runs`` (suspended runs whose continuation is
    kept in memory), ``workers`` (``{queue name: async fn(runtime, job)}``, e.g. the generated
    ``workflow_workers.WORKERS``; other queues use :func:`pikku_typing.runtime.workers.handle_job`),
    ``eager_steps`` (default ``True``: while this runtime serves or drains a remote step's
    queue with the default handler, a new remote step runs in the pass that reaches it,
    claimed by its insert, at most ``concurrency`` at a time; ``False``: every remote step is
    a step job).
    """

    def __init__(
        self,
        state: WorkflowStateService | None = None,
        queue: WorkflowQueue | None = None,
        *,
        lease_seconds: float = 30.0,
        max_inline_wait: float = 1.0,
        concurrency: int = 4,
        live_runs: int = 1000,
        workers: Mapping[str, WorkerFunc] | None = None,
        registry: Registry = registry,
        sweep_interval: float | None = 30.0,
        eager_steps: bool = True,
    ) -> None:
        self._owns_state = state is None
        self._owns_queue = queue is None
        if state is None:
            from pikku_typing.state.file import FileWorkflowStateService

            state = FileWorkflowStateService(Path(DEFAULT_STATE_DIR))
        self.state: WorkflowStateService = state
        if queue is None:
            from pikku_typing.runtime.queues.store import default_queue_for

            queue = default_queue_for(state)
        self.queue: WorkflowQueue = queue
        self.registry = registry
        self.concurrency = concurrency
        self.workers: dict[str, WorkerFunc] = dict(workers or {})
        self._settled: dict[str, list[asyncio.Event]] = {}
        self._serving = 0
        self.sweep_interval = sweep_interval
        self._stop: asyncio.Event | None = None
        self._interrupt: BaseException | None = None
        self.eager_steps = eager_steps
        self._scopes: list[tuple[frozenset[str] | None, int]] = []
        """The queues (``None``: all) and concurrency of every ``serve()``/``drain()`` running
        now."""
        self._eager = EagerSlots(self._serves_step_queue, max(concurrency, 1))
        self.services = Services(
            state=self.state,
            queue=self.queue,
            registry=registry,
            lease_seconds=lease_seconds,
            max_inline_wait=max_inline_wait,
            live_runs=live_runs,
            on_settled=self._notify_settled,
            eager=self._eager,
            serves_orchestrator=self._serves_orchestrator,
        )
        self.orchestrator = Orchestrator(self.services)

    def __repr__(self) -> str:
        return f"WorkflowRuntime(state={self.state!r}, queue={self.queue!r})"

    # ---------------------------------------------------------------- clients
    def client(self, name: str) -> WorkflowClient[Any, Any]:
        """The client of workflow ``name`` (raises ``WorkflowNotFoundError``)."""
        return WorkflowClient(self, self.registry.get_workflow(name))

    async def get_run(self, run_id: str) -> WorkflowRun[Any, Any]:
        run = await self.state.get_run(run_id)
        definition = self.registry.workflows.get(run.workflow)
        return typed_run(run, definition)

    async def cancel_run(self, run_id: str) -> bool:
        """Request cancellation; a suspended run is cancelled at once, a running one at its
        next step boundary; its unsettled child runs are cancelled too. ``False`` when the
        run is already settled."""
        return await lifecycle.cancel_run(self.services, run_id)

    async def send_event(self, run_id: str, name: str, payload: Any) -> bool:
        """Send event ``name`` (declared with ``wire_event``) to run ``run_id``. The event is
        stored durably and delivered to the first ``wait_for_event`` of that name the run
        reaches (now, or later: events are kept, consumed in send order); the run is woken
        through the queue. Returns ``False`` (nothing stored) when the run is completed,
        failed, cancelled or does not exist. Raises :class:`EventNotFoundError` for an
        undeclared event and :class:`EventPayloadError` for a payload that does not match
        the declared type."""
        return await lifecycle.send_event(self.services, run_id, name, payload)

    # ----------------------------------------------------------------- workers
    async def handle_job(self, job: Job) -> None:
        """Run one job (the handler given to the queue).

        Transient infrastructure errors (:class:`StoreUnavailableError`, ``TimeoutError``
        from ``lock_run``) are raised to the queue, which delivers the job again later
        (procrastinate retries it; the in-process queue puts it back with a backoff): the
        job's work was not done. Errors of user code never get here (they are recorded as
        step or run failures); any other error is a bug of the job and is logged, not raised."""
        worker = self.workers.get(job.queue)
        try:
            with _observe.job(job):
                if worker is not None:
                    await worker(self, job)
                else:
                    await dispatch_job(self.orchestrator, job)
        except asyncio.CancelledError:
            raise
        except TRANSIENT_ERRORS:
            raise
        except (Interrupted, JobInterrupted) as exc:
            # A step raised KeyboardInterrupt/SystemExit: its attempt was abandoned (it runs
            # again). Serving: stop taking jobs, let the others finish, give this job back to
            # the queue (raised), and serve() re-raises the interrupt once stopped. Not
            # serving (drain): the interrupt propagates like a Ctrl-C.
            if self._stop is None:
                raise exc.original from None
            log.warning(
                "%s job of run %s (%s): a step raised %s; the worker stops (the attempt "
                "runs again)", job.kind, job.run_id, job.workflow, type(exc.original).__name__,
            )
            if self._interrupt is None:
                self._interrupt = exc.original
            self._stop.set()
            raise JobInterrupted(exc.original) from None
        except StateCorruptedError as exc:
            # one damaged run never stops the others: nothing was written, the record is
            # left for an operator (pikku-runs show explains it)
            log.error(
                "%s job of run %s (%s) skipped: the run is damaged: %s",
                job.kind, job.run_id, job.workflow, exc,
            )
        except Exception:
            log.exception("%s job of run %s (%s) failed", job.kind, job.run_id, job.workflow)

    async def drain(self, *, queues: Sequence[str] | None = None) -> int:
        """Run every job that is due (including jobs queued meanwhile) until none is due;
        return how many ran. A run whose sleep has not ended stays suspended."""
        with self._serving_scope(queues, self.concurrency):
            return await self.queue.drain(self.handle_job, queues=queues)

    async def serve(
        self,
        *,
        stop: asyncio.Event | None = None,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        handle_signals: bool = True,
    ) -> None:
        """Run the workers until ``stop`` is set or the task is cancelled.

        SIGTERM is handled like ``pikku-worker`` does (when ``handle_signals``, in the main
        thread, and only if nothing else handles SIGTERM yet): the first one stops taking
        jobs and lets the in-flight ones finish (``serve`` then returns normally); a second
        one cancels them (their attempts are abandoned and run again elsewhere). The handler
        is removed when ``serve`` returns. SIGINT is left to ``asyncio.run``.

        Every ``sweep_interval`` seconds a backstop :meth:`sweep` queues the runs whose
        wake-up may have been lost to an outage."""
        stop = stop if stop is not None else asyncio.Event()
        self._stop = stop
        self._interrupt = None
        sigterm = _SigtermHandler.install(stop) if handle_signals else None
        sweeper = (
            asyncio.ensure_future(self._sweep_loop(self.sweep_interval))
            if self.sweep_interval
            else None
        )
        self._serving += 1
        try:
            with self._serving_scope(queues, concurrency or self.concurrency):
                await self.queue.serve(
                    self.handle_job,
                    queues=queues,
                    concurrency=concurrency or self.concurrency,
                    stop=stop,
                )
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if sigterm is None or sigterm.received < 2 or current is None:
                raise
            current.uncancel()  # our own second-SIGTERM cancellation: a clean stop
        finally:
            self._serving -= 1
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            if sigterm is not None:
                sigterm.uninstall()
            self._stop = None
        interrupt = self._take_interrupt()
        if interrupt is not None:  # a step raised KeyboardInterrupt / SystemExit
            raise interrupt

    @contextlib.contextmanager
    def _serving_scope(self, queues: Sequence[str] | None, concurrency: int) -> Iterator[None]:
        """While ``serve()``/``drain()`` runs: its queues are served here (eager dispatch of
        remote steps, see :meth:`_serves_step_queue`); at most ``concurrency`` eager attempts
        at a time (the largest of the scopes running)."""
        entry = (None if queues is None else frozenset(queues), max(concurrency, 1))
        self._scopes.append(entry)
        self._eager.limit = max(c for _, c in self._scopes)
        try:
            yield
        finally:
            self._scopes.remove(entry)
            self._eager.limit = max((c for _, c in self._scopes), default=self.concurrency)

    def _serves(self, queue: str) -> bool:
        """Is ``queue`` served here now with the default handler (no ``workers`` entry, or a
        generated one that only dispatches)?"""
        if not any(scope is None or queue in scope for scope, _ in self._scopes):
            return False
        worker = self.workers.get(queue)
        return worker is None or _dispatch_only(worker)

    def _serves_step_queue(self, queue: str) -> bool:
        """Eager dispatch: does a new remote step of ``queue`` run in the pass that reaches
        it? When ``eager_steps`` is on and this process serves that queue (see
        :meth:`_serves`)."""
        return self.eager_steps and self._serves(queue)

    def _serves_orchestrator(self, workflow: str) -> bool:
        return self._serves(orchestrator_queue(workflow))

    def _take_interrupt(self) -> BaseException | None:
        interrupt, self._interrupt = self._interrupt, None
        return interrupt

    async def sweep(self) -> int:
        """Queue a pass for every suspended run that nothing may wake any more: its wake-up
        time has passed, none of its steps is still pending or running, or a step's running
        attempt is held by a dead process of this host (or past its lease): its step job
        died with it or was lost, and the pass abandons the attempt and queues the step
        again. A backstop for a wake-up lost to a store or queue outage (passes are idempotent, so a run that was
        going to be woken anyway costs one more pass). Also for every ``running`` run whose
        pass was held by a dead process of this host: a pass running an eager remote step
        (or an inline step) that was SIGKILLed; its job comes back only when the queue
        notices (on PostgreSQL after ``stalled_after``), this pass takes the run over at
        once and abandons the dead holder's attempt (counted). Returns how many were queued."""
        now = steps_module.now()
        count = 0
        for run in await self.state.list_runs(status=RunStatus.RUNNING):
            if run.owner is not None and process.holder_liveness(run.owner) == "dead":
                await enqueue_orchestrator(self.queue, run.workflow, run.id)
                count += 1
        for run in await self.state.list_runs(status=RunStatus.SUSPENDED):
            due = run.wake_at is not None and run.wake_at <= now
            if not due:
                try:
                    states = await self.state.get_step_states(run.id)
                except StateCorruptedError:
                    continue  # logged where it is listed or run
                due = all(s.status in _SETTLED_STEPS for s in states.values()) or any(
                    steps_module.holder_abandoned(s, now) for s in states.values()
                )
            if due:
                await enqueue_orchestrator(self.queue, run.workflow, run.id)
                count += 1
        return count

    async def _sweep_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                queued = await self.sweep()
            except (StoreUnavailableError, TimeoutError) as exc:
                log.warning("sweep of stranded runs failed (retried in %.0fs): %s", interval, exc)
                continue
            if queued:
                log.info("sweep: queued a pass for %d stranded run(s)", queued)

    def _self_driving(self) -> bool:
        """This process runs this runtime's jobs itself: an embedded queue (in-process, or the
        store queue of the file/SQLite store), not being served here."""
        return self.queue.self_driving and self._serving == 0

    async def recover(self) -> int:
        """Rebuild the queue from the store after a restart; return how many runs were
        queued. Every run that is not settled gets a pass (a run marked ``running`` by a
        process of this host that is still alive is left to it); the pass re-queues the
        remote steps the run waits for, abandons attempts of dead holders, re-arms sleeps.

        A damaged run (its record cannot be read: see ``WorkflowStateService.list_damaged``)
        never stops the others: a run whose run record is damaged is not listed (the store
        logs it); one whose steps are damaged gets a pass that logs it and stops without
        writing anything (see :meth:`handle_job`); every other run is recovered."""
        runs = await self.state.list_runs(status=(RunStatus.RUNNING, RunStatus.SUSPENDED))
        count = 0
        for run in runs:
            owner = run.owner
            if (
                run.status is RunStatus.RUNNING
                and owner is not None
                and not process.is_same_process(owner)
                and process.holder_liveness(owner) == "alive"
            ):
                _observe.recovery(
                    "recover: run %s (%s) is left to its live holder (pid %d)",
                    run.id, run.workflow, owner.pid, run_id=run.id, workflow=run.workflow,
                )
                continue
            _observe.recovery(
                "recover: queued a pass for %s run %s (%s)",
                run.status.value, run.id, run.workflow, run_id=run.id, workflow=run.workflow,
            )
            await enqueue_orchestrator(self.queue, run.workflow, run.id)
            count += 1
        return count

    # ------------------------------------------------------------- lifecycle
    def _notify_settled(self, run_id: str) -> None:
        for event in self._settled.pop(run_id, []):
            event.set()

    async def _wait_settled(self, run_id: str, timeout: float) -> None:
        """Until the run settles in this process (an in-memory event) or, on a store that
        pushes settle notices (PostgreSQL's LISTEN/NOTIFY), in any process; at most
        ``timeout`` seconds."""
        event = asyncio.Event()
        self._settled.setdefault(run_id, []).append(event)
        try:
            if self.state.pushes_settled:
                local = asyncio.ensure_future(event.wait())
                remote = asyncio.ensure_future(self.state.wait_settled(run_id, timeout))
                try:
                    await asyncio.wait({local, remote}, timeout=timeout,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (local, remote):
                        task.cancel()
                    await asyncio.gather(local, remote, return_exceptions=True)
            else:
                await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._settled.get(run_id)
            if waiters is not None and event in waiters:
                waiters.remove(event)
                if not waiters:
                    del self._settled[run_id]

    async def close(self) -> None:
        """Drop live continuations; close the store and queue this runtime created."""
        await self.orchestrator.close()
        if self._owns_queue:
            await self.queue.close()
        if self._owns_state:
            await self.state.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


_SETTLED_STEPS = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED})

_DISPATCHERS = {
    "run_step_job": workers_module.run_step_job,
    "run_orchestrator_job": workers_module.run_orchestrator_job,
    "handle_job": workers_module.handle_job,
}


def _dispatch_only(worker: WorkerFunc) -> bool:
    """Is ``worker`` a job handler that only dispatches to the runtime (a ``workers`` entry
    generated by ``pikku-analyze``: ``await run_step_job(runtime, job)``), so running its
    jobs' work elsewhere in this process changes nothing? A handler may also say so with
    ``worker.pikku_dispatch_only = True``."""
    if getattr(worker, "pikku_dispatch_only", False) is True:
        return True
    code = getattr(worker, "__code__", None)
    scope = getattr(worker, "__globals__", None)
    if code is None or scope is None or not code.co_names:
        return False
    return all(
        name in _DISPATCHERS and scope.get(name) is _DISPATCHERS[name] for name in code.co_names
    )


class _SigtermHandler:
    """``serve()``'s SIGTERM handler (see :meth:`WorkflowRuntime.serve`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        self.loop = loop
        self.stop = stop
        self.task = asyncio.current_task()
        self.received = 0

    @classmethod
    def install(cls, stop: asyncio.Event) -> _SigtermHandler | None:
        """``None`` when not installed: not the main thread, no loop support, or SIGTERM is
        handled already (e.g. by ``pikku-worker`` or the application)."""
        if threading.current_thread() is not threading.main_thread():
            return None
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return None
        handler = cls(asyncio.get_running_loop(), stop)
        try:
            handler.loop.add_signal_handler(signal.SIGTERM, handler.on_sigterm)
        except (NotImplementedError, RuntimeError, ValueError):
            return None
        return handler

    def on_sigterm(self) -> None:
        self.received += 1
        if self.received == 1:
            log.info("SIGTERM: stopping (in-flight jobs finish; send it again to cancel them)")
            self.stop.set()
        elif self.task is not None:
            log.info("SIGTERM again: cancelling in-flight jobs")
            self.task.cancel()

    def uninstall(self) -> None:
        try:
            self.loop.remove_signal_handler(signal.SIGTERM)
        except (RuntimeError, ValueError) as exc:  # the loop is closing
            log.debug("removing the SIGTERM handler failed: %s", exc)
