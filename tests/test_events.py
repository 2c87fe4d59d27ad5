"""SPEC section 8, events: ``wire_event`` registration (the runtime behaviour of
``wait_for_event`` / ``send_event`` is tested below it, on every store and in both modes)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TypedDict

import pytest

from pikku_typing import EventNotFoundError, WorkflowRegistrationError, wire_event
from pikku_typing.wiring import EventDefinition, registry


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    saved = (dict(registry.workflows), dict(registry.rpcs), dict(registry.events))
    registry.clear()
    yield
    registry.clear()
    registry.workflows.update(saved[0])
    registry.rpcs.update(saved[1])
    registry.events.update(saved[2])


class PaymentReceived(TypedDict):
    amount: Decimal


@dataclass
class Shipped:
    tracking: str


def test_wire_event_registers_name_and_payload_type() -> None:
    definition = wire_event(name="payment.received", payload=PaymentReceived)
    assert definition == EventDefinition(name="payment.received", payload_type=PaymentReceived)
    assert registry.get_event("payment.received") is definition
    untyped = wire_event(name="ping")
    assert untyped.payload_type is None


def test_wire_event_same_declaration_twice_is_allowed() -> None:
    wire_event(name="shipped", payload=Shipped)
    wire_event(name="shipped", payload=Shipped)  # a module reload
    assert registry.get_event("shipped").payload_type is Shipped


def test_wire_event_name_with_two_payload_types_is_refused() -> None:
    wire_event(name="shipped", payload=Shipped)
    with pytest.raises(WorkflowRegistrationError, match=r"'shipped' is declared twice"):
        wire_event(name="shipped", payload=PaymentReceived)


@pytest.mark.parametrize("bad", ["", None, 3])
def test_wire_event_needs_a_name(bad: object) -> None:
    with pytest.raises(WorkflowRegistrationError, match="non-empty string"):
        wire_event(name=bad, payload=Shipped)  # type: ignore[arg-type]


def test_unknown_event_names_the_declared_ones() -> None:
    wire_event(name="a.b", payload=Shipped)
    with pytest.raises(EventNotFoundError, match=r"no event named 'nope' .*declared: a\.b"):
        registry.get_event("nope")
