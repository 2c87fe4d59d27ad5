"""Runtime benchmark: prints numbers (not a test).

    pip install dbos            # the comparison: DBOS Transact on SQLite (optional)
    python benchmarks/runtime.py [--reps 5] [--store sqlite|file|memory] [--quick]
                                 [--queue default|inprocess]

1. **Inline overhead**: a 1000-step inline workflow on SQLite (each step durable before the
   next), per-step cost, against the same 1000-step workflow in DBOS on SQLite, in the same
   run. Target: pikku <= 0.5x DBOS.
2. **Remote growth**: a remote-mode workflow (every step an RPC on the step queue, one
   orchestrator pass per step) at 200 and at 1000 steps: per-step cost at 1000 <= 1.2x the
   cost at 200 (no quadratic replay).
3. **Memory**: peak RSS of a process running one 10,000-step run: < 100 MB (issue 16; it was 200 MB).

Every measurement runs in a fresh child process (timed inside it, imports excluded) on a
fresh database; the medians of ``--reps`` repetitions are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import dbos_sequential_steps, fmt
from _common import run_child as _run_child

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ children


def _store_url(kind: str, directory: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:{directory / 'pikku.db'}"
    if kind == "file":
        return f"file:{directory / 'state'}"
    return "memory:"


def child_pikku(mode: str, steps: int, store: str, directory: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from pikku_typing import Workflow, WorkflowRuntime, pikku_func, wire_workflow
    from pikku_typing.state import open_store

    @pikku_func(name="bench.echo")
    def echo(data: int) -> int:
        return data

    async def inline_flow(workflow: Workflow, n: int) -> int:
        total = 0
        for i in range(n):
            total += await workflow.do("step", lambda i=i: i)  # type: ignore[misc]
        return total

    async def remote_flow(workflow: Workflow, n: int) -> int:
        total = 0
        for i in range(n):
            total += await workflow.do("step", "bench.echo", i)
        return int(total)

    wire_workflow(name="bench_inline", func=inline_flow, execution_mode="inline")
    wire_workflow(name="bench_remote", func=remote_flow, execution_mode="remote")

    async def main() -> dict[str, Any]:
        if store == "sqlite-fsync-all":  # the alternative: bookkeeping commits fsynced too
            from pikku_typing.state.sqlite import SqliteWorkflowStateService

            state: Any = SqliteWorkflowStateService(directory / "pikku.db", fsync_every_commit=True)
        else:
            state = open_store(_store_url(store, directory))
        queue = None
        if os.environ.get("PIKKU_BENCH_QUEUE") == "inprocess":  # --queue inprocess
            from pikku_typing import InProcessQueue

            queue = InProcessQueue()
        # PIKKU_BENCH_EAGER=0: every remote step through the queue (eager_steps=False)
        eager = os.environ.get("PIKKU_BENCH_EAGER", "1") == "1"
        async with WorkflowRuntime(state, queue, eager_steps=eager) as runtime:
            client = runtime.client(f"bench_{mode}")
            # warm-up run (schemas, adapters, imports), not timed
            warm = await client.start(3)
            await runtime.drain()
            assert await client.result(warm.run_id, timeout=60) == 3
            t0, c0 = time.perf_counter(), time.process_time()
            handle = await client.start(steps)
            await runtime.drain()
            output = await client.result(handle.run_id, timeout=600)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        await state.close()
        assert output == steps * (steps - 1) // 2, output
        return {
            "seconds": elapsed,
            "per_step_us": elapsed / steps * 1e6,
            "cpu_per_step_us": cpu / steps * 1e6,
        }

    result = asyncio.run(main())
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def child_dbos(steps: int, directory: Path) -> dict[str, Any]:
    return dbos_sequential_steps(f"sqlite:///{directory / 'dbos.sqlite'}", steps)


# ------------------------------------------------------------------- driver


def run_child(*args: str) -> dict[str, Any]:
    return _run_child(__file__, *args, prefix="pikku-bench-")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "file", "memory"])
    parser.add_argument("--quick", action="store_true", help="3 repetitions, skip the 10k run")
    parser.add_argument("--sections", default="1,2,3", help="which of 1,2,3 to run")
    parser.add_argument(
        "--queue", default="default", choices=["default", "inprocess"],
        help="default: the store's default queue (StoreQueue for file/sqlite); inprocess: "
        "InProcessQueue (the single-process queue, for comparison)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ns = parser.parse_args()

    if ns.child:
        kind, *rest = ns.child
        if kind == "pikku":
            mode, steps, store, directory = rest
            out = child_pikku(mode, int(steps), store, Path(directory))
        else:
            steps, directory = rest
            out = child_dbos(int(steps), Path(directory))
        print(json.dumps(out))
        return 0

    if ns.queue == "inprocess":
        os.environ["PIKKU_BENCH_QUEUE"] = "inprocess"  # inherited by the child processes
    reps = 3 if ns.quick else ns.reps
    store = ns.store
    print(f"pikku runtime benchmark: store={store}, queue={ns.queue}, {reps} repetitions each, medians "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus)\n")

    sections = {x.strip() for x in ns.sections.split(",")}
    if "1" in sections:
        inline_vs_dbos(reps, store)
    if "2" in sections:
        remote_growth(reps, store)
    if "3" in sections and not ns.quick:
        memory(store)
    return 0


def inline_vs_dbos(reps: int, store: str) -> None:
    """1. inline overhead vs DBOS, interleaved so both see the same machine load."""
    try:
        import dbos  # noqa: F401

        have_dbos = True
    except ImportError:
        have_dbos = False
    pikku_s: list[float] = []
    dbos_s: list[float] = []
    for _ in range(reps):
        pikku_s.append(float(run_child("pikku", "inline", "1000", store)["per_step_us"]))
        if have_dbos:
            dbos_s.append(float(run_child("dbos", "1000")["per_step_us"]))
    pikku_med = statistics.median(pikku_s)
    print(f"[1] inline, 1000 steps, pikku/{store}: {pikku_med:8.0f} us/step   ({fmt(pikku_s)})")
    if not have_dbos:
        print("    DBOS not installed: `pip install dbos` to compare")
    else:
        dbos_med = statistics.median(dbos_s)
        print(f"    inline, 1000 steps, DBOS/sqlite:  {dbos_med:8.0f} us/step   ({fmt(dbos_s)})")
        ratio = pikku_med / dbos_med
        verdict = "meets" if ratio <= 0.5 else "MISSES"
        print(f"    ratio pikku/DBOS = {ratio:.2f}x  (target <= 0.5x: {verdict})")



def remote_growth(reps: int, store: str) -> None:
    """2. remote mode: per-step cost at 1000 steps against 200."""
    r200_s: list[float] = []
    r1000_s: list[float] = []
    c200_s: list[float] = []
    c1000_s: list[float] = []
    for _ in range(reps):  # interleaved too
        small = run_child("pikku", "remote", "200", store)
        large = run_child("pikku", "remote", "1000", store)
        r200_s.append(float(small["per_step_us"]))
        r1000_s.append(float(large["per_step_us"]))
        c200_s.append(float(small["cpu_per_step_us"]))
        c1000_s.append(float(large["cpu_per_step_us"]))
    r200, r1000 = statistics.median(r200_s), statistics.median(r1000_s)
    c200, c1000 = statistics.median(c200_s), statistics.median(c1000_s)
    growth = r1000 / r200
    print(f"\n[2] remote, 200 steps:  {r200:8.0f} us/step wall, {c200:6.0f} us/step cpu   ({fmt(r200_s)})")
    print(f"    remote, 1000 steps: {r1000:8.0f} us/step wall, {c1000:6.0f} us/step cpu   ({fmt(r1000_s)})")
    print(f"    growth 1000/200 = {growth:.2f}x wall, {c1000 / c200:.2f}x cpu  "
          f"(target <= 1.2x, issue 16: {'meets' if growth <= 1.2 else 'MISSES'})")



def memory(store: str) -> None:
    """3. peak RSS of one 10,000-step run."""
    mem = run_child("pikku", "inline", "10000", store)
    rss = float(mem["max_rss_mb"])
    print(f"\n[3] one 10,000-step inline run: {mem['per_step_us']:.0f} us/step, "
          f"peak RSS {rss:.0f} MB  (target < 100 MB: {'meets' if rss < 100 else 'MISSES'})")
    mem_r = run_child("pikku", "remote", "10000", store)
    rss_r = float(mem_r["max_rss_mb"])
    print(f"    one 10,000-step remote run: {mem_r['per_step_us']:.0f} us/step, "
          f"peak RSS {rss_r:.0f} MB  (target < 100 MB: {'meets' if rss_r < 100 else 'MISSES'})")


if __name__ == "__main__":
    raise SystemExit(main())
