"""Logging (SPEC section 10): loggers ``pikku.*``, silent by default, run and step records
with ``extra`` fields, readable and JSON worker output."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from registry_support import isolated_registry

from pikku_typing import (
    InMemoryWorkflowStateService,
    InProcessQueue,
    Workflow,
    WorkflowRuntime,
    wire_workflow,
)
from pikku_typing._log import JsonFormatter, OneLineFormatter
from pikku_typing.models import RunStatus
from pikku_typing.state.base import RunChanges

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    with isolated_registry():
        yield


def _records(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


def test_the_pikku_logger_has_a_null_handler() -> None:
    import pikku_typing  # noqa: F401

    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("pikku").handlers)
    for child in ("pikku.runtime", "pikku.worker", "pikku.analyzer"):
        assert logging.getLogger(child).parent is logging.getLogger("pikku")


def test_the_library_prints_nothing_by_default(tmp_path: Path) -> None:
    """A failing step logs WARNINGs; with no logging configured nothing reaches stderr (no
    ``lastResort`` handler output); with ``basicConfig`` the records are there."""
    script = textwrap.dedent(
        """
        import asyncio, logging, sys
        from pikku_typing import InMemoryWorkflowStateService, Workflow, WorkflowRuntime, wire_workflow

        def boom() -> int:
            raise ValueError("boom")

        async def flow(workflow: Workflow, data: None) -> int:
            return await workflow.do("explode", boom, retries=1, retry_delay=0)

        wire_workflow(name="loud", func=flow)

        async def main() -> None:
            async with WorkflowRuntime(InMemoryWorkflowStateService()) as rt:
                handle = await rt.client("loud").start(None)
                try:
                    await handle.result(timeout=30)
                except Exception:
                    pass

        if sys.argv[1:] == ["configured"]:
            logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    quiet = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    loud = subprocess.run([sys.executable, "-c", script, "configured"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert loud.returncode == 0, loud.stderr
    assert "pikku.runtime INFO run " in loud.stderr and " started" in loud.stderr
    assert "pikku.runtime WARNING step explode of run " in loud.stderr
    assert "ValueError: boom; no attempt left" in loud.stderr
    assert " of loud failed in step explode: ValueError: boom" in loud.stderr


async def test_run_started_and_recovery_decisions_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def flow(workflow: Workflow, data: int) -> int:
        return data

    wire_workflow(name="logged", func=flow)
    store = InMemoryWorkflowStateService()
    caplog.set_level(logging.INFO, logger="pikku")
    async with WorkflowRuntime(store, InProcessQueue()) as rt:
        handle = await rt.client("logged").start(1)
        started = [r for r in _records(caplog, "pikku.runtime") if "started" in r.getMessage()]
        assert started and started[0].run_id == handle.run_id  # type: ignore[attr-defined]
        assert started[0].workflow == "logged"  # type: ignore[attr-defined]
        # a run left "running" by a dead process: recover() queues a pass and says so
        await store.update_run(handle.run_id, RunChanges(status=RunStatus.RUNNING))
        caplog.clear()
        assert await rt.recover() == 1
        decisions = [r for r in _records(caplog, "pikku.runtime") if "recover" in r.getMessage()]
        assert len(decisions) == 1
        assert decisions[0].run_id == handle.run_id  # type: ignore[attr-defined]
        assert await handle.result(timeout=30) == 1


@pytest.mark.parametrize("mode", ["inline", "remote"])
async def test_step_attempts_and_settlement_are_logged_with_run_and_step(
    caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    from pikku_typing import pikku_func

    calls = 0

    @pikku_func(name="log.flaky")
    def flaky(data: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first time")
        return data * 2

    @pikku_func(name="log.broken")
    def broken(data: int) -> int:
        raise RuntimeError("always")

    async def good(workflow: Workflow, data: int) -> int:
        return int(await workflow.do("double", "log.flaky", data, retries=2, retry_delay=0))

    async def bad(workflow: Workflow, data: int) -> int:
        return int(await workflow.do("crash", "log.broken", data, retries=0))

    wire_workflow(name="log_good", func=good, execution_mode=mode)  # type: ignore[arg-type]
    wire_workflow(name="log_bad", func=bad, execution_mode=mode)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="pikku")
    async with WorkflowRuntime(InMemoryWorkflowStateService(), InProcessQueue()) as rt:
        ok = await rt.client("log_good").start(21)
        assert await ok.result(timeout=30) == 42
        failing = await rt.client("log_bad").start(1)
        with pytest.raises(Exception, match="always"):
            await failing.result(timeout=30)

    def about(run_id: str) -> list[tuple[str, str]]:
        return [(r.levelname, r.getMessage()) for r in _records(caplog, "pikku.runtime")
                if getattr(r, "run_id", None) == run_id]

    good_lines = about(ok.run_id)
    messages = [m for _, m in good_lines]
    assert any("step double of run" in m and "attempt 1 started" in m for m in messages)
    failed = [r for r in caplog.records if "attempt 1 failed" in r.getMessage()
              and getattr(r, "run_id", None) == ok.run_id]
    assert len(failed) == 1 and failed[0].levelname == "WARNING"
    assert failed[0].step_key == "double" and failed[0].attempt == 1  # type: ignore[attr-defined]
    assert failed[0].delay == 0  # type: ignore[attr-defined]
    assert "ValueError: first time; retrying in 0.00s" in failed[0].getMessage()
    assert any("attempt 2 succeeded" in m for m in messages)
    assert ("INFO", f"run {ok.run_id} of log_good completed") in good_lines
    bad_lines = about(failing.run_id)
    assert any(level == "WARNING" and "RuntimeError: always; no attempt left" in m
               for level, m in bad_lines)
    assert any(level == "WARNING" and m.startswith(f"run {failing.run_id} of log_bad failed in step crash")
               for level, m in bad_lines)


async def test_a_job_retried_by_the_queue_is_logged_with_its_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pikku_typing.errors import StoreUnavailableError
    from pikku_typing.runtime.queues.base import Job

    queue = InProcessQueue(max_job_retries=1, retry_backoff=0.0)
    calls = 0

    async def handler(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise StoreUnavailableError("store away")

    caplog.set_level(logging.INFO, logger="pikku")
    await queue.enqueue(Job(queue="q", kind="orchestrate", workflow="w", run_id="r1"))
    await queue.drain(handler)
    records = _records(caplog, "pikku.worker")
    assert [r.levelname for r in records] == ["WARNING", "ERROR"]
    assert all(r.run_id == "r1" for r in records)  # type: ignore[attr-defined]
    assert repr(queue) == "InProcessQueue(1 queued)"  # kept after the retries (retried later)


def _record(**extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("pikku.runtime", logging.WARNING, __file__, 1,
                               "step %s failed", ("charge",), None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_extra_fields() -> None:
    line = JsonFormatter().format(_record(run_id="r1", step_key="charge", attempt=2, delay=0.5))
    data = json.loads(line)
    assert data["logger"] == "pikku.runtime" and data["level"] == "WARNING"
    assert data["message"] == "step charge failed"
    assert (data["run_id"], data["step_key"], data["attempt"], data["delay"]) == ("r1", "charge", 2, 0.5)
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = _record(run_id="r1")
        record.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(record))
    assert data["error"] == "ValueError: bad thing" and "traceback" not in data
    assert "\n" not in OneLineFormatter().format(record)


class _Lines:
    """The stderr lines of a child, read by a thread: a wait for a line has a deadline even
    when the child prints nothing (a plain ``readline`` would block past it)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self.lines: queue.Queue[str | None] = queue.Queue()
        stream = proc.stderr

        def read() -> None:
            for line in stream:
                self.lines.put(line)
            self.lines.put(None)

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()

    def until(self, marker: str, deadline: float) -> list[str]:
        seen: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                return seen
            if line is None:
                return seen
            seen.append(line)
            if marker in line:
                return seen

    def rest(self) -> list[str]:
        self.thread.join(timeout=60)
        out: list[str] = []
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return out
            if line is None:
                return out
            out.append(line)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_worker_lines_are_readable_and_json_on_request(tmp_path: Path, log_format: str) -> None:
    env = dict(os.environ)
    env.update(SQ_STORE=f"sqlite:{tmp_path / 'state.db'}", SQ_LOG=str(tmp_path / "log"),
               PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from pikku_typing.runtime.worker_cli import main; "
         "raise SystemExit(main())", "store_queue_app:runtime", "--log-format", log_format],
        cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    reader = _Lines(proc)
    try:
        deadline = time.monotonic() + 90
        lines = reader.until("serving", deadline)
        web = subprocess.run([sys.executable, "-m", "store_queue_app", "start", "1", "1"],
                             cwd=TESTS, env=env, capture_output=True, text=True, timeout=120)
        assert web.returncode == 0, web.stderr
        run_id = json.loads(web.stdout)[0]
        # the step may run in the pass (an eager step) or as a step job: either way its
        # attempt is logged, and the run settles
        lines += reader.until(f"run {run_id} of sq_chain completed", deadline)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    lines += reader.rest()
    text = "".join(lines)
    assert "object at 0x" not in text
    assert proc.returncode == 0, text
    if log_format == "json":
        records = [json.loads(line) for line in lines if line.strip()]
        assert all(r["logger"].startswith("pikku") for r in records), records
        serving = next(r for r in records if "serving" in r["message"])
        assert "StoreQueue(" in serving["message"] and "SqliteWorkflowStateService(" in serving["message"]
        assert any(r.get("run_id") == run_id and r.get("step_key") == "mark" for r in records), records
    else:
        assert "pikku.worker: pikku-worker" in text and "StoreQueue(" in text
        assert f"step mark of run {run_id} (sq_chain) attempt 1 succeeded" in text


def test_the_analyzer_logs_under_pikku_analyzer(caplog: pytest.LogCaptureFixture) -> None:
    import pikku_analyzer

    caplog.set_level(logging.DEBUG, logger="pikku")
    pikku_analyzer.analyze(pikku_analyzer.load_config(ROOT / "examples"), use_cache=False)
    (record,) = _records(caplog, "pikku.analyzer")
    assert record.levelname == "DEBUG" and " files, " in record.getMessage()
