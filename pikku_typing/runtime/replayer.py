"""Replaying recorded histories against the current code (SPEC section 9).

A *history* is a run and its step states as stored (``pikku-runs export RUN_ID`` writes one
as JSON). :func:`replay_history` runs the workflow function of the *current* code over it
with a :class:`ReplayContext`: every step the function reaches is matched with the recorded
one of the same key, like an orchestrator pass does, but nothing is executed (no RPC, no
inline callable, no sleep, no store write). A recorded result is rebuilt with the current
types and returned; where the history ends (a step not recorded yet, or not finished) the
replay stops: from there the run would simply go on with the new code.

What is reported, per run (:class:`Mismatch`):

* ``nondeterminism`` — a recorded step key reached with another kind, RPC, event or child
  workflow, or an RPC step reached with other data (the digest stored with it): what the
  runtime raises as :class:`~pikku_typing.errors.WorkflowNonDeterminismError`;
* ``result`` / ``input`` — a stored step result or run input that no longer rebuilds into
  the current type;
* ``workflow`` — the workflow is not wired in the current code;
* ``error`` — the workflow function raised where the recorded run did not fail that way.

``pikku-runs replay`` and :func:`pikku_typing.testing.replay` are built on it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import ValidationError

from pikku_typing import durations
from pikku_typing.errors import ChildWorkflowFailedError, PikkuError, WorkflowNonDeterminismError
from pikku_typing.interaction import Workflow
from pikku_typing.models import ErrorInfo, RunStatus, StepKind, StepState, StepStatus, WorkflowRun
from pikku_typing.runtime import codec, steps
from pikku_typing.runtime.kinds.patch import PatchedCall, is_marker, marker_key
from pikku_typing.runtime.signals import StepFailedError
from pikku_typing.wiring import Registry, WorkflowDefinition

HISTORY_FORMAT: Final = 1
"""``"pikku_history"`` of an exported history."""

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds one run's replay may take (a workflow awaiting something that is not a step)."""

MismatchKind = Literal["nondeterminism", "result", "input", "workflow", "error"]


class HistoryFormatError(PikkuError, ValueError):
    """The data is not an exported history (``pikku-runs export``)."""


@dataclass(frozen=True)
class History:
    """A run as stored: the run and its step states (by key)."""

    run: WorkflowRun[Any, Any]
    steps: dict[str, StepState] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "pikku_history": HISTORY_FORMAT,
            "run": self.run.model_dump(mode="json"),
            "steps": [s.model_dump(mode="json") for s in self.steps.values()],
        }

    @classmethod
    def from_json(cls, data: Any) -> History:
        if not isinstance(data, Mapping) or "run" not in data:
            raise HistoryFormatError("not an exported history (expected an object with 'run' and 'steps')")
        version = data.get("pikku_history", HISTORY_FORMAT)
        if version != HISTORY_FORMAT:
            raise HistoryFormatError(
                f"history format {version!r}; this pikku-workflows reads format {HISTORY_FORMAT}"
            )
        try:
            run = WorkflowRun[Any, Any].model_validate(data["run"])
            recorded = [StepState.model_validate(s) for s in data.get("steps") or []]
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise HistoryFormatError(f"invalid history ({where}: {first.get('msg')})") from None
        return cls(run=run, steps={s.key: s for s in recorded})


def load_histories(data: Any) -> list[History]:
    """Histories from parsed JSON: one history, a list of them, or ``{"histories": [...]}``."""
    if isinstance(data, Mapping) and "histories" in data:
        data = data["histories"]
    if isinstance(data, list):
        return [History.from_json(item) for item in data]
    return [History.from_json(data)]


@dataclass(frozen=True)
class Mismatch:
    """Why a recorded run would not replay on the current code."""

    kind: MismatchKind
    message: str
    step_key: str | None = None
    recorded: str | None = None
    """The recorded side (``rpc 'payments.charge'``, a digest, a stored value)."""
    new: str | None = None
    """What the current code does there."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "step_key": self.step_key,
            "recorded": self.recorded,
            "new": self.new,
            "message": self.message,
        }


@dataclass
class ReplayResult:
    """The outcome of replaying one history."""

    run_id: str
    workflow: str
    status: str
    """The recorded run's status."""
    version: str | None
    """The recorded run's ``WorkflowRun.version``."""
    outcome: str = "not replayed"
    """``completed`` (the function returned), ``failed`` (a recorded step failure or error
    propagated), ``end of history`` (the run would continue from there with the new code)."""
    replayed_steps: list[str] = field(default_factory=list)
    """Keys of the recorded steps the new code reached and accepted, in order."""
    unreached: list[str] = field(default_factory=list)
    """Recorded steps the new code did not reach (their results are simply not read)."""
    problems: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "version": self.version,
            "ok": self.ok,
            "outcome": self.outcome,
            "replayed_steps": self.replayed_steps,
            "unreached": self.unreached,
            "problems": [p.to_json() for p in self.problems],
        }

    def raise_for_problems(self) -> None:
        """Raise :class:`WorkflowNonDeterminismError` naming the first problem, if any."""
        if self.problems:
            first = self.problems[0]
            where = f" at step {first.step_key!r}" if first.step_key else ""
            sides = (
                f" (recorded: {first.recorded}; new code: {first.new})"
                if first.recorded is not None or first.new is not None
                else ""
            )
            raise WorkflowNonDeterminismError(
                f"run {self.run_id!r} of workflow {self.workflow!r} would not replay on the "
                f"current code{where}: {first.message}{sides}"
            )


class _Stop(BaseException):
    """Ends the replay: the history ends here (BaseException: ``except Exception`` in the
    workflow does not swallow it)."""


class _Mismatched(BaseException):
    """Ends the replay: a :class:`Mismatch` was recorded."""


def _target(kind: StepKind | str, name: str | None) -> str:
    value = kind.value if isinstance(kind, StepKind) else kind
    return f"{value} {name!r}" if name else value


def _type_text(type_: Any) -> str:
    return str(getattr(type_, "__qualname__", None) or type_)


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ReplayContext(Workflow):
    """The :class:`Workflow` of a replay: matches each step with the recorded history and
    returns the recorded result; executes nothing and never writes."""

    def __init__(self, definition: WorkflowDefinition, registry: Registry, history: History, result: ReplayResult) -> None:
        self._definition = definition
        self._registry = registry
        self._history = history
        self._recorded = dict(history.steps)
        self._keys = steps.StepKeys()
        self._result = result
        self.failed_step: StepFailedError | None = None
        self._patches: dict[str, bool] = {}

    # ------------------------------------------------------------ Workflow API
    @property
    def name(self) -> str:
        return self._definition.name

    @property
    def run_id(self) -> str:
        return self._history.run.id

    async def get_run(self) -> WorkflowRun[Any, Any]:
        from pikku_typing.runtime.services import typed_run

        return typed_run(self._history.run, self._definition)  # as recorded, typed like the runtime's

    async def do(
        self,
        step_name: str,
        target: str | Callable[[], Any],
        data: Any = None,
        /,
        *,
        description: str | None = None,
        retries: int | None = None,
        retry_delay: durations.Duration | None = None,
        result_type: Any = None,
    ) -> Any:
        if not isinstance(step_name, str) or not step_name:
            raise ValueError(f"workflow.do: step name must be a non-empty string, got {step_name!r}")
        key = self._keys.next(step_name)
        if isinstance(target, str):
            rpc = self._registry.get_rpc(target)
            kind, rpc_name = StepKind.RPC, target
            _, data_json = codec.coerce(data, rpc.input_type, what=f"step {key!r} data")
            digest: str | None = codec.digest(data_json)
            result_type = result_type if result_type is not None else rpc.output_type
        elif callable(target):
            kind, rpc_name, digest = StepKind.INLINE, None, None
            result_type = result_type if result_type is not None else codec.callable_return_type(target)
        else:
            raise TypeError(
                f"workflow.do({step_name!r}, ...): the second argument must be an RPC name "
                f"or a zero-argument callable, got {target!r}"
            )
        step = self._take(key, kind, rpc_name)
        if digest is not None and step.data_digest is not None and step.data_digest != digest:
            self._mismatch(
                "nondeterminism",
                key,
                f"rpc {rpc_name!r} was recorded with other data than the new code passes "
                "(a cached result is never attached to other input)",
                recorded=f"data digest {step.data_digest}",
                new=f"data digest {digest}",
            )
        if step.status is StepStatus.FAILED:
            info = step.error or ErrorInfo(type="StepFailed", message="the step failed", step=key)
            self._result.replayed_steps.append(key)
            self.failed_step = StepFailedError(info, key, step.attempt_count)
            raise self.failed_step
        if step.status is not StepStatus.SUCCEEDED:
            raise _Stop()  # not finished when recorded: the run goes on from here
        value = self._decode(key, step, result_type)
        self._result.replayed_steps.append(key)
        return value

    async def sleep(self, step_name: str, duration: durations.Duration, *, description: str | None = None) -> None:
        durations.parse_duration(duration)
        if not isinstance(step_name, str) or not step_name:
            raise ValueError(f"workflow.sleep: step name must be a non-empty string, got {step_name!r}")
        key = self._keys.next(step_name)
        step = self._take(key, StepKind.SLEEP, None)
        if step.status is not StepStatus.SUCCEEDED:
            raise _Stop()  # the recorded sleep had not ended: no waiting here
        self._result.replayed_steps.append(key)

    async def wait_for_event(
        self,
        step_name: str,
        event_name: str,
        timeout: durations.Duration | None = None,
        *,
        description: str | None = None,
    ) -> Any:
        definition = self._registry.get_event(event_name)
        if timeout is not None:
            durations.parse_duration(timeout)
        key = self._next("wait_for_event", step_name)
        step = self._take(key, StepKind.EVENT, event_name)
        if step.status is not StepStatus.SUCCEEDED:
            raise _Stop()  # still waiting when recorded
        result = step.result if isinstance(step.result, dict) else {}
        if result.get("timed_out"):
            value = None
        else:
            value = self._rebuild(key, result.get("payload"), definition.payload_type, "event payload")
        self._result.replayed_steps.append(key)
        return value

    async def run_child(self, step_name: str, workflow_name: str, input: Any, *, description: str | None = None) -> Any:
        return await self._child(step_name, workflow_name, input, wait=True)

    async def start_child(self, step_name: str, workflow_name: str, input: Any, *, description: str | None = None) -> str:
        return str(await self._child(step_name, workflow_name, input, wait=False))

    async def now(self) -> datetime:
        return await self._value("now", datetime)  # type: ignore[no-any-return]

    async def uuid4(self) -> uuid.UUID:
        return await self._value("uuid4", uuid.UUID)  # type: ignore[no-any-return]

    async def random(self) -> float:
        return await self._value("random", float)  # type: ignore[no-any-return]

    async def _value(self, helper: str, type_: Any) -> Any:
        key = self._keys.next(helper)
        step = self._take(key, StepKind.VALUE, helper)
        if step.status is not StepStatus.SUCCEEDED:
            raise _Stop()
        value = self._rebuild(key, step.result, type_, f"{helper}() value")
        self._result.replayed_steps.append(key)
        return value

    async def _child(self, step_name: str, workflow_name: str, input: Any, *, wait: bool) -> Any:
        api = "run_child" if wait else "start_child"
        definition = self._registry.get_workflow(workflow_name)
        _, encoded = codec.coerce(input, definition.input_type, what=f"workflow.{api} input")
        key = self._next(api, step_name)
        digest = codec.digest(encoded)
        step = self._take(key, StepKind.CHILD, workflow_name)
        if step.data_digest is not None and step.data_digest != digest:
            self._mismatch(
                "nondeterminism",
                key,
                f"child {workflow_name!r} was recorded with another input than the new code passes",
                recorded=f"input digest {step.data_digest}",
                new=f"input digest {digest}",
            )
        if step.status is not StepStatus.SUCCEEDED:
            raise _Stop()  # the child had not settled when recorded
        result = step.result if isinstance(step.result, dict) else {}
        self._result.replayed_steps.append(key)
        child_id = str(result.get("run_id"))
        if not wait:
            return child_id
        if result.get("status") == "completed":
            return self._rebuild(key, result.get("output"), definition.output_type, "child output")
        error = result.get("error") if isinstance(result.get("error"), dict) else {}
        assert isinstance(error, dict)
        raise ChildWorkflowFailedError(
            f"child run {child_id!r} of workflow {workflow_name!r} (step {key!r}) "
            f"{result.get('status', 'failed')}: {error.get('type')}: {error.get('message')}",
            child_run_id=child_id,
            workflow=workflow_name,
            error_type=str(error.get("type") or "WorkflowFailed"),
            step=key,
        )

    def patched(self, change_id: str) -> PatchedCall:
        return PatchedCall(change_id, lambda: self._patched(change_id))

    async def _patched(self, change_id: str) -> bool:
        """As the runtime answers (kinds/patch.py), from the history only: the recorded
        marker, else ``False`` when recorded steps lie ahead, else ``True``."""
        key = marker_key(change_id)
        known = self._patches.get(change_id)
        if known is not None:
            return known
        step = self._recorded.pop(key, None)
        if step is None:
            answer = not any(not is_marker(k) for k in self._recorded)
        else:
            if step.kind is not StepKind.VALUE:
                self._mismatch(
                    "nondeterminism",
                    key,
                    "the patch marker's key was recorded as another kind of step",
                    recorded=_target(step.kind, step.rpc_name),
                    new="value (patch marker)",
                )
            answer = step.result is True
            self._result.replayed_steps.append(key)
        self._patches[change_id] = answer
        return answer

    # --------------------------------------------------------------- plumbing
    def _take(self, key: str, kind: StepKind, name: str | None) -> StepState:
        """The recorded step ``key`` checked against what the new code does there; stops the
        replay at the end of the history."""
        step = self._recorded.pop(key, None)
        if step is None:
            raise _Stop()
        if step.kind is not kind or step.rpc_name != name:
            self._mismatch(
                "nondeterminism",
                key,
                "the step key was recorded with another kind or target than the new code reaches it with",
                recorded=_target(step.kind, step.rpc_name),
                new=_target(kind, name),
            )
        return step

    def _next(self, api: str, step_name: str) -> str:
        if not isinstance(step_name, str) or not step_name:
            raise ValueError(f"workflow.{api}: step name must be a non-empty string, got {step_name!r}")
        return self._keys.next(step_name)

    def _decode(self, key: str, step: StepState, result_type: Any) -> Any:
        return self._rebuild(key, step.result, result_type, "result")

    def _rebuild(self, key: str, data: Any, type_: Any, what: str) -> Any:
        try:
            return codec.decode(data, type_, what=f"step {key!r} {what}")
        except PikkuError as exc:  # StepSerializationError
            self._mismatch(
                "result",
                key,
                f"the stored {what} does not rebuild into the current type: {exc}",
                recorded=_short(data),
                new=_type_text(type_),
            )
            raise  # unreachable: _mismatch raises

    def _mismatch(
        self, kind: MismatchKind, key: str | None, message: str, *, recorded: str | None = None, new: str | None = None
    ) -> None:
        self._result.problems.append(Mismatch(kind, message, key, recorded, new))
        raise _Mismatched()

    def remaining(self) -> list[str]:
        return list(self._recorded)


async def replay_history(
    history: History, *, registry: Registry | None = None, timeout: float = DEFAULT_TIMEOUT
) -> ReplayResult:
    """Replay ``history`` on the workflows of ``registry`` (default: the process-wide one)
    without executing any step; the problems are in the result (see the module docstring)."""
    from pikku_typing.wiring import registry as global_registry

    reg = registry if registry is not None else global_registry
    run = history.run
    result = ReplayResult(run_id=run.id, workflow=run.workflow, status=run.status.value, version=run.version)
    definition = reg.workflows.get(run.workflow)
    if definition is None:
        result.problems.append(
            Mismatch("workflow", f"workflow {run.workflow!r} is not wired in the current code")
        )
        return result
    try:
        data = codec.decode(run.input, definition.input_type, what=f"run {run.id!r} input")
    except PikkuError as exc:
        result.problems.append(
            Mismatch("input", f"the stored input does not rebuild into the current input type: {exc}",
                     recorded=_short(run.input), new=_type_text(definition.input_type))
        )
        return result
    ctx = ReplayContext(definition, reg, history, result)
    try:
        await asyncio.wait_for(definition.func(ctx, data), timeout)
        result.outcome = "completed"
    except _Stop:
        result.outcome = "end of history"
    except _Mismatched:
        result.outcome = "mismatch"
    except TimeoutError:
        result.outcome = "timeout"
        result.problems.append(
            Mismatch("error", f"the replay did not finish within {timeout:g} s (the workflow awaits something that is not a step?)")
        )
    except StepFailedError as exc:
        result.outcome = "failed"
        if exc is not ctx.failed_step:  # pragma: no cover - only the context raises it
            raise
    except Exception as exc:
        result.outcome = "failed"
        recorded = run.error
        same = recorded is not None and run.status is RunStatus.FAILED and recorded.type == type(exc).__name__
        if not same:
            result.problems.append(
                Mismatch(
                    "error",
                    f"the workflow raised {type(exc).__name__}: {exc}",
                    recorded=(f"{recorded.type}: {recorded.message}" if recorded else f"run {run.status.value}"),
                    new=type(exc).__name__,
                )
            )
    result.unreached = ctx.remaining()
    return result


async def replay_histories(
    histories: Iterable[History], *, registry: Registry | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[ReplayResult]:
    return [await replay_history(h, registry=registry, timeout=timeout) for h in histories]


__all__ = [
    "HISTORY_FORMAT",
    "History",
    "HistoryFormatError",
    "Mismatch",
    "ReplayContext",
    "ReplayResult",
    "load_histories",
    "replay_histories",
    "replay_history",
]
