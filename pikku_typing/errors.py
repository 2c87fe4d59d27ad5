"""Exception types raised by pikku_typing (public: each is re-exported from the package)."""

from __future__ import annotations


class PikkuError(Exception):
    """Base class of every error raised by pikku_typing."""


class WorkflowRegistrationError(PikkuError, ValueError):
    """``wire_workflow`` / ``pikku_func`` was given something it cannot register."""


class InvalidDurationError(PikkuError, ValueError):
    """A duration is not a timedelta, a non-negative number of seconds or a string like ``"5s"``."""


class WorkflowNotFoundError(PikkuError, LookupError):
    """No workflow is registered under that name."""


class RPCNotFoundError(PikkuError, LookupError):
    """No ``@pikku_func`` is registered under that RPC name."""


class RunNotFoundError(PikkuError, LookupError):
    """The state store has no run with that id."""


class InvalidRunIdError(PikkuError, ValueError):
    """A run id is malformed (it could escape the state directory, or is empty)."""


class StateCorruptedError(PikkuError):
    """A stored document cannot be read back (truncated or corrupt JSON...). Never overwritten."""


class StepSerializationError(PikkuError, TypeError):
    """A step's data or result cannot round-trip through JSON with its declared type."""


class WorkflowNonDeterminismError(PikkuError):
    """On replay the workflow reached a recorded step key with another kind, RPC name or data."""


class WorkflowInputError(PikkuError, ValueError):
    """``client.start(input)`` was given input that does not match the workflow's input type."""


class WorkflowCancelledError(PikkuError):
    """The run was cancelled (raised by ``client.result`` for a cancelled run)."""


class WorkflowFailedError(PikkuError):
    """The run failed (raised by ``client.result``); ``error`` holds the stored error."""

    def __init__(self, message: str, *, error_type: str | None = None, step: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.step = step


class StoreUnavailableError(PikkuError):
    """The state store or queue backend cannot be reached."""


class RunAlreadyExistsError(PikkuError, ValueError):
    """``create_run`` was given a ``run_id`` that the state store already holds."""


class StepNotFoundError(PikkuError, LookupError):
    """The run has no step with that key."""


class RunExistsError(RunAlreadyExistsError):
    """``client.start(input, run_id=...)``: a run with that id already exists with another
    input (or for another workflow). With the same input the existing run's handle is returned."""


class ChildWorkflowFailedError(WorkflowFailedError):
    """Raised in a parent by ``workflow.run_child`` when the child run failed or was cancelled
    (catchable like any exception). ``child_run_id`` and ``workflow`` name the child,
    ``error_type`` is the type of the child's stored error (``"WorkflowCancelled"`` for a
    cancelled child) and ``step`` is the parent's step key."""

    def __init__(
        self,
        message: str,
        *,
        child_run_id: str,
        workflow: str,
        error_type: str | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(message, error_type=error_type, step=step)
        self.child_run_id = child_run_id
        self.workflow = workflow


class EventNotFoundError(PikkuError, LookupError):
    """No ``wire_event`` declares an event under that name."""


class EventPayloadError(PikkuError, ValueError):
    """``send_event`` was given a payload that does not match the event's declared type."""


class StorePathError(PikkuError, OSError):
    """The state store's path cannot be used: it is not a directory, is read-only, or a
    parent is missing or not a directory. Raised at first use with the path and the
    operating system's reason (a configuration error: never retried, unlike
    :class:`StoreUnavailableError`)."""


class NestedStepError(PikkuError):
    """``workflow.do`` / ``workflow.sleep`` was called inside the body of another step (an
    inline step's function awaited it). Not retriable: the run fails naming both steps
    (``outer`` and ``inner`` hold their step keys)."""

    def __init__(self, message: str, *, outer: str | None = None, inner: str | None = None) -> None:
        super().__init__(message)
        self.outer = outer
        self.inner = inner
