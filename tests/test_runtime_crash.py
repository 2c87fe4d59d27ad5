"""Crash recovery with real processes (``tests/crash_helpers/app.py``): a process is killed
mid-step after its side effect, between storing a result and waking the orchestrator, and
during a sleep; a new process resumes the run. Two processes drain one store at once.

Side effects are counted in a file: finished steps ran exactly once, the in-flight one at
least once, and the run completes with the right output."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from postgres_support import create_schema_dsn, drop_schema_dsn, requires_postgres

from pikku_typing.models import RunStatus, StepStatus
from pikku_typing.state import open_store

APP = Path(__file__).parent / "crash_helpers" / "app.py"
ROOT = Path(__file__).resolve().parents[1]
EXPECTED_TOTAL = 10 + 20 + 300 + 40  # + the run's input
STEPS = ("a", "b", "c", "d")


def _sqlite_ready() -> bool:
    from pikku_typing.state.sqlite import SqliteWorkflowStateService

    return getattr(SqliteWorkflowStateService, "__abstractmethods__", None) is not None


STORES = pytest.mark.parametrize(
    "store_kind",
    [
        "file",
        pytest.param(
            "sqlite",
            marks=pytest.mark.skipif(not _sqlite_ready(), reason="SQLite store not built yet"),
        ),
    ],
)
MODES = pytest.mark.parametrize("mode", ["inline", "remote"])


class App:
    def __init__(self, tmp_path: Path, store_kind: str, mode: str, *, dsn: str = "") -> None:
        self.url = (
            f"postgres:{dsn}" if dsn
            else f"file:{tmp_path / 'state'}" if store_kind == "file"
            else f"sqlite:{tmp_path / 'state.db'}"
        )
        self.counts = tmp_path / "counts.txt"
        self.mode = mode
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def argv(self, *command: str) -> list[str]:
        return [sys.executable, str(APP), self.url, str(self.counts), self.mode, *command]

    def run(self, *command: str, crash: str = "", expect: int = 0) -> str:
        env = {**self.env, "PIKKU_CRASH": crash}
        proc = subprocess.run(
            self.argv(*command), env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == expect, (proc.returncode, proc.stdout, proc.stderr)
        return proc.stdout

    def popen(self, *command: str, crash: str = "") -> subprocess.Popen[str]:
        env = {**self.env, "PIKKU_CRASH": crash}
        return subprocess.Popen(
            self.argv(*command), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def start(self, n: int) -> list[str]:
        return self.run("start", str(n)).split()

    def counts_by_run(self) -> dict[str, collections.Counter[str]]:
        out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        if self.counts.exists():
            for line in self.counts.read_text().split("\n")[:-1]:  # complete lines only
                run_id, step = line.split()
                out[run_id][step] += 1
        return out

    def runs(self) -> list[Any]:
        async def read() -> list[Any]:
            async with open_store(self.url) as store:
                runs = await store.list_runs()
                return [(r, await store.get_step_states(r.id)) for r in runs]

        return asyncio.run(read())

    def assert_completed(self, run_ids: list[str]) -> None:
        found = {run.id: (run, steps) for run, steps in self.runs()}
        for index, run_id in enumerate(run_ids):
            run, steps = found[run_id]
            assert run.status is RunStatus.COMPLETED, (run.status, run.error)
            assert run.output == {"total": EXPECTED_TOTAL + index, "run_id": run_id}
            assert all(s.status is StepStatus.SUCCEEDED for s in steps.values())


@STORES
@MODES
def test_kill_mid_step_after_its_side_effect(tmp_path: Path, store_kind: str, mode: str) -> None:
    app = App(tmp_path, store_kind, mode)
    [run_id] = app.start(1)
    app.run("drain", crash="in-step:b", expect=17)  # os._exit inside b, after its side effect
    assert app.counts_by_run()[run_id] == {"a": 1, "b": 1}
    app.run("drain")  # a new process resumes
    counts = app.counts_by_run()[run_id]
    assert counts["a"] == 1 and counts["c"] == 1 and counts["d"] == 1  # finished: exactly once
    assert counts["b"] == 2  # the in-flight step ran again (at least once)
    app.assert_completed([run_id])
    [(_, steps)] = app.runs()
    # the claimed attempt of the dead process was recorded, and abandoned at once
    assert steps["b"].attempt_count == 2
    assert steps["b"].attempts[0].error is not None
    assert steps["b"].attempts[0].error.type == "AbandonedAttempt"


@STORES
@MODES
def test_kill_in_an_inline_first_attempt_counts_the_attempt(
    tmp_path: Path, store_kind: str, mode: str
) -> None:
    """Inline step ``c`` kills its process on every attempt. Its first attempt is recorded
    (claimed) before it runs, so each crash is one attempt: after the retry limit (6
    attempts) the step and the run fail instead of the step looping forever."""
    app = App(tmp_path, store_kind, mode)
    [run_id] = app.start(1)
    crashes = 0
    for _ in range(10):  # 6 attempts die; the next process fails the step (bound: 10)
        env = {**app.env, "PIKKU_CRASH": "always-in-step:c"}
        proc = subprocess.run(app.argv("drain"), env=env, capture_output=True, text=True,
                              timeout=120)
        if proc.returncode == 0:
            break
        assert proc.returncode == 17, (proc.returncode, proc.stderr[-2000:])
        crashes += 1
    [(run, steps)] = app.runs()
    assert run.status is RunStatus.FAILED, (run.status, crashes)
    c = steps["c"]
    assert c.status is StepStatus.FAILED and c.attempt_count == crashes == 6
    assert app.counts_by_run()[run_id]["c"] == crashes  # one execution per attempt
    assert all(a.error is not None and a.error.type == "AbandonedAttempt" for a in c.attempts)


@pytest.mark.parametrize(
    "store_kind", ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, requires_postgres])]
)
@MODES
def test_kill_before_a_written_behind_result_is_sent_runs_the_step_again(
    tmp_path: Path, store_kind: str, mode: str
) -> None:
    """SQLite and PostgreSQL write a pass's step result behind (with the pass's next
    statement). A process killed after step ``b``'s code returned its result to the store,
    before the next statement: ``b``'s result was never stored (its attempt is still
    running, held by the dead process), nothing after it was recorded, and the next process
    runs ``b`` again (its first attempt abandoned, as after a crash inside the step), then
    the rest."""
    dsn = create_schema_dsn("pikku_crash_") if store_kind == "postgres" else ""
    try:
        app = App(tmp_path, store_kind, mode, dsn=dsn)
        [run_id] = app.start(1)
        app.run("drain", crash="after-code:b", expect=-signal.SIGKILL)
        [(_run, steps)] = app.runs()
        assert steps["a"].status is StepStatus.SUCCEEDED
        assert steps["b"].status is StepStatus.RUNNING and steps["b"].result is None
        assert "c" not in steps
        assert app.counts_by_run()[run_id] == {"a": 1, "b": 1}
        app.run("drain")
        counts = app.counts_by_run()[run_id]
        assert (counts["a"], counts["b"], counts["c"], counts["d"]) == (1, 2, 1, 1)
        app.assert_completed([run_id])
        [(_, steps)] = app.runs()
        assert steps["b"].attempt_count == 2
        assert steps["b"].attempts[0].error is not None
        assert steps["b"].attempts[0].error.type == "AbandonedAttempt"
    finally:
        if dsn:
            drop_schema_dsn(dsn)


@STORES
def test_kill_between_storing_a_result_and_waking_the_orchestrator(
    tmp_path: Path, store_kind: str
) -> None:
    app = App(tmp_path, store_kind, "remote")
    app.env["PIKKU_EAGER"] = "0"  # the wake-up of a step job (an eager step wakes nobody)
    [run_id] = app.start(1)
    app.run("drain", crash="after-store:b", expect=-signal.SIGKILL)
    [(_run, steps)] = app.runs()
    assert steps["b"].status is StepStatus.SUCCEEDED and "c" not in steps
    app.run("drain")
    counts = app.counts_by_run()[run_id]
    assert counts == {"a": 1, "b": 1, "c": 1, "d": 1}  # b's stored result was not lost
    app.assert_completed([run_id])


@STORES
@MODES
def test_kill_during_a_sleep(tmp_path: Path, store_kind: str, mode: str) -> None:
    app = App(tmp_path, store_kind, mode)
    app.env["PIKKU_SLEEP"] = "1h"  # cannot end before the kill, however slow the machine
    [run_id] = app.start(1)
    server = app.popen("serve")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the run sleeps (a cap, not an assertion)
            if app.counts_by_run()[run_id]["c"] == 1:
                [(run, steps)] = app.runs()
                if "nap" in steps and run.status is RunStatus.SUSPENDED:
                    break
            assert server.poll() is None, server.communicate()
            time.sleep(0.02)
        else:
            raise AssertionError("the run never reached its sleep")
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    [(run, steps)] = app.runs()
    assert run.status is RunStatus.SUSPENDED and run.wake_at is not None
    assert steps["nap"].status is StepStatus.SCHEDULED and "d" not in steps
    # The next process starts after the sleep has ended (its clock is 2 h ahead): recover()
    # finds the sleeping run, and its pass ends the sleep and finishes the run.
    app.env["PIKKU_CLOCK_OFFSET"] = str(2 * 3600)
    app.run("drain")
    assert app.counts_by_run()[run_id] == {"a": 1, "b": 1, "c": 1, "d": 1}
    app.assert_completed([run_id])


@STORES
@MODES
def test_two_processes_draining_one_store_run_each_attempt_once(
    tmp_path: Path, store_kind: str, mode: str
) -> None:
    app = App(tmp_path, store_kind, mode)
    app.env["PIKKU_SLEEP"] = "50ms"
    run_ids = app.start(6)
    workers = [app.popen("drain") for _ in range(2)]
    for proc in workers:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    counts = app.counts_by_run()
    assert set(counts) == set(run_ids)
    for run_id in run_ids:
        assert counts[run_id] == {"a": 1, "b": 1, "c": 1, "d": 1}, (run_id, counts[run_id])
    app.assert_completed(run_ids)
    for _, steps in app.runs():
        assert all(s.attempt_count <= 1 for s in steps.values())
