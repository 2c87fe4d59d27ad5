"""PostgreSQL test support: the DSN from ``PIKKU_TEST_POSTGRES_DSN`` and per-test schemas.

Every test that needs isolation gets a fresh schema (``pikku_t_<hex>``) and a DSN whose
``search_path`` points at it; the schema is dropped afterwards. Start a throwaway server with
``eval "$(bash scripts/postgres.sh)"``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PG_DSN = os.environ.get("PIKKU_TEST_POSTGRES_DSN") or None

requires_postgres = pytest.mark.skipif(
    PG_DSN is None, reason="PIKKU_TEST_POSTGRES_DSN not set (eval \"$(bash scripts/postgres.sh)\")"
)
POSTGRES_MARKS: tuple[Any, ...] = (pytest.mark.postgres, requires_postgres)


def create_schema_dsn(prefix: str = "pikku_t_") -> str:
    """Create a fresh schema and return a DSN whose ``search_path`` is that schema."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    assert PG_DSN is not None
    schema = f"{prefix}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return make_conninfo(PG_DSN, options=f"-c search_path={schema}")


def schema_of(dsn: str) -> str | None:
    from psycopg.conninfo import conninfo_to_dict

    options = str(conninfo_to_dict(dsn).get("options") or "")
    marker = "search_path="
    if marker not in options:
        return None
    return options.split(marker, 1)[1].split()[0]


def drop_schema_dsn(dsn: str) -> None:
    import psycopg

    schema = schema_of(dsn)
    if PG_DSN is None or schema is None:
        return
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def postgres_store_factory() -> Any:
    """The ``postgres`` :class:`StoreFactory` for ``tests/stores.py``."""
    from stores import StoreFactory, StoreSpec

    def make_spec(tmp_path: Path) -> Any:
        return StoreSpec(f"postgres:{create_schema_dsn()}")

    def cleanup(spec: Any) -> None:
        drop_schema_dsn(spec.url.split(":", 1)[1])

    return StoreFactory("postgres", make_spec, marks=POSTGRES_MARKS, cleanup=cleanup)


WAIT_CAP = 60.0
"""Seconds a test polls for a condition before giving up: generous for a loaded CI machine;
a wait ends as soon as its condition holds, so this is a cap, never a timing assertion."""


async def eventually(
    check: Callable[[], Any], *, cap: float = WAIT_CAP, interval: float = 0.01
) -> bool:
    """Poll ``check()`` (sync or async) until it is truthy or ``cap`` seconds passed; return
    whether it became truthy (assert on the condition itself afterwards)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cap
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(interval)
