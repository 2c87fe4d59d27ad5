"""The typed JSON codec and the in-process queue, in isolation."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NotRequired, TypedDict
from uuid import UUID

import pytest
from pydantic import BaseModel

from pikku_typing import InProcessQueue, StepSerializationError
from pikku_typing.runtime import codec
from pikku_typing.runtime.queues.base import Job
from pikku_typing.runtime.steps import StepKeys


class Inner(TypedDict):
    when: datetime
    price: Decimal


class Outer(TypedDict):
    items: list[Inner]
    note: NotRequired[str]


class Price(BaseModel):
    when: datetime
    price: Decimal


class Model(BaseModel):
    id: UUID
    inner: Price


@dataclasses.dataclass(frozen=True)
class DC:
    day: date
    ratio: float
    tags: tuple[str, ...]


NOW = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        ({"items": [{"when": NOW, "price": Decimal("1.10")}]}, Outer),
        ({"items": [], "note": "x"}, Outer),
        (Model(id=UUID(int=3), inner=Price(when=NOW, price=Decimal("0"))), Model),
        (DC(date(2020, 2, 29), 0.1, ("a", "b")), DC),
        (UUID(int=9), UUID),
        (Decimal("3.14159"), Decimal),
        ([NOW, NOW], list[datetime]),
        ({"a": 1}, dict[str, int]),
        (None, Model | None),
    ],
)
def test_typed_values_round_trip_with_their_type(value: Any, type_: Any) -> None:
    encoded, returned = codec.encode(value, type_, what="step")
    stored = json.loads(json.dumps(encoded))  # what a store keeps
    rebuilt = codec.decode(stored, type_, what="step")
    assert rebuilt == value and type(rebuilt) is type(value)
    assert returned == value and type(returned) is type(value)


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, "x", None, True]},
        Decimal("0.08"),
        {"when": NOW, "id": UUID(int=1), "d": date(2020, 1, 1), "span": timedelta(seconds=90)},
        (1, (2, "three")),
    ],
)
def test_untyped_values_round_trip(value: Any) -> None:
    encoded, _ = codec.encode(value, None, what="step")
    rebuilt = codec.decode(json.loads(json.dumps(encoded)), None, what="step")
    assert rebuilt == value and type(rebuilt) is type(value)


@pytest.mark.parametrize(
    ("value", "type_", "needle"),
    [
        (DC(date(2020, 1, 1), 1.0, ()), None, "DC"),  # a dataclass needs a declared type
        ({1: "int key"}, None, "non-string key"),
        ({"x": float("nan")}, None, "not finite"),
        ({"__pikku_type__": "decimal"}, None, "reserved key"),
        (object(), None, "object"),
        ("not a uuid", UUID, "UUID"),
        ({"when": NOW}, Inner, "Inner"),  # missing key: would not come back
    ],
)
def test_values_that_cannot_round_trip_are_refused(value: Any, type_: Any, needle: str) -> None:
    with pytest.raises(StepSerializationError, match=needle):
        codec.encode(value, type_, what="step 'x'")


@pytest.mark.parametrize(
    ("value", "type_"), [(5, int), ("x", str), (True, bool), (1.5, float)]
)
def test_a_scalar_of_its_declared_type_skips_the_type_adapter(
    value: Any, type_: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``int`` declared ``int`` (``str``, ``bool``, a finite ``float``) is its own JSON:
    encoded, coerced and decoded without a ``TypeAdapter`` round trip (issue 16)."""
    expected = (codec.encode(value, type_, what="v"), codec.coerce(value, type_, what="v"))
    assert expected == ((value, value), (value, value))

    def no_adapter(_type: Any) -> Any:
        raise AssertionError("the TypeAdapter was used")

    monkeypatch.setattr(codec, "adapter", no_adapter)
    assert codec.encode(value, type_, what="v") == (value, value)
    assert codec.coerce(value, type_, what="v") == (value, value)
    assert codec.decode(value, type_, what="v") == value
    with pytest.raises(AssertionError):  # anything else still goes through pydantic
        codec.encode(True, int, what="v")
    with pytest.raises(StepSerializationError, match="not finite"):
        codec.encode(float("nan"), None, what="v")


def test_callable_return_type() -> None:
    async def coro() -> Model:
        raise NotImplementedError

    def plain() -> list[int]:
        return []

    assert codec.callable_return_type(coro) is Model
    assert codec.callable_return_type(plain) == list[int]
    assert codec.callable_return_type(lambda: 1) is None


def test_digest_is_stable_and_order_independent() -> None:
    assert codec.digest({"a": 1, "b": [1, 2]}) == codec.digest({"b": [1, 2], "a": 1})
    assert codec.digest({"a": 1}) != codec.digest({"a": 2})


def test_step_keys() -> None:
    keys = StepKeys()
    assert [keys.next(n) for n in ["a", "a", "b", "a#3", "a", "a"]] == [
        "a", "a#1", "b", "a#3", "a#2", "a#4",
    ]


def _job(n: int, at: datetime | None = None, dedupe: str | None = None, queue: str = "q") -> Job:
    return Job(queue=queue, kind="orchestrate", workflow="w", run_id=f"r{n}", run_at=at, dedupe_key=dedupe)


async def test_in_process_queue_orders_dedupes_and_keeps_future_jobs() -> None:
    q = InProcessQueue()
    seen: list[str] = []

    async def handler(job: Job) -> None:
        seen.append(job.run_id)
        if job.run_id == "r1":
            await q.enqueue(_job(9))  # queued meanwhile: runs in the same drain

    later = datetime.now(UTC) + timedelta(hours=1)
    await q.enqueue(_job(1, dedupe="k"))
    await q.enqueue(_job(2, dedupe="k"))  # merged with the queued r1
    await q.enqueue(_job(3, at=later))
    await q.enqueue(_job(4, queue="other"))
    assert await q.drain(handler, queues=["q"]) == 2
    assert seen == ["r1", "r9"]
    assert await q.drain(handler) == 1 and seen[-1] == "r4"
    assert [j.run_id for j in q.pending()] == ["r3"]
    await q.enqueue(_job(5, dedupe="k"))  # r1 left the queue: its key is free again
    assert await q.drain(handler) == 1


async def test_in_process_queue_serve_runs_due_jobs_until_stopped() -> None:
    q = InProcessQueue()
    done = asyncio.Event()
    seen: list[str] = []

    async def handler(job: Job) -> None:
        seen.append(job.run_id)
        if len(seen) == 3:
            done.set()

    stop = asyncio.Event()
    server = asyncio.create_task(q.serve(handler, concurrency=2, stop=stop))
    await q.enqueue(_job(1))
    await q.enqueue(_job(2, at=datetime.now(UTC) + timedelta(milliseconds=30)))
    await q.enqueue(_job(3))
    await done.wait()
    stop.set()
    await server
    assert sorted(seen) == ["r1", "r2", "r3"] and seen[-1] == "r2"
