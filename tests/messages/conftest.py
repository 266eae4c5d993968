"""Fixtures for the log: messages made through the real pipeline, at chosen times."""
from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard.extensions import db
from dashboard.models import utcnow
from dashboard.notifications import CATALOG
from dashboard.services.messages import intake


@pytest.fixture
def make_message(app, make_customer):
    """Factory: make_message(customer=None, to=..., reference=..., event=..., ago=timedelta,
    status=None) -> Message stored by services.messages.intake.enqueue, then aged and re-statused."""
    default = {}

    def _make(customer=None, to="mario.rossi@example.com", reference="ORD-2026-000123",
              event="order_closed", ago: timedelta | None = None, status: str | None = None,
              data: dict | None = None, **fields):
        if customer is None:
            if "customer" not in default:
                default["customer"] = make_customer("ACME", "Acme Srl")[0]
            customer = default["customer"]
        payload = data if data is not None else dict(CATALOG[event]["sample"])
        if data is None and event == "order_closed" and reference:
            payload["order_number"] = reference
        (message,) = intake.enqueue(customer, event, to, reference, "it", payload)
        if ago is not None:
            message.created_at = utcnow() - ago
        if status is not None:
            message.status = status
        for name, value in fields.items():
            setattr(message, name, value)
        db.session.commit()
        return message

    return _make


@pytest.fixture
def insert_messages(app, make_customer):
    """Factory: insert_messages(n, customer, **columns) -> ids; fast Core inserts for volume."""
    from dashboard.models import Message, new_public_id, normalise_reference

    def _insert(n: int, customer, start=None, step=timedelta(seconds=1), **columns):
        start = start or utcnow() - timedelta(hours=1)
        rows = []
        for i in range(n):
            reference = columns.get("reference", f"ORD-2026-{i:06d}")
            rows.append({
                "public_id": new_public_id(), "customer_id": customer.id,
                "event": columns.get("event", "order_closed"), "reference": reference,
                "reference_norm": normalise_reference(reference), "language": "it",
                "recipient": columns.get("recipient", f"user{i}@example.com"),
                "subject": f"Ordine {reference} chiuso", "status": columns.get("status", "sent"),
                "attempts": 1, "transport": "standard", "open_count": 0,
                "created_at": start + i * step, "updated_at": start + i * step,
            })
        db.session.execute(Message.__table__.insert(), rows)
        db.session.commit()

    return _insert


@pytest.fixture(autouse=True)
def _finish_bulk_resends(app):
    """Let any background bulk resend finish before the tables are emptied."""
    yield
    from dashboard.services.messages import resend

    for run_id in list(resend._threads):
        resend.wait_for(run_id)


@pytest.fixture
def support_client(app, make_user, login):
    """A client logged in as support, reading the dashboard in English (texts are asserted)."""
    return login(app.test_client(), make_user("support", language="en"))
