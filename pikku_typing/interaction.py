"""The interaction object a workflow function receives (``Workflow``) and ``rpc``."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, final, overload

from pikku_typing.durations import Duration
from pikku_typing.models import WorkflowRun

T = TypeVar("T")


class Workflow(ABC):
    """Passed as the first argument of a workflow function.

    * ``await workflow.do(step_name, rpc_name, data)``: the RPC form, a durable call of a
      ``@pikku_func`` (typed per RPC name by the generated stubs or the mypy plugin).
    * ``await workflow.do(step_name, fn)``: the inline form; ``fn`` takes no argument and
      returns a value or an awaitable; the step returns its (awaited) result.
    * ``await workflow.sleep(step_name, duration)``: a durable sleep.
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


@final
class RPCInvoker:
    """``await rpc.invoke("users.get", data)`` calls a registered ``@pikku_func``."""

    async def invoke(self, rpc_name: str, data: Any) -> Any:
        from pikku_typing.wiring import registry

        definition = registry.get_rpc(rpc_name)
        result = definition.func(data)
        if inspect.isawaitable(result):
            result = await result
        return result


rpc: Final = RPCInvoker()
