"""Fixtures for bounce intake: a running bounce listener, sent messages, report fixtures."""
from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from dashboard.extensions import db
from dashboard.models import Message
from dashboard.services.delivery import verp
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import intake

from ..conftest import free_port

FIXTURES = Path(__file__).parent / "fixtures"
ORDER_DATA = {"order_number": "ORD-1", "order_date": "1/1/2026", "total": "€ 5",
              "customer_name": "Bar", "agent_name": "Marco", "link": "https://x.example.com/o/1"}


def report(name: str, message: Message | None = None, *, recipient: str | None = None,
           verp_address: str | None = None) -> bytes:
    """A fixture report filled in for a message, with CRLF line ends (as SMTP wants)."""
    text = (FIXTURES / name).read_text()
    public_id = message.public_id if message is not None else "0" * 24
    text = text.format(verp=verp_address or verp.address_for(public_id),
                       recipient=recipient or (message.recipient if message else "x@example.org"),
                       message_id=public_id)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


@pytest.fixture
def listener(app):
    """The bounce listener on a free port of 127.0.0.1, for this test."""
    from dashboard import bounce_listener

    port = free_port()
    controller = bounce_listener.start(app, "127.0.0.1", port)
    controller.port_number = port
    yield controller
    controller.stop()


@pytest.fixture
def post_report(listener):
    """post_report(rcpt, raw) delivers a report to the listener from the null sender."""

    def _post(rcpt: str, raw: bytes):
        with smtplib.SMTP("127.0.0.1", listener.port_number, timeout=10) as smtp:
            smtp.ehlo("mx.example.net")
            return smtp.sendmail("<>", [rcpt], raw)

    return _post


@pytest.fixture
def sent_message(relay, make_customer):
    """sent_message(to, customer=None) -> a message really sent through the relay sink."""

    def _send(to: str = "mario.rossi@example.org", customer=None):
        if customer is None:
            customer, _key = make_customer()
        [message] = intake.enqueue(customer, "order_closed", to, reference="ORD-1",
                                     language="it", data=ORDER_DATA)
        result = sweep()
        db.session.refresh(message)
        assert message.status in ("sent", "suppressed"), (result, message.status_reason)
        return message

    return _send
