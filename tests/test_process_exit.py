"""Processes never hang: a script that opens a ``WorkflowRuntime`` on the PostgreSQL store and
queue, starts a run and returns from ``asyncio.run()`` WITHOUT closing anything must exit.

psycopg_pool's workers swallow a cancellation that lands while they open a connection, and
``asyncio.run()`` then waited forever for them (about one process in eight hung, stderr
``error connecting in 'pikku-queue'``). 50 real processes, each on a fresh schema, a few at a
time; each one must exit within 5 s of its main coroutine returning.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn

pytestmark = [*POSTGRES_MARKS, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 50
AT_ONCE = 4
EXIT_WITHIN = 5.0
START_CAP = 60.0
"""Seconds a child may take to import and start its run (a cap on a loaded machine, not a
timing assertion: the assertion is on the time between "returned" and the exit)."""

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    from pikku_typing import (
        PostgresQueue, PostgresWorkflowStateService, Workflow, WorkflowRuntime, wire_workflow,
    )

    async def echo(workflow: Workflow, data: dict) -> dict:
        return data

    wire_workflow(name="exit_echo", func=echo)

    async def main() -> None:
        dsn = sys.argv[1]
        runtime = WorkflowRuntime(state=PostgresWorkflowStateService(dsn), queue=PostgresQueue(dsn))
        handle = await runtime.client("exit_echo").start({"n": 1})
        assert handle.run_id
        # no close, no `async with`: asyncio.run() must still return

    asyncio.run(main())
    print(f"returned {time.time()}", flush=True)
    """
)


def _run_one(script: Path) -> tuple[float | None, str]:
    """Run one child on a fresh schema; return (seconds from main's return to exit, stderr)."""
    dsn = create_schema_dsn()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.Popen(
            [sys.executable, str(script), dsn],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            out, err = proc.communicate(timeout=START_CAP)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            return None, f"did not exit within {START_CAP}s: {out!r} {err[-2000:]}"
        exited = time.time()
        if proc.returncode != 0:
            return None, f"exit {proc.returncode}: {err[-2000:]}"
        returned = float(out.split()[-1])
        return exited - returned, err
    finally:
        drop_schema_dsn(dsn)


def test_unclosed_postgres_runtime_lets_every_process_exit(tmp_path: Path) -> None:
    script = tmp_path / "unclosed.py"
    script.write_text(SCRIPT)
    with ThreadPoolExecutor(AT_ONCE) as pool:
        results = list(pool.map(lambda _: _run_one(script), range(PROCESSES)))
    failures = [err for took, err in results if took is None]
    assert not failures, f"{len(failures)} of {PROCESSES} processes failed: {failures[0]}"
    slow = sorted(took for took, _ in results if took is not None and took > EXIT_WITHIN)
    assert not slow, f"{len(slow)} of {PROCESSES} processes took {slow} s to exit"
