"""The stores' SQL lives in package resources (``pikku_typing/state/sql/``): parsed the same
way in a checkout and in an installed wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pikku_typing.state import _sql

ROOT = Path(__file__).resolve().parent.parent


def test_named_queries_parse_and_drop_comments() -> None:
    text = "-- header\n-- name: a\nSELECT 1 -- keeps trailing\n-- a comment with 100%\nFROM t\n\n-- name: b\nSELECT 2\n"
    assert _sql.parse_queries(text) == {"a": "SELECT 1 -- keeps trailing\nFROM t", "b": "SELECT 2"}
    with pytest.raises(ValueError, match="defined twice"):
        _sql.parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")


def test_postgres_resources_are_complete() -> None:
    migrations = _sql.migrations("postgres")
    assert sorted(migrations) == list(range(1, len(migrations) + 1))
    assert "CREATE TABLE pikku_runs" in migrations[1]
    queries = _sql.queries("postgres")
    for name in ("insert_run", "get_run", "update_run", "insert_step", "claim_step",
                 "complete_step", "fail_step_attempt", "reset_step", "heartbeat_step"):  # fmt: skip
        assert queries[name].strip(), name
        assert not any(line.lstrip().startswith("--") for line in queries[name].splitlines())


def test_missing_resource_folder_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="without its SQL files"):
        _sql.queries("no-such-backend")


@pytest.mark.slow
def test_built_wheel_ships_and_finds_the_sql(tmp_path: Path) -> None:
    """Build the wheel, unpack it (what installing a pure-Python wheel does) and load the SQL
    from the unpacked copy in a fresh interpreter."""
    source = tmp_path / "src"  # a copy: building writes build/ and *.egg-info next to it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "pikku_typing", source / "pikku_typing", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(dist)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if built.returncode != 0 and "No matching distribution" in built.stderr:
        pytest.skip(f"cannot build a wheel offline here: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("pikku_workflows-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    assert "pikku_typing/state/sql/postgres/queries.sql" in names
    assert "pikku_typing/state/sql/postgres/migrations/0001_initial.sql" in names
    script = (
        "import pikku_typing, sys\n"
        f"assert pikku_typing.__file__.startswith({str(site)!r}), pikku_typing.__file__\n"
        "from pikku_typing.state import postgres\n"
        "from pikku_typing.state import _sql\n"
        "assert postgres.SCHEMA_VERSION == max(_sql.migrations('postgres'))\n"
        "print(sorted(_sql.queries('postgres')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert ran.returncode == 0, ran.stderr
    assert "claim_step" in ran.stdout
