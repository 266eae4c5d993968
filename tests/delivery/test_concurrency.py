"""Several `flask sweep` processes on one PostgreSQL queue: each message goes out exactly once,
and a worker killed mid-sweep loses nothing (at most the one message in flight is sent twice)."""
from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from dashboard.extensions import db
from dashboard.models import Message, new_public_id, utcnow
from dashboard.services.content import render
from dashboard.services.core import settings
from dashboard.services.delivery import modes, verp

from .conftest import sample

pytestmark = [pytest.mark.pg, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([0-9a-f]+)@", re.MULTILINE | re.IGNORECASE)


@pytest.fixture(autouse=True)
def _postgresql_only(app):
    """These tests need real row locks: skip them on SQLite."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (set TEST_DATABASE_URL): SQLite has no SKIP LOCKED")


def _enqueue_bulk(customer, count: int) -> list[str]:
    """Queue `count` rendered messages in a few bulk inserts; returns their public ids."""
    rendered = render.render_notification(customer, "order_closed", "it", sample("order_closed"))
    from_header = modes.from_header(customer, "order_closed")
    domain = verp.bounce_domain()
    now = utcnow()
    rows = []
    for index in range(count):
        public_id = new_public_id()
        rows.append({
            "public_id": public_id, "customer_id": customer.id, "event": "order_closed",
            "language": "it", "recipient": f"buyer{index}@example.com",
            "from_header": from_header, "envelope_from": verp.address_for(public_id, domain),
            "message_id_header": f"<{public_id}@{domain}>", "subject": rendered.subject,
            "html_body": rendered.html, "text_body": rendered.text, "transport": "standard",
            "template_source": rendered.source, "status": "queued", "attempts": 0,
            "next_attempt_at": now, "created_at": now, "updated_at": now, "open_count": 0,
        })
    for start in range(0, count, 500):
        db.session.execute(insert(Message), rows[start:start + 500])
    db.session.commit()
    return [row["public_id"] for row in rows]


def _worker_env(app, sink, **extra) -> dict:
    """The environment of a `flask sweep` process sharing this test's database and relay."""
    env = {**os.environ,
           "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "SECRET_KEY": app.config["SECRET_KEY"],
           "POSTINO_CREDENTIALS_KEY": app.config["POSTINO_CREDENTIALS_KEY"],
           "POSTINO_BOUNCE_DOMAIN": app.config["POSTINO_BOUNCE_DOMAIN"],
           "POSTINO_SENDER_NOTIFICATION": app.config["POSTINO_SENDER_NOTIFICATION"],
           "POSTINO_SENDER_REGISTRATION": app.config["POSTINO_SENDER_REGISTRATION"],
           "MAIL_SERVER": sink.host, "MAIL_PORT": str(sink.port), "MAIL_TIMEOUT": "10"}
    env.pop("FLASK_APP", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _start_sweep(env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flask", "sweep", "--batch-size", "100"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _delivered(sink) -> collections.Counter:
    """How many times the sink received each message (by Message-ID)."""
    ids = collections.Counter()
    for item in list(sink.received):
        match = MESSAGE_ID.search(item.data)
        assert match, item.data[:300]
        ids[match.group(1).decode()] += 1
    return ids


def _statuses() -> dict:
    db.session.expire_all()
    return dict(db.session.execute(
        select(Message.status, func.count()).group_by(Message.status)).all())


def test_four_workers_deliver_2000_messages_exactly_once(app, smtp_server, make_customer):
    """Four concurrent sweeps share 2,000 messages: every one sent once, all `sent`."""
    sink = smtp_server()
    customer, _ = make_customer()
    public_ids = _enqueue_bulk(customer, 2000)
    env = _worker_env(app, sink)
    workers = [_start_sweep(env) for _ in range(4)]
    outputs = [w.communicate(timeout=240) for w in workers]  # generous: shared CI machines
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err.decode()[-2000:]
    lines = [out.decode().strip().splitlines()[-1] for out, _ in outputs]
    sent = [int(re.search(r"sent=(\d+)", line).group(1)) for line in lines]
    assert sum(sent) == 2000, lines
    assert sum(1 for n in sent if n > 0) >= 2, f"the workers did not share the queue: {lines}"
    delivered = _delivered(sink)
    assert set(delivered) == set(public_ids)
    assert max(delivered.values()) == 1, delivered.most_common(3)
    assert _statuses() == {"sent": 2000}


@pytest.mark.parametrize("lanes", [1, 8])
def test_a_killed_worker_loses_nothing_and_duplicates_at_most_one_per_lane(
        app, smtp_server, make_customer, lanes):
    """SIGKILL mid-sweep; after the lease ends another sweep finishes: none lost, at most
    one message per lane sent twice (the one in flight on it)."""
    settings.put("relay_lanes", lanes)
    sink = smtp_server(pipelining=True)
    original = sink.handler.handle_DATA

    async def slow_data(server, session, envelope):
        await asyncio.sleep(0.05)
        return await original(server, session, envelope)

    sink.handler.handle_DATA = slow_data
    customer, _ = make_customer()
    public_ids = _enqueue_bulk(customer, 120)
    env = _worker_env(app, sink, POSTINO_LEASE_SECONDS=2)
    victim = _start_sweep(env)
    deadline = time.monotonic() + 30
    while len(sink.received) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(sink.received) >= 20, "the first worker never got going"
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = len(sink.received)
    assert killed_at < 120, "the worker finished before it could be killed"
    statuses = _statuses()
    assert statuses.get("sending", 0) > 0  # its claims are left behind, leased

    time.sleep(2.5)  # the dead worker's lease runs out
    rescuer = _start_sweep(env)
    out, err = rescuer.communicate(timeout=120)
    assert rescuer.returncode == 0, err.decode()[-2000:]
    delivered = _delivered(sink)
    assert set(delivered) == set(public_ids), "a message was lost"
    duplicates = [pid for pid, n in delivered.items() if n > 1]
    assert len(duplicates) <= lanes and max(delivered.values()) <= 2, duplicates
    assert _statuses() == {"sent": 120}
