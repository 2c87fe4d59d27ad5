"""How a step ends a workflow function's pass other than by returning: the private
signals that unwind it (:class:`Suspend`, :class:`Cancelled`, both ``BaseException`` so a
workflow's ``except Exception`` never swallows them) and :class:`StepFailedError`."""

from __future__ import annotations

from pikku_typing.errors import StoreUnavailableError, WorkflowFailedError
from pikku_typing.models import ErrorInfo

__all__ = [
    "Cancelled",
    "Interrupted",
    "JobInterrupted",
    "StepFailedError",
    "Suspend",
    "Unavailable",
]


class Suspend(BaseException):
    """Unwinds a workflow function whose continuation is dropped."""


class Cancelled(BaseException):
    """Unwinds a workflow function whose run was cancelled (at a step boundary)."""


class Unavailable(BaseException):
    """Unwinds a workflow function whose pass hit an infrastructure failure (the store or
    the queue is away): a ``BaseException``, so no ``except`` of the workflow (not even
    ``except Exception``) catches it. The pass is abandoned and the job delivered again;
    ``error`` is the :class:`~pikku_typing.errors.StoreUnavailableError`."""

    def __init__(self, error: StoreUnavailableError) -> None:
        super().__init__(str(error))
        self.error = error


class Interrupted(BaseException):
    """A step's code raised ``KeyboardInterrupt`` or ``SystemExit`` (``original``): its
    attempt was abandoned (it runs again), and this unwinds the pass (no ``except`` of the
    workflow catches it) up to the job, which stops the worker."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(repr(original))
        self.original = original


class JobInterrupted(Exception):
    """The form of :class:`Interrupted` that may leave an asyncio task (a ``BaseException``
    escaping a task would stop the event loop): raised out of a pass to the job handler."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"a step raised {type(original).__name__}: the worker stops")
        self.original = original


class StepFailedError(WorkflowFailedError):
    """Raised by ``workflow.do`` when a step failed for good (retries exhausted); uncaught,
    it fails the run with the step's error."""

    def __init__(self, info: ErrorInfo, key: str, attempts: int) -> None:
        super().__init__(
            f"step {key!r} failed after {attempts} attempt(s): {info.type}: {info.message}",
            error_type=info.type,
            step=key,
        )
        self.info = info.model_copy(update={"step": key})
