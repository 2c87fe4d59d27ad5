"""Speed at the floor (issue 16): pikku's per-step cost against one durable commit.

    eval "$(bash scripts/postgres.sh)"           # a throwaway server: PIKKU_TEST_POSTGRES_DSN
    python benchmarks/floor.py [--dsn DSN] [--reps 5] [--quick] [--only floor,trips,throughput,latency]
    python benchmarks/floor.py --only floor          # no DSN: the SQLite rows only

Every figure is printed next to its baseline, both measured in the same run (interleaved, on
the same machine load); the medians of ``--reps`` repetitions, each in a fresh child process
on a fresh database or schema.

[1] **floor**: the physical floor is one fsync'd single-row commit: SQLite in WAL mode with
    ``synchronous=FULL`` (the settings of pikku's SQLite store), and a PostgreSQL loopback
    autocommit ``INSERT`` on the same server as pikku, sent on an asyncio connection as
    pikku's store sends its statements (the PostgreSQL targets are against it; the same
    commits on a blocking connection, a lower floor, are printed beside it for reference,
    and the client's CPU time per commit and per step next to the PostgreSQL rows). The
    PostgreSQL floor is the mean commit (all the commits' time over their number), the
    statistic of the per-step rows (a run's time over its steps); its median commit, the
    floor's statistic before, is printed beside it.
    Against it, pikku's cost per step
    (a workflow of N sequential no-op steps, each durable before the next): SQLite inline
    (target <= 2x the SQLite floor; and the alternatives that commit each step's result
    before the workflow's code goes on, ``write_behind=False``, and also fsync the attempt
    start, ``fsync_every_commit=True``), SQLite remote (<= 4x; on the default queue of the store,
    ``StoreQueue``, whose job commits are not fsynced),
    PostgreSQL inline (<= 2.5x the PostgreSQL floor; and the alternatives that commit each
    step's result before the workflow's code goes on, ``write_behind=False``, and also the
    attempt start synchronously, ``synchronous_every_commit=True``), PostgreSQL remote on
    ``PostgresQueue`` in one process (<= 6x). The test server of ``scripts/postgres.sh`` runs
    with ``fsync=off``, which hides commit costs: for the real floor pass ``--dsn`` of a
    second server started with ``PIKKU_PG_DURABLE=1`` (see that script).
[2] **trips**: statements sent to PostgreSQL per step (a psycopg hook counts every
    ``cursor.execute``/``executemany`` and every transaction block, the store's and
    procrastinate's), inline and remote; and the WAL flushes (fsyncs) per inline step from
    ``pg_stat_wal``, with the defaults and with the two alternatives above.
[3] **throughput**: remote steps per second with 1 and 2 ``pikku-worker`` processes on
    ``PostgresQueue`` against procrastinate's own throughput for a no-op job with the same
    number of worker processes on the same server (target >= 0.5x).
[4] **latency**: ``client.start`` -> ``result()`` of a 3-step remote workflow with one
    ``pikku-worker`` serving, median and p99 over ``--latency-runs`` runs.

Every remote figure comes twice: with eager remote steps (the default: a process that serves
a step's queue runs a new remote step in the pass that reaches it) and queued
(``WorkflowRuntime(eager_steps=False)``: a step job per step, whose worker continues the pass
when it holds the run's continuation); the children read ``PIKKU_BENCH_EAGER`` (``1``/``0``).

The numbers depend on the machine: they compare, they do not promise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from functools import partialmethod
from pathlib import Path
from typing import Any

from _common import fmt
from _common import run_child as _run_child
from runtime_postgres import _drop_schema, _new_schema, bench_client

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
COMMITS = 400


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Environment variables for the children started inside the block."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_child(*args: str, **env: str) -> dict[str, Any]:
    with _env(**env):
        return _run_child(__file__, *args, prefix="pikku-floor-")


def run_script(script: str, *args: str, **env: str) -> dict[str, Any]:
    with _env(**env):
        return _run_child(str(BENCH / script), *args, prefix="pikku-floor-")


EAGER = {"PIKKU_BENCH_EAGER": "1"}
QUEUED = {"PIKKU_BENCH_EAGER": "0"}
"""The children's remote path: eager remote steps (the default), or every remote step through
the queue (``WorkflowRuntime(eager_steps=False)``: a step job and a pass per step)."""


# ------------------------------------------------------------------ children: the floor


ALTERNATIVES: dict[str, dict[str, dict[str, bool]]] = {
    "pg": {
        "no-write-behind": {"write_behind": False},
        "strict": {"write_behind": False, "synchronous_every_commit": True},
    },
    "sqlite": {
        "no-write-behind": {"write_behind": False},
        "strict": {"write_behind": False, "fsync_every_commit": True},
    },
}
"""The alternatives to each store's defaults that ``pg inline*``/``**`` and ``sqlite
inline*``/``**`` measure: each step's result committed before the workflow's code goes on
(instead of with the next step's insert), and also every attempt start committed
synchronously (PostgreSQL) or fsynced (SQLite)."""


def child_alternative(store: str, name: str, steps: int, where: str) -> dict[str, Any]:
    """An inline run with the store options ``ALTERNATIVES[store][name]``: the same flow and
    set-up as ``runtime_postgres.py`` (``where``: the DSN) or ``runtime.py`` (``where``: the
    directory), with every store of this process built that way."""
    if store == "pg":
        import runtime_postgres

        from pikku_typing.state.postgres import PostgresWorkflowStateService as Store

        def run() -> dict[str, Any]:
            return runtime_postgres.child_pikku("inline", steps, where)
    else:
        import runtime

        from pikku_typing.state.sqlite import SqliteWorkflowStateService as Store  # type: ignore[assignment]

        def run() -> dict[str, Any]:
            return runtime.child_pikku("inline", steps, "sqlite", Path(where))

    Store.__init__ = partialmethod(Store.__init__, **ALTERNATIVES[store][name])  # type: ignore[method-assign]
    return run()


def child_floor_sqlite(directory: Path) -> dict[str, Any]:
    """Median of COMMITS single-row commits, WAL + synchronous=FULL, one connection."""
    conn = sqlite3.connect(directory / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    samples = []
    for i in range(COMMITS):
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES (?)", (f"value {i}",))
        conn.execute("COMMIT")
        samples.append(time.perf_counter() - t0)
    conn.close()
    return {"per_commit_us": statistics.median(samples) * 1e6}


def child_floor_postgres(dsn: str, _directory: Path) -> dict[str, Any]:
    """Median of COMMITS autocommit single-row INSERTs over one loopback connection, an
    asyncio one (``psycopg.AsyncConnection``, as pikku's store uses): the floor of the target.
    Also the client's CPU time per commit (``time.process_time``)."""
    import psycopg

    async def main() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute("CREATE TABLE floor_t (id bigserial PRIMARY KEY, v text NOT NULL)")
            samples = []
            cpu0, start = time.process_time(), time.perf_counter()
            for i in range(COMMITS):
                t0 = time.perf_counter()
                await conn.execute("INSERT INTO floor_t (v) VALUES (%s)", (f"value {i}",))
                samples.append(time.perf_counter() - t0)
            cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - start
        return _pg_floor(samples, elapsed, cpu)

    return asyncio.run(main())


def child_floor_postgres_sync(dsn: str, _directory: Path) -> dict[str, Any]:
    """The same commits on a blocking connection (``psycopg.Connection``): no event loop
    between the client and the socket, a lower floor than the asyncio one; printed for
    reference, the target stays against the asyncio floor (pikku's store is asyncio)."""
    import psycopg

    with psycopg.Connection.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE floor_t (id bigserial PRIMARY KEY, v text NOT NULL)")
        samples = []
        cpu0, start = time.process_time(), time.perf_counter()
        for i in range(COMMITS):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO floor_t (v) VALUES (%s)", (f"value {i}",))
            samples.append(time.perf_counter() - t0)
        cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - start
    return _pg_floor(samples, elapsed, cpu)


def _pg_floor(samples: list[float], elapsed: float, cpu: float) -> dict[str, Any]:
    """A PostgreSQL floor as the per-step rows are measured: the time of all the commits
    over their number (a mean: a pikku row is a run's time over its steps), with the median
    commit beside it (the statistic of the floor before: lower whenever a few commits
    stall, as they do on a loaded machine) and the client's CPU per commit."""
    return {
        "per_commit_us": elapsed / COMMITS * 1e6,
        "median_us": statistics.median(samples) * 1e6,
        "cpu_us": cpu / COMMITS * 1e6,
    }


# ------------------------------------------------------------------ children: statements


def _count_statements() -> dict[str, int]:
    """Count what psycopg sends: cursor statements and transaction blocks (BEGIN + COMMIT)."""
    import psycopg

    counts = {"statements": 0, "transactions": 0}
    execute, executemany = psycopg.AsyncCursor.execute, psycopg.AsyncCursor.executemany
    enter = psycopg.AsyncTransaction.__aenter__

    async def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["statements"] += 1
        return await execute(self, *args, **kwargs)

    async def counted_executemany(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["statements"] += 1
        return await executemany(self, *args, **kwargs)

    async def counted_enter(self: Any) -> Any:
        counts["transactions"] += 1
        return await enter(self)

    psycopg.AsyncCursor.execute = counted_execute  # type: ignore[method-assign]
    psycopg.AsyncCursor.executemany = counted_executemany  # type: ignore[method-assign]
    psycopg.AsyncTransaction.__aenter__ = counted_enter  # type: ignore[method-assign]
    return counts


def child_trips(mode: str, steps: int, dsn: str, _directory: Path) -> dict[str, Any]:
    counts = _count_statements()

    async def main() -> dict[str, Any]:
        async with bench_client(mode, dsn) as run:

            async def one(n: int) -> dict[str, int]:
                before = dict(counts)
                await run(n)
                return {k: counts[k] - before[k] for k in counts}

            # the difference between a long and a short run removes the per-run cost
            small, large = await one(10), await one(10 + steps)
        per = {k: (large[k] - small[k]) / steps for k in counts}
        return {
            "statements_per_step": per["statements"],
            "transactions_per_step": per["transactions"],
            "round_trips_per_step": per["statements"] + 2 * per["transactions"],
            "statements_per_run": small["statements"] - 10 * per["statements"],
        }

    return asyncio.run(main())


def child_wal_flushes(steps: int, dsn: str, _directory: Path) -> dict[str, Any]:
    """WAL flushes (``pg_stat_wal.wal_sync``, the server's fsyncs of the WAL) per inline
    step, with the default store (a step's result and the next attempt's start: one
    synchronous commit) and with the ``ALTERNATIVES``: a count, not a time, so a loaded machine does not
    blur it. The view is the whole server's: anything else committing meanwhile adds to it
    (run on a server nobody else writes to)."""
    import psycopg
    from runtime_postgres import bench_client

    from pikku_typing.state.postgres import PostgresWorkflowStateService as Store

    def syncs() -> int:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
        return int(row[0]) if row else 0

    async def main() -> float:
        async with bench_client("inline", dsn) as run:
            # a session reports its statistics when idle, at most once a second, and when
            # it ends: count from a quiet start to after the store closed its sessions
            await asyncio.sleep(1.5)
            before = syncs()
            await run(steps)
        await asyncio.sleep(1.0)
        return (syncs() - before) / steps

    out: dict[str, Any] = {"default": asyncio.run(main())}
    init = Store.__init__
    for name, options in ALTERNATIVES["pg"].items():
        Store.__init__ = partialmethod(init, **options)  # type: ignore[method-assign]
        try:
            out[name] = asyncio.run(main())
        finally:
            Store.__init__ = init  # type: ignore[method-assign]
    return out


# ------------------------------------------------------------------ children: procrastinate


PROCRASTINATE_APP = textwrap.dedent(
    """
    import os

    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=os.environ["BENCH_DSN"]))

    @app.task(name="noop", queue="bench")
    async def noop(n: int) -> int:
        return n
    """
)


def child_procrastinate(workers: int, jobs: int, dsn: str, directory: Path) -> dict[str, Any]:
    """procrastinate's own throughput: ``workers`` processes (``--concurrency 4``) run
    ``jobs`` no-op jobs deferred as fast as one client can; time from the first defer until
    every job is done."""
    (directory / "bench_noop.py").write_text(PROCRASTINATE_APP)
    sys.path.insert(0, str(directory))
    os.environ["BENCH_DSN"] = dsn
    import bench_noop  # type: ignore[import-not-found]

    env = {**os.environ, "PYTHONPATH": str(directory)}
    app = bench_noop.app

    async def main() -> dict[str, Any]:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "procrastinate", "--app", "bench_noop.app", "worker",
                     "--concurrency", "4", "--queues", "bench"],
                    cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                for _ in range(workers)
            ]
            try:
                conn = app.connector
                for _ in range(600):
                    rows = await conn.execute_query_all_async(
                        "SELECT count(*) AS n FROM procrastinate_workers"
                    )
                    if rows and rows[0]["n"] >= workers:
                        break
                    await asyncio.sleep(0.05)
                t0 = time.perf_counter()
                for n in range(jobs):
                    await bench_noop.noop.defer_async(n=n)
                while True:
                    rows = await conn.execute_query_all_async(
                        "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'succeeded'"
                    )
                    if rows[0]["n"] >= jobs:
                        break
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - t0
            finally:
                for p in procs:
                    p.send_signal(signal.SIGTERM)
                for p in procs:
                    try:
                        p.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        p.kill()
        return {"seconds": elapsed, "jobs_per_s": jobs / elapsed}

    return asyncio.run(main())


# ------------------------------------------------------------------ children: latency


LATENCY_APP = textwrap.dedent(
    """
    import os

    from pikku_typing import (
        PostgresQueue, PostgresWorkflowStateService, Workflow, WorkflowRuntime, pikku_func,
        wire_workflow,
    )

    @pikku_func(name="lat.echo")
    async def echo(data: int) -> int:
        return data

    async def flow(workflow: Workflow, n: int) -> int:
        a = await workflow.do("a", "lat.echo", n)
        b = await workflow.do("b", "lat.echo", a + 1)
        return await workflow.do("c", "lat.echo", b + 1)

    wire_workflow(name="bench_latency", func=flow, execution_mode="remote")

    DSN = os.environ["BENCH_DSN"]
    runtime = WorkflowRuntime(
        PostgresWorkflowStateService(DSN), PostgresQueue(DSN),
        eager_steps=os.environ.get("PIKKU_BENCH_EAGER", "1") == "1",
    )
    """
)


def child_latency(runs: int, dsn: str, directory: Path) -> dict[str, Any]:
    (directory / "bench_latency.py").write_text(LATENCY_APP)
    sys.path.insert(0, str(directory))
    sys.path.insert(0, str(ROOT))
    os.environ["BENCH_DSN"] = dsn
    import bench_latency  # type: ignore[import-not-found]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(directory)])}

    async def main() -> dict[str, Any]:
        runtime = bench_latency.runtime
        await runtime.queue.check()
        await runtime.state.list_runs(limit=0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pikku_typing.runtime.worker_cli", "bench_latency:runtime",
             "--concurrency", "4", "--log-level", "WARNING"],
            cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            client = runtime.client("bench_latency")
            for n in range(3):  # warm-up: the worker is serving and its imports are done
                handle = await client.start(n)
                assert await client.result(handle.run_id, timeout=120) == n + 2
            samples = []
            for n in range(runs):
                t0 = time.perf_counter()
                handle = await client.start(n)
                output = await client.result(handle.run_id, timeout=120)
                samples.append(time.perf_counter() - t0)
                assert output == n + 2
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            await runtime.queue.close()
            await runtime.state.close()
        samples.sort()
        return {
            "median_ms": statistics.median(samples) * 1e3,
            "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3,
        }

    return asyncio.run(main())


# ------------------------------------------------------------------- driver


def _with_schema(dsn: str, fn: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    schema_dsn = _new_schema(dsn)
    try:
        return fn(schema_dsn)
    finally:
        _drop_schema(dsn, schema_dsn)


def _verdict(ratio: float, target: float, higher_is_better: bool = False) -> str:
    ok = ratio >= target if higher_is_better else ratio <= target
    sign = ">=" if higher_is_better else "<="
    return f"target {sign} {target:g}x: {'meets' if ok else 'MISSES'}"


def section_floor(dsn: str | None, reps: int, steps: int) -> None:
    """No ``dsn``: the SQLite rows only."""
    names = ["sqlite floor", "sqlite inline", "sqlite remote", "sqlite remote q",
             "sqlite remote ip", "sqlite remote ip q", "pg floor", "pg inline", "pg remote",
             "pg remote q", "sqlite inline*", "sqlite inline**", "pg inline*", "pg inline**",
             "pg floor sync"]
    samples: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}  # client CPU (process_time)

    medians: dict[str, list[float]] = {name: [] for name in names}  # pg floors' median commit

    def pg(name: str, out: dict[str, Any], key: str) -> None:
        samples[name].append(float(out[key]))
        cpu[name].append(float(out.get("cpu_us", out.get("cpu_per_step_us", "nan"))))
        if "median_us" in out:
            medians[name].append(float(out["median_us"]))

    remote_steps = max(steps // 2, 50)
    inprocess = {"PIKKU_BENCH_QUEUE": "inprocess"}

    def sqlite_remote(**env: str) -> float:
        return float(run_script(
            "runtime.py", "pikku", "remote", str(remote_steps), "sqlite", **env)["per_step_us"])

    for _ in range(reps):  # interleaved: every figure sees the same machine load
        samples["sqlite floor"].append(float(run_child("floor-sqlite")["per_commit_us"]))
        samples["sqlite inline"].append(float(run_script(
            "runtime.py", "pikku", "inline", str(steps), "sqlite")["per_step_us"]))
        for name, option in (("sqlite inline*", "no-write-behind"), ("sqlite inline**", "strict")):
            samples[name].append(float(run_child(
                "alternative", "sqlite", option, str(steps))["per_step_us"]))
        samples["sqlite remote"].append(sqlite_remote(**EAGER))
        samples["sqlite remote q"].append(sqlite_remote(**QUEUED))
        samples["sqlite remote ip"].append(sqlite_remote(**EAGER, **inprocess))
        samples["sqlite remote ip q"].append(sqlite_remote(**QUEUED, **inprocess))
        if dsn is None:
            continue
        pg("pg floor", _with_schema(dsn, lambda d: run_child("floor-postgres", d)),
           "per_commit_us")
        pg("pg floor sync", _with_schema(dsn, lambda d: run_child("floor-postgres-sync", d)),
           "per_commit_us")
        pg("pg inline", _with_schema(
            dsn, lambda d: run_script("runtime_postgres.py", "pikku", "inline", str(steps), d)
        ), "per_step_us")
        for name, option in (("pg inline*", "no-write-behind"), ("pg inline**", "strict")):
            pg(name, _with_schema(dsn, lambda d, option=option: run_child(
                "alternative", "pg", option, str(steps), d)), "per_step_us")
        for name, env in (("pg remote", EAGER), ("pg remote q", QUEUED)):
            pg(name, _with_schema(dsn, lambda d, env=env: run_script(
                "runtime_postgres.py", "pikku", "remote", str(remote_steps), d, **env
            )), "per_step_us")
    med = {name: statistics.median(values) for name, values in samples.items() if values}

    def _cpu(name: str) -> str:
        text = f"  client CPU {statistics.median(cpu[name]):.0f} us" if cpu[name] else ""
        if medians[name]:
            text += f"  (mean; median commit {statistics.median(medians[name]):.0f} us)"
        return text

    print(f"[1] per step against one durable commit ({steps} inline / {remote_steps} remote steps)")
    for floor, rows in (("sqlite floor", (("sqlite inline", 2.0), ("sqlite inline*", 2.0),
                                          ("sqlite inline**", 2.0), ("sqlite remote", 4.0), ("sqlite remote q", 4.0),
                                          ("sqlite remote ip", 4.0),
                                          ("sqlite remote ip q", 4.0))),
                        ("pg floor", (("pg inline", 2.5), ("pg inline*", 2.5), ("pg inline**", 2.5),
                                      ("pg remote", 6.0), ("pg remote q", 6.0)))):
        if floor not in med:
            continue  # no DSN: no PostgreSQL rows
        print(f"    {floor:18s} {med[floor]:8.0f} us/commit  ({fmt(samples[floor])}){_cpu(floor)}")
        if floor == "pg floor":
            sync = "pg floor sync"
            print(f"    {sync:18s} {med[sync]:8.0f} us/commit  = {med[sync] / med[floor]:5.2f}x "
                  f"pg floor, for reference: a blocking connection; the pg targets are "
                  f"against the asyncio floor above  ({fmt(samples[sync])}){_cpu(sync)}")
        for name, target in rows:
            ratio = med[name] / med[floor]
            print(f"    {name:18s} {med[name]:8.0f} us/step    = {ratio:5.1f}x floor  "
                  f"({_verdict(ratio, target)})  ({fmt(samples[name])}){_cpu(name)}")
    print("    * the alternatives: write_behind=False commits each step's result before the "
          "workflow's code goes on\n      (sqlite: 2 commits per inline step instead of 1 "
          "transaction, the result and the next step's start in one, one fsync either way;\n"
          "      pg: 2 statements per inline step instead of 1);"
          " ** and sqlite: fsync_every_commit=True also fsyncs the attempt start (2 fsyncs "
          "per step),\n      pg: synchronous_every_commit=True commits the attempt start "
          "synchronously too (2 WAL flushes per step)\n    remote: eager remote steps (the default: the process drains every queue, "
          "so each step runs in its pass);\n    remote q: eager_steps=False, a step job and a "
          "pass per step; sqlite remote: StoreQueue, ip: InProcessQueue; pg remote: "
          "PostgresQueue")


def section_trips(dsn: str, steps: int) -> None:
    print("\n[2] PostgreSQL statements per step (psycopg hook; a transaction block = BEGIN + COMMIT)")
    for label, mode, env in (("inline", "inline", EAGER), ("remote", "remote", EAGER),
                             ("remote q", "remote", QUEUED)):
        out = _with_schema(
            dsn, lambda d, mode=mode, env=env: run_child("trips", mode, str(steps), d, **env)
        )
        print(f"    {label:8s}: {out['statements_per_step']:5.1f} statements + "
              f"{out['transactions_per_step']:4.1f} transactions = "
              f"{out['round_trips_per_step']:5.1f} round trips per step "
              f"(+{out['statements_per_run']:.0f} statements per run)")
    print("    remote: eager remote steps (PostgresQueue, one process draining every queue); "
          "remote q: eager_steps=False")
    wal = _with_schema(dsn, lambda d: run_child("wal-flushes", str(steps), d))
    print(f"    WAL flushes per inline step (pg_stat_wal.wal_sync, the whole server's): "
          f"{wal['default']:.2f}; with write_behind=False {wal['no-write-behind']:.2f}; and "
          f"synchronous_every_commit=True {wal['strict']:.2f}")


def section_throughput(dsn: str, reps: int, runs: int) -> None:
    print(f"\n[3] throughput: {runs} runs x 5 remote no-op steps vs procrastinate, "
          f"{runs * 5} no-op jobs; --concurrency 4 per worker process")
    for workers in (1, 2):
        pikku_s: list[float] = []
        queued_s: list[float] = []
        proc_s: list[float] = []
        for _ in range(reps):  # interleaved
            pikku_s.append(float(_with_schema(dsn, lambda d, w=workers: run_script(
                "runtime_postgres.py", "throughput", str(w), str(runs), d, **EAGER
            ))["steps_per_s"]))
            queued_s.append(float(_with_schema(dsn, lambda d, w=workers: run_script(
                "runtime_postgres.py", "throughput", str(w), str(runs), d, **QUEUED
            ))["steps_per_s"]))
            proc_s.append(float(_with_schema(dsn, lambda d, w=workers: run_child(
                "procrastinate", str(w), str(runs * 5), d))["jobs_per_s"]))
        p, pq = statistics.median(pikku_s), statistics.median(queued_s)
        q = statistics.median(proc_s)
        print(f"    {workers} worker(s): procrastinate {q:7.1f} jobs/s;  pikku eager {p:7.1f} "
              f"steps/s = {p / q:.2f}x ({_verdict(p / q, 0.5, higher_is_better=True)});  "
              f"pikku queued {pq:7.1f} steps/s = {pq / q:.2f}x")
        print(f"        eager ({', '.join(f'{s:.1f}' for s in pikku_s)}), "
              f"queued ({', '.join(f'{s:.1f}' for s in queued_s)}), "
              f"procrastinate ({', '.join(f'{s:.1f}' for s in proc_s)})")


def section_latency(dsn: str, runs: int) -> None:
    print(f"\n[4] client.start -> result(), 3 remote steps, 1 pikku-worker, {runs} runs")
    for label, env in (("eager", EAGER), ("queued", QUEUED)):
        out = _with_schema(dsn, lambda d, env=env: run_child("latency", str(runs), d, **env))
        print(f"    {label:6s}: median {out['median_ms']:.1f} ms, p99 {out['p99_ms']:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=os.environ.get("PIKKU_TEST_POSTGRES_DSN"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=400, help="steps of the inline workflows")
    parser.add_argument("--runs", type=int, default=60, help="throughput: runs of 5 steps")
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="3 repetitions, smaller runs")
    parser.add_argument("--only", default="floor,trips,throughput,latency")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ns = parser.parse_args()

    if ns.child:
        kind, *rest = ns.child
        directory = Path(rest[-1])
        if kind == "floor-sqlite":
            out = child_floor_sqlite(directory)
        elif kind == "floor-postgres":
            out = child_floor_postgres(rest[0], directory)
        elif kind == "floor-postgres-sync":
            out = child_floor_postgres_sync(rest[0], directory)
        elif kind == "alternative":  # store, option, steps, DSN or (sqlite) the directory
            out = child_alternative(rest[0], rest[1], int(rest[2]), rest[3])
        elif kind == "wal-flushes":
            out = child_wal_flushes(int(rest[0]), rest[1], directory)
        elif kind == "trips":
            out = child_trips(rest[0], int(rest[1]), rest[2], directory)
        elif kind == "procrastinate":
            out = child_procrastinate(int(rest[0]), int(rest[1]), rest[2], directory)
        else:
            out = child_latency(int(rest[0]), rest[1], directory)
        print(json.dumps(out))
        return 0

    only = {x.strip() for x in ns.only.split(",")}
    if not ns.dsn and only != {"floor"}:  # the floor's SQLite rows need none
        print("no DSN: pass --dsn or eval \"$(bash scripts/postgres.sh)\" (or --only floor: "
              "the SQLite rows only)", file=sys.stderr)
        return 2
    reps = 3 if ns.quick else ns.reps
    steps = 200 if ns.quick else ns.steps
    runs = 30 if ns.quick else ns.runs
    latency_runs = 50 if ns.quick else ns.latency_runs
    print(f"pikku floor benchmark: {reps} repetitions, medians (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f})\n")
    if "floor" in only:
        section_floor(ns.dsn or None, reps, steps)
    if "trips" in only:
        section_trips(ns.dsn, steps // 2)
    if "throughput" in only:
        section_throughput(ns.dsn, reps, runs)
    if "latency" in only:
        section_latency(ns.dsn, latency_runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
