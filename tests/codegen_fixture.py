"""A hand-made ``AnalysisReport`` equivalent to the analyzer's report of ``examples/``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pikku_analyzer.config import PikkuConfig
from pikku_typing.meta import (
    AnalysisReport,
    InlineStepMeta,
    RpcMeta,
    RpcStepMeta,
    SleepStepMeta,
    WorkflowMeta,
)


def example_report() -> AnalysisReport:
    return AnalysisReport(
        workflows=[
            WorkflowMeta(
                name="onboarding",
                description="Create a user, send the welcome email and follow-ups",
                execution_mode="remote",
                tags=["users"],
                docs={"summary": "User onboarding", "owner": "growth"},
                func="app.onboarding:onboarding",
                file="app/onboarding.py",
                line=15,
                input_type="app.types.OnboardingInput",
                output_type="app.types.OnboardingOutput",
                steps=[
                    RpcStepMeta(
                        step_name="createUser",
                        rpc_name="users.create",
                        description="Create the account",
                        line=16,
                        column=18,
                        retries=3,
                        retry_delay="2s",
                    ),
                    InlineStepMeta(step_name="calcTax", line=24, column=17),
                    RpcStepMeta(
                        step_name="sendWelcome", rpc_name="emails.send", line=25, column=11
                    ),
                    SleepStepMeta(
                        step_name="coolOff",
                        duration="1s",
                        description="Let the welcome email land",
                        line=28,
                        column=11,
                    ),
                    InlineStepMeta(step_name="loadProfile", line=34, column=21),
                    RpcStepMeta(
                        step_name="<dynamic>",
                        rpc_name="emails.send",
                        description="Send a follow-up email",
                        line=37,
                        column=15,
                        in_loop=True,
                    ),
                ],
            )
        ],
        rpcs=[
            RpcMeta(
                name="users.create",
                func="app.rpcs:create_user",
                input_type="app.types.CreateUserInput",
                output_type="app.types.User",
                file="app/rpcs.py",
                line=20,
            ),
            RpcMeta(
                name="users.get",
                func="app.rpcs:get_user",
                input_type="app.types.GetUserInput",
                output_type="app.types.User",
                file="app/rpcs.py",
                line=27,
            ),
            RpcMeta(
                name="emails.send",
                func="app.rpcs:send_email",
                input_type="app.types.WelcomeEmail",
                output_type="app.types.EmailReceipt",
                is_async=False,
                file="app/rpcs.py",
                line=36,
            ),
        ],
    )


REPO = Path(__file__).resolve().parents[1]


def examples_config() -> PikkuConfig:
    """``examples/pyproject.toml``'s ``[tool.pikku]``: package ``pikku_gen``, ``.py`` in
    ``examples/``, ``.pyi`` in ``stubs/``."""
    root = REPO / "examples"
    return PikkuConfig(
        root=root,
        src=(root / "app",),
        package="pikku_gen",
        out_dir=root,
        stub_dir=REPO / "stubs",
    )


def report_of_examples() -> AnalysisReport:
    """The analyzer's report of ``examples/`` (``pikku-analyze --format json --no-generate``);
    the hand-made equivalent while the analyzer cannot produce it."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pikku_analyzer.cli",
            str(REPO / "examples"),
            "--format",
            "json",
            "--no-generate",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode in (0, 1) and proc.stdout.lstrip().startswith("{"):
        return AnalysisReport.model_validate_json(proc.stdout)
    return example_report()


# ------------------------------------------------------------------ running the real checkers


@dataclass(frozen=True)
class Finding:
    """One diagnostic of pyright or mypy: ``kind`` is ``error`` or ``reveal`` (reveal_type)."""

    file: Path
    line: int
    kind: str
    message: str


def start_pyright(project: Path) -> subprocess.Popen[str]:
    """``pyright --outputjson -p project`` (started; see :func:`pyright_findings`)."""
    return subprocess.Popen(
        ["pyright", "--outputjson", "-p", str(project)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pyright_findings(proc: subprocess.Popen[str]) -> list[Finding]:
    out, err = proc.communicate(timeout=600)
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"pyright gave no JSON (exit {proc.returncode}): {err}{out}") from None
    findings: list[Finding] = []
    for diag in data["generalDiagnostics"]:
        severity = diag["severity"]
        message = diag["message"]
        if severity == "information" and message.startswith("Type of "):
            kind = "reveal"
        elif severity in ("error", "warning"):
            kind = "error"
        else:
            continue
        line = diag["range"]["start"]["line"] + 1
        findings.append(Finding(Path(diag["file"]).resolve(), line, kind, message))
    return findings


def start_mypy(
    args: list[str], *, cwd: Path, cache_dir: Path, mypy_path: list[Path] | None = None
) -> subprocess.Popen[str]:
    """``mypy -O json ...`` (started; see :func:`mypy_findings`)."""
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    if mypy_path is not None:
        env["MYPYPATH"] = os.pathsep.join(str(p) for p in mypy_path)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mypy",
            "-O",
            "json",
            "--cache-dir",
            str(cache_dir),
            "--no-error-summary",
            *args,
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def mypy_findings(proc: subprocess.Popen[str], cwd: Path) -> list[Finding]:
    out, err = proc.communicate(timeout=600)
    if proc.returncode not in (0, 1):
        raise AssertionError(f"mypy crashed (exit {proc.returncode}): {err}{out}")
    findings: list[Finding] = []
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        diag = json.loads(line)
        message = diag["message"]
        if diag["severity"] == "note" and message.startswith("Revealed type is "):
            kind = "reveal"
        elif diag["severity"] == "error":
            kind = "error"
            if diag.get("hint"):
                message += "\n" + diag["hint"]
        else:
            continue
        findings.append(Finding((cwd / diag["file"]).resolve(), diag["line"], kind, message))
    return findings
