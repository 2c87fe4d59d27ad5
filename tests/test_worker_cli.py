"""``pikku-worker``: loading the app, one-line errors with distinct exit codes, clean stops on
SIGTERM/SIGINT (in-flight jobs finish), one log line per job, ``migrate``.

Real processes. The tests that need a PostgreSQL server skip without
``PIKKU_TEST_POSTGRES_DSN``; the others use an unreachable address or the in-memory store."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_support import create_schema_dsn, drop_schema_dsn, requires_postgres
from registry_support import isolated_registry

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "host=127.0.0.1 port=9 dbname=nope connect_timeout=2"

APP = textwrap.dedent(
    '''
    import asyncio
    import os

    from pikku_typing import (
        InMemoryWorkflowStateService, PostgresQueue, PostgresWorkflowStateService, Workflow,
        WorkflowRuntime, pikku_func, wire_workflow,
    )

    @pikku_func(name="cli.slow")
    async def slow(data: int) -> int:
        marker = os.environ.get("CLI_MARKER")
        if marker:
            open(marker, "a").write("started\\n")
        await asyncio.sleep(float(os.environ.get("CLI_STEP_SECONDS", "0")))
        return data + 1

    async def flow(workflow: Workflow, n: int) -> int:
        return await workflow.do("slow", "cli.slow", n)

    wire_workflow(name="cli", func=flow, execution_mode="remote")

    DSN = os.environ.get("CLI_DSN", "")
    not_a_runtime = 42

    def make_runtime() -> WorkflowRuntime:
        return WorkflowRuntime(InMemoryWorkflowStateService())

    async def make_runtime_async() -> WorkflowRuntime:
        return WorkflowRuntime(InMemoryWorkflowStateService())

    if DSN:
        runtime = WorkflowRuntime(
            PostgresWorkflowStateService(DSN, connect_timeout=2),
            PostgresQueue(DSN, poll_interval=0.1, connect_timeout=2),
            eager_steps=os.environ.get("CLI_EAGER", "1") == "1",
        )
    else:
        runtime = WorkflowRuntime(InMemoryWorkflowStateService())
    '''
)

BROKEN = "import nonexistent_dependency_xyz\n"
RAISES = "raise RuntimeError('boom at import')\n"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "cli_app.py").write_text(APP)
    (tmp_path / "broken_app.py").write_text(BROKEN)
    (tmp_path / "raising_app.py").write_text(RAISES)
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLI_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pikku_typing.runtime.worker_cli", *args]


def run_cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _argv(*args), cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("pikku-worker: error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# ------------------------------------------------------------ loading errors


@pytest.mark.parametrize(
    ("target", "needles"),
    [
        ("no_such_module_abc:runtime", ("cannot import module 'no_such_module_abc'",)),
        ("cli_app:nope", ("module 'cli_app' has no attribute 'nope'",)),
        ("cli_app:not_a_runtime", ("'cli_app:not_a_runtime' is a int, not a WorkflowRuntime",)),
        ("cli_app", ("expected MODULE:RUNTIME",)),
        ("broken_app:runtime", ("importing 'broken_app' failed", "nonexistent_dependency_xyz")),
        ("raising_app:runtime", ("importing 'raising_app' failed", "RuntimeError: boom at import")),
    ],
)
def test_bad_target_is_a_one_line_usage_error(
    app_dir: Path, target: str, needles: tuple[str, ...]
) -> None:
    assert_one_line_error(run_cli(app_dir, target), 2, *needles)


def test_bad_options_are_usage_errors(app_dir: Path) -> None:
    assert_one_line_error(run_cli(app_dir, "cli_app:runtime", "--concurrency", "0"), 2, "at least 1")
    proc = run_cli(app_dir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert_one_line_error(run_cli(app_dir, "migrate"), 2, "--dsn")


def test_unreachable_database_exits_3_with_one_line(app_dir: Path) -> None:
    proc = run_cli(app_dir, "cli_app:runtime", CLI_DSN=UNREACHABLE)
    assert_one_line_error(proc, 3, "PostgreSQL at 127.0.0.1:9/nope is unavailable", "refused")


def test_migrate_unreachable_database_exits_3(app_dir: Path) -> None:
    proc = run_cli(app_dir, "migrate", "--dsn", UNREACHABLE)
    assert_one_line_error(proc, 3, "127.0.0.1:9/nope", "unavailable")


# ------------------------------------------------------------ serving and stopping


def _wait_for(proc: subprocess.Popen[str], predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        if proc.poll() is not None:
            _out, err = proc.communicate()
            raise AssertionError(f"worker exited early ({proc.returncode}): {err[-2000:]}")
        time.sleep(0.02)
    raise AssertionError("timed out")


def _popen(cwd: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _argv(*args), cwd=cwd, env=_env(**env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize(
    ("target", "signum"),
    [
        ("cli_app:runtime", signal.SIGTERM),
        ("cli_app:make_runtime", signal.SIGINT),
        ("cli_app:make_runtime_async", signal.SIGTERM),
    ],
)
def test_memory_runtime_stops_cleanly_on_signal(app_dir: Path, target: str, signum: int) -> None:
    ready = app_dir / "ready"
    # the worker logs "serving" once it runs; wait for the log file line through stderr
    proc = _popen(app_dir, target, "--log-level", "INFO")
    deadline = time.monotonic() + 60
    err_lines: list[str] = []
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        err_lines.append(line)
        if "serving" in line:
            break
        if not line and proc.poll() is not None:
            break
    assert any("serving" in line for line in err_lines), err_lines
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(err_lines) + err
    assert "Traceback" not in err
    assert "stopped" in err
    assert not ready.exists()


@pytest.mark.skipif(shutil.which("pikku-worker") is None, reason="console script not installed")
def test_console_script_is_installed(app_dir: Path) -> None:
    proc = subprocess.run(
        ["pikku-worker", "no_such_module_abc:runtime"], cwd=app_dir, env=_env(),
        capture_output=True, text=True, timeout=60,
    )
    assert_one_line_error(proc, 2, "cannot import module")


# ------------------------------------------------------------ on PostgreSQL


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    dsn = create_schema_dsn()
    yield dsn
    drop_schema_dsn(dsn)


async def _start(dsn: str, app_dir: Path, inputs: list[int]) -> list[str]:
    sys.path.insert(0, str(app_dir))
    os.environ["CLI_DSN"] = dsn
    try:
        import cli_app  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(app_dir))
        os.environ.pop("CLI_DSN", None)
    rt = cli_app.runtime
    try:
        return [(await rt.client("cli").start(n)).run_id for n in inputs]
    finally:
        await rt.queue.close()
        await rt.state.close()


async def _outputs(dsn: str, run_ids: list[str]) -> list[object]:
    from pikku_typing import PostgresWorkflowStateService

    async with PostgresWorkflowStateService(dsn) as store:
        return [(r.status.value, r.output) for r in [await store.get_run(i) for i in run_ids]]


@pytest.fixture
def clean_app() -> Iterator[None]:
    with isolated_registry(clear=False):
        yield
        sys.modules.pop("cli_app", None)


@pytest.mark.postgres
@requires_postgres
@pytest.mark.usefixtures("clean_app")
def test_migrate_is_idempotent(app_dir: Path, pg_dsn: str) -> None:
    for _ in range(2):
        proc = run_cli(app_dir, "migrate", "--dsn", pg_dsn)
        assert proc.returncode == 0, proc.stderr
        from pikku_typing.state.postgres import SCHEMA_VERSION

        assert f"pikku schema version {SCHEMA_VERSION}" in proc.stdout
        assert "procrastinate schema ready" in proc.stdout


@pytest.mark.postgres
@requires_postgres
@pytest.mark.usefixtures("clean_app")
@pytest.mark.parametrize("eager", ["1", "0"])
def test_sigterm_lets_the_in_flight_job_finish_then_exits_0(
    app_dir: Path, pg_dsn: str, eager: str
) -> None:
    dsn = pg_dsn
    marker = app_dir / "started.txt"
    run_ids = asyncio.run(_start(dsn, app_dir, [1, 2]))
    proc = _popen(
        app_dir, "cli_app:runtime", "--concurrency", "1",
        CLI_DSN=dsn, CLI_MARKER=str(marker), CLI_STEP_SECONDS="1.0", CLI_EAGER=eager,
    )
    _wait_for(proc, lambda: marker.exists())
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    # one line per job: "orchestrate cli run=<id> ..." / "step cli run=<id> step=slow ..."
    job_lines = [line for line in err.splitlines() if " run=" in line]
    assert job_lines and all(line.count(" run=") == 1 for line in job_lines)
    if eager == "1":  # the step ran in the pass that reached it: the in-flight job is that pass
        assert any(" orchestrate cli run=" in line and line.endswith("ok") for line in job_lines)
        assert not any(" step cli run=" in line for line in job_lines)
    else:
        assert any(
            " step cli run=" in line and "step=slow" in line and line.endswith("ok")
            for line in job_lines
        )
    # the in-flight step finished (its result is stored); the worker took no new job after
    # the signal, so the rest is still queued and completes on the next worker
    statuses = asyncio.run(_outputs(dsn, run_ids))
    assert marker.read_text().count("started") == 1
    proc2 = _popen(
        app_dir, "cli_app:runtime", CLI_DSN=dsn, CLI_MARKER=str(marker), CLI_STEP_SECONDS="0"
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            statuses = asyncio.run(_outputs(dsn, run_ids))
            if all(s == "completed" for s, _ in statuses):  # type: ignore[misc]
                break
            time.sleep(0.1)
    finally:
        proc2.send_signal(signal.SIGINT)
        _, err2 = proc2.communicate(timeout=60)
    assert proc2.returncode == 0, err2[-3000:]
    assert statuses == [("completed", 2), ("completed", 3)]
    assert marker.read_text().count("started") == 2  # each step ran once


@pytest.mark.usefixtures("clean_app")
def test_database_going_away_is_not_a_traceback(app_dir: Path) -> None:
    """A worker whose database is unreachable at start exits 3 within the connect timeout."""
    started = time.monotonic()
    proc = run_cli(app_dir, "cli_app:runtime", CLI_DSN=UNREACHABLE)
    assert_one_line_error(proc, 3, "unavailable")
    assert time.monotonic() - started < 60


FILE_APP = textwrap.dedent(
    '''
    import os

    from pikku_typing import FileWorkflowStateService, Workflow, WorkflowRuntime, pikku_func, wire_workflow

    @pikku_func(name="file.inc")
    def inc(data: int) -> int:
        return data + 1

    async def flow(workflow: Workflow, n: int) -> int:
        return await workflow.do("inc", "file.inc", n)

    wire_workflow(name="filewf", func=flow, execution_mode="remote")
    # eager off: the step runs as its own job (eager, it would run inside the pass)
    runtime = WorkflowRuntime(FileWorkflowStateService(os.environ["CLI_STATE"]), eager_steps=False)
    '''
)


@pytest.mark.usefixtures("clean_app")
def test_recover_on_a_file_store_logs_one_line_per_job(tmp_path: Path) -> None:
    (tmp_path / "file_app.py").write_text(FILE_APP)
    state = tmp_path / "state"
    start = (
        "import asyncio, file_app\n"
        "async def main():\n"
        "    print((await file_app.runtime.client('filewf').start(41)).run_id)\n"
        "asyncio.run(main())\n"
    )
    env = _env(CLI_STATE=str(state))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp_path)])
    run_id = subprocess.run(
        [sys.executable, "-c", start], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout.strip()
    proc = subprocess.Popen(
        _argv("file_app:runtime", "--recover"), cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # orchestrate, step, orchestrate
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if sum(f"run={run_id}" in x for x in lines) >= 3:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    lines += err.splitlines()
    assert proc.returncode == 0, "".join(lines)
    assert any("recover: queued a pass for 1 unsettled run" in x for x in lines)
    jobs = [x for x in lines if f"run={run_id}" in x]
    assert any(" step filewf run=" in x and "step=inc" in x and x.rstrip().endswith("ok") for x in jobs), lines
    assert any(" orchestrate filewf run=" in x for x in jobs)
