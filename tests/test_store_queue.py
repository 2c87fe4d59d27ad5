"""``StoreQueue``: the embedded stores (file, SQLite) serve across processes.

Real processes throughout: a ``pikku-worker`` serving a store, "web" processes that start
runs, send events and cancel on the same store, two workers racing, claimers killed with
SIGKILL. Waiting for another process is a poll of the store with a generous deadline (the
pick-up latency target, under a second, is measured by ``benchmarks/store_queue.py``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import store_queue_app

from pikku_typing import (
    FileWorkflowStateService,
    InMemoryWorkflowStateService,
    InProcessQueue,
    SqliteWorkflowStateService,
)
from pikku_typing.runtime.queues.base import Job
from pikku_typing.runtime.queues.store import StoreQueue, default_queue_for, queue_path_for
from pikku_typing.state import open_store

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
DEADLINE = 90.0

STORES = [
    pytest.param(lambda d: f"file:{d / 'state'}", id="file"),
    pytest.param(lambda d: f"sqlite:{d / 'state.db'}", id="sqlite"),
]


def _env(store_url: str, log: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SQ_STORE"] = store_url
    env["SQ_LOG"] = str(log)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)])
    env.pop("PIKKU_DEBUG", None)
    return env


def _web(env: dict[str, str], *args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "store_queue_app", *args],
        cwd=TESTS, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def workers() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from pikku_typing.runtime.worker_cli import main; "
             "raise SystemExit(main())", "store_queue_app:runtime", "--concurrency", "4", *extra],
            cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung worker
            proc.kill()
            proc.communicate()


def _status(store_url: str, run_id: str) -> str:
    import asyncio

    async def get() -> str:
        store = open_store(store_url)
        try:
            return (await store.get_run(run_id)).status.value
        finally:
            await store.close()

    return asyncio.run(get())


def _wait_for(
    store_url: str, run_ids: list[str], wanted: str, procs: list[subprocess.Popen[str]]
) -> None:
    deadline = time.monotonic() + DEADLINE
    pending = list(run_ids)
    while pending:
        pending = [r for r in pending if _status(store_url, r) != wanted]
        for proc in procs:
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"worker exited {proc.returncode}: {err[-3000:]}")
        if not pending:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"runs {pending} did not become {wanted} within {DEADLINE}s")
        time.sleep(0.02)  # polling another process's progress, not a timed assertion


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    return err


# ----------------------------------------------------------------- defaults


def test_file_and_sqlite_stores_get_a_store_queue(tmp_path: Path) -> None:
    file_store = FileWorkflowStateService(tmp_path / "state")
    sqlite_store = SqliteWorkflowStateService(tmp_path / "s.db")
    assert queue_path_for(file_store) == tmp_path / "state" / "queue.db"
    assert queue_path_for(sqlite_store) == tmp_path / "s.db.jobs"
    assert isinstance(default_queue_for(file_store), StoreQueue)
    assert isinstance(default_queue_for(sqlite_store), StoreQueue)
    assert isinstance(default_queue_for(InMemoryWorkflowStateService()), InProcessQueue)


# ------------------------------------------------------------ queue contract


async def test_jobs_run_once_in_due_order_and_duplicates_merge(tmp_path: Path) -> None:
    queue = StoreQueue(tmp_path / "q.db")
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.run_id)

    await queue.enqueue(store_queue_app.make_job("a", dedupe="k"))
    await queue.enqueue(store_queue_app.make_job("a-again", dedupe="k"))  # merged
    await queue.enqueue(store_queue_app.make_job("b"))
    assert len(queue) == 2
    assert await queue.drain(handler) == 2
    assert ran == ["a", "b"]
    assert len(queue) == 0
    # once run (claimed), a key can be queued again
    await queue.enqueue(store_queue_app.make_job("a", dedupe="k"))
    assert await queue.drain(handler) == 1
    await queue.close()


async def test_a_failing_job_is_retried_with_backoff_and_kept(tmp_path: Path) -> None:
    queue = StoreQueue(tmp_path / "q.db", max_job_retries=2, retry_backoff=0.001)
    calls: list[str] = []

    async def handler(job: Job) -> None:
        calls.append(job.run_id)
        if job.run_id == "bad" or len(calls) == 1:
            raise RuntimeError("store away")

    await queue.enqueue(store_queue_app.make_job("ok"))
    await queue.enqueue(store_queue_app.make_job("bad"))
    await queue.drain(handler)
    assert calls.count("ok") == 2  # failed once, then ran
    assert calls.count("bad") == 3  # first try + 2 retries; then drain stops waiting for it
    assert [j.run_id for j in queue.pending()] == ["bad"]  # kept: never dropped
    await queue.close()


async def test_a_job_not_due_stays_queued(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    queue = StoreQueue(tmp_path / "q.db")
    later = Job(queue="q", kind="orchestrate", workflow="w", run_id="later",
                run_at=datetime.now(UTC) + timedelta(hours=1))
    await queue.enqueue(later)

    async def handler(job: Job) -> None:  # pragma: no cover - must not run
        raise AssertionError(job)

    assert await queue.drain(handler) == 0
    assert [j.run_id for j in queue.pending()] == ["later"]
    await queue.close()


async def test_a_damaged_queue_database_is_a_clear_error(tmp_path: Path) -> None:
    from pikku_typing.errors import StateCorruptedError

    path = tmp_path / "q.db"
    path.write_bytes(b"this is not a database" * 100)
    queue = StoreQueue(path)
    with pytest.raises(StateCorruptedError, match="--recover"):
        await queue.enqueue(store_queue_app.make_job("a"))
    with pytest.raises(StateCorruptedError):
        await queue.check()  # what pikku-worker calls before serving
    assert path.read_bytes() == b"this is not a database" * 100  # left untouched


def test_two_processes_never_claim_the_same_job(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "q.db"

    async def fill() -> None:
        queue = StoreQueue(path)
        for i in range(300):
            await queue.enqueue(store_queue_app.make_job(f"r{i}"))
        await queue.close()

    asyncio.run(fill())
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=store_queue_app.claim_worker, args=(str(path), barrier, results))
        for _ in range(3)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    everything = [r for part in got for r in part]
    assert sorted(everything) == sorted(f"r{i}" for i in range(300))  # each exactly once


def test_jobs_of_a_killed_worker_are_put_back(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "q.db"
    queue = StoreQueue(path)
    asyncio.run(queue.enqueue(store_queue_app.make_job("held")))
    env = _env("memory:", tmp_path / "log")
    holder = subprocess.Popen(
        [sys.executable, "-m", "store_queue_app", "hold", str(path)],
        cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None
    assert json.loads(holder.stdout.readline()) == ["held"]
    assert queue._claim(None, 1) == []  # held by a live process
    assert queue.rescue() == 0
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=60)
    assert queue.rescue() == 1
    claimed = queue._claim(None, 1)
    assert [job.run_id for _, job, _ in claimed] == ["held"]
    asyncio.run(queue.close())


# ------------------------------------------------------- web + worker processes


@pytest.mark.parametrize("make_url", STORES)
def test_web_process_and_worker_complete_runs_without_restart(
    tmp_path: Path, make_url: Callable[[Path], str], workers: Callable[..., subprocess.Popen[str]]
) -> None:
    url = make_url(tmp_path)
    log = tmp_path / "steps.log"
    env = _env(url, log)
    worker = workers(env)
    # runs started by another process, after the worker started serving
    runs = _web(env, "start", "3", "2")
    _wait_for(url, runs, "completed", [worker])
    # a cancel made by another process
    sleeping = _web(env, "sleep")
    _wait_for(url, [sleeping], "suspended", [worker])
    assert _web(env, "cancel", sleeping) is True
    _wait_for(url, [sleeping], "cancelled", [worker])
    err = _stop(worker)
    lines = log.read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(
        f"{r}:{i}" for r in runs for i in range(2)
    )
    assert "InProcessQueue object" not in err and "StoreQueue(" in err


@pytest.mark.parametrize("make_url", STORES)
def test_an_event_sent_by_another_process_wakes_the_run(
    tmp_path: Path, make_url: Callable[[Path], str], workers: Callable[..., subprocess.Popen[str]]
) -> None:
    url = make_url(tmp_path)
    env = _env(url, tmp_path / "log")
    worker = workers(env)
    waiting = _web(env, "wait")
    deadline = time.monotonic() + DEADLINE
    while _status(url, waiting) == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    _wait_for(url, [waiting], "suspended", [worker])
    assert _web(env, "send", waiting, "7") is True
    _wait_for(url, [waiting], "completed", [worker])
    doomed = _web(env, "wait")
    _wait_for(url, [doomed], "suspended", [worker])
    assert _web(env, "cancel", doomed) is True
    _wait_for(url, [doomed], "cancelled", [worker])
    assert _web(env, "send", doomed, "1") is False
    _stop(worker)


def test_two_workers_on_one_store_never_run_a_step_twice(
    tmp_path: Path, workers: Callable[..., subprocess.Popen[str]]
) -> None:
    url = f"sqlite:{tmp_path / 'state.db'}"
    log = tmp_path / "steps.log"
    env = _env(url, log)
    procs = [workers(env), workers(env)]
    runs = _web(env, "start", "24", "3")
    _wait_for(url, runs, "completed", procs)
    for proc in procs:
        _stop(proc)
    keys = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert set(keys) == {f"{r}:{i}" for r in runs for i in range(3)}
    assert [k for k, n in keys.items() if n != 1] == []


def test_a_run_made_due_in_the_store_is_swept(
    tmp_path: Path, workers: Callable[..., subprocess.Popen[str]]
) -> None:
    """An event stored with ``store.send_event`` (no job queued, as ``pikku-runs resume``
    does for a wake-up) is found by the worker's sweep of due suspended runs."""
    import asyncio

    url = f"file:{tmp_path / 'state'}"
    env = _env(url, tmp_path / "log")
    worker = workers(env)
    waiting = _web(env, "wait")
    deadline = time.monotonic() + DEADLINE
    while _status(url, waiting) == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    _wait_for(url, [waiting], "suspended", [worker])

    async def send() -> None:
        store = open_store(url)
        try:
            assert await store.send_event(waiting, "sq.ping", {"n": 3}) is not None
        finally:
            await store.close()

    asyncio.run(send())
    _wait_for(url, [waiting], "completed", [worker])
    _stop(worker)


def test_a_run_resumed_by_pikku_runs_is_picked_up(
    tmp_path: Path, workers: Callable[..., subprocess.Popen[str]]
) -> None:
    """``pikku-runs resume`` (another process, no job queued: it only makes the run due in
    the store) is picked up by the serving worker's sweep, with no restart."""
    url = f"sqlite:{tmp_path / 'state.db'}"
    log = tmp_path / "log"
    env = _env(url, log)
    worker = workers(env)
    run_id = _web(env, "fragile")
    _wait_for(url, [run_id], "failed", [worker])
    (tmp_path / "log.ok").write_text("")
    resume = subprocess.run(
        [sys.executable, "-c", "from pikku_typing.runtime.runs_cli import main; "
         "raise SystemExit(main())", "--store", url, "resume", run_id],
        cwd=TESTS, env=env, capture_output=True, text=True, timeout=120,
    )
    assert resume.returncode == 0, resume.stderr
    _wait_for(url, [run_id], "completed", [worker])
    _stop(worker)


def test_a_killed_worker_s_step_is_taken_over_by_another_worker(
    tmp_path: Path, workers: Callable[..., subprocess.Popen[str]]
) -> None:
    """SIGKILL a worker in the middle of a step: the other worker, already serving, puts the
    dead worker's job back (its process is gone), abandons the dead attempt and runs the step
    again; nobody is restarted."""
    url = f"sqlite:{tmp_path / 'state.db'}"
    log = tmp_path / "log"
    env = _env(url, log)
    hang = tmp_path / "log.hang"
    hang.write_text("")
    first = workers(env)
    run_id = _web(env, "hang")
    deadline = time.monotonic() + DEADLINE
    while f"start:{run_id}" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the step never started"
        assert first.poll() is None
        time.sleep(0.02)
    second = workers(env)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    hang.unlink()
    _wait_for(url, [run_id], "completed", [second])
    _stop(second)
    lines = [line.split() for line in log.read_text().splitlines()]
    starts = [pid for what, pid in lines if what == f"start:{run_id}"]
    ends = [pid for what, pid in lines if what == f"end:{run_id}"]
    assert len(starts) == 2 and starts[0] == str(first.pid) and starts[1] == str(second.pid)
    assert ends == [str(second.pid)]
