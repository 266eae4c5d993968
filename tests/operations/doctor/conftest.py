"""Doctor fixtures: messages built through the real pipeline (enqueue, then sweep a server)."""
from __future__ import annotations

import pytest

from dashboard.extensions import db
from dashboard.models import Message
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import intake
from tests.english import *  # noqa: F403 - the English fixtures

ORDER_DATA = {"order_number": "ORD-7", "order_date": "1/3/2026", "total": "€ 120",
              "customer_name": "Bar Roma", "agent_name": "Marco",
              "link": "https://x.example.com/o/7"}


@pytest.fixture
def notify(app):
    """notify(customer, to, reference="ORD-7", sweep_now=True) -> the stored message."""

    def _notify(customer, to, reference="ORD-7", sweep_now=True):
        data = dict(ORDER_DATA, order_number=reference)
        [message] = intake.enqueue(customer, "order_closed", to, reference=reference,
                                     language="it", data=data)
        if sweep_now:
            sweep()
            # the sweep works on detached copies: read the message as it is now
            message = db.session.get(Message, message.id)
        return message

    return _notify


@pytest.fixture
def fault_relay(app):
    """fault_relay({address: "451"|"550"|...}): our relay points at a scripted fault server."""
    from tests.smtp_servers import start_server

    started = []
    saved = {k: app.config[k] for k in ("MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS",
                                         "MAIL_USE_SSL", "MAIL_USERNAME", "MAIL_PASSWORD")}

    def _start(faults: dict[str, str]):
        server = start_server(faults=faults)
        started.append(server)
        app.config.update(MAIL_SERVER=server.host, MAIL_PORT=server.port, MAIL_USE_TLS=False,
                          MAIL_USE_SSL=False, MAIL_USERNAME=None, MAIL_PASSWORD=None)
        return server

    yield _start
    for server in started:
        server.stop()
    app.config.update(saved)
