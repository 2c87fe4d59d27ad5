"""The per-file facts cache under ``<root>/.pikku/cache/``: warm runs, corrupt entries,
concurrent runs, read-only (``--check``), and worker processes giving the same result."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from pikku_analyzer import analyze, load_config, render
from pikku_analyzer.cache import FactsCache, cache_key

SOURCE = """
from pikku_typing import Workflow, pikku_func, wire_workflow

@pikku_func(name="svc{i}.run")
async def run(data: int) -> int:
    return data

async def flow(workflow: Workflow, data: int) -> int:
    await workflow.do("a", "svc{i}.run", data)
    return await workflow.do("b", "svc{i}.ruin", data)

wire_workflow(name="flow{i}", func=flow)
"""


def project(tmp_path: Path, count: int = 3) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    for i in range(count):
        (tmp_path / f"m{i:03d}.py").write_text(SOURCE.format(i=i), encoding="utf-8")
    return tmp_path


def entries(root: Path) -> list[Path]:
    return sorted((root / ".pikku" / "cache").rglob("*.json"))


def test_warm_run_uses_the_cache(tmp_path: Path) -> None:
    root = project(tmp_path)
    cold = analyze(load_config(root))
    assert cold.stats.parsed == 3 and cold.stats.cache_hits == 0
    assert len(entries(root)) == 3
    assert (root / ".pikku" / "cache" / ".gitignore").read_text(encoding="utf-8").endswith("*\n")
    warm = analyze(load_config(root))
    assert warm.stats.parsed == 0 and warm.stats.cache_hits == 3
    assert render(cold, "json") == render(warm, "json")
    # an edit is a miss for that file only
    (root / "m001.py").write_text(SOURCE.format(i=1).replace('"a"', '"a2"'), encoding="utf-8")
    edited = analyze(load_config(root))
    assert edited.stats.parsed == 1 and edited.stats.cache_hits == 2
    assert edited.data["workflows"][1]["steps"][0]["step_name"] == "a2"


def test_corrupt_entries_are_misses(tmp_path: Path) -> None:
    root = project(tmp_path)
    expected = render(analyze(load_config(root)), "json")
    garbage = [b"", b"{", b"[]", b'{"v": 999}', b"\x00\xff", json.dumps({"v": 3}).encode()]
    for path, data in zip(entries(root), garbage, strict=False):
        path.write_bytes(data)
    again = analyze(load_config(root))
    assert render(again, "json") == expected
    assert again.stats.parsed == 3
    assert analyze(load_config(root)).stats.cache_hits == 3  # rewritten


def test_cache_key_depends_on_module_and_content() -> None:
    base = cache_key(b"x", module="a", rel="a.py", is_package=False, package="p")
    assert base != cache_key(b"y", module="a", rel="a.py", is_package=False, package="p")
    assert base != cache_key(b"x", module="b", rel="a.py", is_package=False, package="p")
    assert base != cache_key(b"x", module="a", rel="a.py", is_package=False, package="q")
    assert base == cache_key(b"x", module="a", rel="a.py", is_package=False, package="p")


def test_unwritable_cache_only_costs_speed(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / ".pikku").write_text("not a directory", encoding="utf-8")
    result = analyze(load_config(root))
    assert len(result.data["workflows"]) == 3


def test_read_only_cache_writes_nothing(tmp_path: Path) -> None:
    root = project(tmp_path)
    analyze(load_config(root), read_only_cache=True)
    assert not (root / ".pikku").exists()


def test_no_cache(tmp_path: Path) -> None:
    root = project(tmp_path)
    analyze(load_config(root), use_cache=False)
    assert not (root / ".pikku").exists()


def _analyze_json(root: str) -> str:
    return render(analyze(load_config(Path(root))), "json")


def test_concurrent_runs_are_safe(tmp_path: Path) -> None:
    root = project(tmp_path, count=40)
    expected = render(analyze(load_config(root), use_cache=False), "json")
    with ProcessPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(_analyze_json, [str(root)] * 8))
    with ThreadPoolExecutor(max_workers=4) as threads:
        outputs += list(threads.map(_analyze_json, [str(root)] * 4))
    assert all(out == expected for out in outputs)
    assert not [p for p in (root / ".pikku").rglob("*.tmp")]  # no temporary files left


def test_worker_processes_give_the_same_result(tmp_path: Path) -> None:
    root = project(tmp_path, count=100)
    serial = analyze(load_config(root), use_cache=False, jobs=1)
    parallel = analyze(load_config(root), use_cache=False, jobs=2)
    assert parallel.stats.processes == 2
    assert serial.stats.processes == 1
    assert render(serial, "json") == render(parallel, "json")


def test_prune_removes_old_unused_entries(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path / "c")
    cache.put("aa" + "0" * 38, {"v": 1, "module": "m"})
    cache.put("bb" + "0" * 38, {"v": 1, "module": "m"})
    old = time.time() - 30 * 24 * 3600
    for path in (tmp_path / "c").rglob("*.json"):
        os.utime(path, (old, old))
    assert cache.prune({"aa" + "0" * 38}) == 1
    assert [p.stem for p in (tmp_path / "c").rglob("*.json")] == ["aa" + "0" * 38]
