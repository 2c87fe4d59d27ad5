"""The ``pikku`` pytest plugin (entry point ``pytest11``): the ``workflow_env`` fixture.

Loading the plugin imports nothing but pytest (and the lazy ``pikku_typing`` package): the
runtime is imported by the fixture, only in the tests that use it.

* ``workflow_env``: a fresh :class:`pikku_typing.testing.WorkflowTestEnv` per test (fake
  clock, in-memory store), dropped when the test ends.
* ``workflow_env_state``: the store the environment runs on; ``None`` (the default) means a
  new in-memory store. Override it in a ``conftest.py`` to test on another store::

      @pytest.fixture
      def workflow_env_state(tmp_path):
          return SqliteWorkflowStateService(tmp_path / "state.db")

The fixtures are plain (not async) fixtures, so they work with any async test runner
(pytest-asyncio, anyio) and the environment's methods are awaited in the test itself.
Disable the plugin with ``-p no:pikku``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pikku_typing.testing import WorkflowTestEnv


@pytest.fixture
def workflow_env_state() -> Any:
    """The store ``workflow_env`` runs on (``None``: a new in-memory store)."""
    return None


@pytest.fixture
def workflow_env(workflow_env_state: Any) -> Iterator[WorkflowTestEnv]:
    """A :class:`~pikku_typing.testing.WorkflowTestEnv` for one test."""
    from pikku_typing.testing import WorkflowTestEnv

    env = WorkflowTestEnv(state=workflow_env_state)
    try:
        yield env
    finally:
        env.close_nowait()
