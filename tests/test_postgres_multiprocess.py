"""Scale-out with real processes: three ``pikku-worker`` processes share one PostgreSQL (store
and procrastinate queue); 50 runs of 5 remote steps each; one worker is SIGKILLed while a step
runs. Every run completes; every step ran exactly once, except the killed worker's in-flight
step, which ran once more, on another worker, after its lease expired.

Each worker pretends to be on its own host (``PIKKU_TEST_HOST``), so nobody can tell that the
killed process is dead: only the lease (4 s here) frees its attempt, as across machines. The
queue puts the killed worker's job back once its procrastinate heartbeat is 3 s old.

Side effects are logged by the RPC itself (``start``/``end`` lines in a file, O_APPEND).
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn
from registry_support import isolated_registry

from pikku_typing.models import RunStatus, StepStatus

pytestmark = [*POSTGRES_MARKS, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
RUNS = 50
STEPS = 5
LEASE = 4.0

APP = textwrap.dedent(
    '''
    """Multi-process test app (written by tests/test_postgres_multiprocess.py)."""
    import asyncio
    import os

    from pikku_typing import (
        PostgresQueue, PostgresWorkflowStateService, Workflow, WorkflowRuntime, pikku_func,
        wire_workflow,
    )
    from pikku_typing.runtime import process

    _host = os.environ.get("PIKKU_TEST_HOST")
    if _host:  # each worker is "on another machine": only leases tell a dead holder
        process.hostname = lambda: _host

    LOG = os.environ["PIKKU_TEST_LOG"]


    def _log(line: str) -> None:
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\\n").encode())
        finally:
            os.close(fd)


    @pikku_func(name="mp.work")
    async def work(data: dict) -> int:
        _log(f"start {data['run']} {data['i']} {os.getpid()}")
        # the worker to be killed is slow, so the kill surely lands inside a step
        await asyncio.sleep(1.0 if _host == "host-0" else 0.15)
        _log(f"end {data['run']} {data['i']} {os.getpid()}")
        return int(data["i"]) * 10


    async def flow(workflow: Workflow, n: int) -> int:
        total = n
        for i in range(5):
            total += await workflow.do(f"s{i}", "mp.work", {"run": workflow.run_id, "i": i})
        return total


    wire_workflow(name="mp", func=flow, execution_mode="remote")

    DSN = os.environ["PIKKU_TEST_DSN"]
    runtime = WorkflowRuntime(
        PostgresWorkflowStateService(DSN),
        PostgresQueue(DSN, poll_interval=0.2, heartbeat_interval=0.5, stalled_after=3.0,
                      shutdown_timeout=20),
        lease_seconds=float(os.environ.get("PIKKU_TEST_LEASE", "30")),
    )
    '''
)


def _read_log(path: Path) -> list[tuple[str, str, int, int]]:
    """The complete lines of the step log. Read while workers append to it, the file may end
    in a line that is being written (a reader can see a write that straddles a page boundary
    half done): the text after the last newline is not a line yet."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().split("\n")[:-1]:
        kind, run, i, pid = line.split()
        out.append((kind, run, int(i), int(pid)))
    return out


async def _start_runs(dsn: str, app_dir: Path) -> list[str]:
    sys.path.insert(0, str(app_dir))
    try:
        import mp_app  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(app_dir))
    runtime = mp_app.runtime
    try:
        client = runtime.client("mp")
        return [(await client.start(n)).run_id for n in range(RUNS)]
    finally:
        await runtime.queue.close()
        await runtime.state.close()


async def _read_runs(dsn: str) -> list[tuple[object, dict[str, object]]]:
    from pikku_typing import PostgresWorkflowStateService

    async with PostgresWorkflowStateService(dsn) as store:
        runs = await store.list_runs(workflow="mp")
        return [(r, await store.get_step_states(r.id)) for r in runs]


def test_three_workers_one_killed_every_step_runs_once_except_the_killed_one(
    tmp_path: Path,
) -> None:
    dsn = create_schema_dsn()
    registered = isolated_registry(clear=False)  # the workers' app registers into it
    registered.__enter__()
    workers: list[subprocess.Popen[str]] = []
    try:
        (tmp_path / "mp_app.py").write_text(APP)
        log = tmp_path / "steps.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
            "PIKKU_TEST_DSN": dsn,
            "PIKKU_TEST_LOG": str(log),
            "PIKKU_TEST_LEASE": str(LEASE),
        }
        os.environ["PIKKU_TEST_DSN"] = dsn
        os.environ["PIKKU_TEST_LOG"] = str(log)
        run_ids = asyncio.run(_start_runs(dsn, tmp_path))
        assert len(run_ids) == RUNS

        # worker 0 runs one job at a time, so when it is killed exactly one step is in flight
        for index, concurrency in enumerate((1, 3, 3)):
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pikku_typing.runtime.worker_cli", "mp_app:runtime",
                     "--concurrency", str(concurrency)],
                    cwd=tmp_path,
                    env={**env, "PIKKU_TEST_HOST": f"host-{index}"},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        victim = workers[0]

        # Kill worker 0 while it is inside a step (its last line is a start), after it has
        # finished a few steps.
        deadline = time.monotonic() + 90
        killed_step: tuple[str, int] | None = None
        while time.monotonic() < deadline:
            mine = [e for e in _read_log(log) if e[3] == victim.pid]
            ends = sum(1 for e in mine if e[0] == "end")
            if ends >= 3 and mine and mine[-1][0] == "start":
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=10)
                killed_step = (mine[-1][1], mine[-1][2])
                break
            time.sleep(0.005)
        assert killed_step is not None, "worker 0 never ran a step"
        assert victim.returncode == -signal.SIGKILL

        # every run completes on the two survivors (generous: CI machines can be slow)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            found = asyncio.run(_read_runs(dsn))
            if len(found) == RUNS and all(r.status.is_settled for r, _ in found):  # type: ignore[attr-defined]
                break
            time.sleep(0.5)
        for proc in workers[1:]:
            proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=60) for proc in workers[1:]]
        for proc, (_out, err) in zip(workers[1:], outputs, strict=True):
            assert proc.returncode == 0, err[-2000:]
            assert "Traceback" not in err, err[-3000:]

        runs = {r.id: (r, steps) for r, steps in found}  # type: ignore[attr-defined]
        assert set(runs) == set(run_ids)
        statuses = collections.Counter(r.status.value for r, _ in runs.values())  # type: ignore[attr-defined]
        assert statuses == {"completed": RUNS}, statuses
        for n, run_id in enumerate(run_ids):
            run, steps = runs[run_id]
            assert run.status is RunStatus.COMPLETED, (run.status, run.error)  # type: ignore[attr-defined]
            assert run.output == n + sum(i * 10 for i in range(STEPS))  # type: ignore[attr-defined]
            assert all(s.status is StepStatus.SUCCEEDED for s in steps.values())  # type: ignore[attr-defined]

        # side effects: each step started once, except the killed in-flight one (twice)
        entries = _read_log(log)
        starts = collections.Counter((run, i) for kind, run, i, _ in entries if kind == "start")
        ends = collections.Counter((run, i) for kind, run, i, _ in entries if kind == "end")
        assert set(starts) == {(r, i) for r in run_ids for i in range(STEPS)}
        again = {key: count for key, count in starts.items() if count != 1}
        assert again == {killed_step: 2}, again
        assert all(count == 1 for count in ends.values())  # the killed attempt never ended
        rerun_by = [pid for kind, run, i, pid in entries if (run, i) == killed_step]
        assert rerun_by[0] == victim.pid and rerun_by[1] != victim.pid

        # ... and the re-run started only after the killed attempt's lease had expired
        run_id, i = killed_step
        step = runs[run_id][1][f"s{i}"]
        first, second = step.attempts[0], step.attempts[1]  # type: ignore[attr-defined]
        assert first.owner.host == "host-0" and first.status is StepStatus.FAILED
        assert first.lease_expires_at is not None and second.started_at is not None
        assert second.started_at >= first.lease_expires_at
        assert second.status is StepStatus.SUCCEEDED and second.owner.host != "host-0"
        assert step.attempt_count == 2  # type: ignore[attr-defined]
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        os.environ.pop("PIKKU_TEST_DSN", None)
        os.environ.pop("PIKKU_TEST_LOG", None)
        sys.modules.pop("mp_app", None)
        registered.__exit__(None, None, None)
        drop_schema_dsn(dsn)
