"""Backoff, expiry, holds and leases: mail is retried on schedule and never dropped silently."""
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from dashboard import reasons
from dashboard.extensions import db
from dashboard.models import Message, utcnow
from dashboard.services.delivery import sending
from dashboard.services.delivery.leases import claim
from dashboard.services.delivery.sweep import next_delay, sweep
from dashboard.services.messages import intake

from .conftest import sample

SCHEDULE = [1, 5, 15, 60, 180, 360]


def _queue(customer, *recipients):
    """Queue one order_closed message per recipient."""
    return intake.enqueue(customer, "order_closed", list(recipients) or ["a@example.com"],
                            data=sample("order_closed"))


def _reload(message):
    db.session.expire_all()
    return db.session.get(Message, message.id)


def _make_due(message):
    message = _reload(message)
    message.next_attempt_at = utcnow() - timedelta(seconds=1)
    db.session.commit()


def test_backoff_follows_the_schedule_with_ten_percent_jitter(app, smtp_server, point_relay,
                                                             make_customer):
    """Each 451 pushes the next attempt 1, 5, 15, 60, 180, 360, then 360 minutes away (±10 %)."""
    point_relay(smtp_server(faults={"busy@example.com": "451"}))
    customer, _ = make_customer()
    [message] = _queue(customer, "busy@example.com")
    for attempt, minutes in enumerate(SCHEDULE + [360], start=1):
        assert sweep().deferred == 1
        message = _reload(message)
        event = message.events[-1]
        assert (message.status, message.attempts, event.type) == ("deferred", attempt, "deferred")
        delay = (message.next_attempt_at - event.at).total_seconds() / 60
        assert minutes * 0.9 <= delay <= minutes * 1.1, (attempt, delay)
        assert event.data["next_attempt_at"] == message.next_attempt_at.isoformat()
        _make_due(message)


def test_next_delay_jitters_within_ten_percent():
    """The jitter spreads retries but never beyond ±10 % of the scheduled delay."""
    delays = [next_delay(3, SCHEDULE).total_seconds() for _ in range(500)]
    assert min(delays) >= 15 * 60 * 0.9 and max(delays) <= 15 * 60 * 1.1
    assert max(delays) - min(delays) > 60  # really jittered


def test_a_message_that_would_retry_past_24_hours_expires(app, smtp_server, point_relay,
                                                           make_customer):
    """A deferral whose next try falls after the maximum age fails as expired, code kept."""
    point_relay(smtp_server(faults={"busy@example.com": "451"}))
    customer, _ = make_customer()
    [message] = _queue(customer, "busy@example.com")
    message.created_at = utcnow() - timedelta(hours=23, minutes=59, seconds=30)
    db.session.commit()
    assert sweep().failed == 1
    message = _reload(message)
    assert message.status == "failed" and message.next_attempt_at is None
    event = message.events[-1]
    assert (event.type, event.smtp_code) == ("expired", 451)
    assert "retries exhausted" in reasons.english(event.detail)


def test_a_message_older_than_24_hours_is_expired_without_sending(app, relay, make_customer):
    """A queued message past the maximum age is recorded as expired and never sent."""
    customer, _ = make_customer()
    [message] = _queue(customer)
    message.created_at = utcnow() - timedelta(hours=24, minutes=1)
    db.session.commit()
    assert sweep().failed == 1
    message = _reload(message)
    assert message.status == "failed" and message.events[-1].type == "expired"
    assert relay.received == []


def test_held_messages_expire_after_the_maximum_age(app, relay, make_customer):
    """Held mail is not kept forever: after 24 h it fails as expired (never silently)."""
    customer, _ = make_customer()
    sending.set_global(False)
    [message] = _queue(customer)
    assert message.status == "held"
    message.created_at = utcnow() - timedelta(hours=25)
    db.session.commit()
    sending.set_global(True)  # release happens first, but the sweep expires it
    sweep()
    message = _reload(message)
    assert message.status == "failed" and message.events[-1].type == "expired"
    assert relay.received == []


def _api_send(api_post, key, to="a@example.com"):
    response = api_post(key, {"event": "order_closed", "to": to, "data": sample("order_closed")})
    assert response.status_code == 202, response.json
    return response.json["messages"][0]


@pytest.mark.parametrize("switch", ["global", "customer", "paused"])
def test_sending_off_holds_new_mail_and_turning_it_on_releases_it(app, relay, make_customer,
                                                                 api_post, switch):
    """Held at ingest when off (global, customer, paused); sent after turning back on."""
    customer, key = make_customer()
    if switch == "global":
        sending.set_global(False)
    elif switch == "customer":
        sending.set_customer(customer, False)
    else:
        sending.pause_customer(customer, "test pause")
        db.session.commit()
    item = _api_send(api_post, key)
    assert item["status"] == "held"
    result = sweep()
    assert result.sent == 0
    assert relay.received == []
    if switch == "global":
        assert sending.set_global(True) == 1
    elif switch == "customer":
        assert sending.set_customer(customer, True) == 1
    else:
        assert sending.resume_customer(customer) == 1
    assert sweep().sent == 1
    assert len(relay.wait_for(1)) == 1
    message = db.session.scalar(select(Message).where(Message.public_id == item["id"]))
    assert [e.type for e in message.events] == ["held", "released", "sent"]


def test_queued_mail_is_held_by_the_sweep_when_sending_is_turned_off(app, relay, make_customer):
    """Mail queued before the switch went off is held by the next sweep, then released."""
    customer, _ = make_customer()
    other, _ = make_customer()
    [mine] = _queue(customer)
    [theirs] = _queue(other)
    sending.set_customer(customer, False)
    result = sweep()
    assert result.held == 1 and result.sent == 1
    assert _reload(mine).status == "held"
    assert _reload(theirs).status == "sent"
    sending.set_customer(customer, True)
    assert sweep().sent == 1
    assert [e.type for e in _reload(mine).events] == ["queued", "held", "released", "sent"]


def test_a_dead_workers_claim_is_taken_over_after_its_lease(app, relay, make_customer):
    """Rows claimed by a worker that died are left alone until the lease ends, then sent."""
    customer, _ = make_customer()
    _queue(customer, "a@example.com", "b@example.com")
    assert len(claim("dead-worker", 10)) == 2  # and then it died
    assert sweep().sent == 0
    db.session.execute(update(Message).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert sweep().sent == 2
    assert len(relay.wait_for(2)) == 2


def test_a_short_lease_is_renewed_during_a_long_batch(app, smtp_server, point_relay,
                                                      make_customer):
    """With a lease shorter than the batch takes, the worker renews it and sends everything."""
    server = point_relay(smtp_server(), MAIL_TIMEOUT=1)
    original = server.handler.handle_DATA

    async def slow(srv, session, envelope):
        import asyncio

        await asyncio.sleep(0.05)
        return await original(srv, session, envelope)

    server.handler.handle_DATA = slow
    customer, _ = make_customer()
    _queue(customer, *[f"u{i}@example.com" for i in range(30)])
    app.config["POSTINO_LEASE_SECONDS"] = 1
    try:
        assert sweep().sent == 30
    finally:
        app.config["POSTINO_LEASE_SECONDS"] = 300
    assert sorted(r.rcpt_tos[0] for r in server.wait_for(30)) == sorted(
        f"u{i}@example.com" for i in range(30))


def test_a_claim_that_loses_the_race_for_its_rows_takes_the_next_due_ones(app, make_customer):
    """Another claimer takes the rows read a moment ago (SQLite reads take no lock): the
    claim does not report an empty queue, it reads again and claims what is still due."""
    from sqlalchemy import event

    customer, _ = make_customer()
    _queue(customer, "a@example.com", "b@example.com", "c@example.com", "d@example.com")
    first_two = db.session.scalars(select(Message.id).order_by(Message.id).limit(2)).all()
    raced = {"done": False}

    def racer(conn, cursor, statement, parameters, context, executemany):
        if raced["done"] or not statement.startswith("UPDATE message SET status"):
            return
        raced["done"] = True
        with db.engine.connect() as other:  # the other worker wins these two
            other.execute(update(Message).where(Message.id.in_(first_two))
                          .values(status="sending", lease_owner="other-worker",
                                  lease_expires_at=utcnow() + timedelta(minutes=5)))
            other.commit()

    if db.engine.dialect.name == "postgresql":
        pytest.skip("on PostgreSQL the rows read are locked: no other claimer can take them")
    event.listen(db.engine, "before_cursor_execute", racer)
    try:
        mine = claim("this-worker", 2)
    finally:
        event.remove(db.engine, "before_cursor_execute", racer)
    assert raced["done"] and len(mine) == 2 and not set(mine) & set(first_two)
    owners = dict(db.session.execute(select(Message.id, Message.lease_owner)).all())
    assert sorted(owners.values()) == ["other-worker"] * 2 + ["this-worker"] * 2
