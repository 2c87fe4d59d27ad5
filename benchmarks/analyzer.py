"""Benchmark ``pikku-analyze`` against ``ruff check`` on a generated 2000-module tree.

    python benchmarks/analyzer.py [--modules 2000] [--workflows 100] [--runs 7] [--keep DIR]

The tree: ``--modules`` modules of ~160 lines (~320k lines for 2000), ``--workflows`` of
them with a workflow of 8 steps (RPC, inline and sleep) and an RPC. Timed, in the same run,
each ``--runs`` times (medians printed):

* ``pikku-analyze --no-generate`` cold: the cache folder is deleted before each run;
* ``pikku-analyze --no-generate`` warm: the cache is filled by the previous run;
* the same two with ``--check-syntax`` (the files that do not mention pikku are
  syntax-checked too, as ruff does; off by default): the cost of the option;
* ``ruff check --no-cache`` on the same tree.

Targets (issue 16), for the default mode: cold <= 1x ruff, warm <= 0.5x ruff. Printed as wall
and CPU (user + system of the process and its workers) ratios; on a shared, loaded machine
the CPU time is the fairer figure, so the exit code (1 when a target is missed) follows the
CPU ratios. ``--check-syntax`` has no target: its ratios are printed for information.

Python's bytecode cache is allowed for ``pikku-analyze`` (``PYTHONDONTWRITEBYTECODE`` is
removed from its environment), as for a package installed from a wheel, whose ``.pyc`` files
are compiled at install time; ``--no-bytecode-cache`` measures without it (every run then
recompiles the analyzer's own modules, ~0.1 s).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FILLER_FUNC = '''

def helper_{i}_{j}(values: list[int], factor: int = {j}) -> dict[str, int]:
    """Aggregate ``values`` (filler {i}.{j})."""
    total = 0
    seen: dict[str, int] = {{}}
    for index, value in enumerate(values):
        if value % 2 == 0:
            total += value * factor
        else:
            total -= value
        key = f"k{{index % 7}}"
        seen[key] = seen.get(key, 0) + 1
    if total > 1000:
        seen["big"] = total
    return seen
'''

FILLER_CLASS = '''

class Record{i}_{j}:
    """A small record type (filler {i}.{j})."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size

    def describe(self) -> str:
        return f"{{self.name}}:{{self.size}}"

    def grow(self, by: int) -> "Record{i}_{j}":
        return Record{i}_{j}(self.name, self.size + by)
'''

HEADER = '''"""Generated module {i} for the analyzer benchmark."""

from __future__ import annotations

import json
import os.path
from dataclasses import dataclass

CONSTANT_{i} = {i}
'''

WORKFLOW = '''

@pikku_func(name="svc{i}.process")
async def process_{i}(data: Input{i}) -> Output{i}:
    return {{"total": len(data["items"])}}


async def workflow_{i}(workflow: Workflow, data: Input{i}) -> Output{i}:
    first = await workflow.do("load{i}", "svc{i}.process", {{"items": data["items"]}})
    doubled = await workflow.do("double{i}", lambda: first["total"] * 2)
    await workflow.sleep("pause{i}", "5s")
    second = await workflow.do(
        "again{i}", "svc{i}.process", {{"items": data["items"]}}, retries=2, retry_delay="1s"
    )
    if doubled > 10:
        await workflow.do("big{i}", lambda: doubled + 1)
    else:
        await workflow.do("small{i}", lambda: doubled - 1)
    for item in data["items"]:
        await workflow.do(f"item-{{item}}", "svc{i}.process", {{"items": [item]}}, description="per item")
    await workflow.sleep("rest{i}", 60)
    return {{"total": second["total"] + doubled}}


wire_workflow(name="wf{i}", func=workflow_{i}, description="benchmark workflow {i}", tags=["bench"])
'''

WORKFLOW_HEADER = '''
from typing import TypedDict

from pikku_typing import Workflow, pikku_func, wire_workflow


class Input{i}(TypedDict):
    items: list[str]


class Output{i}(TypedDict):
    total: int
'''


def module_source(i: int, workflow: bool) -> str:
    parts = [HEADER.format(i=i)]
    if workflow:
        parts.append(WORKFLOW_HEADER.format(i=i))
        parts.append(WORKFLOW.format(i=i))
        for j in range(4):
            parts.append(FILLER_FUNC.format(i=i, j=j))
    else:
        for j in range(4):
            parts.append(FILLER_FUNC.format(i=i, j=j))
            parts.append(FILLER_CLASS.format(i=i, j=j))
        parts.append(FILLER_FUNC.format(i=i, j=8))
        parts.append(FILLER_FUNC.format(i=i, j=9))
    return "".join(parts)


def generate(root: Path, modules: int, workflows: int) -> int:
    """Write the tree; returns the number of lines."""
    (root / "pyproject.toml").write_text(
        '[project]\nname = "bench"\nversion = "0"\n\n[tool.pikku]\nsrc = ["."]\n'
        '\n[tool.ruff]\nline-length = 120\n',
        encoding="utf-8",
    )
    package = root / "benchapp"
    lines = 0
    step = max(1, modules // max(workflows, 1))
    workflow_ids = set(range(0, modules, step)[:workflows])
    for i in range(modules):
        sub = package / f"pkg{i // 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        init = sub / "__init__.py"
        if not init.exists():
            init.write_text("", encoding="utf-8")
        text = module_source(i, i in workflow_ids)
        (sub / f"mod{i:04d}.py").write_text(text, encoding="utf-8")
        lines += text.count("\n")
    (package / "__init__.py").write_text("", encoding="utf-8")
    return lines


CPU: dict[str, list[float]] = {}
"""CPU seconds (user + system) of each timed command, by label: less sensitive to a loaded machine."""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(
    cmd: list[str],
    cwd: Path,
    before: object = None,
    env: dict[str, str] | None = None,
    label: str = "",
) -> float:
    if callable(before):
        before()
    cpu_before = _cpu()
    started = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False, env=env
    )
    elapsed = time.perf_counter() - started
    if label:
        CPU.setdefault(label, []).append(_cpu() - cpu_before)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=2000)
    parser.add_argument("--workflows", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None, help="generate into DIR and keep it")
    parser.add_argument(
        "--no-bytecode-cache", action="store_true", help="keep PYTHONDONTWRITEBYTECODE for pikku-analyze"
    )
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if not args.no_bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)

    analyze = shutil.which("pikku-analyze")
    ruff = shutil.which("ruff")
    if analyze is None or ruff is None:
        print("pikku-analyze and ruff must be on PATH", file=sys.stderr)
        return 2
    tmp = None
    if args.keep is not None:
        root = args.keep
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="pikku-bench-")
        root = Path(tmp)
    try:
        lines = generate(root, args.modules, args.workflows)
        print(f"tree: {args.modules} modules, {args.workflows} workflows, {lines} lines at {root}")
        cache = root / ".pikku" / "cache"

        def clear() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        cmd = [analyze, "--no-generate", "--no-progress", str(root)]
        full = [*cmd, "--check-syntax"]
        # sanity: the analyzer finds every workflow
        out = subprocess.run(
            [analyze, "--no-generate", "--no-cache", "--format", "json", str(root)],
            capture_output=True, text=True, check=False,
        )
        import json

        report = json.loads(out.stdout)
        found = len(report["workflows"])
        steps = sum(len(w["steps"]) for w in report["workflows"])
        print(f"bytecode cache for pikku-analyze: {'off' if args.no_bytecode_cache else 'on'}")
        print(f"found {found} workflows, {steps} steps, {len(report['rpcs'])} rpcs, "
              f"{len(report['diagnostics'])} diagnostics")
        # warm-up of the OS file cache
        _time([ruff, "check", "--no-cache", str(root)], root)
        _time(cmd, root, clear, env)
        wall: dict[str, list[float]] = {}
        for _ in range(args.runs):
            for label, command, before in (
                ("ruff", [ruff, "check", "--no-cache", str(root)], None),
                ("cold", cmd, clear),
                ("warm", cmd, None),
                ("cold --check-syntax", full, clear),
                ("warm --check-syntax", full, None),
            ):
                run_env = None if label == "ruff" else env
                wall.setdefault(label, []).append(_time(command, root, before, run_env, label=label))
        r, cpu_r = statistics.median(wall["ruff"]), statistics.median(CPU["ruff"])
        print(f"{'ruff check --no-cache':<34} wall {r:.3f}s  CPU {cpu_r:.3f}s  "
              f"(wall runs: {', '.join(f'{x:.3f}' for x in wall['ruff'])})")
        targets = {"cold": 1.0, "warm": 0.5}
        met = True
        for label in ("cold", "warm", "cold --check-syntax", "warm --check-syntax"):
            w, c = statistics.median(wall[label]), statistics.median(CPU[label])
            target = targets.get(label)
            verdict = ""
            if target is not None:
                ok = c / cpu_r <= target
                met = met and ok
                verdict = (f"  target <= {target:g}x: CPU {'met' if ok else 'MISSED'}, "
                           f"wall {'met' if w / r <= target else 'missed'}")
            print(f"{'pikku-analyze ' + label:<34} wall {w:.3f}s ({w / r:.2f}x)  "
                  f"CPU {c:.3f}s ({c / cpu_r:.2f}x){verdict}")
            print(f"{'':<34} (wall runs: {', '.join(f'{x:.3f}' for x in wall[label])})")
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs "
              "(CPU time is the fairer figure on a loaded machine)")
        return 0 if met else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
