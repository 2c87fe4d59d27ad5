"""The public names of SPEC section 3 are importable from ``pikku_typing``."""

import pikku_typing

SPEC_NAMES = [
    "Workflow",
    "pikku_func",
    "rpc",
    "wire_workflow",
    "WorkflowRuntime",
    "WorkflowClient",
    "WorkflowRun",
    "StepState",
    "RunStatus",
    "StepStatus",
    "WorkflowStateService",
    "InMemoryWorkflowStateService",
    "FileWorkflowStateService",
    "SqliteWorkflowStateService",
    "PostgresWorkflowStateService",
    "PostgresQueue",
    # SPEC section 8
    "wire_event",
    "ChildWorkflowFailedError",
    "RunExistsError",
]


def test_spec_names_are_exported() -> None:
    for name in SPEC_NAMES:
        assert name in pikku_typing.__all__, name
        assert getattr(pikku_typing, name) is not None


def test_all_is_sorted_and_resolves() -> None:
    assert pikku_typing.__all__ == sorted(pikku_typing.__all__)
    for name in pikku_typing.__all__:
        getattr(pikku_typing, name)


def test_status_values() -> None:
    assert [s.value for s in pikku_typing.RunStatus] == [
        "running", "suspended", "completed", "failed", "cancelled"]
    assert [s.value for s in pikku_typing.StepStatus] == [
        "pending", "running", "scheduled", "succeeded", "failed"]


def test_import_is_lazy() -> None:
    """Loading the package (as the mypy plugin does) imports neither pydantic nor the runtime."""
    import subprocess
    import sys

    code = (
        "import sys, pikku_typing, pikku_typing.mypy\n"
        "heavy = [m for m in ('pydantic', 'pikku_typing.runtime', 'pikku_typing.state') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
        "pikku_typing.WorkflowRuntime\n"
        "print('pikku_typing.runtime' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"]


def test_unknown_attribute() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pikku_typing.Nope  # noqa: B018
