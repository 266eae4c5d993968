"""A slow server never makes two live workers send the same message (issue 14): the lease
of the message in flight is renewed while its server takes its time, a worker that lost a
message stops before DATA, and an outcome is written only by the worker holding the row."""
import asyncio
import collections
import logging
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from dashboard.extensions import db
from dashboard.models import Message, utcnow
from dashboard.services.delivery.sweep import sweep

from ..smtp_servers import start_server
from .conftest import config, queue, reload

ROOT = Path(__file__).resolve().parents[2]
MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([0-9a-f]+)@", re.MULTILINE | re.IGNORECASE)


def _slow(server, delay: float) -> None:
    """Answer EHLO, MAIL, RCPT and DATA each after `delay` seconds (other clients are not
    held up: aiosmtpd serves every connection on one event loop)."""
    handler = server.handler
    ehlo, rcpt, data = handler.handle_EHLO, handler.handle_RCPT, handler.handle_DATA

    async def slow_ehlo(srv, session, envelope, hostname, responses):
        await asyncio.sleep(delay)
        return await ehlo(srv, session, envelope, hostname, responses)

    async def slow_mail(srv, session, envelope, address, mail_options):
        await asyncio.sleep(delay)
        envelope.mail_from = address  # what aiosmtpd does when no handler answers MAIL
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def slow_rcpt(srv, session, envelope, address, rcpt_options):
        await asyncio.sleep(delay)
        return await rcpt(srv, session, envelope, address, rcpt_options)

    async def slow_data(srv, session, envelope):
        await asyncio.sleep(delay)
        return await data(srv, session, envelope)

    handler.handle_EHLO, handler.handle_MAIL = slow_ehlo, slow_mail
    handler.handle_RCPT, handler.handle_DATA = slow_rcpt, slow_data


def _take_over(engine, message_id: int) -> None:
    """What a claim by another worker does to a row (from another connection)."""
    with engine.begin() as connection:
        connection.execute(update(Message).where(Message.id == message_id).values(
            lease_owner="other-worker", lease_expires_at=utcnow() + timedelta(minutes=5)))


@pytest.mark.slow
def test_a_slow_server_cannot_outlive_the_lease_of_the_message_it_is_sending(
        app, make_customer, smtp_server, point_relay):
    """Lease 1 s, four replies 0.8 s each (timeout 1 s): 2.4 s into the send, long after the
    claim's lease, another worker still finds nothing to claim, and the message is sent."""
    server = point_relay(smtp_server(), MAIL_TIMEOUT=1)
    _slow(server, 0.8)
    engine, claimable = db.engine, []
    slow_data = server.handler.handle_DATA

    async def look_for_a_claim(srv, session, envelope):
        with engine.connect() as connection:  # what another worker's claim would find
            claimable.append(connection.scalar(select(func.count()).select_from(Message).where(
                Message.status == "sending", Message.lease_expires_at < utcnow())))
        return await slow_data(srv, session, envelope)

    server.handler.handle_DATA = look_for_a_claim
    customer, _ = make_customer()
    [message] = queue(customer, "slow@example.com")
    with config(app, POSTINO_LEASE_SECONDS=1):
        started = time.monotonic()
        result = sweep()
    assert time.monotonic() - started > 2.4  # the send did outlive the first lease
    assert claimable == [0]
    assert (result.sent, result.lost) == (1, 0) and len(server.received) == 1
    assert reload(message).status == "sent"


def test_no_outcome_is_written_for_a_message_another_worker_took_over(
        app, make_customer, smtp_server, point_relay, caplog):
    """The row changed hands while its DATA was out (say our renewals could not reach the
    database): our UPDATE matches nothing, no timeline row is added, and it is counted."""
    server = point_relay(smtp_server())
    engine = db.engine
    customer, _ = make_customer()
    [message] = queue(customer, "taken@example.com")
    message_id = message.id  # the server's thread has no application context
    accept = server.handler.handle_DATA

    async def taken_during_data(srv, session, envelope):
        _take_over(engine, message_id)
        return await accept(srv, session, envelope)

    server.handler.handle_DATA = taken_during_data
    with caplog.at_level(logging.WARNING, logger="dashboard.services.delivery"):
        result = sweep()
    assert result.lost == 1 and len(server.received) == 1
    message = reload(message)
    assert (message.status, message.lease_owner) == ("sending", "other-worker")
    assert [e.type for e in message.events] == ["queued"]
    assert any("taken over" in r.getMessage() for r in caplog.records)


def test_a_worker_whose_message_was_taken_over_stops_before_data(
        app, make_customer, smtp_server, point_relay):
    """The row is taken over during MAIL; RCPT answers 0.9 s later (timeout 1 s): meanwhile
    the heartbeat's renewal finds the row gone, so DATA is never sent and the connection,
    left mid-transaction, is dropped. Nothing is written for the message."""
    server = point_relay(smtp_server(), MAIL_TIMEOUT=1)
    engine = db.engine
    customer, _ = make_customer()
    [message] = queue(customer, "lost@example.com")
    message_id = message.id  # the server's thread has no application context
    rcpt = server.handler.handle_RCPT
    data_commands = []

    async def taken_during_mail(srv, session, envelope, address, mail_options):
        _take_over(engine, message_id)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def slow_rcpt(srv, session, envelope, address, rcpt_options):
        await asyncio.sleep(0.9)
        return await rcpt(srv, session, envelope, address, rcpt_options)

    async def data_seen(srv, session, envelope):
        data_commands.append(envelope)
        return "250 OK"

    server.handler.handle_MAIL, server.handler.handle_RCPT = taken_during_mail, slow_rcpt
    server.handler.handle_DATA = data_seen
    with config(app, POSTINO_LEASE_SECONDS=1):
        result = sweep()
    assert (result.lost, result.sent, result.deferred) == (1, 0, 0)
    assert data_commands == [] and server.received == []
    message = reload(message)
    assert (message.status, message.lease_owner) == ("sending", "other-worker")
    assert [e.type for e in message.events] == ["queued"]


# -- two real worker processes on PostgreSQL -----------------------------------------------
_WORKER = """
import sys, time
from dashboard import create_app
from dashboard.services.delivery.sweep import sweep

app = create_app()
sent = lost = 0
with app.app_context():
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        result = sweep()
        sent, lost = sent + result.sent, lost + result.lost
        time.sleep(0.1)
print(f"sent={sent} lost={lost}")
"""


def _worker(app, server, seconds: float) -> subprocess.Popen:
    """A process sweeping this test's database every 0.1 s for `seconds`."""
    env = {**os.environ,
           "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "SECRET_KEY": app.config["SECRET_KEY"],
           "POSTINO_CREDENTIALS_KEY": app.config["POSTINO_CREDENTIALS_KEY"],
           "POSTINO_BOUNCE_DOMAIN": app.config["POSTINO_BOUNCE_DOMAIN"],
           "POSTINO_SENDER_NOTIFICATION": app.config["POSTINO_SENDER_NOTIFICATION"],
           "POSTINO_SENDER_REGISTRATION": app.config["POSTINO_SENDER_REGISTRATION"],
           "MAIL_SERVER": server.host, "MAIL_PORT": str(server.port),
           "MAIL_TIMEOUT": "1", "POSTINO_LEASE_SECONDS": "1"}
    env.pop("FLASK_APP", None)
    return subprocess.Popen([sys.executable, "-c", _WORKER, str(seconds)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.pg
@pytest.mark.slow
def test_two_workers_and_a_server_slower_than_the_lease_send_each_message_once(
        app, make_customer):
    """Two sweeping processes, lease 1 s, a server answering each command after 0.8 s
    (timeout 1 s, so one send takes 3.2 s): every message is delivered exactly once."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (set TEST_DATABASE_URL): SQLite runs one worker")
    server = start_server()
    try:
        _slow(server, 0.8)
        customer, _ = make_customer()
        queued = queue(customer, "one@example.com", "two@example.com", "three@example.com")
        workers = [_worker(app, server, 12) for _ in range(2)]
        outputs = [w.communicate(timeout=60) for w in workers]
        for worker, (_out, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, err.decode()[-2000:]
        delivered = collections.Counter(
            MESSAGE_ID.search(r.data).group(1).decode() for r in server.received)
        assert delivered == {m.public_id: 1 for m in queued}, (delivered, outputs)
        assert {reload(m).status for m in queued} == {"sent"}
        totals = [re.search(rb"sent=(\d+)", out).group(1) for out, _ in outputs]
        assert sum(int(n) for n in totals) == 3, outputs
    finally:
        server.stop()
