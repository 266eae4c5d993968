"""Lanes: a worker sends over several connections per transport at once, each lane with at
most one message whose outcome is not committed; rate limits are consulted before each
send; a quota refusal slows the transport down; claims are sized to the lanes."""
from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from sqlalchemy import select

from dashboard import reasons
from dashboard.extensions import db
from dashboard.models import Message, RateState, utcnow
from dashboard.services.core import settings
from dashboard.services.delivery import rate_limits
from dashboard.services.delivery.lanes import claim_size
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import intake

from .conftest import sample

MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([0-9a-f]+)@", re.MULTILINE | re.IGNORECASE)


def _queue(customer, *recipients):
    return intake.enqueue(customer, "order_closed", list(recipients),
                            data=sample("order_closed"))


def _watch_concurrency(server, delay: float) -> dict:
    """Hold every DATA for `delay` s and count the transactions open at once, the sessions,
    and, at each DATA, whether the same session's previous message was already committed
    as sent (read from another connection: what a worker killed then would leave)."""
    seen = {"open": 0, "most": 0, "sessions": set(), "previous_committed": []}
    last_on_session: dict[int, str] = {}
    original = server.handler.handle_DATA
    engine = db.engine

    async def watched(srv, session, envelope):
        seen["sessions"].add(id(session))
        seen["open"] += 1
        seen["most"] = max(seen["most"], seen["open"])
        previous = last_on_session.get(id(session))
        if previous is not None:
            with engine.connect() as connection:
                status = connection.scalar(select(Message.status).where(
                    Message.public_id == previous))
            seen["previous_committed"].append(status == "sent")
        match = MESSAGE_ID.search(envelope.original_content or envelope.content)
        last_on_session[id(session)] = match.group(1).decode()
        try:
            await asyncio.sleep(delay)
            return await original(srv, session, envelope)
        finally:
            seen["open"] -= 1

    server.handler.handle_DATA = watched
    return seen


def test_a_worker_sends_over_as_many_connections_as_the_relay_has_lanes(
        app, smtp_server, point_relay, make_customer):
    """Three lanes, nine messages, a server taking 0.4 s per message: three at a time over
    three connections (one lane: one at a time, one connection)."""
    server = point_relay(smtp_server(pipelining=True))
    seen = _watch_concurrency(server, 0.4)
    customer, _ = make_customer()
    settings.put("relay_lanes", 3)
    _queue(customer, *[f"u{i}@example.com" for i in range(9)])
    assert sweep().sent == 9
    assert seen["most"] == 3 and len(seen["sessions"]) == 3
    settings.put("relay_lanes", 1)
    seen.update(most=0, sessions=set())
    _queue(customer, *[f"v{i}@example.com" for i in range(3)])
    assert sweep().sent == 3
    assert seen["most"] == 1 and len(seen["sessions"]) == 1


def test_a_customers_own_server_gets_two_lanes_unless_set(app, smtp_server, make_customer):
    """customer_smtp: two connections at once by default, its own number when set."""
    server = smtp_server(pipelining=True)
    seen = _watch_concurrency(server, 0.3)
    customer, _ = make_customer(sending_mode="customer_smtp", from_address="n@cliente.example",
                                smtp_host=server.host, smtp_port=server.port,
                                smtp_security="none", smtp_auth="none", smtp_timeout=5)
    _queue(customer, *[f"u{i}@example.com" for i in range(6)])
    assert sweep().sent == 6
    assert seen["most"] == 2
    customer.smtp_lanes = 1
    db.session.commit()
    seen.update(most=0)
    _queue(customer, *[f"v{i}@example.com" for i in range(3)])
    assert sweep().sent == 3
    assert seen["most"] == 1


def test_each_lane_sends_its_next_data_only_after_its_previous_outcome_is_committed(
        app, smtp_server, point_relay, make_customer):
    """At every DATA after a connection's first, that connection's previous message is
    already `sent` in the database: a worker killed at that moment leaves at most the
    message in flight on each lane to be sent again."""
    server = point_relay(smtp_server(pipelining=True))
    seen = _watch_concurrency(server, 0.02)
    customer, _ = make_customer()
    settings.put("relay_lanes", 4)
    _queue(customer, *[f"u{i}@example.com" for i in range(24)])
    assert sweep().sent == 24
    assert len(seen["previous_committed"]) >= 20
    assert all(seen["previous_committed"]), seen["previous_committed"]


def test_pipelining_is_used_where_the_relay_offers_it(app, smtp_server, point_relay,
                                                      make_customer):
    """The sweep's transport pipelines MAIL, RCPT and DATA when the server advertises it."""
    server = point_relay(smtp_server(pipelining=True))
    customer, _ = make_customer()
    _queue(customer, "a@example.com", "b@example.com")
    assert sweep().sent == 2
    assert server.handler.data_behind_rcpt == [True, True]


def test_beyond_the_rate_limit_messages_wait_queued_with_the_time_the_window_allows(
        app, smtp_server, make_customer):
    """Three a minute on a customer's own server, five queued: three go, two wait queued
    ("waiting for the rate limit"), not attempted, the first due when the first send leaves
    the window and the next one the limit's spacing later."""
    server = smtp_server(pipelining=True)
    customer, _ = make_customer(sending_mode="customer_smtp", from_address="n@cliente.example",
                                smtp_host=server.host, smtp_port=server.port,
                                smtp_security="none", smtp_auth="none", smtp_timeout=5,
                                rate_limits={"minute": 3})
    started = utcnow()
    queued = _queue(customer, *[f"u{i}@example.com" for i in range(5)])
    result = sweep()
    assert (result.sent, result.waiting, result.deferred) == (3, 2, 0)
    assert len(server.wait_for(3)) == 3
    db.session.expire_all()
    waiting = [m for m in (db.session.get(Message, q.id) for q in queued)
               if m.status == "queued"]
    assert len(waiting) == 2
    assert {m.attempts for m in waiting} == {0}
    assert {reasons.decode(m.status_reason)[0] for m in waiting} == {"rate_limited_customer"}
    first, second = sorted(m.next_attempt_at for m in waiting)
    assert started + timedelta(seconds=60) < first < utcnow() + timedelta(seconds=62)
    assert second - first == timedelta(seconds=20)
    assert sweep().sent == 0  # not due yet: nothing is sent, nothing is claimed


def test_a_quota_refusal_slows_the_transport_down_and_does_not_pause_the_customer(
        app, smtp_server, make_customer):
    """Microsoft 365's SubmissionQuotaExceeded on the first two messages (both out at once
    on the customer's two lanes): the transport pauses and its limits halve, the message
    behind them waits for it, only one refusal counts for the breaker, nobody is paused."""
    quota = "data:554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"
    server = smtp_server(pipelining=True, faults={"a@example.com": quota,
                                                  "b@example.com": quota})
    customer, _ = make_customer(sending_mode="customer_smtp", from_address="n@cliente.example",
                                smtp_host=server.host, smtp_port=server.port,
                                smtp_security="none", smtp_auth="none", smtp_timeout=5,
                                rate_limits={"minute": 30})
    original = server.handler.handle_DATA

    async def slow(srv, session, envelope):
        await asyncio.sleep(0.3)  # both refused messages are in flight together
        return await original(srv, session, envelope)

    server.handler.handle_DATA = slow
    _queue(customer, "a@example.com", "b@example.com", "c@example.com")
    result = sweep()
    assert (result.deferred, result.waiting, result.sent) == (2, 1, 0)
    db.session.expire_all()
    customer = db.session.get(type(customer), customer.id)
    assert customer.auth_failures == 1 and not customer.paused
    state = db.session.get(RateState, f"customer:{customer.id}")
    assert state.slowdown == 1 and "SubmissionQuota" in state.slowdown_reply
    waiting = db.session.scalar(select(Message).where(Message.recipient == "c@example.com"))
    assert waiting.status == "queued"
    assert waiting.next_attempt_at >= state.slowdown_at + timedelta(
        seconds=rate_limits.PAUSE_SECONDS - 1)


def test_claims_are_sized_to_the_lanes_and_the_rate():
    """Four rounds of the relay's lanes (at least 8), or a quarter of a second at the rate
    reached, never more than asked."""
    assert claim_size(8, 200) == 32
    assert claim_size(1, 200) == 8
    assert claim_size(64, 200) == 200
    assert claim_size(8, 5) == 5
    assert claim_size(8, 200, rate=150.0) == 37
    assert claim_size(8, 200, rate=2000.0) == 200
    assert claim_size(8, 200, rate=10.0) == 32
