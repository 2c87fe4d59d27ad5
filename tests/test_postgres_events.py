"""The runtime tests of SPEC section 8 (``tests/test_events.py``, ``tests/test_child_runs.py``,
``tests/test_deterministic.py``) again on the PostgreSQL store AND the PostgreSQL queue
(procrastinate): an event or a child's settlement wakes a run through ``PostgresQueue``.
Tests that move a fake clock (the in-process queue follows it, procrastinate does not) or
build their own in-process queue are left out. Skipped without ``PIKKU_TEST_POSTGRES_DSN``."""

# ruff: noqa: F811 - pytest fixtures imported from test_runtime are used as parameters

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_child_runs
import test_deterministic
import test_events
import test_runtime
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn
from stores import StoreSpec
from test_runtime import runtimes, store  # noqa: F401 - the fixtures

from pikku_typing import WorkflowRuntime, WorkflowStateService
from pikku_typing.runtime.queues.postgres import PostgresQueue

pytestmark = [*POSTGRES_MARKS]

clean_registry = test_events.clean_registry

for _module in (test_events, test_child_runs, test_deterministic):
    for _name, _obj in vars(_module).items():
        if not (_name.startswith("test_") and inspect.isfunction(_obj)):
            continue
        params = inspect.signature(_obj).parameters
        source = inspect.getsource(_obj)
        if "store" in params and "clock" not in params and "InProcessQueue" not in source:
            globals()[_name] = _obj


@pytest.fixture
def store_spec(tmp_path: Path) -> Iterator[StoreSpec]:  # overrides test_runtime's
    dsn = create_schema_dsn()
    yield StoreSpec(f"postgres:{dsn}")
    drop_schema_dsn(dsn)


@pytest.fixture(autouse=True)
async def postgres_queues(
    monkeypatch: pytest.MonkeyPatch, store: WorkflowStateService
) -> AsyncIterator[list[PostgresQueue]]:
    queues: list[PostgresQueue] = []
    dsn: str = store.dsn  # type: ignore[attr-defined]

    def new_runtime(made: list[WorkflowRuntime], store: WorkflowStateService, **kw: Any) -> WorkflowRuntime:
        queue = PostgresQueue(dsn, poll_interval=0.05, shutdown_timeout=10)
        queues.append(queue)
        rt = WorkflowRuntime(store, queue, **kw)
        made.append(rt)
        return rt

    monkeypatch.setattr(test_runtime, "new_runtime", new_runtime)
    yield queues
    for queue in queues:
        await queue.close()
