"""The interaction object a workflow function receives (``Workflow``) and ``rpc``."""

from __future__ import annotations

import inspect
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar, final, overload

from pikku_typing.durations import Duration
from pikku_typing.models import WorkflowRun

if TYPE_CHECKING:
    from pikku_typing.wiring import Registry

T = TypeVar("T")


class Workflow(ABC):
    """Passed as the first argument of a workflow function.

    * ``await workflow.do(step_name, rpc_name, data)``: the RPC form, a durable call of a
      ``@pikku_func`` (typed per RPC name by the generated stubs or the mypy plugin).
    * ``await workflow.do(step_name, fn)``: the inline form; ``fn`` takes no argument and
      returns a value or an awaitable; the step returns its (awaited) result.
    * ``await workflow.sleep(step_name, duration)``: a durable sleep.
    * ``await workflow.wait_for_event(step_name, event_name, timeout=None)``: durably wait for
      an event sent with ``send_event`` (the payload, or ``None`` when ``timeout`` passed).
    * ``await workflow.run_child(step_name, workflow_name, input)``: run another workflow as
      a child run and return its output; ``start_child`` starts it and returns its run id.
    * ``await workflow.now()``, ``uuid4()``, ``random()``: values recorded once, replayed after.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """The workflow's name."""

    @property
    @abstractmethod
    def run_id(self) -> str:
        """The id of the run being executed."""

    @abstractmethod
    async def get_run(self) -> WorkflowRun[Any, Any]:
        """The stored run."""

    @overload
    async def do(
        self,
        step_name: str,
        rpc_name: str,
        data: Any,
        /,
        *,
        description: str | None = None,
        retries: int | None = None,
        retry_delay: Duration | None = None,
    ) -> Any: ...
    @overload
    async def do(
        self,
        step_name: str,
        fn: Callable[[], Awaitable[T]],
        /,
        *,
        description: str | None = None,
        retries: int | None = None,
        retry_delay: Duration | None = None,
        result_type: type[T] | None = None,
    ) -> T: ...
    @overload
    async def do(
        self,
        step_name: str,
        fn: Callable[[], T],
        /,
        *,
        description: str | None = None,
        retries: int | None = None,
        retry_delay: Duration | None = None,
        result_type: type[T] | None = None,
    ) -> T: ...
    @abstractmethod
    async def do(
        self,
        step_name: str,
        target: str | Callable[[], Any],
        data: Any = None,
        /,
        *,
        description: str | None = None,
        retries: int | None = None,
        retry_delay: Duration | None = None,
        result_type: Any = None,
    ) -> Any:
        """Run a durable step (see the class docstring)."""

    @abstractmethod
    async def sleep(
        self, step_name: str, duration: Duration, *, description: str | None = None
    ) -> None:
        """Durably sleep: the run is suspended and resumed when ``duration`` has passed."""

    async def wait_for_event(
        self,
        step_name: str,
        event_name: str,
        timeout: Duration | None = None,
        *,
        description: str | None = None,
    ) -> Any:
        """Durably wait for event ``event_name`` (declared with ``wire_event``) sent to this
        run, and return its payload rebuilt with the declared type. An event sent before the
        run gets here is kept: the first unconsumed one of that name (in send order) is
        consumed. With ``timeout`` (a durable deadline, like a sleep) the result is ``None``
        when no event came in time."""
        raise NotImplementedError(f"{type(self).__name__} does not support wait_for_event")

    async def run_child(
        self,
        step_name: str,
        workflow_name: str,
        input: Any,
        *,
        description: str | None = None,
    ) -> Any:
        """Run workflow ``workflow_name`` as a child run with ``input`` and return its output
        (the parent is suspended durably until the child settles). A failed or cancelled child
        raises :class:`~pikku_typing.errors.ChildWorkflowFailedError`. The child's run id is
        derived from this run's id and the step key (the same on every replay)."""
        raise NotImplementedError(f"{type(self).__name__} does not support run_child")

    async def start_child(
        self,
        step_name: str,
        workflow_name: str,
        input: Any,
        *,
        description: str | None = None,
    ) -> str:
        """Start workflow ``workflow_name`` as a child run and return its run id at once
        (without waiting for it)."""
        raise NotImplementedError(f"{type(self).__name__} does not support start_child")

    async def now(self) -> datetime:
        """The current time (UTC), recorded the first time and the same on every replay."""
        raise NotImplementedError(f"{type(self).__name__} does not support now")

    async def uuid4(self) -> uuid.UUID:
        """A random UUID, recorded the first time and the same on every replay."""
        raise NotImplementedError(f"{type(self).__name__} does not support uuid4")

    async def random(self) -> float:
        """A random float in [0, 1), recorded the first time and the same on every replay."""
        raise NotImplementedError(f"{type(self).__name__} does not support random")

    def patched(self, change_id: str) -> Awaitable[bool]:
        """``if await workflow.patched("change-id"):`` — ``True`` for runs that reach it in
        the new code, ``False`` for runs replaying a history recorded before the change (they
        keep the old branch). The answer is recorded once per run (a durable marker, like a
        step), so a run never changes sides (SPEC section 9)."""
        raise NotImplementedError(f"{type(self).__name__} does not support patched")


_rpc_registry: ContextVar[Registry | None] = ContextVar("pikku_rpc_registry", default=None)
"""The registry ``rpc.invoke`` resolves names in, when not the process-wide one (a test
environment sets it while it runs jobs, so ``env.mock_rpc`` reaches ``rpc.invoke`` too)."""


@final
class RPCInvoker:
    """``await rpc.invoke("users.get", data)`` calls a registered ``@pikku_func``."""

    async def invoke(self, rpc_name: str, data: Any) -> Any:
        from pikku_typing.wiring import registry

        definition = (_rpc_registry.get() or registry).get_rpc(rpc_name)
        result = definition.func(data)
        if inspect.isawaitable(result):
            result = await result
        return result


rpc: Final = RPCInvoker()
