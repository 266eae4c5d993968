"""Pipeline fixtures: SMTP servers the relay can be pointed at, TLS material, sample data."""
from __future__ import annotations

import socket
import ssl
import threading
from contextlib import contextmanager

import pytest
import trustme
from sqlalchemy import func, select

from dashboard.extensions import db
from dashboard.models import IdempotencyKey, Message, MessageEvent
from dashboard.notifications import CATALOG

from ..conftest import free_port
from ..smtp_servers import start_server

RELAY_KEYS = ("MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS", "MAIL_USE_SSL", "MAIL_USERNAME",
              "MAIL_PASSWORD", "MAIL_TIMEOUT")


def sample(event: str, **overrides) -> dict:
    """The catalog's sample data for an event, with overrides."""
    return {**CATALOG[event]["sample"], **overrides}


def queue(customer, *recipients) -> list[Message]:
    """Queue one order_closed message per recipient through the service layer."""
    from dashboard.services.messages import intake

    return intake.enqueue(customer, "order_closed", list(recipients),
                          data=sample("order_closed"))


def reload(message: Message) -> Message:
    """The message as the database has it now (another thread or process may have written)."""
    db.session.expire_all()
    return db.session.get(Message, message.id)


def counts() -> tuple[int, int, int]:
    """Rows in message, message_event and idempotency_key."""
    return tuple(db.session.scalar(select(func.count()).select_from(model))
                 for model in (Message, MessageEvent, IdempotencyKey))


@pytest.fixture
def point_relay(app):
    """point_relay(server, **config): send our relay's mail to `server` for this test."""
    saved = {key: app.config.get(key) for key in RELAY_KEYS}

    def _point(server, **config):
        app.config.update(MAIL_SERVER=server.host, MAIL_PORT=server.port, MAIL_USE_TLS=False,
                          MAIL_USE_SSL=False, MAIL_USERNAME=None, MAIL_PASSWORD=None)
        app.config.update(config)
        return server

    yield _point
    app.config.update(saved)


@pytest.fixture
def smtp_server():
    """smtp_server(**kwargs): start a tests.smtp_servers server, stopped after the test."""
    started = []

    def _start(**kwargs):
        server = start_server(**kwargs)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


class RawServer:
    """A tiny TCP server answering each connection with a fixed script (e.g. 421 at once)."""

    def __init__(self, banner: bytes):
        self.host, self.port = "127.0.0.1", free_port()
        self.banner = banner
        self.connections = 0
        self.sock = socket.create_server((self.host, self.port))
        self.sock.settimeout(0.2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.sendall(self.banner)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def busy_server():
    """A server that answers every connection with 421 and hangs up."""
    server = RawServer(b"421 4.3.2 Service not available, try later\r\n")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ca():
    """A throwaway certificate authority (trustme)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 signed by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def ca_pem(ca) -> str:
    """The test CA's certificate, PEM, as a customer would paste it."""
    return ca.cert_pem.bytes().decode()


@contextmanager
def config(app, **values):
    """Set app config values for a block."""
    saved = {key: app.config.get(key) for key in values}
    app.config.update(values)
    try:
        yield
    finally:
        app.config.update(saved)
