"""Fixtures for the suppression list: messages to bounce, reports fed straight to intake."""
from __future__ import annotations

import pytest

from dashboard.models import Message
from dashboard.services.bounces import reports
from dashboard.services.messages import intake

from ..conftest import ORDER_DATA, report


@pytest.fixture
def customer(make_customer):
    """A standard-mode customer (relay scope)."""
    return make_customer("ACME", "Acme S.p.A.")[0]


@pytest.fixture
def make_message(customer):
    """make_message(to, customer=None) -> a stored message (not sent)."""

    def _make(to: str = "mario.rossi@example.org", owner=None) -> Message:
        [message] = intake.enqueue(owner or customer, "order_closed", to, reference="ORD-1",
                                     data=ORDER_DATA)
        return message

    return _make


@pytest.fixture
def bounce(make_message):
    """bounce(fixture_name, to) -> the message that received that report (through intake)."""

    def _bounce(name: str, to: str = "mario.rossi@example.org", message: Message | None = None):
        message = message or make_message(to)
        reports.ingest(message.public_id, report(name, message))
        return message

    return _bounce
