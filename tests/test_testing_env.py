"""``pikku_typing.testing.WorkflowTestEnv`` and the ``workflow_env`` pytest fixture: the fake
clock skips sleeps and retry delays unless held, RPC mocks, step states, any store."""

from __future__ import annotations

import itertools
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import pytest
from registry_support import isolated_registry

from pikku_typing import (
    InMemoryWorkflowStateService,
    RunStatus,
    StepStatus,
    Workflow,
    WorkflowFailedError,
    pikku_func,
    rpc,
    wire_workflow,
)
from pikku_typing.runtime import steps as steps_module
from pikku_typing.state.sqlite import SqliteWorkflowStateService
from pikku_typing.testing import RunNotSettledError, WorkflowTestEnv

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    with isolated_registry():
        yield


@pytest.fixture
async def env() -> AsyncIterator[WorkflowTestEnv]:
    async with WorkflowTestEnv() as e:
        yield e


class Signup(TypedDict):
    email: str


class Account(TypedDict):
    id: int
    email: str


CALLS: list[str] = []


def wire_onboarding(mode: str = "remote") -> None:
    CALLS.clear()

    @pikku_func(name="accounts.create")
    async def create(data: Signup) -> Account:
        CALLS.append("create")
        return {"id": 7, "email": data["email"]}

    @pikku_func(name="emails.welcome")
    def welcome(data: Account) -> bool:
        CALLS.append("welcome")
        return True

    async def onboarding(workflow: Workflow, data: Signup) -> dict[str, Any]:
        account: Account = await workflow.do("create", "accounts.create", {"email": data["email"]})
        await workflow.sleep("coolOff", "1d")
        sent = await workflow.do("welcome", "emails.welcome", account)
        looked_up = await workflow.do("lookup", lambda: rpc.invoke("accounts.create", data))
        return {"id": account["id"], "sent": sent, "again": looked_up["id"]}

    wire_workflow(name="onboarding", func=onboarding, execution_mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["remote", "inline"])
async def test_one_day_sleep_completes_at_once(env: WorkflowTestEnv, mode: str) -> None:
    wire_onboarding(mode)
    started = env.now()
    t0 = time.perf_counter()
    output = await env.run("onboarding", {"email": "a@example.com"})
    elapsed = time.perf_counter() - t0
    assert output == {"id": 7, "sent": True, "again": 7}
    assert elapsed < 0.5, f"a 1-day sleep took {elapsed:.3f}s of wall time"
    assert env.now() - started >= timedelta(days=1)  # the clock skipped, not the test
    assert CALLS == ["create", "welcome", "create"]  # every side effect once
    assert env.last_run_id is not None
    steps = await env.steps(env.last_run_id)
    assert list(steps) == ["create", "coolOff", "welcome", "lookup"]
    assert all(s.status is StepStatus.SUCCEEDED for s in steps.values())
    sleep = steps["coolOff"]
    assert sleep.finished_at is not None and sleep.finished_at - sleep.created_at == timedelta(days=1)


async def test_held_clock_keeps_the_run_suspended(env: WorkflowTestEnv) -> None:
    wire_onboarding()
    with env.hold_clock():
        handle = await env.start("onboarding", {"email": "b@example.com"})
        run = await env.get_run(handle.run_id)
        assert run.status is RunStatus.SUSPENDED
        assert run.wake_at is not None and run.wake_at - env.now() > timedelta(hours=23)
        assert (await env.step(handle.run_id, "coolOff")).status is StepStatus.SCHEDULED
        with pytest.raises(RunNotSettledError, match="clock is held"):
            await env.result(handle.run_id)
        await env.advance("23h")
        assert (await env.get_run(handle.run_id)).status is RunStatus.SUSPENDED
        assert CALLS == ["create"]
        await env.advance("1h")
        assert (await env.get_run(handle.run_id)).status is RunStatus.COMPLETED
    assert CALLS == ["create", "welcome", "create"]


async def test_mock_rpc_replaces_the_rpc(env: WorkflowTestEnv) -> None:
    wire_onboarding()
    env.mock_rpc("emails.welcome", lambda data: False)

    async def fake_create(data: Signup) -> Account:
        return {"id": 99, "email": data["email"]}

    env.mock_rpc("accounts.create", fake_create)
    output = await env.run("onboarding", {"email": "c@example.com"})
    assert output == {"id": 99, "sent": False, "again": 99}
    assert CALLS == []  # the real RPCs never ran (rpc.invoke inside the inline step too)
    assert env.calls["emails.welcome"] == [{"id": 99, "email": "c@example.com"}]
    assert [c["email"] for c in env.calls["accounts.create"]] == ["c@example.com"] * 2
    # the process-wide registry is untouched: another environment runs the real RPCs
    async with WorkflowTestEnv() as other:
        assert await other.run("onboarding", {"email": "d@example.com"}) == {
            "id": 7, "sent": True, "again": 7
        }


async def test_retry_delays_are_skipped_and_failures_surface(env: WorkflowTestEnv) -> None:
    attempts: list[datetime] = []

    @pikku_func(name="flaky.call")
    def flaky(data: int) -> int:
        attempts.append(steps_module.now())
        if len(attempts) < 3:
            raise ConnectionError("down")
        return data + 1

    async def wf(workflow: Workflow, data: int) -> int:
        return int(await workflow.do("call", "flaky.call", data, retries=5, retry_delay="10m"))

    async def broken(workflow: Workflow, data: int) -> int:
        return int(await workflow.do("call", "flaky.call", data, retries=0))

    wire_workflow(name="flaky", func=wf)
    wire_workflow(name="broken", func=broken)
    t0 = time.perf_counter()
    assert await env.run("flaky", 1) == 2
    assert time.perf_counter() - t0 < 0.5
    assert [b - a for a, b in itertools.pairwise(attempts)] == [timedelta(minutes=10)] * 2
    attempts.clear()
    with pytest.raises(WorkflowFailedError, match="down"):
        await env.run("broken", 1)


async def test_clock_is_only_the_environments(env: WorkflowTestEnv) -> None:
    wire_onboarding()
    await env.run("onboarding", {"email": "e@example.com"})
    # outside the environment's calls, the runtime reads the wall clock again
    assert abs((steps_module.now() - datetime.now(UTC)).total_seconds()) < 60
    assert env.now() - datetime.now(UTC) > timedelta(hours=23)


async def test_endless_sleep_loop_is_reported(env: WorkflowTestEnv) -> None:
    async def forever(workflow: Workflow, data: None) -> None:
        i = 0
        while True:
            await workflow.sleep(f"tick{i}", "1h")
            i += 1

    wire_workflow(name="forever", func=forever, execution_mode="inline")
    env.max_skips = 20
    with pytest.raises(RuntimeError, match="endless loop"):
        await env.run("forever", None)


async def test_any_store(tmp_path: Path) -> None:
    wire_onboarding()
    store = SqliteWorkflowStateService(tmp_path / "state.db")
    try:
        async with WorkflowTestEnv(state=store) as env:
            output = await env.run("onboarding", {"email": "f@example.com"})
            assert output["id"] == 7
            assert env.last_run_id is not None
        run = await store.get_run(env.last_run_id)  # the store is the caller's: still open
        assert run.status is RunStatus.COMPLETED
    finally:
        await store.close()


async def test_in_memory_store_is_the_default(env: WorkflowTestEnv) -> None:
    assert isinstance(env.state, InMemoryWorkflowStateService)


# ------------------------------------------------------------- the pytest plugin

PLUGIN_TEST = '''
import time
from datetime import timedelta
from pikku_typing import Workflow, wire_workflow, pikku_func

@pikku_func(name="plug.double")
def double(data: int) -> int:
    return data * 2

async def wf(workflow: Workflow, data: int) -> int:
    await workflow.sleep("nap", "1d")
    return int(await workflow.do("double", "plug.double", data))

wire_workflow(name="plugged", func=wf)

async def test_with_fixture(workflow_env):
    t0 = time.perf_counter()
    workflow_env.mock_rpc("plug.double", lambda n: n * 3)
    assert await workflow_env.run("plugged", 5) == 15
    assert time.perf_counter() - t0 < 0.5
    steps = await workflow_env.steps(workflow_env.last_run_id)
    assert steps["nap"].status == "succeeded"

async def test_held(workflow_env):
    workflow_env.hold_clock()
    handle = await workflow_env.start("plugged", 1)
    assert (await workflow_env.get_run(handle.run_id)).status == "suspended"
    await workflow_env.advance(timedelta(days=1))
    assert (await workflow_env.get_run(handle.run_id)).output == 2
'''


def test_pytest_plugin_fixture(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # only the plugins named here (the installed entry point is checked below)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_plugged=PLUGIN_TEST)
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    result = pytester.runpytest_subprocess(
        "-p", "pikku_typing.pytest_plugin", "-p", "pytest_asyncio.plugin", "-q"
    )
    result.assert_outcomes(passed=2)


def test_plugin_entry_point_is_declared_and_light() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["entry-points"]["pytest11"] == {"pikku": "pikku_typing.pytest_plugin"}
    # loading the plugin imports neither the runtime nor pydantic
    import subprocess

    code = (
        "import sys, pikku_typing.pytest_plugin\n"
        "heavy = [m for m in ('pydantic', 'pikku_typing.runtime', 'pikku_typing.testing') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
