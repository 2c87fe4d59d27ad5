"""``pikku-runs export`` and ``pikku-runs replay`` (SPEC section 9).

    pikku-runs [--store URL] export RUN_ID > history.json
    pikku-runs [--store URL] replay [RUN_ID ...] [--all-unsettled] [--from FILE] [--app MODULE]

``replay`` imports the current code (``--app MODULE``, or the generated
``<package>.workflow_wirings`` of the ``[tool.pikku]`` project around the current directory),
then replays each stored or exported history with :mod:`pikku_typing.runtime.replayer`:
nothing is executed, nothing waits, nothing is written. Exit code 1 when a run would not
replay (the report names the step key, the recorded side and the new one), 0 when every run
replays, 2 for a usage error (nothing to replay, an unreadable ``--from`` file, code that
cannot be imported), 3 when the store cannot be reached.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from pikku_typing.models import RunStatus
from pikku_typing.runtime import _runs_render as render
from pikku_typing.runtime.replayer import (
    History,
    HistoryFormatError,
    ReplayResult,
    load_histories,
    replay_histories,
)
from pikku_typing.runtime.runs_cli import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    CliError,
    _emit_json,
    _get_run,
    open_store,
)


def load_app(modules: list[str]) -> None:
    """Import the modules that wire the workflows (the current code)."""
    from pikku_typing.wiring import registry

    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)
    if not modules:
        from pikku_typing.console.views import find_meta

        meta = find_meta()
        if meta is None:
            raise CliError(
                "no [tool.pikku] project with a generated workflow_meta.json around the current "
                "directory: pass --app MODULE (the module that wires your workflows)",
                EXIT_USAGE,
            )
        package_dir = meta.parent
        sys.path.insert(0, str(package_dir.parent))
        modules = [f"{package_dir.name}.workflow_wirings"]
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise CliError(f"--app: cannot import {module!r}: {type(exc).__name__}: {first}", EXIT_USAGE) from None
    if not registry.workflows:
        raise CliError(
            f"no workflow is wired after importing {', '.join(modules)}: pass --app MODULE",
            EXIT_USAGE,
        )


def _read_histories(files: list[str]) -> list[History]:
    out: list[History] = []
    for name in files:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"--from {name}: cannot read it: {exc.strerror or exc}", EXIT_USAGE) from None
        except UnicodeDecodeError:
            raise CliError(f"--from {name}: not UTF-8 text", EXIT_USAGE) from None
        try:
            out.extend(load_histories(json.loads(text)))
        except ValueError as exc:  # JSONDecodeError, HistoryFormatError
            detail = str(exc) if isinstance(exc, HistoryFormatError) else f"not JSON ({exc})"
            raise CliError(f"--from {name}: {detail}", EXIT_USAGE) from None
    return out


def _render_text(results: list[ReplayResult], paint: render.Painter) -> str:
    failing = [r for r in results if not r.ok]
    lines = [
        f"replayed {len(results)} run{'s' if len(results) != 1 else ''} against the current code "
        "(no step executed): "
        + (paint(f"{len(failing)} would not replay", "red") if failing else paint("all replay", "green"))
    ]
    for result in results:
        mark = paint("FAIL", "red") if not result.ok else paint("ok  ", "green")
        detail = f"{len(result.replayed_steps)} step(s) replayed, {result.outcome}"
        if result.unreached:
            detail += f", {len(result.unreached)} recorded step(s) not reached"
        lines.append(f"  {mark}  {result.run_id}  {result.workflow}  ({result.status})  {detail}")
        for problem in result.problems:
            where = f"step {problem.step_key!r}: " if problem.step_key else ""
            lines.append(f"        {problem.kind}: {where}{problem.message}")
            if problem.recorded is not None:
                lines.append(f"          recorded: {problem.recorded}")
            if problem.new is not None:
                lines.append(f"          new code: {problem.new}")
    return "\n".join(lines)


async def run_deploy_command(args: argparse.Namespace, out: TextIO, *, fmt: str, store_url: str) -> int:
    if args.command == "export":
        store = await open_store(store_url)
        try:
            run = await _get_run(store, args.run_id)
            recorded = await store.get_step_states(run.id)
        finally:
            with contextlib.suppress(Exception):
                await store.close()
        _emit_json(out, History(run=run, steps=dict(recorded)).to_json())
        return EXIT_OK

    if not (args.run_ids or args.all_unsettled or args.from_files):
        raise CliError("replay: name RUN_IDs, or pass --all-unsettled or --from FILE", EXIT_USAGE)
    histories = _read_histories(args.from_files)
    load_app(args.app)
    if args.run_ids or args.all_unsettled:
        store = await open_store(store_url)
        try:
            runs = [await _get_run(store, run_id) for run_id in args.run_ids]
            if args.all_unsettled:
                named = {r.id for r in runs}
                unsettled = await store.list_runs(status=[RunStatus.RUNNING, RunStatus.SUSPENDED])
                runs.extend(r for r in unsettled if r.id not in named)
            for run in runs:
                histories.append(History(run=run, steps=dict(await store.get_step_states(run.id))))
        finally:
            with contextlib.suppress(Exception):
                await store.close()
    results = await replay_histories(histories)
    if fmt == "json":
        payload: dict[str, Any] = {"ok": all(r.ok for r in results), "runs": [r.to_json() for r in results]}
        _emit_json(out, payload)
    else:
        paint = render.Painter(render.use_colour(out))
        out.write(_render_text(results, paint) + "\n")
    return EXIT_OK if all(r.ok for r in results) else EXIT_REFUSED


__all__ = ["load_app", "run_deploy_command"]
