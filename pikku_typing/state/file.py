"""A JSON-file state store: the embedded default (no server, several processes may share it).

Layout under ``directory`` (created on first use)::

    runs/<run_id>.json       the run: {"format": 1, "run": {...}}
    steps/<run_id>.json      every step of the run, in creation order:
                             {"format":1,"gen":"<hex>","run_id":...,"steps":[{...},...]}
    events/<run_id>.json     the events sent to the run, in send order:
                             {"format":1,"run_id":...,"events":[{...},...]}
    locks/<run_id>.lock      short exclusive lock around each read-modify-write of the run
    runlocks/<run_id>.lock   the lock of ``lock_run`` (held for a whole orchestrator pass)

Why two documents per run: the run header is small and read on its own by ``get_run`` and
``list_runs`` (listing reads one small file per run, never the steps), while
``get_step_states`` reads the steps document: one file read for every step of the run. Each
operation writes exactly one of the two files, so every write is a single atomic replace:
the new content goes to a temp file in the same directory (named ``.<name>.<random>.tmp``;
run ids cannot start with a dot, so temp files never look like documents), is fsynced, then
``os.replace``-d over the document, and the directory is fsynced. Temp files a killed writer
left behind are removed by the next service that opens the directory, once they are an hour
old.

The steps document starts with ``{"format":1,"gen":"<random hex>"``; every write draws a new
generation. A service keeps the parsed documents of recently used runs (each step as its JSON
bytes): when a document's first bytes and size still match what it last wrote or read, only
those first bytes are read and nothing is re-parsed or re-serialised, so a write costs one
byte copy of the document instead of a JSON decode and encode of every step. Anything written
by another process or service has another generation and is read in full.

Locking: each read-modify-write (create, update, insert, schedule, claim, heartbeat,
complete, fail) runs under an exclusive ``fcntl.flock`` on ``locks/<run_id>.lock``, taken on
a freshly opened descriptor (so it also excludes other threads and tasks of this process)
and polled with ``LOCK_NB`` + ``asyncio.sleep`` (the event loop is never blocked waiting).
The critical section itself never awaits. Readers do not lock: a document is always either
the old or the new complete file. The kernel drops a dead process's flocks.

A document that cannot be parsed (or read: no permission, a directory in its place) raises
:class:`StateCorruptedError` naming the file; since every write reads the document first, a
corrupt file is never overwritten. ``list_runs`` skips such a run (logging it) and
``list_damaged`` reports it, so one damaged run never stops the others. ``create_run`` writes
the (empty) steps document before the run document, and the run document records that it
has one (``"steps": true``), so a steps document that goes missing later is reported as damage
instead of being read as "no step ran yet" (which would run every step again).

OS errors on the store's own paths (the directory is a file, is read-only, a parent cannot be
created) are :class:`~pikku_typing.errors.StorePathError` naming the path; a full disk or an
I/O error is :class:`~pikku_typing.errors.StoreUnavailableError` (retried by the runtime).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import ValidationError

from pikku_typing._fs import atomic_write_bytes, is_temp_name
from pikku_typing.errors import (
    RunAlreadyExistsError,
    RunNotFoundError,
    StateCorruptedError,
    StepNotFoundError,
)
from pikku_typing.models import (
    ClaimOwner,
    ErrorInfo,
    RunStatus,
    StepKind,
    StepState,
    StepStatus,
    WorkflowEvent,
    WorkflowRun,
)
from pikku_typing.state import _common as c
from pikku_typing.state.base import (
    DamagedRun,
    RunChanges,
    WorkflowStateService,
    validate_run_id,
)

FORMAT: Final = 1
STALE_TEMP_SECONDS: Final = 3600.0
_SUFFIX: Final = ".json"

T = TypeVar("T")

log = logging.getLogger("pikku.state")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_KINDS: Final = frozenset(k.value for k in StepKind)
_STATUSES: Final = frozenset(s.value for s in StepStatus)


def _looks_like_step(raw: object) -> bool:
    """A cheap shape check of a stored step (full validation happens when it is read)."""
    return (
        isinstance(raw, dict)
        and isinstance(raw.get("key"), str)
        and isinstance(raw.get("step_name"), str)
        and raw.get("kind") in _KINDS
        and raw.get("status") in _STATUSES
        and isinstance(raw.get("attempts"), list)
    )


_GEN: Final = re.compile(r"[0-9a-f]{32}")
_HEAD_BYTES: Final = 64
CACHED_RUNS: Final = 256
"""Steps documents whose parsed fragments a service keeps (most recently used runs)."""


def _header(gen: str) -> bytes:
    return b'{"format":%d,"gen":"%s"' % (FORMAT, gen.encode("ascii"))


@dataclass(frozen=True)
class _Steps:
    """A parsed steps document: each step's JSON bytes in creation order, and key -> position.
    Never mutated once built (a write builds a new one)."""

    header: bytes | None
    """``{"format":1,"gen":"<32 hex>"``: how the document starts (None: no usable gen)."""
    size: int
    frags: list[bytes]
    index: dict[str, int]


class FileWorkflowStateService(WorkflowStateService):
    """Runs and steps as JSON documents under ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = True) -> None:
        """``fsync=False`` skips the fsyncs (faster, not crash-durable: for tests only)."""
        self.directory = Path(directory)
        self._fsync = fsync
        self._runs = self.directory / "runs"
        self._steps = self.directory / "steps"
        self._locks = self.directory / "locks"
        self._runlocks = self.directory / "runlocks"
        self._events = self.directory / "events"
        self._ready = False
        self._cache: OrderedDict[str, _Steps] = OrderedDict()
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.directory)!r})"

    # ----------------------------------------------------------------- files
    @property
    def _name(self) -> str:
        return f"file store {str(self.directory)!r}"

    def _ensure_dirs(self) -> None:
        if not self._ready:
            try:
                for d in (self._runs, self._steps, self._locks, self._runlocks, self._events):
                    d.mkdir(parents=True, exist_ok=True)
                self._remove_stale_temp_files()
            except OSError as exc:
                raise c.os_error(exc, self._name, "create its directories") from exc
            self._ready = True

    def _remove_stale_temp_files(self) -> None:
        """Delete temp files that a killed writer left behind. A live write keeps its temp
        file for milliseconds, so only files older than ``STALE_TEMP_SECONDS`` go."""
        cutoff = time.time() - STALE_TEMP_SECONDS
        for d in (self._runs, self._steps, self._events):
            with os.scandir(d) as entries:
                for entry in entries:
                    if not is_temp_name(entry.name):
                        continue
                    with suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                            os.unlink(entry.path)

    def _run_path(self, run_id: str) -> Path:
        return self._runs / f"{run_id}{_SUFFIX}"

    def _steps_path(self, run_id: str) -> Path:
        return self._steps / f"{run_id}{_SUFFIX}"

    @asynccontextmanager
    async def _locked(self, run_id: str) -> AsyncIterator[None]:
        self._ensure_dirs()
        async with c.flock_context(
            self._locks / f"{run_id}.lock", None, f"the state lock of run {run_id!r}"
        ):
            yield

    def _read(self, path: Path) -> Any | None:
        """The parsed JSON document at ``path``; ``None`` if there is none."""
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unreadable(path, exc) from exc
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._corrupt(path, exc) from exc

    def _unreadable(self, path: Path, exc: OSError) -> Exception:
        """A document that exists but cannot be read: damage of that one record (no
        permission, a directory in its place), or the store's problem (I/O error...)."""
        if isinstance(exc, PermissionError | IsADirectoryError):
            return StateCorruptedError(
                f"state file {str(path)!r} cannot be read ({type(exc).__name__}: "
                f"{exc.strerror or exc}); it was left untouched: fix its permissions or "
                "restore it from a backup"
            )
        return c.os_error(exc, self._name, f"read {str(path)!r}")

    @staticmethod
    def _corrupt(path: Path, problem: object) -> StateCorruptedError:
        return StateCorruptedError(
            f"state file {str(path)!r} is corrupt ({problem}); it was left untouched: "
            "restore it from a backup or move it away"
        )

    def _write(self, path: Path, data: bytes) -> None:
        """Atomically replace ``path`` with ``data`` (temp file, fsync, rename, fsync dir)."""
        try:
            atomic_write_bytes(path, data, fsync=self._fsync)
        except OSError as exc:
            raise c.os_error(exc, self._name, f"write {str(path)!r}") from exc

    # --------------------------------------------------------- run documents
    def _load_run(self, path: Path, doc: Any) -> WorkflowRun[Any, Any]:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or "run" not in doc:
            raise self._corrupt(path, f"not a format-{FORMAT} run document")
        try:
            return WorkflowRun.model_validate(doc["run"])
        except ValidationError as exc:
            raise self._corrupt(path, exc) from exc

    def _read_run(self, run_id: str) -> WorkflowRun[Any, Any]:
        return self._read_run_doc(run_id)[0]

    def _read_run_doc(self, run_id: str) -> tuple[WorkflowRun[Any, Any], bool]:
        """The run, and whether its document says a steps document was written with it."""
        path = self._run_path(run_id)
        doc = self._read(path)
        if doc is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {str(self.directory)!r}")
        return self._load_run(path, doc), doc.get("steps") is True

    @staticmethod
    def _run_doc(run: WorkflowRun[Any, Any], has_steps: bool) -> bytes:
        doc: dict[str, Any] = {"format": FORMAT, "run": run.model_dump(mode="json")}
        if has_steps:
            doc["steps"] = True
        return _dumps(doc)

    def _write_run(self, run: WorkflowRun[Any, Any], has_steps: bool) -> None:
        self._write(self._run_path(run.id), self._run_doc(run, has_steps))

    # ------------------------------------------------------- steps documents
    def _load_steps(self, run_id: str) -> _Steps | None:
        """The run's steps document (``None`` if it has none yet): ONE open of the file.

        When the document's header carries the generation this process last wrote or read
        (and the size matches), the cached fragments are used and only the header is read;
        otherwise the whole file is read and parsed. Every write gets a new random
        generation, so a document changed by another process is always re-read."""
        path = self._steps_path(run_id)
        try:
            with open(path, "rb") as f:
                head = f.read(_HEAD_BYTES)
                cached = self._cache_get(run_id)
                if (
                    cached is not None
                    and cached.header is not None
                    and head.startswith(cached.header)
                    and os.fstat(f.fileno()).st_size == cached.size
                ):
                    return cached
                raw = head + f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unreadable(path, exc) from exc
        steps = self._parse_steps(path, raw)
        self._cache_put(run_id, steps)
        return steps

    def _parse_steps(self, path: Path, raw: bytes) -> _Steps:
        """Parse a steps document. Each step's shape is checked, so a read-modify-write never
        rewrites a document holding a damaged step; full validation happens on reads."""
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._corrupt(path, exc) from exc
        steps = doc.get("steps") if isinstance(doc, dict) else None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != FORMAT
            or not isinstance(steps, list)
            or not all(_looks_like_step(s) for s in steps)
        ):
            raise self._corrupt(path, f"not a format-{FORMAT} steps document")
        gen = doc.get("gen")
        return _Steps(
            header=_header(gen) if isinstance(gen, str) and _GEN.fullmatch(gen) else None,
            size=len(raw),
            frags=[_dumps(s) for s in steps],
            index={s["key"]: i for i, s in enumerate(steps)},
        )

    def _steps_or_raise(self, run_id: str) -> _Steps:
        steps = self._load_steps(run_id)
        if steps is None:
            _, has_steps = self._read_run_doc(run_id)  # RunNotFoundError
            if has_steps:
                raise self._corrupt(
                    self._steps_path(run_id),
                    "the steps document is missing although the run was created with one",
                )
            return _Steps(header=None, size=-1, frags=[], index={})
        return steps

    def _load_step(self, run_id: str, frag: bytes) -> StepState:
        try:
            return StepState.model_validate_json(frag)
        except ValidationError as exc:
            raise self._corrupt(self._steps_path(run_id), exc) from exc

    def _write_steps(self, run_id: str, frags: list[bytes], index: dict[str, int]) -> None:
        gen = uuid.uuid4().hex
        header = _header(gen)
        data = b"".join(
            (header, b',"run_id":', _dumps(run_id), b',"steps":[', b",".join(frags), b"]}")
        )
        self._cache_drop(run_id)
        self._write(self._steps_path(run_id), data)
        self._cache_put(run_id, _Steps(header=header, size=len(data), frags=frags, index=index))

    def _cache_get(self, run_id: str) -> _Steps | None:
        with self._cache_lock:
            steps = self._cache.get(run_id)
            if steps is not None:
                self._cache.move_to_end(run_id)
            return steps

    def _cache_put(self, run_id: str, steps: _Steps) -> None:
        if steps.header is None:
            return
        with self._cache_lock:
            self._cache[run_id] = steps
            self._cache.move_to_end(run_id)
            while len(self._cache) > CACHED_RUNS:
                self._cache.popitem(last=False)

    def _cache_drop(self, run_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(run_id, None)

    async def _mutate_step(
        self, run_id: str, key: str, change: Callable[[StepState], bool]
    ) -> tuple[bool, StepState | None]:
        """Read-modify-write one step under the run's lock. Returns (changed, step)."""
        validate_run_id(run_id)
        async with self._locked(run_id):
            steps = self._steps_or_raise(run_id)
            position = steps.index.get(key)
            if position is None:
                return False, None
            step = self._load_step(run_id, steps.frags[position])
            if not change(step):
                return False, step
            frags = list(steps.frags)
            frags[position] = step.model_dump_json().encode()
            self._write_steps(run_id, frags, steps.index)
            return True, step

    # ------------------------------------------------------------------ runs
    async def create_run(
        self,
        workflow: str,
        input: Any,
        *,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        version: str | None = None,
    ) -> WorkflowRun[Any, Any]:
        run = c.new_run(workflow, input, run_id, parent_run_id, version)
        run_id = run.id
        data = self._run_doc(run, True)
        async with self._locked(run_id):
            path = self._run_path(run_id)
            if path.exists():
                raise RunAlreadyExistsError(
                    f"a run with id {run_id!r} already exists in {str(self.directory)!r}"
                )
            # the steps document first: a run document always has its steps document
            self._write_steps(run_id, [], {})
            self._write(path, data)
        return self._load_run(path, json.loads(data))

    async def get_run(self, run_id: str) -> WorkflowRun[Any, Any]:
        validate_run_id(run_id)
        return self._read_run(run_id)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        limit: int | None = None,
    ) -> list[WorkflowRun[Any, Any]]:
        c.check_limit(limit)
        statuses = c.status_filter(status)
        runs: list[WorkflowRun[Any, Any]] = []
        for path in self._run_files():
            try:
                doc = self._read(path)
                if doc is None:  # pragma: no cover - documents are never deleted
                    continue
                run = self._load_run(path, doc)
            except StateCorruptedError as exc:
                log.warning("list_runs skipped a damaged run: %s", exc)
                continue
            if workflow is not None and run.workflow != workflow:
                continue
            if statuses is not None and run.status not in statuses:
                continue
            runs.append(run)
        return c.sort_and_limit(runs, limit)

    def _run_files(self) -> list[Path]:
        """The run documents (not temp files), in directory order."""
        try:
            with os.scandir(self._runs) as entries:
                names = [e.name for e in entries]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise c.os_error(exc, self._name, "list its runs") from exc
        return [
            self._runs / name
            for name in names
            if not name.startswith(".") and name.endswith(_SUFFIX)
        ]

    async def list_damaged(self) -> list[DamagedRun]:
        damaged: list[DamagedRun] = []
        for path in self._run_files():
            run_id = path.name[: -len(_SUFFIX)]
            try:
                doc = self._read(path)
                if doc is None:  # pragma: no cover - removed meanwhile
                    continue
                run = self._load_run(path, doc)
            except StateCorruptedError as exc:
                damaged.append(DamagedRun(run_id=run_id, problem=str(exc)))
                continue
            try:
                self._steps_or_raise(run_id)
                self._read_events(run_id)
            except (StateCorruptedError, RunNotFoundError) as exc:
                damaged.append(
                    DamagedRun(
                        run_id=run_id, problem=str(exc), workflow=run.workflow, status=run.status
                    )
                )
        return sorted(damaged, key=lambda d: d.run_id)

    async def _update_run(
        self,
        run_id: str,
        changes: RunChanges,
        expect_status: Collection[RunStatus] | None,
    ) -> WorkflowRun[Any, Any] | None:
        validate_run_id(run_id)
        expect = c.expect_filter(expect_status)
        async with self._locked(run_id):
            run, has_steps = self._read_run_doc(run_id)
            if expect is not None and run.status not in expect:
                return None
            updated = changes.apply(run, c.now_utc())
            self._write_run(updated, has_steps)
        return WorkflowRun.model_validate(updated.model_dump(mode="json"))

    # ----------------------------------------------------------------- steps
    async def get_step_states(self, run_id: str) -> dict[str, StepState]:
        validate_run_id(run_id)
        steps = self._steps_or_raise(run_id)
        loaded = [self._load_step(run_id, frag) for frag in steps.frags]
        return {step.key: step for step in loaded}

    async def get_step(self, run_id: str, key: str) -> StepState | None:
        validate_run_id(run_id)
        steps = self._steps_or_raise(run_id)
        position = steps.index.get(key)
        if position is None or position >= len(steps.frags):
            return None
        return self._load_step(run_id, steps.frags[position])

    async def insert_step(self, run_id: str, step: StepState) -> StepState:
        validate_run_id(run_id)
        frag = step.model_dump_json().encode()
        async with self._locked(run_id):
            return self._insert_locked(run_id, step, frag)

    async def insert_step_at_boundary(self, run_id: str, step: StepState) -> StepState | None:
        # the run's check and the insert under the run's state lock (a cancel request or a
        # settlement is written under it too): atomic across processes
        validate_run_id(run_id)
        frag = step.model_dump_json().encode()
        async with self._locked(run_id):
            run, _ = self._read_run_doc(run_id)
            if run.cancel_requested or run.status.is_settled:
                return None
            return self._insert_locked(run_id, step, frag)

    def _insert_locked(self, run_id: str, step: StepState, frag: bytes) -> StepState:
        """``insert_step`` while the caller holds the run's state lock."""
        steps = self._steps_or_raise(run_id)
        position = steps.index.get(step.key)
        if position is not None:
            return self._load_step(run_id, steps.frags[position])
        index = dict(steps.index)
        index[step.key] = len(steps.frags)
        self._write_steps(run_id, [*steps.frags, frag], index)
        return self._load_step(run_id, frag)

    async def schedule_step(self, run_id: str, key: str, *, at: datetime | None) -> StepState:
        now = c.now_utc()
        _, step = await self._mutate_step(run_id, key, lambda s: c.apply_schedule(s, at, now))
        if step is None:
            raise StepNotFoundError(f"run {run_id!r} has no step {key!r}")
        return step

    async def claim_step(
        self,
        run_id: str,
        key: str,
        *,
        owner: ClaimOwner,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> StepState | None:
        when = c.now_utc() if now is None else c.aware(now)
        changed, step = await self._mutate_step(
            run_id, key, lambda s: c.apply_claim(s, owner, lease_seconds, when)
        )
        return step if changed else None

    async def heartbeat_step(
        self, run_id: str, key: str, *, token: str, lease_seconds: float
    ) -> bool:
        now = c.now_utc()
        changed, _ = await self._mutate_step(
            run_id, key, lambda s: c.apply_heartbeat(s, token, lease_seconds, now)
        )
        return changed

    async def complete_step(
        self, run_id: str, key: str, *, result: Any, token: str | None
    ) -> bool:
        now = c.now_utc()
        changed, _ = await self._mutate_step(
            run_id, key, lambda s: c.apply_complete(s, result, token, now)
        )
        return changed

    async def fail_step_attempt(
        self,
        run_id: str,
        key: str,
        *,
        token: str | None,
        error: ErrorInfo,
        retry_at: datetime | None,
    ) -> StepState | None:
        now = c.now_utc()
        changed, step = await self._mutate_step(
            run_id, key, lambda s: c.apply_fail(s, token, error, retry_at, now)
        )
        return step if changed else None

    async def reset_step(
        self, run_id: str, key: str, *, attempts: int = 1, at: datetime | None = None
    ) -> StepState | None:
        now = c.now_utc()
        changed, step = await self._mutate_step(
            run_id, key, lambda s: c.apply_reset(s, attempts, at, now)
        )
        if step is None:
            raise StepNotFoundError(f"run {run_id!r} has no step {key!r}")
        return step if changed else None

    reset_step.__doc__ = c.RESET_DOC

    # ---------------------------------------------------------------- events
    def _events_path(self, run_id: str) -> Path:
        return self._events / f"{run_id}{_SUFFIX}"

    def _read_events(self, run_id: str) -> list[WorkflowEvent]:
        """The run's events (``[]`` if it has none yet); raises StateCorruptedError."""
        path = self._events_path(run_id)
        doc = self._read(path)
        if doc is None:
            return []
        events = doc.get("events") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(events, list):
            raise self._corrupt(path, f"not a format-{FORMAT} events document")
        try:
            return [WorkflowEvent.model_validate(e) for e in events]
        except ValidationError as exc:
            raise self._corrupt(path, exc) from exc

    def _write_events(self, run_id: str, events: list[WorkflowEvent]) -> None:
        self._write(
            self._events_path(run_id),
            _dumps(
                {
                    "format": FORMAT,
                    "run_id": run_id,
                    "events": [e.model_dump(mode="json") for e in events],
                }
            ),
        )

    async def send_event(
        self, run_id: str, name: str, payload: Any
    ) -> WorkflowEvent | None:
        validate_run_id(run_id)
        if not self._run_path(run_id).exists():
            return None
        async with self._locked(run_id):
            try:
                run, has_steps = self._read_run_doc(run_id)
            except RunNotFoundError:
                return None
            if run.status.is_settled:
                return None
            now = c.now_utc()
            events = self._read_events(run_id)
            event = WorkflowEvent(
                seq=(events[-1].seq + 1) if events else 1,
                run_id=run_id,
                name=name,
                payload=payload,
                sent_at=now,
            )
            self._write_events(run_id, [*events, event])
            if c.apply_wake_on_event(run, now):
                self._write_run(run, has_steps)
        return event.model_copy(deep=True)

    async def consume_event(
        self, run_id: str, name: str, step_key: str
    ) -> WorkflowEvent | None:
        validate_run_id(run_id)
        async with self._locked(run_id):
            if not self._run_path(run_id).exists():
                raise RunNotFoundError(f"no run with id {run_id!r} in {str(self.directory)!r}")
            events = self._read_events(run_id)
            index = c.pick_event(events, name, step_key)
            if index is None:
                return None
            event = events[index]
            if c.apply_consume(event, step_key, c.now_utc()):
                self._write_events(run_id, events)
        return event

    async def list_events(self, run_id: str) -> list[WorkflowEvent]:
        validate_run_id(run_id)
        events = self._read_events(run_id)
        if not events and not self._run_path(run_id).exists():
            raise RunNotFoundError(f"no run with id {run_id!r} in {str(self.directory)!r}")
        return events

    # ------------------------------------------------------------- locking
    def lock_run(
        self, run_id: str, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        validate_run_id(run_id)
        self._ensure_dirs()
        return c.flock_context(
            self._runlocks / f"{run_id}.lock", timeout, f"the lock of run {run_id!r}"
        )


__all__ = ["FileWorkflowStateService"]
