"""Issue 10, with real processes (stopped with SIGTERM or SIGKILL, never SIGINT):

* a step that raises KeyboardInterrupt / SystemExit stops its ``pikku-worker`` cleanly (no
  traceback); the attempt is abandoned and another worker runs it (SQLite store queue and
  PostgresQueue: the same behaviour);
* ``runtime.serve()`` embedded in one's own script handles SIGTERM like ``pikku-worker``;
* a step held by a SIGKILLed worker of this host is taken over within seconds, not at the end
  of its (long) lease.

Waits are conditions polled with generous caps, never timed assertions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn

from pikku_typing.models import RunStatus, StepStatus
from pikku_typing.state import open_store

ROOT = Path(__file__).resolve().parents[1]
CAP = 90.0

APP = textwrap.dedent(
    """
    import asyncio
    import os
    from pathlib import Path

    from pikku_typing import Workflow, WorkflowRuntime, pikku_func, wire_workflow
    from pikku_typing.state import open_store

    if os.environ.get("HARD_NO_RECHECK"):  # how it was before issue 10: lease end only
        import pikku_typing.runtime.steps as _steps
        _steps.LOCAL_HOLDER_RECHECK = 1e9

    STORE = os.environ["HARD_STORE"]
    MARK = Path(os.environ["HARD_MARK"])

    @pikku_func(name="hard.step")
    async def step(data: int) -> int:
        mode = os.environ.get("HARD_MODE", "")
        if mode and not MARK.exists():
            MARK.write_text(str(os.getpid()))
            if mode == "keyboard":
                raise KeyboardInterrupt
            if mode == "exit":
                raise SystemExit(3)
            if mode == "hang":
                await asyncio.sleep(3600)
            if mode == "until-go":
                while not MARK.with_suffix(".go").exists():
                    await asyncio.sleep(0.02)
        return data * 2

    async def flow(workflow: Workflow, n: int) -> int:
        return int(await workflow.do("s", "hard.step", n))

    wire_workflow(name="hard_proc", func=flow, execution_mode="remote")

    def make_runtime() -> WorkflowRuntime:
        queue = None
        if STORE.startswith("postgres:"):
            from pikku_typing.runtime.queues.postgres import PostgresQueue

            queue = PostgresQueue(STORE.removeprefix("postgres:"), poll_interval=0.1,
                                  shutdown_timeout=10,
                                  stalled_after=float(os.environ.get("HARD_STALLED", "30")))
        lease = float(os.environ.get("HARD_LEASE", "30"))
        return WorkflowRuntime(
            open_store(STORE), queue, lease_seconds=lease,
            eager_steps=os.environ.get("HARD_EAGER", "1") == "1",
            sweep_interval=float(os.environ.get("HARD_SWEEP", "30")),
        )

    if __name__ == "__main__":  # embedded: runtime.serve() in one's own script
        async def main() -> None:
            async with make_runtime() as runtime:
                print("serving", flush=True)
                await runtime.serve(concurrency=2)
            print("served", flush=True)

        asyncio.run(main())
    """
)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "hard_app.py").write_text(APP)
    return tmp_path


def _env(app: Path, store: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{app}"
    env["HARD_STORE"] = store
    env["HARD_MARK"] = str(app / "mark")
    env.update(extra)
    return env


def _worker(app: Path, store: str, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pikku_typing.runtime.worker_cli", "hard_app:make_runtime",
         "--log-level", "INFO", *args],
        cwd=app, env=_env(app, store, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def _wait(predicate: Callable[[], bool], *procs: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + CAP
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        _out, err = proc.communicate(timeout=30)
        print(f"--- worker {proc.pid} rc={proc.returncode}\n{err[-3000:]}")
    raise AssertionError("condition not reached within the cap")


def _start(store: str, app: Path, n: int) -> str:
    code = (
        "import asyncio, hard_app\n"
        "async def go():\n"
        "    async with hard_app.make_runtime() as rt:\n"
        f"        print((await rt.client('hard_proc').start({n})).run_id)\n"
        "asyncio.run(go())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=app, env=_env(app, store), capture_output=True,
        text=True, timeout=120, check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def _run_status(store: str, run_id: str) -> tuple[RunStatus, object]:
    async def go() -> tuple[RunStatus, object]:
        async with open_store(store) as state:
            run = await state.get_run(run_id)
            return run.status, run.output

    return asyncio.run(go())


def _wake_at(store: str, run_id: str) -> object:
    async def go() -> object:
        async with open_store(store) as state:
            return (await state.get_run(run_id)).wake_at

    return asyncio.run(go())


def _step(store: str, run_id: str) -> object:
    async def go() -> object:
        async with open_store(store) as state:
            return await state.get_step(run_id, "s")

    return asyncio.run(go())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=POSTGRES_MARKS)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'runs.db'}"
    else:
        dsn = create_schema_dsn("pikku_hardproc_")
        try:
            yield f"postgres:{dsn}"
        finally:
            drop_schema_dsn(dsn)


# ------------------------------------------------------------ 4. interrupts


@pytest.mark.parametrize(("mode", "code"), [("keyboard", 130), ("exit", 3)])
def test_an_interrupt_raised_in_a_step_stops_the_worker_and_runs_elsewhere(
    app: Path, store: str, mode: str, code: int
) -> None:
    first = _worker(app, store, HARD_MODE=mode)
    run_id = _start(store, app, 21)
    try:
        _out, err = first.communicate(timeout=CAP)  # it stops by itself
    finally:
        if first.poll() is None:
            first.terminate()
    assert first.returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    step = _step(store, run_id)
    assert step is not None
    attempt = step.attempts[0]  # type: ignore[attr-defined]
    assert attempt.status is StepStatus.FAILED and attempt.error is not None
    assert attempt.error.type == ("KeyboardInterrupt" if mode == "keyboard" else "SystemExit")
    assert step.status is not StepStatus.FAILED  # type: ignore[attr-defined]  # runs again
    second = _worker(app, store, HARD_MODE=mode)  # the mark exists: this attempt succeeds
    try:
        _wait(lambda: _run_status(store, run_id)[0] is RunStatus.COMPLETED, second)
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=CAP)
    assert _run_status(store, run_id) == (RunStatus.COMPLETED, 42)


# ---------------------------------------------------- 5. runtime.serve() SIGTERM


def test_embedded_serve_stops_cleanly_on_sigterm(app: Path, tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'runs.db'}"
    proc = subprocess.Popen(
        [sys.executable, "hard_app.py"], cwd=app,
        env=_env(app, store, HARD_MODE="until-go"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        run_id = _start(store, app, 5)
        _wait(lambda: (app / "mark").exists(), proc)  # the step is in flight
        proc.send_signal(signal.SIGTERM)
        (app / "mark.go").write_text("go")  # the in-flight step may finish
        out, err = proc.communicate(timeout=CAP)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "served" in out and "Traceback" not in err
    step = _step(store, run_id)
    assert step is not None and step.status is StepStatus.SUCCEEDED  # type: ignore[attr-defined]


# ------------------------------------------ 7. a same-host dead holder, at once


def test_a_sigkilled_holder_is_taken_over_long_before_its_lease_ends(
    app: Path, store: str
) -> None:
    """On PostgreSQL the killed worker's step job is only rescued by procrastinate after
    ``stalled_after`` (600 s here) and the step's lease is 600 s: only the waiting pass,
    which looks at a live same-host holder every second, can notice the death early."""
    lease = "600"  # the lease alone would make the other worker wait 10 minutes
    # eager off: the step is a step job and the run's pass waits on it
    holder = _worker(
        app, store, HARD_MODE="hang", HARD_LEASE=lease, HARD_STALLED=lease, HARD_EAGER="0"
    )
    other: subprocess.Popen[str] | None = None
    try:
        run_id = _start(store, app, 8)
        _wait(lambda: (app / "mark").exists(), holder)  # the holder runs the step
        other = _worker(
            app, store, "--recover", HARD_MODE="hang", HARD_LEASE=lease, HARD_STALLED=lease,
            HARD_EAGER="0",
            **({"HARD_NO_RECHECK": "1"} if os.environ.get("HARD_NO_RECHECK") else {}),
        )
        # a pass (of either worker) looked at the run and parked on the held step
        _wait(lambda: _wake_at(store, run_id) is not None, holder, other)
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=CAP)
        killed_at = time.monotonic()
        _wait(lambda: _run_status(store, run_id)[0] is RunStatus.COMPLETED, other)
        taken_over_in = time.monotonic() - killed_at
        print(f"taken over {taken_over_in:.2f}s after the SIGKILL (lease {lease}s)")
    finally:
        if holder.poll() is None:
            holder.kill()
        if other is not None:
            other.send_signal(signal.SIGTERM)
            other.communicate(timeout=CAP)
    assert _run_status(store, run_id) == (RunStatus.COMPLETED, 16)
    assert taken_over_in < 300  # generous: far below the 600 s lease


def test_a_sigkilled_eager_step_is_taken_over_long_before_its_lease_ends(
    app: Path, store: str
) -> None:
    """An eager step runs in its run's pass: nobody waits on it, the run stays ``running``
    held by the killed worker and (on PostgreSQL) its job comes back only after
    ``stalled_after`` (600 s). The other worker's sweep (every second here) sees the dead
    holder of the running run and queues a pass, which abandons the attempt (counted) and
    runs the step again."""
    lease = "600"
    holder = _worker(app, store, HARD_MODE="hang", HARD_LEASE=lease, HARD_STALLED=lease)
    other: subprocess.Popen[str] | None = None
    try:
        run_id = _start(store, app, 8)
        _wait(lambda: (app / "mark").exists(), holder)  # the holder runs the step, eagerly
        assert _run_status(store, run_id)[0] is RunStatus.RUNNING
        other = _worker(
            app, store, HARD_MODE="hang", HARD_LEASE=lease, HARD_STALLED=lease, HARD_SWEEP="1"
        )
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=CAP)
        killed_at = time.monotonic()
        _wait(lambda: _run_status(store, run_id)[0] is RunStatus.COMPLETED, other)
        taken_over_in = time.monotonic() - killed_at
        print(f"taken over {taken_over_in:.2f}s after the SIGKILL (lease {lease}s)")
    finally:
        if holder.poll() is None:
            holder.kill()
        if other is not None:
            other.send_signal(signal.SIGTERM)
            other.communicate(timeout=CAP)
    assert _run_status(store, run_id) == (RunStatus.COMPLETED, 16)
    assert taken_over_in < 300
    step = _step(store, run_id)
    assert step.attempt_count == 2  # type: ignore[attr-defined]
    assert step.attempts[0].error.type == "AbandonedAttempt"  # type: ignore[attr-defined]
