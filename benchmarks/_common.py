"""Helpers shared by the runtime benchmarks: the DBOS baseline and the child-process driver."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def dbos_sequential_steps(system_database_url: str, steps: int) -> dict[str, Any]:
    """The baseline: a DBOS workflow of ``steps`` sequential no-op steps (each step durable
    before the next), timed after a warm-up. Returns seconds and microseconds per step."""
    import logging

    from dbos import DBOS, DBOSConfig

    logging.getLogger("dbos").setLevel(logging.WARNING)
    config: DBOSConfig = {
        "name": "pikku-bench",
        "system_database_url": system_database_url,
        "run_admin_server": False,
        "log_level": "WARNING",
    }
    DBOS(config=config)

    @DBOS.step()
    async def step(i: int) -> int:
        return i

    @DBOS.workflow()
    async def flow(n: int) -> int:
        total = 0
        for i in range(n):
            total += await step(i)
        return total

    async def main() -> dict[str, Any]:
        DBOS.launch()
        try:
            assert await flow(3) == 3  # warm-up
            t0 = time.perf_counter()
            output = await flow(steps)
            elapsed = time.perf_counter() - t0
        finally:
            DBOS.destroy()
        assert output == steps * (steps - 1) // 2
        return {"seconds": elapsed, "per_step_us": elapsed / steps * 1e6}

    return asyncio.run(main())


def run_child(script: str, *args: str, prefix: str = "pikku-bench-") -> dict[str, Any]:
    """Run ``script --child ARGS TMPDIR`` in a fresh interpreter (cwd TMPDIR) and return the
    JSON object printed on its last line."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        proc = subprocess.run(
            [sys.executable, script, "--child", *args, tmp],
            capture_output=True, text=True, cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"child {args[:2]} failed:\n{proc.stderr[-3000:]}")
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def fmt(samples: list[float]) -> str:
    return ", ".join(f"{s:.0f}" for s in samples)
