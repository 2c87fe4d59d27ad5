"""Safe-deploy tooling speed: the replayer and the compatibility check.

    python benchmarks/replay.py [--steps 1000] [--rounds 5] [--modules 2000]

1. A run of ``--steps`` inline steps and a 1-day sleep is recorded in a ``WorkflowTestEnv``
   (the sleep completes at once on its clock), then its history is replayed ``--rounds`` times
   with ``pikku_typing.testing.replay``: median milliseconds and microseconds per step (no step
   runs, nothing waits).
2. ``pikku-analyze --baseline`` work on the analyzer's benchmark tree (``benchmarks/analyzer.py``
   generator, ``--modules`` modules, 100 workflows): the type shapes of the meta
   (``with_type_shapes``) and the comparison itself, median of ``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


async def _replay(steps: int, rounds: int) -> dict[str, float]:
    from pikku_typing import Workflow
    from pikku_typing.testing import WorkflowTestEnv, replay
    from pikku_typing.wiring import Registry, WorkflowDefinition

    async def flow(workflow: Workflow, data: dict[str, Any]) -> int:
        total = 0
        for i in range(steps):
            total += await workflow.do(f"s{i}", lambda i=i: i)
        await workflow.sleep("nap", "1d")
        return total

    registry = Registry(workflows={"flow": WorkflowDefinition(name="flow", func=flow, execution_mode="inline")})
    async with WorkflowTestEnv(registry=registry) as env:
        started = time.perf_counter()
        await env.run("flow", {})
        recorded = time.perf_counter() - started
        history = await env.history(env.last_run_id or "")
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = await replay(history, registry=registry)
        times.append(time.perf_counter() - started)
    assert result.ok and len(result.replayed_steps) == steps + 1
    median = statistics.median(times)
    return {"record_s": recorded, "replay_ms": median * 1000, "us_per_step": median / (steps + 1) * 1e6}


def _compat(modules: int, rounds: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import analyzer as tree  # the analyzer benchmark's generator

    from pikku_analyzer import analyze, load_config
    from pikku_analyzer.codegen.render import meta_json
    from pikku_analyzer.compat import compare, parse_baseline
    from pikku_analyzer.shapes import _PARSED, with_type_shapes

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tree.generate(root, modules, 100)
        config = load_config(root)
        report = analyze(config, use_cache=False).report
        shapes, compares = [], []
        for _ in range(rounds):
            _PARSED.clear()  # cold: every type module parsed again
            started = time.perf_counter()
            current = with_type_shapes(report, config)
            shapes.append(time.perf_counter() - started)
        baseline = parse_baseline(meta_json(current), "baseline")
        for _ in range(rounds):
            started = time.perf_counter()
            findings = compare(baseline, current, root=config.root)
            compares.append(time.perf_counter() - started)
        assert findings == []
        return {
            "types": float(len(current.types)),
            "shapes_ms": statistics.median(shapes) * 1000,
            "compare_ms": statistics.median(compares) * 1000,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modules", type=int, default=2000)
    args = parser.parse_args(argv)
    replayed = asyncio.run(_replay(args.steps, args.rounds))
    print(
        f"replay: {args.steps} inline steps + a 1-day sleep recorded in {replayed['record_s']:.2f} s "
        f"(WorkflowTestEnv); replayed in {replayed['replay_ms']:.1f} ms median "
        f"({replayed['us_per_step']:.1f} us/step, no step run, no wait)"
    )
    compat = _compat(args.modules, args.rounds)
    print(
        f"--baseline on {args.modules} modules / 100 workflows: type shapes of {int(compat['types'])} "
        f"types {compat['shapes_ms']:.0f} ms (cold parse), comparison {compat['compare_ms']:.1f} ms (medians)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
