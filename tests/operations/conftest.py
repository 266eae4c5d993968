"""Fixtures for operations tests: messages of any age and status, made directly."""
from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard.extensions import db
from dashboard.models import Message, MessageAttachment, MessageEvent, utcnow


@pytest.fixture
def make_message(app, make_customer):
    """Factory: make_message(age_days, status="sent", customer=None, events=2, attachments=0)."""
    state = {"customer": None}

    def _make(age_days: float, status: str = "sent", customer=None, events: int = 2,
              attachments: int = 0, **fields) -> Message:
        if customer is None:
            if state["customer"] is None:
                state["customer"] = make_customer()[0]
            customer = state["customer"]
        at = utcnow() - timedelta(days=age_days)
        message = Message(customer=customer, event="order_closed", recipient="buyer@example.com",
                          subject="Ordine", status=status, created_at=at, updated_at=at,
                          attempts=0, **fields)
        db.session.add(message)
        db.session.flush()
        for index in range(events):
            db.session.add(MessageEvent(message_id=message.id, type=f"step{index}", at=at))
        for index in range(attachments):
            db.session.add(MessageAttachment(message_id=message.id, filename=f"f{index}.pdf",
                                             content_type="application/pdf", size=3,
                                             content=b"pdf"))
        db.session.commit()
        return message

    return _make


@pytest.fixture
def admin_client(app, admin, login):
    """An admin's client reading English (pages default to Italian once the catalogs are full)."""
    client = login(app.test_client(), admin)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client
