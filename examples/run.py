"""Run the ``onboarding`` example end to end on the embedded default runtime.

    python examples/run.py

Uses ``WorkflowRuntime()`` (file store under ``.pikku/state``, in-process queue), starts one
run, serves the workers until the run settles (the workflow sleeps 1 s), then prints its steps
and its typed output. Imports the generated ``pikku_gen.workflow_wirings`` when
``pikku-analyze examples`` has produced it, else the app modules directly.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pikku_typing import WorkflowRuntime  # noqa: E402
from pikku_typing.runtime.runtime import WorkerFunc  # noqa: E402


def _register() -> dict[str, WorkerFunc]:
    """Import the generated wirings and workers when present, else the app modules."""
    try:  # the generated package registers every workflow and RPC
        importlib.import_module("pikku_gen.workflow_wirings")
    except ImportError:
        importlib.import_module("app.onboarding")
        importlib.import_module("app.rpcs")
        return {}
    try:
        workers = importlib.import_module("pikku_gen.workflow_workers")
    except ImportError:
        return {}
    return dict(getattr(workers, "WORKERS", {}))


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def main() -> int:
    workers = _register()
    async with WorkflowRuntime(workers=workers) as runtime:
        await runtime.recover()  # finish runs an earlier, interrupted invocation left behind
        client = runtime.client("onboarding")
        handle = await client.start(
            {"email": "ada@example.com", "name": "Ada", "plan_price": Decimal("49.00")}
        )
        print(
            f"started run {handle.run_id} of workflow 'onboarding' "
            f"({'generated workers' if workers else 'workers from the registry'})"
        )
        stop = asyncio.Event()
        server = asyncio.create_task(runtime.serve(stop=stop))
        try:
            output = await client.result(handle.run_id, timeout=60)
        finally:
            stop.set()
            await server
        run = await client.get_run(handle.run_id)
        steps = await client.get_steps(handle.run_id)
        rows: list[tuple[str, ...]] = [("step", "kind", "rpc", "status", "attempts")]
        for key, step in steps.items():
            rows.append(
                (key, step.kind.value, step.rpc_name or "-", step.status.value, str(step.attempt_count))
            )
        print()
        print(_table(rows))
        print()
        print(f"status: {run.status.value}")
        print(f"output: {output!r}")
        return 0 if run.status.value == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
