"""Testing workflows: :class:`WorkflowTestEnv` (a fake clock, RPC mocks, step states) and the
``workflow_env`` pytest fixture (from the ``pikku`` pytest plugin, :mod:`pikku_typing.pytest_plugin`).

.. code-block:: python

    async def test_onboarding(workflow_env: WorkflowTestEnv) -> None:
        workflow_env.mock_rpc("emails.send", lambda data: {"sent": True})
        output = await workflow_env.run("onboarding", {"email": "a@example.com"})
        assert output["user_id"]                  # the 1-day sleep inside took no time
        steps = await workflow_env.steps(workflow_env.last_run_id)
        assert steps["coolOff"].status == "succeeded"

**The clock.** The environment has its own clock, which does not move by itself. When the
jobs that are due have run (:meth:`WorkflowTestEnv.drain`) and the queue only holds jobs due
later (a sleep, an event timeout, a retry delay), the clock *skips* to the earliest of them and
runs it: a 1-day sleep completes at once. A test that holds the clock
(:meth:`~WorkflowTestEnv.hold_clock`) stops the skipping: runs stay suspended until the test
moves the clock with :meth:`~WorkflowTestEnv.advance`. The runtime and the state store read
this clock (``steps.now``, the stores' timestamps, the in-process queue's due times) in the
work the environment drives, and only there: the override is a context variable, so code
outside the environment keeps the wall clock and two environments never share time.

**Replay on every pass.** The environment keeps no live continuation (``live_runs=0``): every
orchestrator pass replays the workflow function from the store, as after a restart, so code
that is not deterministic fails in tests (``WorkflowNonDeterminismError``) instead of in
production.

**RPC mocks.** :meth:`~WorkflowTestEnv.mock_rpc` replaces an RPC for this environment only
(RPC-form steps, remote or inline, and ``rpc.invoke`` inside inline steps); the process-wide
registry is never changed. Workflows and RPCs wired later (inside the test) are seen.

Pure Python (no native test server), so it runs wherever the runtime runs (Linux x86 and ARM,
macOS, Windows).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from pikku_typing import _clock
from pikku_typing.durations import Duration, parse_duration
from pikku_typing.errors import (
    PikkuError,
    WorkflowCancelledError,
    WorkflowFailedError,
)
from pikku_typing.interaction import _rpc_registry
from pikku_typing.models import RunStatus, StepState, WorkflowRun
from pikku_typing.wiring import EventDefinition, Registry, RPCDefinition, WorkflowDefinition
from pikku_typing.wiring import registry as _global_registry

if TYPE_CHECKING:
    from pikku_typing.runtime.queues.memory import InProcessQueue
    from pikku_typing.runtime.replayer import History, ReplayResult
    from pikku_typing.runtime.runtime import RunHandle, WorkflowClient, WorkflowRuntime
    from pikku_typing.state.base import WorkflowStateService

DEFAULT_MAX_SKIPS = 10_000
"""How many times one ``drain`` may skip the clock forward before it gives up (a workflow that
sleeps in an endless loop would otherwise never return)."""


class RunNotSettledError(PikkuError, AssertionError):
    """``env.run``/``env.result``: the run is still suspended once every due job has run (the
    clock is held, or it waits for an event that nobody sent)."""


class TestClock:
    """A clock that moves only when told (or when the environment skips to a due job).

    Starts at ``start`` (default: the wall clock when the environment was created)."""

    __test__ = False  # not a test class for pytest

    def __init__(self, start: datetime | None = None) -> None:
        when = datetime.now(UTC) if start is None else start
        self._now = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        self.held = False

    def now(self) -> datetime:
        return self._now

    def time(self) -> float:
        """Seconds since the epoch (the in-process queue's clock)."""
        return self._now.timestamp()

    def advance(self, duration: Duration) -> datetime:
        seconds = parse_duration(duration)
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> None:
        """Move the clock to ``when`` (never backwards)."""
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        if when > self._now:
            self._now = when


class _HeldClock:
    """What :meth:`WorkflowTestEnv.hold_clock` returns: optionally a context manager that
    releases the clock on exit."""

    def __init__(self, clock: TestClock) -> None:
        self._clock = clock

    def __enter__(self) -> TestClock:
        return self._clock

    def __exit__(self, *exc: object) -> None:
        self._clock.held = False


class _EnvRegistry(Registry):
    """The process-wide registry (a live view: later wirings are seen) plus this
    environment's RPC mocks."""

    def __init__(self, base: Registry) -> None:
        super().__init__(workflows=base.workflows, rpcs=base.rpcs, events=base.events)
        self.base = base
        self.mocks: dict[str, RPCDefinition] = {}

    def get_rpc(self, name: str) -> RPCDefinition:
        mock = self.mocks.get(name)
        return mock if mock is not None else self.base.get_rpc(name)

    def get_workflow(self, name: str) -> WorkflowDefinition:
        return self.base.get_workflow(name)

    def get_event(self, name: str) -> EventDefinition:
        return self.base.get_event(name)


class WorkflowTestEnv:
    """A runtime on a fake clock for tests (see the module docstring).

    ``state``: the store (default a fresh ``InMemoryWorkflowStateService``; any store works,
    the caller closes a store it passes). ``registry``: where workflows and RPCs are looked
    up (default the process-wide one). ``start``: the clock's start time."""

    __test__ = False

    def __init__(
        self,
        *,
        state: WorkflowStateService | None = None,
        registry: Registry | None = None,
        start: datetime | None = None,
        lease_seconds: float = 30.0,
        max_skips: int = DEFAULT_MAX_SKIPS,
    ) -> None:
        from pikku_typing.runtime.queues.memory import InProcessQueue
        from pikku_typing.runtime.runtime import WorkflowRuntime
        from pikku_typing.state.memory import InMemoryWorkflowStateService

        self.clock = TestClock(start)
        self.registry = _EnvRegistry(registry if registry is not None else _global_registry)
        self._owns_state = state is None
        self.state: WorkflowStateService = state if state is not None else InMemoryWorkflowStateService()
        self.queue: InProcessQueue = InProcessQueue(clock=self.clock.time, retry_backoff=0.0)
        self.runtime: WorkflowRuntime = WorkflowRuntime(
            state=self.state,
            queue=self.queue,
            registry=self.registry,
            lease_seconds=lease_seconds,
            max_inline_wait=0.0,  # every delay goes through the queue, where the clock skips it
            live_runs=0,
        )
        self.max_skips = max_skips
        self.calls: dict[str, list[Any]] = {}
        """The data each mocked RPC was called with, in call order (``env.calls["users.create"]``)."""
        self.last_run_id: str | None = None
        """The id of the run the last :meth:`start` / :meth:`run` started."""

    def __repr__(self) -> str:
        return f"WorkflowTestEnv(now={self.clock.now().isoformat()}, held={self.clock.held}, state={self.state!r})"

    # ------------------------------------------------------------------ context
    @contextlib.contextmanager
    def _active(self) -> Iterator[None]:
        """Install this environment's clock and registry for the work done inside."""
        token = _rpc_registry.set(self.registry)
        try:
            with _clock.using(self.clock.now):
                yield
        finally:
            _rpc_registry.reset(token)

    # -------------------------------------------------------------------- clock
    def now(self) -> datetime:
        """The environment's current time."""
        return self.clock.now()

    def hold_clock(self) -> _HeldClock:
        """Stop skipping time: sleeps, event timeouts and retry delays stay pending until
        :meth:`advance` moves the clock past them. Usable as ``with env.hold_clock(): ...``
        (released on exit), or released with :meth:`release_clock`."""
        self.clock.held = True
        return _HeldClock(self.clock)

    def release_clock(self) -> None:
        """Skip time again (the next :meth:`drain` runs what the held clock kept waiting)."""
        self.clock.held = False

    async def advance(self, duration: Duration) -> int:
        """Move the clock forward by ``duration`` and run every job due by then (with a
        released clock, and the jobs due later too). Returns how many jobs ran."""
        self.clock.advance(duration)
        return await self.drain()

    # ------------------------------------------------------------------- rpcs
    def mock_rpc(self, name: str, fn: Callable[[Any], Any]) -> None:
        """Replace RPC ``name`` by ``fn`` (one data argument, sync or async) in this
        environment. The RPC keeps its declared input and output types when it is registered
        (data and results still round-trip through JSON as in production); an RPC that is
        not registered can be mocked too (untyped). Calls are recorded in ``env.calls[name]``."""
        if not callable(fn):
            raise TypeError(f"mock_rpc({name!r}, ...): expected a callable, got {fn!r}")
        original = self.registry.base.rpcs.get(name)
        calls = self.calls.setdefault(name, [])

        def recorded(data: Any) -> Any:
            calls.append(data)
            return fn(data)

        self.registry.mocks[name] = RPCDefinition(
            name=name,
            func=recorded,
            is_async=inspect.iscoroutinefunction(fn),
            input_type=original.input_type if original is not None else None,
            output_type=original.output_type if original is not None else None,
        )

    def unmock_rpc(self, name: str) -> None:
        """Use the registered RPC again."""
        self.registry.mocks.pop(name, None)

    # ------------------------------------------------------------------- runs
    def client(self, workflow: str) -> WorkflowClient[Any, Any]:
        """The runtime's client of ``workflow``. Prefer :meth:`start`/:meth:`run`, which run
        on the environment's clock."""
        return self.runtime.client(workflow)

    async def start(
        self, workflow: str, input: Any, *, run_id: str | None = None, drain: bool = True
    ) -> RunHandle[Any]:
        """Start a run (and, with ``drain``, run it as far as it goes: until it settles, or
        waits for an event, or — with a held clock — for time to pass)."""
        with self._active():
            handle = await self.runtime.client(workflow).start(input, run_id=run_id)
        self.last_run_id = handle.run_id
        if drain:
            await self.drain()
        return handle

    async def run(self, workflow: str, input: Any, *, run_id: str | None = None) -> Any:
        """Start a run, run it and return its output; raise ``WorkflowFailedError`` /
        ``WorkflowCancelledError`` as ``client.result`` does, or :class:`RunNotSettledError`
        when it is still suspended (held clock, or an event nobody sent)."""
        handle = await self.start(workflow, input, run_id=run_id)
        return await self.result(handle.run_id)

    async def result(self, run_id: str) -> Any:
        """Run the due jobs, then return the run's output (see :meth:`run`)."""
        await self.drain()
        run = await self.get_run(run_id)
        if run.status is RunStatus.COMPLETED:
            return run.output
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
        why = (
            "the clock is held" if self.clock.held and run.wake_at is not None
            else "it waits for something nothing scheduled (an event?)"
        )
        raise RunNotSettledError(
            f"run {run_id!r} of workflow {run.workflow!r} is still {run.status.value} after every "
            f"due job ran ({why}; wake_at={run.wake_at.isoformat() if run.wake_at else None})"
        )

    async def drain(self) -> int:
        """Run every due job; unless the clock is held, then skip the clock to the next job
        due later and go on, until the queue is empty. Returns how many jobs ran."""
        total = 0
        with self._active():
            for _ in range(self.max_skips + 1):
                total += await self.runtime.drain()
                await self._let_tasks_finish()
                due = self.queue.next_due()
                if self.clock.held or due is None:
                    return total
                self.clock.set(due)
        raise RuntimeError(
            f"WorkflowTestEnv.drain: jobs still due after skipping the clock {self.max_skips} "
            "times (a workflow that sleeps in an endless loop?); hold the clock and advance it "
            "step by step to test it"
        )

    async def _let_tasks_finish(self) -> None:
        # unwound workflow tasks (live_runs=0) end on the next turns of the loop
        for _ in range(3):
            await asyncio.sleep(0)

    async def send_event(self, run_id: str, event_name: str, payload: Any = None) -> bool:
        """Send an event to a run (``runtime.send_event``), then run what it woke."""
        send: Callable[[str, str, Any], Awaitable[bool]] | None = getattr(
            self.runtime, "send_event", None
        )
        if send is None:  # pragma: no cover - the events runtime is not in this version
            raise NotImplementedError("this version of the runtime has no send_event")
        with self._active():
            delivered = await send(run_id, event_name, payload)
        await self.drain()
        return delivered

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run (then run what that wakes)."""
        with self._active():
            cancelled = await self.runtime.cancel_run(run_id)
        await self.drain()
        return cancelled

    async def get_run(self, run_id: str) -> WorkflowRun[Any, Any]:
        """The run, with input and output rebuilt with the workflow's types."""
        with self._active():
            return await self.runtime.get_run(run_id)

    async def steps(self, run_id: str) -> dict[str, StepState]:
        """Every step of the run, by key (``name``, ``name#1``...)."""
        with self._active():
            return await self.state.get_step_states(run_id)

    async def step(self, run_id: str, key: str) -> StepState:
        """One step of the run (``KeyError`` when the run has no step with that key)."""
        found = (await self.steps(run_id)).get(key)
        if found is None:
            raise KeyError(f"run {run_id!r} has no step {key!r}")
        return found

    async def history(self, run_id: str) -> History:
        """The run and its step states as stored: what ``pikku-runs export`` writes, for
        :func:`replay` (``history.to_json()`` is the exported JSON)."""
        from pikku_typing.runtime.replayer import History

        with self._active():
            run = await self.state.get_run(run_id)
            recorded = await self.state.get_step_states(run_id)
        return History(run=run, steps=dict(recorded))

    # -------------------------------------------------------------- lifecycle
    def close_nowait(self) -> None:
        """Drop queued jobs (and an owned in-memory store): what the pytest fixture calls
        when the test ends (no event loop needed)."""
        self.queue._heap.clear()
        self.queue._queued_keys.clear()
        self.registry.mocks.clear()

    async def close(self) -> None:
        with self._active():
            await self.runtime.close()
        self.close_nowait()
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


async def replay(
    history: History | Mapping[str, Any],
    *,
    registry: Registry | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> ReplayResult:
    """Replay a recorded history (a :class:`~pikku_typing.runtime.replayer.History`, e.g.
    from :meth:`WorkflowTestEnv.history`, or the JSON of ``pikku-runs export``) against the
    workflows of ``registry`` (default: the process-wide one, i.e. the current code), without
    executing any step or sleeping (SPEC section 9).

    With ``check`` (the default) a run that would not replay raises
    :class:`~pikku_typing.errors.WorkflowNonDeterminismError` naming the step key and both
    sides; otherwise the :class:`~pikku_typing.runtime.replayer.ReplayResult` is returned
    either way (``result.ok``, ``result.problems``)."""
    from pikku_typing.runtime.replayer import History, replay_history

    loaded = history if isinstance(history, History) else History.from_json(history)
    result = await replay_history(loaded, registry=registry, timeout=timeout)
    if check:
        result.raise_for_problems()
    return result


__all__ = ["RunNotSettledError", "TestClock", "WorkflowTestEnv", "replay"]
