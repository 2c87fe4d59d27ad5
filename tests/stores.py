"""Store factories for the store contract suite (``tests/test_state_contract.py``).

Each :class:`StoreFactory` has a ``name`` (the pytest id), ``marks`` (e.g. a skip), and
``make_spec(tmp_path)`` returning a :class:`StoreSpec`: a *picklable* description (an
``open_store`` URL) from which the test process and child processes open the same store.
``cross_process=False`` skips the multi-process tests (the memory store lives in one
process). ``cleanup(spec)`` runs after the test, if given.

Adding a store is a few lines: append a factory to ``STORE_FACTORIES``, e.g. PostgreSQL::

    _PG_DSN = os.environ.get("PIKKU_TEST_POSTGRES_DSN")
    STORE_FACTORIES.append(StoreFactory(
        name="postgres",
        make_spec=lambda tmp_path: StoreSpec(f"postgres:{_PG_DSN}"),  # isolate per test
        marks=(pytest.mark.postgres,
               pytest.mark.skipif(not _PG_DSN, reason="PIKKU_TEST_POSTGRES_DSN not set")),
        cleanup=None,  # e.g. drop the per-test schema
    ))

Other test modules can run over every store with ``@pytest.mark.parametrize("factory",
store_params())`` (or ``store_params(cross_process_only=True)``).

The module-level ``*_worker`` functions run in ``spawn``-ed child processes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pikku_typing.models import ClaimOwner
from pikku_typing.state import WorkflowStateService, open_store


@dataclass(frozen=True)
class StoreSpec:
    """Everything a process needs to open the store (picklable)."""

    url: str

    def open(self) -> WorkflowStateService:
        return open_store(self.url)


@dataclass(frozen=True)
class StoreFactory:
    name: str
    make_spec: Callable[[Path], StoreSpec]
    marks: tuple[Any, ...] = ()
    cross_process: bool = True
    cleanup: Callable[[StoreSpec], None] | None = None


STORE_FACTORIES: list[StoreFactory] = [
    StoreFactory("memory", lambda tmp_path: StoreSpec("memory:"), cross_process=False),
    StoreFactory("file", lambda tmp_path: StoreSpec(f"file:{tmp_path / 'state'}")),
    StoreFactory("sqlite", lambda tmp_path: StoreSpec(f"sqlite:{tmp_path / 'state.db'}")),
]

# PostgreSQL: skipped unless PIKKU_TEST_POSTGRES_DSN is set; a fresh schema per test.
from postgres_support import postgres_store_factory  # noqa: E402

STORE_FACTORIES.append(postgres_store_factory())


def store_params(*, cross_process_only: bool = False) -> list[Any]:
    """``pytest.param`` objects for every store factory (ids = factory names)."""
    return [
        pytest.param(f, marks=f.marks, id=f.name)
        for f in STORE_FACTORIES
        if f.cross_process or not cross_process_only
    ]


def make_owner(tag: str = "") -> ClaimOwner:
    return ClaimOwner(host=socket.gethostname(), pid=os.getpid(), token=f"{tag}{uuid.uuid4().hex}")


# ----------------------------------------------------------- child-process workers


def claim_race_worker(
    spec: StoreSpec,
    run_id: str,
    rounds: int,
    index: int,
    inserts: int,
    barrier: Any,
    results: Any,
) -> None:
    """Race the other workers for step ``r{n}`` each round; then insert own steps."""

    async def main() -> None:
        from pikku_typing.models import StepKind, StepState

        store = spec.open()
        try:
            for n in range(rounds):
                barrier.wait(120)
                claimed = await store.claim_step(
                    run_id, f"r{n}", owner=make_owner(f"w{index}-"), lease_seconds=60
                )
                results.put((n, index, claimed is not None))
            barrier.wait(120)
            for j in range(inserts):
                await store.insert_step(
                    run_id,
                    StepState(key=f"p{index}-{j}", step_name=f"p{index}", kind=StepKind.INLINE),
                )
        finally:
            await store.close()

    asyncio.run(main())


def lock_holder_worker(spec: StoreSpec, run_id: str, acquired: Any, release: Any) -> None:
    """Hold ``lock_run(run_id)`` until ``release`` is set (or the process is killed)."""

    async def main() -> None:
        store = spec.open()
        try:
            async with store.lock_run(run_id, timeout=30):
                acquired.set()
                while not release.is_set():
                    await asyncio.sleep(0.01)
        finally:
            await store.close()

    asyncio.run(main())


def read_run_worker(spec: StoreSpec, run_id: str) -> tuple[Any, list[str]]:
    """Return the run's input and its step keys, read by another process."""

    async def main() -> tuple[Any, list[str]]:
        async with spec.open() as store:
            run = await store.get_run(run_id)
            return run.input, list(await store.get_step_states(run_id))

    return asyncio.run(main())


def rewrite_loop_worker(spec: StoreSpec, run_id: str, started: Any) -> None:
    """Rewrite the run's output and steps forever (until killed), alternating two values."""

    async def main() -> None:
        from pikku_typing.models import StepKind, StepState
        from pikku_typing.state import RunChanges

        store = spec.open()
        n = 0
        while True:
            value = {"n": n % 2, "blob": ("ab"[n % 2]) * 200_000}
            await store.update_run(run_id, RunChanges(output=value))
            await store.insert_step(
                run_id, StepState(key=f"k{n}", step_name="k", kind=StepKind.INLINE, data=value)
            )
            n += 1
            if n == 3:
                started.set()

    asyncio.run(main())


def fresh_store_worker(spec: StoreSpec, index: int, barrier: Any, results: Any) -> None:
    """Open a store that may not exist yet, at the same moment as other processes."""

    async def main() -> None:
        barrier.wait(120)
        store = spec.open()
        try:
            run = await store.create_run("wf", index, run_id=f"fresh-{index}")
            results.put(run.id)
        finally:
            await store.close()

    asyncio.run(main())


def send_events_worker(spec: StoreSpec, run_id: str, index: int, count: int, barrier: Any) -> None:
    """Send ``count`` events named ``e`` to the run, as fast as possible."""

    async def main() -> None:
        store = spec.open()
        try:
            barrier.wait(120)
            for n in range(count):
                sent = await store.send_event(run_id, "e", {"sender": index, "n": n})
                assert sent is not None
        finally:
            await store.close()

    asyncio.run(main())


def consume_events_worker(
    spec: StoreSpec, run_id: str, tag: str, total: int, barrier: Any, results: Any
) -> None:
    """Consume events named ``e`` with step keys ``<tag>#0``, ``<tag>#1``... until all
    ``total`` events were sent and consumed (by anyone); report the seqs it got."""

    async def main() -> None:
        import time

        store = spec.open()
        got: list[int] = []
        try:
            barrier.wait(120)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                event = await store.consume_event(run_id, "e", f"{tag}#{len(got)}")
                if event is not None:
                    got.append(event.seq)
                    continue
                events = await store.list_events(run_id)
                if len(events) == total and all(e.consumed_by for e in events):
                    break
                await asyncio.sleep(0.002)
            results.put((tag, got))
        finally:
            await store.close()

    asyncio.run(main())


def create_same_run_worker(spec: StoreSpec, index: int, barrier: Any, results: Any) -> None:
    """Create run ``order-42`` at the same moment as other processes."""

    async def main() -> None:
        from pikku_typing.errors import RunAlreadyExistsError

        store = spec.open()
        try:
            barrier.wait(120)
            try:
                await store.create_run("wf", {"by": index}, run_id="order-42")
                results.put((index, True))
            except RunAlreadyExistsError:
                results.put((index, False))
        finally:
            await store.close()

    asyncio.run(main())
