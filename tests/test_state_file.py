"""File-store specifics: layout, corruption, path safety, atomic writes, read counts."""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from stores import make_owner

from pikku_typing.errors import (
    InvalidRunIdError,
    RunAlreadyExistsError,
    StateCorruptedError,
)
from pikku_typing.models import StepKind, StepState, StepStatus
from pikku_typing.state import FileWorkflowStateService, RunChanges, open_store


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "deep" / "state"


@pytest.fixture
async def store(state_dir: Path) -> AsyncIterator[FileWorkflowStateService]:
    async with FileWorkflowStateService(state_dir) as store:
        yield store


def inline(key: str, **fields: Any) -> StepState:
    return StepState(key=key, step_name=key.split("#")[0], kind=StepKind.INLINE, **fields)


async def test_directory_created_on_first_use_and_layout(
    store: FileWorkflowStateService, state_dir: Path
) -> None:
    assert not state_dir.exists()
    run = await store.create_run("wf", {"a": 1}, run_id="r1")
    assert state_dir.is_dir()
    run_doc = json.loads((state_dir / "runs" / "r1.json").read_text("utf-8"))
    assert run_doc["format"] == 1 and run_doc["run"]["id"] == run.id
    assert run_doc["run"]["input"] == {"a": 1}
    for key in ("b", "a", "c"):
        await store.insert_step("r1", inline(key))
    steps_doc = json.loads((state_dir / "steps" / "r1.json").read_text("utf-8"))
    assert [s["key"] for s in steps_doc["steps"]] == ["b", "a", "c"]
    # No temp files are left behind by successful writes.
    leftovers = [p.name for p in state_dir.rglob("*.tmp")]
    assert leftovers == []


async def test_open_store_file_url(tmp_path: Path) -> None:
    store = open_store(f"file:{tmp_path / 's'}")
    assert isinstance(store, FileWorkflowStateService)
    assert store.directory == tmp_path / "s"
    abs_store = open_store(f"file://{tmp_path / 's2'}")
    assert isinstance(abs_store, FileWorkflowStateService)
    assert abs_store.directory == tmp_path / "s2"


CORRUPT_RUN_DOCS = {
    "truncated": b'{"format": 1, "run": {"id": "r1", "workf',
    "empty": b"",
    "garbage": b"\x00\xff\xfe not json",
    "wrong-shape": b'{"hello": "world"}',
    "invalid-run": b'{"format": 1, "run": {"id": "r1"}}',
}


@pytest.mark.parametrize("content", list(CORRUPT_RUN_DOCS))
async def test_corrupt_run_file_is_reported_and_never_overwritten(
    store: FileWorkflowStateService, state_dir: Path, content: str
) -> None:
    await store.create_run("wf", None, run_id="r1")
    await store.create_run("wf", None, run_id="r2")
    path = state_dir / "runs" / "r1.json"
    bad = CORRUPT_RUN_DOCS[content]
    path.write_bytes(bad)
    for call in (
        lambda: store.get_run("r1"),
        lambda: store.update_run("r1", RunChanges(output=1)),
        lambda: store.transition_run("r1", ["running"], RunChanges(output=1)),  # type: ignore[list-item]
    ):
        with pytest.raises(StateCorruptedError) as info:
            await call()
        assert str(path) in str(info.value)
    # one damaged run never stops the others: listed as damaged, the rest listed as usual
    assert [r.id for r in await store.list_runs()] == ["r2"]
    damaged = await store.list_damaged()
    assert [d.run_id for d in damaged] == ["r1"]
    assert str(path) in damaged[0].problem
    with pytest.raises(RunAlreadyExistsError):
        await store.create_run("wf", None, run_id="r1")
    assert path.read_bytes() == bad
    assert (await store.get_run("r2")).id == "r2"


CORRUPT_STEP_DOCS = {
    "truncated": b'{"format": 1, "run_id": "r1", "steps": [{"key": "s", "step_na',
    "empty": b"",
    "wrong-shape": b'{"format": 1, "steps": {"s": 1}}',
    "wrong-format": b'{"format": 99, "steps": []}',
    "invalid-step": b'{"format": 1, "run_id": "r1", "steps": [{"key": "s", "kind": "bogus"}]}',
}


@pytest.mark.parametrize("content", list(CORRUPT_STEP_DOCS))
async def test_corrupt_steps_file_is_reported_and_never_overwritten(
    store: FileWorkflowStateService, state_dir: Path, content: str
) -> None:
    await store.create_run("wf", None, run_id="r1")
    await store.insert_step("r1", inline("s"))
    path = state_dir / "steps" / "r1.json"
    bad = CORRUPT_STEP_DOCS[content]
    path.write_bytes(bad)
    owner = make_owner()
    for call in (
        lambda: store.get_step_states("r1"),
        lambda: store.get_step("r1", "s"),
        lambda: store.insert_step("r1", inline("t")),
        lambda: store.schedule_step("r1", "s", at=None),
        lambda: store.claim_step("r1", "s", owner=owner, lease_seconds=5),
        lambda: store.complete_step("r1", "s", result=1, token=None),
    ):
        with pytest.raises(StateCorruptedError) as info:
            await call()
        assert str(path) in str(info.value)
    assert path.read_bytes() == bad
    # The run document itself is still readable.
    assert (await store.get_run("r1")).id == "r1"


@pytest.mark.parametrize(
    "bad", ["../escape", "../../etc/passwd", "a/../../b", "/tmp/abs", "..", ".hidden", "a\\..\\b"]
)
async def test_path_traversal_ids_touch_nothing_outside(
    store: FileWorkflowStateService, state_dir: Path, tmp_path: Path, bad: str
) -> None:
    await store.create_run("wf", None, run_id="ok")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidRunIdError):
        await store.create_run("wf", None, run_id=bad)
    with pytest.raises(InvalidRunIdError):
        await store.get_run(bad)
    with pytest.raises(InvalidRunIdError):
        await store.insert_step(bad, inline("s"))
    with pytest.raises(InvalidRunIdError):
        store.lock_run(bad)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


class _OpenCounter:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = str(root)
        self.paths: list[str] = []
        real_open, real_os_open = builtins.open, os.open

        def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            self._note(file)
            return real_open(file, *args, **kwargs)

        def counting_os_open(path: Any, *args: Any, **kwargs: Any) -> Any:
            self._note(path)
            return real_os_open(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", counting_open)
        monkeypatch.setattr(os, "open", counting_os_open)

    def _note(self, path: Any) -> None:
        if isinstance(path, str | os.PathLike) and os.fspath(path).startswith(self.root):
            self.paths.append(os.fspath(path))


async def test_get_step_states_is_one_file_read(
    store: FileWorkflowStateService, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await store.create_run("wf", None)
    for i in range(40):
        await store.insert_step(run.id, inline(f"s#{i}" if i else "s", data={"i": i}))
    counter = _OpenCounter(state_dir, monkeypatch)
    states = await store.get_step_states(run.id)
    assert len(states) == 40
    assert counter.paths == [str(state_dir / "steps" / f"{run.id}.json")]


async def test_list_runs_reads_only_run_headers(
    store: FileWorkflowStateService, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        run = await store.create_run("wf", i)
        for j in range(10):
            await store.insert_step(run.id, inline(f"s{j}"))
    counter = _OpenCounter(state_dir, monkeypatch)
    assert len(await store.list_runs()) == 3
    assert len(counter.paths) == 3
    assert all(Path(p).parent == state_dir / "runs" for p in counter.paths)


async def test_temp_files_are_ignored(store: FileWorkflowStateService, state_dir: Path) -> None:
    run = await store.create_run("wf", None, run_id="r1")
    (state_dir / "runs" / ".r1.json.deadbeef.tmp").write_bytes(b'{"trunc')
    (state_dir / "steps" / ".r1.json.deadbeef.tmp").write_bytes(b"")
    assert [r.id for r in await store.list_runs()] == [run.id]
    assert await store.get_step_states("r1") == {}


async def test_claims_from_threads_have_one_winner(state_dir: Path) -> None:
    async with FileWorkflowStateService(state_dir) as store:
        run = await store.create_run("wf", None)
        await store.insert_step(run.id, inline("s"))
    barrier = threading.Barrier(8)
    wins: list[bool] = []

    def claim() -> None:
        async def main() -> bool:
            async with FileWorkflowStateService(state_dir) as own:
                barrier.wait()
                got = await own.claim_step(run.id, "s", owner=make_owner(), lease_seconds=5)
                return got is not None

        wins.append(asyncio.run(main()))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(wins) == [False] * 7 + [True]


async def test_lock_run_excludes_threads(state_dir: Path) -> None:
    async with FileWorkflowStateService(state_dir) as store:
        run = await store.create_run("wf", None)
        async with store.lock_run(run.id):
            outcome: list[str] = []

            def other() -> None:
                async def main() -> None:
                    try:
                        async with FileWorkflowStateService(state_dir).lock_run(
                            run.id, timeout=0.1
                        ):
                            outcome.append("acquired")
                    except TimeoutError:
                        outcome.append("timeout")

                asyncio.run(main())

            t = threading.Thread(target=other)
            t.start()
            await asyncio.to_thread(t.join, 30)
            assert outcome == ["timeout"]


async def test_fsync_can_be_disabled(state_dir: Path) -> None:
    async with FileWorkflowStateService(state_dir, fsync=False) as store:
        run = await store.create_run("wf", [1])
        await store.insert_step(run.id, inline("s"))
        owner = make_owner()
        assert await store.claim_step(run.id, "s", owner=owner, lease_seconds=5)
        assert await store.complete_step(run.id, "s", result=2, token=owner.token)
    async with FileWorkflowStateService(state_dir) as again:
        assert (await again.get_step(run.id, "s")).status is StepStatus.SUCCEEDED  # type: ignore[union-attr]


async def test_stale_temp_files_are_removed_on_first_use(state_dir: Path) -> None:
    async with FileWorkflowStateService(state_dir) as store:
        await store.create_run("wf", None, run_id="r1")
    stale = state_dir / "runs" / ".r1.json.0123.tmp"
    fresh = state_dir / "steps" / ".r1.json.4567.tmp"
    stale.write_bytes(b'{"trunc')
    fresh.write_bytes(b'{"trunc')
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    async with FileWorkflowStateService(state_dir) as store:
        assert (await store.get_step_states("r1")) == {}
        await store.insert_step("r1", inline("s"))  # first write: cleanup ran before it
    assert not stale.exists()
    assert fresh.exists()  # possibly a live writer's: left alone


async def test_two_services_see_each_others_writes(state_dir: Path) -> None:
    """Each service caches parsed steps documents; a write by anyone else invalidates it
    (even one that leaves the document the same size, like a heartbeat)."""
    a = FileWorkflowStateService(state_dir)
    b = FileWorkflowStateService(state_dir)
    run = await a.create_run("wf", None)
    await a.insert_step(run.id, inline("s1"))
    assert list(await b.get_step_states(run.id)) == ["s1"]
    await b.insert_step(run.id, inline("s2"))
    assert list(await a.get_step_states(run.id)) == ["s1", "s2"]
    owner = make_owner()
    claimed = await a.claim_step(run.id, "s2", owner=owner, lease_seconds=10)
    assert claimed is not None
    assert await b.claim_step(run.id, "s2", owner=make_owner(), lease_seconds=10) is None
    for lease in (1000, 2000, 3000):
        writer = a if lease == 2000 else b
        assert await writer.heartbeat_step(run.id, "s2", token=owner.token, lease_seconds=lease)
        for reader in (a, b):
            got = await reader.get_step(run.id, "s2")
            assert got is not None
            expiry = got.attempts[0].lease_expires_at
            assert expiry is not None and claimed.attempts[0].started_at is not None
            assert (expiry - claimed.attempts[0].started_at).total_seconds() >= lease - 5
    assert await b.complete_step(run.id, "s2", result="b", token=owner.token)
    assert not await a.complete_step(run.id, "s2", result="a", token=owner.token)
    assert (await a.get_step(run.id, "s2")).result == "b"  # type: ignore[union-attr]


async def test_document_damaged_after_caching_is_still_detected(
    store: FileWorkflowStateService, state_dir: Path
) -> None:
    run = await store.create_run("wf", None, run_id="r1")
    for key in ("a", "b", "c"):
        await store.insert_step(run.id, inline(key))
    assert len(await store.get_step_states("r1")) == 3  # cached now
    path = state_dir / "steps" / "r1.json"
    damaged = path.read_bytes()[:-40]  # truncated in place: same header, other size
    path.write_bytes(damaged)
    with pytest.raises(StateCorruptedError, match=r"r1\.json"):
        await store.get_step_states("r1")
    with pytest.raises(StateCorruptedError, match=r"r1\.json"):
        await store.insert_step("r1", inline("d"))
    assert path.read_bytes() == damaged
