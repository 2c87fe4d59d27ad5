"""PostgreSQL runtime benchmark: prints numbers (not a test).

    eval "$(bash scripts/postgres.sh)"          # a throwaway server: PIKKU_TEST_POSTGRES_DSN
    pip install dbos                            # the comparison (optional)
    python benchmarks/runtime_postgres.py [--dsn DSN] [--reps 5] [--steps 500] [--quick]

1. **Per-step overhead vs DBOS**, same PostgreSQL server, same run: an N-step inline
   workflow on ``PostgresWorkflowStateService`` (each step durable before the next) against
   the same N-step workflow in DBOS Transact with its system database on that server.
   Target: pikku <= 0.5x DBOS. Also the same workflow in remote mode in one process on
   ``PostgresQueue`` (every step a procrastinate job plus an orchestrator job), for scale.
2. **Throughput of remote steps** with 1, 2 and 4 ``pikku-worker`` processes
   (``--concurrency 4`` each) sharing the database: R runs x 5 remote steps, timed from the
   first ``client.start`` until every run completed; steps per second and the speed-up.

Every measurement runs in fresh child processes (timed inside them, imports excluded) on a
fresh schema (pikku) or database (DBOS); pikku and DBOS alternate; medians of ``--reps``.
The numbers depend on the machine: they compare, they do not promise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import dbos_sequential_steps, fmt
from _common import run_child as _run_child

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------- helpers


def _new_schema(dsn: str) -> str:
    import psycopg
    from psycopg.conninfo import make_conninfo

    schema = f"pikku_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return make_conninfo(dsn, options=f"-c search_path={schema}")


def _drop_schema(dsn: str, schema_dsn: str) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    schema = str(conninfo_to_dict(schema_dsn)["options"]).split("search_path=", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _dbos_url(dsn: str, database: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    user = p.get("user") or "postgres"
    password = f":{p['password']}" if p.get("password") else ""
    host = p.get("host") or "127.0.0.1"
    port = p.get("port") or "5432"
    return f"postgresql://{user}{password}@{host}:{port}/{database}"


def _drop_database(dsn: str, database: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# ------------------------------------------------------------------ children


def _wire_flows() -> None:
    """Wire ``bench_inline`` and ``bench_remote``: N sequential no-op steps, inline or RPC."""
    sys.path.insert(0, str(ROOT))
    from pikku_typing import Workflow, pikku_func, wire_workflow

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


@contextlib.asynccontextmanager
async def bench_client(mode: str, dsn: str) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """Wire the flows, open a runtime on ``dsn`` (``PostgresQueue`` for remote, the in-process
    queue for inline), warm it up, and yield ``run(n)``: one run of ``n`` steps to completion."""
    _wire_flows()
    from pikku_typing import (
        InProcessQueue,
        PostgresQueue,
        PostgresWorkflowStateService,
        WorkflowRuntime,
    )

    state = PostgresWorkflowStateService(dsn)
    queue = PostgresQueue(dsn) if mode == "remote" else InProcessQueue()
    # PIKKU_BENCH_EAGER=0: every remote step through the queue (eager_steps=False)
    runtime = WorkflowRuntime(
        state, queue, eager_steps=os.environ.get("PIKKU_BENCH_EAGER", "1") == "1"
    )
    client = runtime.client(f"bench_{mode}")

    async def run(n: int) -> None:
        handle = await client.start(n)
        await runtime.drain()
        output = await client.result(handle.run_id, timeout=600)
        assert output == n * (n - 1) // 2, output

    try:
        await run(3)  # warm-up: schema, pools, imports; not timed
        yield run
    finally:
        await runtime.close()
        await queue.close()
        await state.close()


def child_pikku(mode: str, steps: int, dsn: str) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with bench_client(mode, dsn) as run:
            t0, cpu0 = time.perf_counter(), time.process_time()
            await run(steps)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return {
            "seconds": elapsed,
            "per_step_us": elapsed / steps * 1e6,
            "cpu_per_step_us": cpu / steps * 1e6,  # this process's CPU (the client's)
        }

    return asyncio.run(main())


def child_dbos(steps: int, url: str) -> dict[str, Any]:
    return dbos_sequential_steps(url, steps)


WORKER_APP = textwrap.dedent(
    '''
    import asyncio
    import os

    from pikku_typing import (
        PostgresQueue, PostgresWorkflowStateService, Workflow, WorkflowRuntime, pikku_func,
        wire_workflow,
    )

    STEP_SECONDS = float(os.environ.get("BENCH_STEP_MS", "0")) / 1000

    @pikku_func(name="bench.echo")
    async def echo(data: int) -> int:
        if STEP_SECONDS:
            await asyncio.sleep(STEP_SECONDS)  # an RPC waiting on I/O
        return data

    async def flow(workflow: Workflow, n: int) -> int:
        total = 0
        for i in range(5):
            total += await workflow.do("step", "bench.echo", n + i)
        return total

    wire_workflow(name="bench_tp", func=flow, execution_mode="remote")

    DSN = os.environ["BENCH_DSN"]
    runtime = WorkflowRuntime(
        PostgresWorkflowStateService(DSN),
        PostgresQueue(DSN, poll_interval=float(os.environ.get("BENCH_POLL", "0.2"))),
        eager_steps=os.environ.get("PIKKU_BENCH_EAGER", "1") == "1",
    )
    '''
)


def child_throughput(workers: int, runs: int, dsn: str, directory: Path) -> dict[str, Any]:
    """Start ``workers`` pikku-worker processes, then ``runs`` runs; time until all done."""
    (directory / "bench_app.py").write_text(WORKER_APP)
    sys.path.insert(0, str(directory))
    sys.path.insert(0, str(ROOT))
    os.environ["BENCH_DSN"] = dsn
    import bench_app  # type: ignore[import-not-found]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(directory)])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pikku_typing.runtime.worker_cli", "bench_app:runtime",
             "--concurrency", "4", "--log-level", "WARNING"],
            cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(workers)
    ]

    async def main() -> dict[str, Any]:
        runtime = bench_app.runtime
        state = runtime.state
        try:
            await runtime.queue.check()  # schemas exist before the workers start serving
            await state.list_runs(limit=0)
            # wait until every worker registered with procrastinate (it is serving)
            pool = runtime.queue._pool
            for _ in range(600):
                async with pool.connection() as conn:
                    row = await (await conn.execute("SELECT count(*) FROM procrastinate_workers")).fetchone()
                if row and row[0] >= workers:
                    break
                await asyncio.sleep(0.05)
            client = runtime.client("bench_tp")
            t0 = time.perf_counter()
            ids = [(await client.start(n)).run_id for n in range(runs)]
            while True:
                done = await state.list_runs(workflow="bench_tp", status=("completed", "failed"))
                if len(done) == len(ids):
                    break
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - t0
            assert all(r.status.value == "completed" for r in done)
        finally:
            await runtime.queue.close()
            await state.close()
        steps = runs * 5
        return {"seconds": elapsed, "steps_per_s": steps / elapsed, "per_step_us": elapsed / steps * 1e6}

    try:
        return asyncio.run(main())
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


# ------------------------------------------------------------------- driver


def run_child(*args: str) -> dict[str, Any]:
    return _run_child(__file__, *args, prefix="pikku-pg-bench-")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=os.environ.get("PIKKU_TEST_POSTGRES_DSN"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500, help="steps of the overhead workflow")
    parser.add_argument("--runs", type=int, default=60, help="runs (x5 remote steps) for throughput")
    parser.add_argument("--quick", action="store_true", help="3 repetitions, fewer steps")
    parser.add_argument("--only", choices=["overhead", "throughput"], help="run one section")
    parser.add_argument(
        "--step-ms", type=float, default=0.0,
        help="throughput: each remote step awaits this long (an RPC doing I/O); default 0",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ns = parser.parse_args()

    if ns.child:
        kind, *rest = ns.child
        if kind == "pikku":
            mode, steps, dsn, _directory = rest
            out = child_pikku(mode, int(steps), dsn)
        elif kind == "dbos":
            steps, url, _directory = rest
            out = child_dbos(int(steps), url)
        else:
            workers, runs, dsn, directory = rest
            out = child_throughput(int(workers), int(runs), dsn, Path(directory))
        print(json.dumps(out))
        return 0

    if not ns.dsn:
        print("no DSN: pass --dsn or eval \"$(bash scripts/postgres.sh)\"", file=sys.stderr)
        return 2
    reps = 3 if ns.quick else ns.reps
    steps = 200 if ns.quick else ns.steps
    runs = 30 if ns.quick else ns.runs
    dsn = ns.dsn
    print(f"pikku PostgreSQL benchmark: {reps} repetitions each, medians "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f})\n")

    try:
        import dbos  # noqa: F401

        have_dbos = True
    except ImportError:
        have_dbos = False

    if ns.only != "throughput":
        overhead(dsn, reps, steps, have_dbos)
    if ns.only != "overhead":
        os.environ["BENCH_STEP_MS"] = str(ns.step_ms)
        throughput(dsn, reps, runs, ns.step_ms)
    return 0


def overhead(dsn: str, reps: int, steps: int, have_dbos: bool) -> None:
    """[1] per-step overhead, pikku and DBOS alternating."""
    pikku_s: list[float] = []
    dbos_s: list[float] = []
    for _ in range(reps):
        schema_dsn = _new_schema(dsn)
        try:
            pikku_s.append(float(run_child("pikku", "inline", str(steps), schema_dsn)["per_step_us"]))
        finally:
            _drop_schema(dsn, schema_dsn)
        if have_dbos:
            database = f"pikku_bench_dbos_{uuid.uuid4().hex[:8]}"
            try:
                out = run_child("dbos", str(steps), _dbos_url(dsn, database))
                dbos_s.append(float(out["per_step_us"]))
            finally:
                _drop_database(dsn, database)
    pikku_med = statistics.median(pikku_s)
    print(f"[1] inline, {steps} steps, pikku on PostgreSQL: {pikku_med:8.0f} us/step   ({fmt(pikku_s)})")
    if have_dbos:
        dbos_med = statistics.median(dbos_s)
        ratio = pikku_med / dbos_med
        print(f"    same workflow, DBOS on PostgreSQL:   {dbos_med:8.0f} us/step   ({fmt(dbos_s)})")
        print(f"    ratio pikku/DBOS = {ratio:.2f}x  (target <= 0.5x: {'meets' if ratio <= 0.5 else 'MISSES'})")
    else:
        print("    DBOS not installed: `pip install dbos` to compare")
    remote_s: list[float] = []
    for _ in range(reps):
        schema_dsn = _new_schema(dsn)
        try:
            remote_s.append(
                float(run_child("pikku", "remote", str(steps // 2), schema_dsn)["per_step_us"])
            )
        finally:
            _drop_schema(dsn, schema_dsn)
    print(f"    remote, {steps // 2} steps, one process on PostgresQueue: "
          f"{statistics.median(remote_s):8.0f} us/step   ({fmt(remote_s)})")



def throughput(dsn: str, reps: int, runs: int, step_ms: float) -> None:
    """[2] throughput of remote steps with 1, 2, 4 worker processes."""
    what = f"each awaiting {step_ms:g} ms" if step_ms else "no-op RPC"
    print(f"\n[2] throughput: {runs} runs x 5 remote steps ({what}), pikku-worker --concurrency 4")
    base: float | None = None
    for workers in (1, 2, 4):
        samples: list[float] = []
        for _ in range(reps):
            schema_dsn = _new_schema(dsn)
            try:
                out = run_child("throughput", str(workers), str(runs), schema_dsn)
                samples.append(float(out["steps_per_s"]))
            finally:
                _drop_schema(dsn, schema_dsn)
        med = statistics.median(samples)
        base = base or med
        print(f"    {workers} worker(s): {med:7.1f} steps/s  (x{med / base:.2f} vs 1 worker)   "
              f"({', '.join(f'{s:.1f}' for s in samples)})")


if __name__ == "__main__":
    raise SystemExit(main())
