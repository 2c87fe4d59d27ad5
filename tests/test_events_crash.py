"""Events and child runs across real process crashes (``tests/crash_helpers/events_app.py``),
on the file, SQLite and PostgreSQL stores, in both execution modes: a process SIGKILLed while
its run waits for an event, right after it consumed an event, while a child run executes a
step and while a child sleeps. A new process resumes; side effects are counted in a file."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stores import StoreFactory, StoreSpec, store_params

from pikku_typing.models import RunStatus, StepStatus
from pikku_typing.runtime.lifecycle import child_run_id

APP = Path(__file__).parent / "crash_helpers" / "events_app.py"
ROOT = Path(__file__).resolve().parents[1]
MODES = pytest.mark.parametrize("mode", ["inline", "remote"])


class App:
    def __init__(self, spec: StoreSpec, tmp_path: Path, mode: str) -> None:
        self.spec = spec
        self.counts = tmp_path / "counts.txt"
        self.mode = mode
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def argv(self, *command: str) -> list[str]:
        return [sys.executable, str(APP), self.spec.url, str(self.counts), self.mode, *command]

    def run(self, *command: str, crash: str = "", expect: int = 0) -> str:
        proc = subprocess.run(
            self.argv(*command), env={**self.env, "PIKKU_CRASH": crash},
            capture_output=True, text=True, timeout=180,
        )
        assert proc.returncode == expect, (proc.returncode, proc.stdout, proc.stderr[-3000:])
        return proc.stdout

    def popen(self, *command: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*command), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )

    def start(self, workflow: str, data: int) -> str:
        return self.run("start", workflow, str(data)).strip()

    def counts_of(self, run_id: str) -> collections.Counter[str]:
        out: collections.Counter[str] = collections.Counter()
        if self.counts.exists():
            for line in self.counts.read_text().split("\n")[:-1]:  # complete lines only
                rid, step = line.split()
                if rid == run_id:
                    out[step] += 1
        return out

    def read(self, fn: Any) -> Any:
        async def go() -> Any:
            async with self.spec.open() as store:
                return await fn(store)

        return asyncio.run(go())

    def run_and_steps(self, run_id: str) -> tuple[Any, dict[str, Any]]:
        async def get(store: Any) -> Any:
            return await store.get_run(run_id), await store.get_step_states(run_id)

        return self.read(get)  # type: ignore[no-any-return]

    def wait_until(self, server: subprocess.Popen[str], check: Any, what: str) -> None:
        deadline = time.monotonic() + 90  # a cap for a loaded machine, not a timing assertion
        while time.monotonic() < deadline:
            if check():
                return
            assert server.poll() is None, server.communicate()
            time.sleep(0.05)
        raise AssertionError(f"never reached: {what}")


@pytest.fixture(params=store_params(cross_process_only=True))
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreSpec]:
    factory: StoreFactory = request.param
    made = factory.make_spec(tmp_path)
    yield made
    if factory.cleanup is not None:
        factory.cleanup(made)


def _kill(server: subprocess.Popen[str]) -> None:
    server.send_signal(signal.SIGKILL)
    server.wait()
    assert server.returncode == -signal.SIGKILL


@MODES
def test_kill_while_waiting_for_an_event(spec: StoreSpec, tmp_path: Path, mode: str) -> None:
    app = App(spec, tmp_path, mode)
    run_id = app.start("pay", 0)
    server = app.popen("serve")
    try:
        def waiting() -> bool:
            run, steps = app.run_and_steps(run_id)
            return run.status is RunStatus.SUSPENDED and "first" in steps

        app.wait_until(server, waiting, "the run waits for its event")
    finally:
        _kill(server)
    run, steps = app.run_and_steps(run_id)
    assert run.status is RunStatus.SUSPENDED and steps["first"].status is StepStatus.SCHEDULED
    app.run("send", run_id, "2")  # another process sends; nobody runs the run now
    app.run("drain")  # a new process: recover() finds the run, the wait gets its events
    run, steps = app.run_and_steps(run_id)
    assert run.status is RunStatus.COMPLETED and run.output == [1, 2]
    assert app.counts_of(run_id) == {"before": 1}  # the finished step did not run again
    events = app.read(lambda store: store.list_events(run_id))
    assert [(e.payload, e.consumed_by) for e in events] == [({"n": 1}, "first"), ({"n": 2}, "second")]


@MODES
def test_kill_right_after_consuming_an_event(spec: StoreSpec, tmp_path: Path, mode: str) -> None:
    """The process dies between ``consume_event`` and recording the step's result: the
    replay gets the same event for the same step; no event is lost or consumed twice."""
    app = App(spec, tmp_path, mode)
    run_id = app.start("pay", 0)
    app.run("send", run_id, "3")  # sent before the run ever waits: kept
    app.run("drain", crash="after-consume", expect=-signal.SIGKILL)
    run, steps = app.run_and_steps(run_id)
    assert not run.status.is_settled and steps["first"].status is StepStatus.SCHEDULED
    events = app.read(lambda store: store.list_events(run_id))
    assert [e.consumed_by for e in events] == ["first", None, None]
    app.run("drain")
    run, steps = app.run_and_steps(run_id)
    assert run.status is RunStatus.COMPLETED and run.output == [1, 2]
    events = app.read(lambda store: store.list_events(run_id))
    assert [e.consumed_by for e in events] == ["first", "second", None]
    assert app.counts_of(run_id) == {"before": 1}


@MODES
def test_kill_while_a_child_runs_a_step(spec: StoreSpec, tmp_path: Path, mode: str) -> None:
    app = App(spec, tmp_path, mode)
    app.env["PIKKU_SLEEP"] = "10ms"
    run_id = app.start("parent", 3)
    app.run("drain", crash="in-step:k1", expect=17)  # dies inside the child's step k1
    kid = child_run_id(run_id, "kid")
    assert app.counts_of(kid) == {"k1": 1} and app.counts_of(run_id) == {"p": 1}
    app.run("drain")
    run, _ = app.run_and_steps(run_id)
    assert run.status is RunStatus.COMPLETED and run.output == 100 + 3 + 30
    children = app.read(lambda store: store.list_runs(workflow="kid"))
    assert [(c.id, c.parent_run_id, c.status) for c in children] == [
        (kid, run_id, RunStatus.COMPLETED)
    ]
    assert app.counts_of(run_id) == {"p": 1}
    assert app.counts_of(kid) == {"k1": 2, "k2": 1}  # the in-flight step ran again


@MODES
def test_kill_while_a_child_sleeps(spec: StoreSpec, tmp_path: Path, mode: str) -> None:
    app = App(spec, tmp_path, mode)
    app.env["PIKKU_SLEEP"] = "1h"  # cannot end before the kill, however slow the machine
    run_id = app.start("parent", 4)
    kid = child_run_id(run_id, "kid")
    server = app.popen("serve")
    try:
        def child_sleeps() -> bool:
            async def get(store: Any) -> Any:
                runs = {r.id: r for r in await store.list_runs()}
                return runs.get(kid)

            child = app.read(get)
            return child is not None and child.status is RunStatus.SUSPENDED

        app.wait_until(server, child_sleeps, "the child sleeps")
    finally:
        _kill(server)
    run, steps = app.run_and_steps(run_id)
    assert not run.status.is_settled and steps["kid"].status is StepStatus.SCHEDULED
    app.env["PIKKU_CLOCK_OFFSET"] = str(2 * 3600)  # the next process starts after the sleep
    app.run("drain")
    run, _ = app.run_and_steps(run_id)
    assert run.status is RunStatus.COMPLETED and run.output == 100 + 4 + 40
    assert [c.id for c in app.read(lambda store: store.list_runs(workflow="kid"))] == [kid]
    assert app.counts_of(run_id) == {"p": 1} and app.counts_of(kid) == {"k1": 1, "k2": 1}
