"""Webhook fixtures: a real HTTPS receiver trusted through POSTINO_WEBHOOK_CA_FILE, an
endpoint pointing at it, and messages with timeline steps."""
from __future__ import annotations

import pytest

from dashboard.extensions import db
from dashboard.models import Message
from dashboard.services.core.timeline import add_event

from . import receiver as receiver_module


@pytest.fixture
def receiver(app, tmp_path):
    """A running HTTPS receiver; Postino trusts its CA for this test."""
    server = receiver_module.start(tmp_path)
    saved = {k: app.config.get(k) for k in ("POSTINO_WEBHOOK_CA_FILE", "POSTINO_WEBHOOK_TIMEOUT")}
    app.config.update(POSTINO_WEBHOOK_CA_FILE=server.ca_file, POSTINO_WEBHOOK_TIMEOUT=2)
    yield server
    server.stop()
    app.config.update(saved)


@pytest.fixture
def hooked(app, make_customer, receiver):
    """(customer, endpoint, secret): a customer whose webhook points at the receiver."""
    from dashboard.services.webhooks import endpoints

    customer, _key = make_customer()
    endpoint, secret = endpoints.configure(customer, receiver.url, None)
    return customer, endpoint, secret


@pytest.fixture
def timeline(app):
    """timeline(customer, *steps, recipient=…) -> Message with those timeline steps (each a
    type, or (type, data))."""
    counter = {"n": 0}

    def _make(customer, *steps, recipient: str | None = None, reference: str = "ORD-1"):
        counter["n"] += 1
        message = Message(customer_id=customer.id, event="order_closed", subject="Ordine",
                          recipient=recipient or f"buyer{counter['n']}@example.com",
                          reference=reference, status="queued", attempts=0)
        db.session.add(message)
        db.session.flush()
        for step in steps:
            kind, data = (step, None) if isinstance(step, str) else step
            add_event(message, kind, data=data, code=550 if kind == "bounce" else None)
        db.session.commit()
        return message

    return _make
