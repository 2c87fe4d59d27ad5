"""``pikku-runs`` on the file and SQLite stores: runs written to a store directly (through the
store contract), and runs made by the real runtime."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn
from registry_support import isolated_registry

from pikku_typing import Workflow, WorkflowRuntime, _clock, pikku_func, wire_workflow
from pikku_typing.models import (
    ClaimOwner,
    ErrorInfo,
    RunStatus,
    StepKind,
    StepState,
    StepStatus,
)
from pikku_typing.runtime import runs_cli
from pikku_typing.state import open_store
from pikku_typing.state.base import RunChanges, WorkflowStateService

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["file", "sqlite", pytest.param("postgres", marks=POSTGRES_MARKS)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "file":
        yield f"file:{tmp_path / 'state'}"
    elif request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'runs.db'}"
    else:
        dsn = create_schema_dsn("pikku_runs_cli_")
        try:
            yield f"postgres:{dsn}"
        finally:
            drop_schema_dsn(dsn)


def _open(url: str) -> WorkflowStateService:
    try:
        return open_store(url)
    except NotImplementedError as exc:  # a store still being written
        pytest.skip(str(exc))


def _owner(token: str) -> ClaimOwner:
    return ClaimOwner(host="test-host", pid=os.getpid(), token=token)


async def _make_runs(url: str) -> dict[str, str]:
    """A completed, a failed (at its 3rd attempt of `chargeCard`), a sleeping and a running
    run, written through the store contract as the runtime would."""
    ids: dict[str, str] = {}
    async with _open(url) as store:
        # completed: two steps
        run = await store.create_run("onboarding", {"email": "a@example.com"}, run_id="run-ok")
        await store.insert_step(run.id, StepState(
            key="createUser", step_name="createUser", kind=StepKind.RPC,
            rpc_name="users.create", max_attempts=6))
        await store.claim_step(run.id, "createUser", owner=_owner("t1"), lease_seconds=30)
        await store.complete_step(run.id, "createUser", result={"id": "u1"}, token="t1")
        await store.insert_step(run.id, StepState(
            key="calcTax", step_name="calcTax", kind=StepKind.INLINE, max_attempts=6))
        await store.claim_step(run.id, "calcTax", owner=_owner("t2"), lease_seconds=30)
        await store.complete_step(run.id, "calcTax", result=0.8, token="t2")
        await store.update_run(run.id, RunChanges(status=RunStatus.COMPLETED,
                                                  output={"user_id": "u1"}))
        ids["ok"] = run.id

        # failed at chargeCard, attempt 3 of 3
        run = await store.create_run("billing", {"amount": 10}, run_id="run-failed")
        await store.insert_step(run.id, StepState(
            key="loadCustomer", step_name="loadCustomer", kind=StepKind.RPC,
            rpc_name="customers.get", max_attempts=3))
        await store.claim_step(run.id, "loadCustomer", owner=_owner("a"), lease_seconds=30)
        await store.complete_step(run.id, "loadCustomer", result={"id": "c1"}, token="a")
        await store.insert_step(run.id, StepState(
            key="chargeCard", step_name="chargeCard", kind=StepKind.RPC,
            rpc_name="payments.charge", max_attempts=3, data={"amount": 10}))
        for attempt in range(1, 4):
            token = f"charge-{attempt}"
            claimed = await store.claim_step(run.id, "chargeCard", owner=_owner(token),
                                             lease_seconds=30)
            assert claimed is not None
            await store.fail_step_attempt(
                run.id, "chargeCard", token=token,
                error=ErrorInfo(type="CardDeclined", message=f"card declined (try {attempt})",
                                traceback="Traceback (most recent call last):\n  ...\n"
                                          f"CardDeclined: card declined (try {attempt})"),
                retry_at=datetime.now(UTC) if attempt < 3 else None)
        await store.update_run(run.id, RunChanges(
            status=RunStatus.FAILED,
            error=ErrorInfo(type="CardDeclined", message="card declined (try 3)",
                            step="chargeCard")))
        ids["failed"] = run.id

        # suspended on a sleep that ends in an hour
        run = await store.create_run("onboarding", {"email": "b@example.com"},
                                     run_id="run-sleeping")
        wake = datetime.now(UTC) + timedelta(hours=1)
        await store.insert_step(run.id, StepState(key="coolOff", step_name="coolOff",
                                                  kind=StepKind.SLEEP))
        await store.schedule_step(run.id, "coolOff", at=wake)
        await store.update_run(run.id, RunChanges(status=RunStatus.SUSPENDED, wake_at=wake))
        ids["sleeping"] = run.id

        # running (an orchestrator pass holds it)
        run = await store.create_run("onboarding", {"email": "c@example.com"},
                                     run_id="run-running")
        await store.update_run(run.id, RunChanges(owner=_owner("orch")))
        ids["running"] = run.id
    return ids


def _ticking_clock(step: float = 0.5) -> Any:
    """A clock that moves ``step`` seconds at every reading: the attempts written by
    :func:`_make_runs` are apart in time however fast the machine writes them (on a loaded
    machine, attempts a few ms apart once shared one mark of the timeline)."""
    start = datetime.now(UTC)
    readings = iter(range(1_000_000))
    return lambda: start + timedelta(seconds=step * next(readings))


@pytest.fixture
def runs(store_url: str) -> Iterator[dict[str, str]]:
    with _clock.using(_ticking_clock()):
        made = asyncio.run(_make_runs(store_url))
    yield made


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = runs_cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _steps(url: str, run_id: str) -> dict[str, StepState]:
    async def read() -> dict[str, StepState]:
        async with _open(url) as store:
            return await store.get_step_states(run_id)
    return asyncio.run(read())


def _run_status(url: str, run_id: str) -> Any:
    async def read() -> Any:
        async with _open(url) as store:
            return await store.get_run(run_id)
    return asyncio.run(read())


# ------------------------------------------------------------------------------ list


def test_list_text_and_filters(
    capsys: pytest.CaptureFixture[str], store_url: str, runs: dict[str, str]
) -> None:
    code, out, err = cli(capsys, "--store", store_url, "list")
    assert code == 0, err
    for run_id in runs.values():
        assert run_id in out
    assert "4 runs" in out
    assert "[chargeCard] CardDeclined: card declined (try 3)" in out
    assert "\x1b[" not in out  # not a TTY: no colour

    code, out, _ = cli(capsys, "--store", store_url, "list", "--workflow", "billing")
    assert code == 0 and "run-failed" in out and "run-ok" not in out

    code, out, _ = cli(capsys, "list", "--store", store_url, "--status", "failed,suspended")
    assert code == 0
    assert "run-failed" in out and "run-sleeping" in out and "run-ok" not in out

    code, out, _ = cli(capsys, "--store", store_url, "list", "--limit", "1")
    assert code == 0 and "1 run" in out


def test_list_json(capsys: pytest.CaptureFixture[str], store_url: str,
                   runs: dict[str, str]) -> None:
    code, out, _ = cli(capsys, "--store", store_url, "--format", "json", "list",
                       "--status", "completed")
    assert code == 0
    data = json.loads(out)
    assert [r["id"] for r in data["runs"]] == ["run-ok"]
    assert data["runs"][0]["output"] == {"user_id": "u1"}
    assert data["runs"][0]["status"] == "completed"


def test_list_bad_status_is_a_usage_error(capsys: pytest.CaptureFixture[str], store_url: str,
                                          runs: dict[str, str]) -> None:
    code, _out, err = cli(capsys, "--store", store_url, "list", "--status", "exploded")
    assert code == 2
    assert err.count("\n") == 1 and "unknown status 'exploded'" in err


# ------------------------------------------------------------------------------ show


def test_show_explains_a_failed_run(capsys: pytest.CaptureFixture[str], store_url: str,
                                    runs: dict[str, str]) -> None:
    code, out, err = cli(capsys, "--store", store_url, "show", "run-failed")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["Run", "run-failed", "billing", "failed"]
    # which step, which attempt, which error: one line near the top
    headline = next(line for line in lines if line.startswith("FAILED"))
    assert headline == "FAILED at step chargeCard (rpc payments.charge), attempt 3 of 3"
    assert lines.index(headline) < 8
    assert "error   CardDeclined: card declined (try 3)" in out
    assert "attempt 1 failed at" in out and "card declined (try 1)" in out
    assert "attempt 2 failed at" in out
    # the step table
    row = next(line for line in lines if line.strip().startswith("chargeCard "))
    assert row.split()[:5] == ["chargeCard", "rpc", "payments.charge", "failed", "3/3"]
    row = next(line for line in lines if line.strip().startswith("loadCustomer "))
    assert row.split()[:5] == ["loadCustomer", "rpc", "customers.get", "succeeded", "1/3"]
    # the timeline: three failed attempts of chargeCard
    timeline = lines[next(i for i, line in enumerate(lines) if line.startswith("Timeline")):]
    charge = next(line for line in timeline if line.strip().startswith("chargeCard"))
    assert charge.count("x") == 3
    assert "#" in next(line for line in timeline if line.strip().startswith("loadCustomer"))
    assert "Traceback" not in out

    code, out, _ = cli(capsys, "--store", store_url, "show", "run-failed", "--traceback")
    assert "CardDeclined: card declined (try 3)" in out and "Traceback (most recent" in out


def test_show_json(capsys: pytest.CaptureFixture[str], store_url: str,
                   runs: dict[str, str]) -> None:
    code, out, _ = cli(capsys, "--store", store_url, "show", "run-failed", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["run"]["id"] == "run-failed" and data["run"]["status"] == "failed"
    assert [s["key"] for s in data["steps"]] == ["loadCustomer", "chargeCard"]
    assert len(data["steps"][1]["attempts"]) == 3
    failure = data["failure"]
    assert failure["step"] == "chargeCard" and failure["attempt"] == 3
    assert failure["rpc_name"] == "payments.charge" and failure["max_attempts"] == 3
    assert failure["error"]["type"] == "CardDeclined"
    assert [a["attempt"] for a in failure["earlier_attempts"]] == [1, 2]

    code, out, _ = cli(capsys, "--store", store_url, "--format", "json", "show", "run-ok")
    data = json.loads(out)
    assert data["failure"] is None and data["run"]["output"] == {"user_id": "u1"}


def test_show_completed_and_sleeping(capsys: pytest.CaptureFixture[str], store_url: str,
                                     runs: dict[str, str]) -> None:
    code, out, _ = cli(capsys, "--store", store_url, "show", "run-ok")
    assert code == 0
    assert 'output  {"user_id": "u1"}' in out and "FAILED" not in out
    assert "calcTax" in out and "inline" in out

    code, out, _ = cli(capsys, "--store", store_url, "show", "run-sleeping")
    assert code == 0
    assert "suspended" in out.splitlines()[0]
    assert "wakes" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("coolOff "))
    assert row.split()[:4] == ["coolOff", "sleep", "-", "scheduled"]


# ----------------------------------------------------------------- errors: one line


@pytest.mark.parametrize("run_id", ["no-such-run", "../../etc/passwd"])
def test_unknown_or_invalid_run_id(capsys: pytest.CaptureFixture[str], store_url: str,
                                   runs: dict[str, str], run_id: str) -> None:
    for command in ("show", "cancel", "resume"):
        code, out, err = cli(capsys, "--store", store_url, command, run_id)
        assert code == 1, (command, err)
        assert out == ""
        assert err.count("\n") == 1 and err.startswith("pikku-runs: "), err
        assert "Traceback" not in err


def test_unreachable_stores(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for url in (f"file:{tmp_path / 'missing'}", f"sqlite:{tmp_path / 'missing.db'}"):
        code, _out, err = cli(capsys, "--store", url, "list")
        assert code == 3, err
        assert err.count("\n") == 1 and "missing" in err
    code, _, err = cli(capsys, "--store", "ftp:somewhere", "list")
    assert code == 2 and err.count("\n") == 1 and "unknown store" in err


def test_unreachable_postgres(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli(capsys, "--store",
                         "postgres:host=127.0.0.1 port=9 dbname=x connect_timeout=2", "list")
    assert code == 3, err
    assert err.count("\n") == 1 and err.startswith("pikku-runs: ")
    assert "Traceback" not in err


def test_console_script_no_traceback(store_url: str, runs: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pikku_typing.runtime.runs_cli", "--store", store_url, "show",
         "nope"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == "" and proc.stderr == "pikku-runs: no run 'nope' in this store\n"
    proc = subprocess.run(
        [sys.executable, "-m", "pikku_typing.runtime.runs_cli", "--store", store_url, "show",
         "run-failed"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "FAILED at step chargeCard" in proc.stdout


# ------------------------------------------------------------------- cancel / resume


def test_cancel(capsys: pytest.CaptureFixture[str], store_url: str,
                runs: dict[str, str]) -> None:
    code, out, _ = cli(capsys, "--store", store_url, "cancel", "run-sleeping")
    assert code == 0 and "cancelled" in out
    run = _run_status(store_url, "run-sleeping")
    assert run.status is RunStatus.CANCELLED and run.cancel_requested

    code, out, _ = cli(capsys, "--store", store_url, "--format", "json", "cancel", "run-running")
    assert code == 0
    data = json.loads(out)
    assert data["cancelled"] is True and data["action"] == "cancel_requested"
    assert data["status"] == "running" and data["cancel_requested"] is True

    code, out, err = cli(capsys, "--store", store_url, "cancel", "run-ok")
    assert code == 1 and "already completed" in err and err.count("\n") == 1
    assert _run_status(store_url, "run-ok").status is RunStatus.COMPLETED


def test_resume_refusals(capsys: pytest.CaptureFixture[str], store_url: str,
                         runs: dict[str, str]) -> None:
    for run_id, why in (("run-ok", "it completed"), ("run-running", "it is running")):
        code, _out, err = cli(capsys, "--store", store_url, "resume", run_id)
        assert code == 1 and why in err and err.count("\n") == 1


def test_resume_suspended_makes_it_due(capsys: pytest.CaptureFixture[str], store_url: str,
                                       runs: dict[str, str]) -> None:
    code, out, err = cli(capsys, "--store", store_url, "--format", "json", "resume",
                         "run-sleeping")
    assert code == 0, err
    assert json.loads(out)["action"] == "woken"
    run = _run_status(store_url, "run-sleeping")
    assert run.status is RunStatus.SUSPENDED
    assert run.wake_at is not None and run.wake_at <= datetime.now(UTC)
    # the sleep itself is not cut short: the replay decides
    assert _steps(store_url, "run-sleeping")["coolOff"].status is StepStatus.SCHEDULED


def test_resume_failed_resets_the_failing_step(capsys: pytest.CaptureFixture[str],
                                               store_url: str, runs: dict[str, str]) -> None:
    code, out, err = cli(capsys, "--store", store_url, "resume", "run-failed")
    if code == 1 and "cannot reset" in err:
        pytest.skip(err)
    assert code == 0, err
    assert "step chargeCard reset" in out
    run = _run_status(store_url, "run-failed")
    assert run.status is RunStatus.SUSPENDED and run.error is None
    steps = _steps(store_url, "run-failed")
    charge = steps["chargeCard"]
    assert charge.status is StepStatus.SCHEDULED and charge.error is None
    assert charge.max_attempts == 4 and len(charge.attempts) == 3  # history kept
    assert steps["loadCustomer"].status is StepStatus.SUCCEEDED
    # resuming again only wakes the (now suspended) run: the step is not reset twice
    code, out, err = cli(capsys, "--store", store_url, "--format", "json", "resume", "run-failed")
    assert code == 0 and json.loads(out)["action"] == "woken"
    assert _steps(store_url, "run-failed")["chargeCard"].max_attempts == 4


# ------------------------------------------------------------ runs made by the runtime

CHARGE_FAILS = {"on": True}


async def _load_customer(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": "c1"}


async def _charge(data: dict[str, Any]) -> dict[str, Any]:
    if CHARGE_FAILS["on"]:
        raise RuntimeError("card declined")
    return {"ok": True}


async def _billing(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
    await workflow.do("loadCustomer", "runs_cli.load", {"id": data["customer"]})
    charged = await workflow.do("chargeCard", "runs_cli.charge", {"amount": 1},
                                retries=1, retry_delay=0)
    await workflow.sleep("coolOff", "1h")
    return {"charged": charged["ok"]}


@pytest.fixture
def billing_workflow() -> Iterator[str]:
    with isolated_registry(clear=False):
        pikku_func(name="runs_cli.load")(_load_customer)
        pikku_func(name="runs_cli.charge")(_charge)
        wire_workflow(name="runs-cli-billing", func=_billing)
        CHARGE_FAILS["on"] = True
        yield "runs-cli-billing"


def test_runs_made_by_the_runtime(capsys: pytest.CaptureFixture[str], store_url: str,
                                  billing_workflow: str) -> None:
    async def start_and_drain() -> str:
        async with WorkflowRuntime(state=_open(store_url)) as runtime:
            handle = await runtime.client(billing_workflow).start({"customer": "c1"})
            await runtime.drain()
            return handle.run_id

    async def recover_and_drain() -> None:
        async with WorkflowRuntime(state=_open(store_url)) as runtime:
            assert await runtime.recover() >= 1
            await runtime.drain()

    run_id = asyncio.run(start_and_drain())
    code, out, err = cli(capsys, "--store", store_url, "show", run_id)
    assert code == 0, err
    assert "FAILED at step chargeCard (rpc runs_cli.charge), attempt 2 of 2" in out
    assert "error   RuntimeError: card declined" in out
    assert "attempt 1 failed at" in out

    # resume: the failing step gets a new attempt; a worker (here: recover + drain) runs it
    code, out, err = cli(capsys, "--store", store_url, "resume", run_id)
    assert code == 0, err
    CHARGE_FAILS["on"] = False
    asyncio.run(recover_and_drain())
    code, out, err = cli(capsys, "--store", store_url, "--format", "json", "show", run_id)
    data = json.loads(out)
    assert data["run"]["status"] == "suspended"  # now sleeping in coolOff
    steps = {s["key"]: s for s in data["steps"]}
    assert steps["loadCustomer"]["attempt_count"] == 1  # never ran again
    assert steps["chargeCard"]["status"] == "succeeded"
    assert [a["status"] for a in steps["chargeCard"]["attempts"]] == [
        "failed", "failed", "succeeded"]
    assert steps["coolOff"]["status"] == "scheduled"

    # cancel through the runtime: a suspended run is cancelled at once
    code, out, err = cli(capsys, "--store", store_url, "cancel", run_id)
    assert code == 0 and "cancelled" in out
    code, out, _ = cli(capsys, "--store", store_url, "--format", "json", "list",
                       "--workflow", billing_workflow)
    assert [r["status"] for r in json.loads(out)["runs"]] == ["cancelled"]
    code, out, err = cli(capsys, "--store", store_url, "cancel", run_id)
    assert code == 1 and out == "" and err == (
        f"pikku-runs: nothing to cancel: run {run_id} is already cancelled\n")


def test_colour_only_on_request_or_tty(capsys: pytest.CaptureFixture[str], store_url: str,
                                       runs: dict[str, str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    code, out, _ = cli(capsys, "--store", store_url, "show", "run-failed")
    assert code == 0 and "\x1b[31m" in out  # the failure in red
    code, out, _ = cli(capsys, "--store", store_url, "--format", "json", "show", "run-failed")
    assert "\x1b[" not in out and json.loads(out)["run"]["id"] == "run-failed"
    monkeypatch.setenv("NO_COLOR", "1")
    code, out, _ = cli(capsys, "--store", store_url, "show", "run-failed")
    assert code == 0 and "\x1b[" not in out


def test_store_urls_are_read_like_the_runtime_reads_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """One URL parser: the forms open_store accepts (``sqlite:///abs``, ``?options``) name the
    same existing store for pikku-runs (a second parser once took ``?synchronous=NORMAL`` as
    part of the file name and said the store did not exist)."""
    import asyncio

    from pikku_typing.state import open_store as open_state_store

    db = tmp_path / "runs.db"

    async def seed() -> str:
        store = open_state_store(f"sqlite:{db}")
        run = await store.create_run("wf", {"n": 1})
        await store.close()
        return run.id

    run_id = asyncio.run(seed())
    for url in (f"sqlite:{db}", f"sqlite://{db}", f"sqlite:{db}?synchronous=NORMAL",
                f"sqlite:{db}?busy_timeout=5"):
        code, out, err = cli(capsys, "--store", url, "list")
        assert code == 0, (url, err)
        assert run_id in out, url
    code, _, err = cli(capsys, "--store", f"sqlite:{db}?bogus=1", "list")
    assert code == 2 and "unknown option" in err and err.count("\n") == 1
