"""Full robustness sweep: run the analyzer's parse-and-detect stage over every ``.py`` file of
the standard library and of every site-packages directory, bypassing the substring
pre-filter (so every file is really parsed), then link them all.

    python benchmarks/sweep.py [--jobs N] [--limit N]

Prints the counts (files, parsed, syntax errors, undecodable, unreadable, crashes) and the
time; exit code 1 if anything crashed (an ``internal_error`` fact or an exception).
"""

from __future__ import annotations

import argparse
import os
import site
import sys
import sysconfig
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from pikku_analyzer.checks import Unit, link
from pikku_analyzer.detect import extract_facts


def python_files(directory: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        out.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    return out


def roots() -> list[tuple[str, Path]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found: list[tuple[str, Path]] = [("stdlib", stdlib)]
    seen = {stdlib.resolve()}
    for path in [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]:
        candidate = Path(path)
        if candidate.is_dir() and candidate.resolve() not in seen:
            seen.add(candidate.resolve())
            found.append(("site-packages", candidate))
    return found


def sweep_one(path_str: str) -> tuple[str, str, dict[str, Any] | None, str | None]:
    """(path, status, facts, crash) for one file."""
    path = Path(path_str)
    try:
        data = path.read_bytes()
    except OSError:
        return path_str, "unreadable", None, None
    try:
        facts = extract_facts(data, module=path.stem, filename=path_str)
    except BaseException:  # a crash of the analyzer: what the sweep is looking for
        return path_str, "crash", None, traceback.format_exc()
    if facts.get("internal_error"):
        return path_str, "crash", facts, str(facts["internal_error"])
    error = facts.get("syntax_error")
    if error:
        status = "undecodable" if "decode" in str(error.get("message", "")) else "syntax_error"
        return path_str, status, facts, None
    return path_str, "parsed", facts, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (0: all)")
    args = parser.parse_args(argv)

    files: list[str] = []
    stdlib_count = 0
    for kind, root in roots():
        found = [str(p) for p in python_files(root)]
        if kind == "stdlib":
            found = [p for p in found if "site-packages" not in Path(p).parts]
            stdlib_count = len(found)
        files.extend(found)
    files = sorted(set(files))
    if args.limit:
        files = files[: args.limit]
    print(f"sweeping {len(files)} files ({stdlib_count} stdlib, {len(files) - stdlib_count} site-packages)"
          f" with {args.jobs} processes, pre-filter bypassed", flush=True)
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    crashes: list[tuple[str, str]] = []
    units: list[Unit] = []
    workflows_like = 0
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for path, status, facts, crash in pool.map(sweep_one, files, chunksize=32):
            counts[status] += 1
            if crash:
                crashes.append((path, crash))
            if facts is not None:
                units.append(Unit(path, Path(path).stem, facts))
                workflows_like += len(facts.get("wirings", ()))
    parse_seconds = time.perf_counter() - started
    try:
        linked = link(units)
        link_status = f"ok ({len(linked.workflows)} workflows, {len(linked.rpcs)} rpcs, "
        link_status += f"{len(linked.diagnostics)} diagnostics)"
    except BaseException:
        crashes.append(("<link>", traceback.format_exc()))
        link_status = "CRASHED"
    total = time.perf_counter() - started
    print(f"files:          {len(files)}")
    for status in ("parsed", "syntax_error", "undecodable", "unreadable", "crash"):
        print(f"{status + ':':15} {counts.get(status, 0)}")
    print(f"wire_workflow calls seen: {workflows_like}")
    print(f"link:           {link_status}")
    print(f"time:           {parse_seconds:.1f}s parse+detect, {total:.1f}s total")
    for path, crash in crashes[:20]:
        print(f"CRASH {path}:\n{crash}", file=sys.stderr)
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
