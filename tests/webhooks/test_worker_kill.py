"""A worker killed (SIGKILL) in the middle of a webhook delivery loses nothing: its claim
expires and another worker sends the event again, with the same id."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dashboard.extensions import db
from dashboard.models import WebhookEvent
from dashboard.services.webhooks import delivery

ROOT = Path(__file__).resolve().parents[2]


def _worker(app, receiver, lease: int) -> subprocess.Popen:
    """`flask webhooks` in a process of its own, on this test's database."""
    env = {**os.environ,
           "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "SECRET_KEY": app.config["SECRET_KEY"],
           "POSTINO_CREDENTIALS_KEY": app.config["POSTINO_CREDENTIALS_KEY"],
           "POSTINO_WEBHOOK_CA_FILE": receiver.ca_file,
           "POSTINO_WEBHOOK_TIMEOUT": "30",
           "POSTINO_LEASE_SECONDS": str(lease),
           "PYTHONPATH": str(ROOT)}
    env.pop("FLASK_APP", None)
    return subprocess.Popen([sys.executable, "-m", "flask", "webhooks"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.pg
@pytest.mark.slow
def test_a_worker_killed_mid_delivery_loses_no_event(app, hooked, receiver, timeline):
    """Five events; the receiver holds the first request while the worker is SIGKILLed.
    After the lease, the next pass delivers every event, each at least once, in order per
    message, and the database says all are delivered."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (set TEST_DATABASE_URL)")
    customer, _endpoint, _secret = hooked
    messages = [timeline(customer, "sent", "opened") for _ in range(2)]
    messages.append(timeline(customer, "sent"))
    receiver.answers.append("hold")
    victim = _worker(app, receiver, lease=2)
    try:
        assert receiver.holding.wait(30), victim.communicate(timeout=5)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
    receiver.release.set()
    db.session.expire_all()
    # the dead worker's claim: one event (a 2 s lease covers no more at a 30 s timeout)
    assert db.session.scalar(select(func.count()).select_from(WebhookEvent)
                             .where(WebhookEvent.status == "sending")) == 1
    time.sleep(2.2)  # the dead worker's lease runs out
    counts = delivery.run()
    assert counts["delivered"] == 5
    statuses = db.session.scalars(select(WebhookEvent.status)).all()
    assert sorted(statuses) == ["delivered"] * 5
    bodies = receiver.events()
    assert len({b["id"] for b in bodies}) == 5 and len(bodies) == 6  # the held one twice
    for message in messages:
        kinds = [b["event"] for b in bodies if b["message_id"] == message.public_id]
        deduplicated = [k for i, k in enumerate(kinds) if k not in kinds[:i]]
        assert deduplicated == (["sent", "opened"] if len(kinds) > 1 and "opened" in kinds
                                else ["sent"])
