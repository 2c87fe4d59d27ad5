"""Web console benchmark: prints numbers (not a test).

    python benchmarks/console.py [--runs 1000] [--steps 200] [--reps 21] [--store file|sqlite|both]

Times the console's pages end to end through Starlette's TestClient (routing, the security
middleware, store reads, Jinja2 rendering), over a store holding ``--runs`` completed runs
and one run of ``--steps`` steps with 3 attempts each (retries), on a fresh temporary store:

* ``list``: the first page (50 runs, newest first) of the runs list;
* ``list 500``: a page of 500 runs (the largest page size);
* ``list filtered``: ``?status=failed`` (one run matches out of all of them);
* ``list page 10``: the 10th page (the store contract has no offset: the page is cut from
  the first ``10 * 50 + 1`` runs);
* ``run``: the page of the big run (steps, attempts, timeline, diagram).

Medians (and p90) of ``--reps`` requests after one warm-up request, wall time and the
process's CPU time (the CPU figure is the one to compare on a loaded machine).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from starlette.testclient import TestClient  # noqa: E402

from pikku_typing.console.app import ConsoleSettings, create_app  # noqa: E402
from pikku_typing.models import (  # noqa: E402
    ClaimOwner,
    ErrorInfo,
    RunStatus,
    StepKind,
    StepState,
)
from pikku_typing.state import open_store  # noqa: E402
from pikku_typing.state.base import RunChanges  # noqa: E402

BIG = "big-run"


async def fill(url: str, runs: int, steps: int) -> None:
    async with open_store(url) as store:
        for i in range(runs):
            run = await store.create_run("bulk", {"i": i, "text": "x" * 40}, run_id=f"r{i:06d}")
            await store.update_run(run.id, RunChanges(status=RunStatus.COMPLETED, output=i))
        failed = await store.create_run("bulk", {"i": -1}, run_id="r-failed")
        await store.update_run(
            failed.id,
            RunChanges(status=RunStatus.FAILED, error=ErrorInfo(type="Boom", message="boom")),
        )
        run = await store.create_run("big", {"n": steps}, run_id=BIG)
        owner = ClaimOwner(host="bench", pid=1, token="t")
        for s in range(steps):
            key = f"step{s}"
            await store.insert_step(
                run.id,
                StepState(key=key, step_name="step", kind=StepKind.RPC, rpc_name="x.y",
                          max_attempts=3, data={"s": s}),
            )
            for attempt in range(3):
                token = f"{key}-{attempt}"
                await store.claim_step(run.id, key, owner=owner.model_copy(update={"token": token}),
                                       lease_seconds=30)
                if attempt < 2:
                    await store.fail_step_attempt(
                        run.id, key, token=token,
                        error=ErrorInfo(type="Flaky", message="try again",
                                        traceback="Traceback...\nFlaky: try again"),
                        retry_at=datetime.now(UTC),
                    )
                else:
                    await store.complete_step(run.id, key, result={"s": s}, token=token)
        await store.update_run(run.id, RunChanges(status=RunStatus.COMPLETED, output="done"))


def measure(call: Callable[[], object], reps: int) -> tuple[float, float, float]:
    """Median and p90 wall time, and median CPU time of the process (all threads: the app
    runs in TestClient's thread), which a loaded machine inflates much less."""
    call()  # warm-up
    times, cpu = [], []
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    times.sort()
    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
    return statistics.median(times), p90, statistics.median(cpu)


def bench(kind: str, runs: int, steps: int, reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"file:{tmp}/state" if kind == "file" else f"sqlite:{tmp}/runs.db"
        asyncio.run(fill(url, runs, steps))
        app = create_app(
            ConsoleSettings(store_url=url, meta_path=ROOT / "examples/pikku_gen/workflow_meta.json")
        )
        with TestClient(app, base_url="http://127.0.0.1:8765") as client:
            pages = {
                "list (50 of all)": "/",
                "list 500": "/?per_page=500",
                "list filtered": "/?status=failed",
                "list page 10": "/?page=10",
                f"run ({steps} steps x 3 attempts)": f"/runs/{BIG}",
            }
            print(f"\n{kind} store, {runs + 2} runs:")
            for name, path in pages.items():
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code)
                median, p90, cpu = measure(lambda path=path: client.get(path), reps)
                size = len(response.content) / 1024
                print(f"  {name:<32} median {median * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms"
                      f"  cpu {cpu * 1000:7.1f} ms  {size:6.0f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--store", choices=("file", "sqlite", "both"), default="both")
    args = parser.parse_args()
    for kind in ("file", "sqlite") if args.store == "both" else (args.store,):
        bench(kind, args.runs, args.steps, args.reps)


if __name__ == "__main__":
    main()
