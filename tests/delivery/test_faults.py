"""Every fault a server can throw at us becomes the right status and timeline entry."""
import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import Suppression, utcnow
from dashboard.services.delivery.sweep import sweep

from .conftest import queue, reload


def _assert_deferred_soon(message, code, text_part):
    """Deferred with a next attempt about a minute away and the answer on the timeline."""
    assert message.status == "deferred", (message.status, message.last_smtp_text)
    assert message.attempts == 1
    event = message.events[-1]
    assert event.type == "deferred"
    assert event.smtp_code == code
    assert text_part in (event.smtp_text or "")
    delay = (message.next_attempt_at - event.at).total_seconds()
    assert 54 <= delay <= 66


def test_421_at_connect_defers_with_the_servers_answer(app, busy_server, point_relay,
                                                       make_customer):
    """A server greeting with 421 leaves the message deferred, 421 and its text recorded."""
    point_relay(busy_server)
    customer, _ = make_customer()
    [message] = queue(customer, "a@example.com")
    result = sweep()
    assert result.deferred == 1 and result.sent == 0
    _assert_deferred_soon(reload(message), 421, "Service not available")


def test_connection_refused_defers(app, make_customer):
    """Nothing listening on the relay port is a temporary failure, not a loss."""
    customer, _ = make_customer()
    [message] = queue(customer, "a@example.com")
    assert sweep().deferred == 1
    message = reload(message)
    _assert_deferred_soon(message, None, "connection refused")


def test_451_at_rcpt_defers_and_550_fails_and_suppresses(app, smtp_server, point_relay,
                                                         make_customer):
    """Per-recipient answers in one session: 451 deferred, 550 failed + suppressed, 250 sent."""
    server = point_relay(smtp_server(faults={"busy@example.com": "451",
                                             "gone@example.com": "550"}))
    customer, _ = make_customer()
    busy, gone, fine = queue(customer, "busy@example.com", "gone@example.com",
                              "fine@example.com")
    result = sweep()
    assert (result.sent, result.deferred, result.failed) == (1, 1, 1)
    assert [r.rcpt_tos for r in server.wait_for(1)] == [["fine@example.com"]]
    _assert_deferred_soon(reload(busy), 451, "4.3.0 Try again later")
    gone = reload(gone)
    assert gone.status == "failed" and gone.next_attempt_at is None
    event = gone.events[-1]
    assert (event.type, event.smtp_code) == ("failed", 550)
    assert "5.1.1 No such user" in event.smtp_text
    entry = db.session.scalar(select(Suppression).where(Suppression.address == "gone@example.com"))
    assert entry is not None and entry.reason == "hard_bounce" and entry.lifted_at is None
    assert gone.suppression_id == entry.id
    assert reload(fine).status == "sent"


def test_a_later_message_to_a_refused_address_is_suppressed_not_sent(app, smtp_server,
                                                                    point_relay, make_customer):
    """After a 550 the address is on the list: the next message is recorded, never sent."""
    server = point_relay(smtp_server(faults={"gone@example.com": "550"}))
    customer, _ = make_customer()
    queue(customer, "gone@example.com")
    sweep()
    [again] = queue(customer, "gone@example.com")
    assert again.status == "suppressed"
    assert sweep().sent == 0
    assert server.received == []


def test_552_at_data_fails_without_suppressing_the_recipient(app, smtp_server, point_relay,
                                                              make_customer):
    """552 5.3.4 (message too big) after the content is a permanent refusal of this message,
    about the message, not the recipient: nobody is suppressed."""
    point_relay(smtp_server(faults={"big@example.com": "552"}))
    customer, _ = make_customer()
    [message] = queue(customer, "big@example.com")
    assert sweep().failed == 1
    message = reload(message)
    assert message.status == "failed" and message.status_reason.endswith("data")
    event = message.events[-1]
    assert (event.type, event.smtp_code) == ("failed", 552)
    assert "5.3.4 Message too big" in event.smtp_text
    assert (event.data["fault_class"], event.data["fault_reason"]) == ("sender_reputation",
                                                                       "message_too_big")
    assert message.suppression_id is None
    assert db.session.scalar(select(Suppression)) is None


def test_a_drop_mid_data_defers_and_the_next_message_goes_on_a_new_connection(
        app, smtp_server, point_relay, make_customer):
    """The server hanging up during DATA defers that message; the batch carries on."""
    server = point_relay(smtp_server(faults={"drop@example.com": "drop"}))
    customer, _ = make_customer()
    dropped, after = queue(customer, "drop@example.com", "after@example.com")
    result = sweep()
    assert (result.deferred, result.sent) == (1, 1)
    message = reload(dropped)
    _assert_deferred_soon(message, None, "connection dropped")
    assert [r.rcpt_tos for r in server.wait_for(1)] == [["after@example.com"]]
    assert reload(after).status == "sent"


def test_a_stall_past_the_timeout_defers(app, smtp_server, point_relay, make_customer):
    """A server that never answers DATA is given up after MAIL_TIMEOUT, once, and deferred."""
    point_relay(smtp_server(faults={"slow@example.com": "stall"}), MAIL_TIMEOUT=1)
    customer, _ = make_customer()
    [message] = queue(customer, "slow@example.com")
    started = time.monotonic()
    assert sweep().deferred == 1
    assert time.monotonic() - started < 4
    _assert_deferred_soon(reload(message), None, "timeout")


def test_a_reused_connection_closed_by_the_server_is_reopened_once(app, smtp_server,
                                                                   point_relay, make_customer):
    """A reused connection the server has closed is reopened once; nothing is lost."""
    server = point_relay(smtp_server())
    customer, _ = make_customer()
    first, second = queue(customer, "one@example.com", "two@example.com")
    original = server.handler.handle_DATA
    state = {"n": 0}

    async def hang_up_after_first(srv, session, envelope):
        answer = await original(srv, session, envelope)
        state["n"] += 1
        if state["n"] == 1:  # answer 250, then close the connection (like an idle timeout)
            asyncio.get_running_loop().call_soon(srv.transport.close)
        return answer

    server.handler.handle_DATA = hang_up_after_first
    result = sweep()
    assert result.sent == 2, result
    assert len(server.wait_for(2)) == 2
    assert [e.type for e in reload(second).events] == ["queued", "sent"]


def test_deferred_messages_are_not_retried_before_their_time(app, smtp_server, point_relay,
                                                            make_customer):
    """A second sweep right away leaves the deferred message alone; when due it is sent."""
    server = point_relay(smtp_server(faults={"busy@example.com": "451"}))
    customer, _ = make_customer()
    [message] = queue(customer, "busy@example.com")
    sweep()
    assert sweep().deferred == 0
    server.handler.faults.clear()
    message = reload(message)
    message.next_attempt_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert sweep().sent == 1
    message = reload(message)
    assert message.attempts == 2
    assert [e.type for e in message.events] == ["queued", "deferred", "sent"]


@pytest.mark.parametrize("fault", ["451", "550", "552", "drop"])
def test_every_outcome_clears_the_lease(app, smtp_server, point_relay, make_customer, fault):
    """Whatever the answer, the message leaves `sending` and no lease stays behind."""
    point_relay(smtp_server(faults={"x@example.com": fault}))
    customer, _ = make_customer()
    [message] = queue(customer, "x@example.com")
    sweep()
    message = reload(message)
    assert message.status in ("deferred", "failed")
    assert message.lease_owner is None and message.lease_expires_at is None
