"""One message that makes building or sending raise never stops the sweep (issue 14): it is
deferred with the error on its timeline and in the log, failed after a few such errors, and
everybody else's mail in the same sweep still goes."""
import json
import logging

from sqlalchemy import select, update

from dashboard.extensions import db
from dashboard.log_format import JsonFormatter
from dashboard.models import Message, utcnow
from dashboard.services.delivery import sweep as sweep_service
from dashboard.services.delivery import transport as transport_module
from dashboard.services.delivery.sweep import ERRORS_BEFORE_FAILING, sweep

from .conftest import queue, reload


def _corrupt(message, **values):
    """A row as an older version or a hand edit may have left it (the API refuses these)."""
    db.session.execute(update(Message).where(Message.id == message.id).values(**values))
    db.session.commit()


def _counting_connections(server):
    """Count the connections the server sees (one EHLO each)."""
    seen = {"connections": 0}
    original = server.handler.handle_EHLO

    async def counting(srv, session, envelope, hostname, responses):
        seen["connections"] += 1
        return await original(srv, session, envelope, hostname, responses)

    server.handler.handle_EHLO = counting
    return seen


def test_a_message_that_cannot_be_built_is_deferred_and_other_customers_mail_still_goes(
        app, make_customer, smtp_server, point_relay, caplog):
    """The broken message comes first in the queue; the sweep defers it (error on the timeline
    and in the log, about a minute's backoff), sends the rest, and leaves no claim behind."""
    server = point_relay(smtp_server())
    broken_customer, _ = make_customer()
    other, _ = make_customer()
    [broken] = queue(broken_customer, "first@example.com")
    _corrupt(broken, from_header="Broken <not an address>")
    theirs = queue(other, "a@example.com", "b@example.com")
    with caplog.at_level(logging.ERROR, logger="dashboard.services.delivery"):
        result = sweep()
    assert (result.sent, result.deferred, result.failed) == (2, 1, 0)
    assert sorted(r.rcpt_tos[0] for r in server.wait_for(2)) == ["a@example.com",
                                                               "b@example.com"]
    assert {reload(m).status for m in theirs} == {"sent"}
    broken = reload(broken)
    assert (broken.status, broken.attempts, broken.lease_owner) == ("deferred", 1, None)
    assert broken.status_reason.startswith("unexpected error: ServiceError")
    event = broken.events[-1]
    assert event.type == "deferred" and "invalid address" in event.detail
    assert 54 <= (broken.next_attempt_at - event.at).total_seconds() <= 66
    [logged] = [r for r in caplog.records
                if r.levelno == logging.ERROR and broken.public_id in r.getMessage()]
    assert logged.exc_info
    # the JSON log (POSTINO_LOG_FORMAT=json) names the message in its own field
    assert json.loads(JsonFormatter().format(logged))["message_id"] == broken.public_id
    assert db.session.scalar(select(Message).where(Message.status == "sending")) is None


def test_a_message_whose_sending_raises_is_deferred_and_the_next_one_goes(
        app, make_customer, smtp_server, point_relay):
    """The transport raises for one message (an envelope sender whose domain IDNA 2008
    refuses, as a row from before the checks may have): deferred, the others still go."""
    server = point_relay(smtp_server())
    customer, _ = make_customer()
    other, _ = make_customer()
    [first] = queue(other, "first@example.com")
    [broken] = queue(customer, "second@example.com")
    _corrupt(broken, envelope_from="bounces@\u2603.example")  # a snowman: not IDNA 2008
    [last] = queue(other, "last@example.com")
    result = sweep()
    assert (result.sent, result.deferred) == (2, 1)
    assert [r.rcpt_tos for r in server.wait_for(2)] == [["first@example.com"],
                                                        ["last@example.com"]]
    broken = reload(broken)
    assert broken.status == "deferred"
    assert "not a valid international domain name" in broken.events[-1].detail
    assert {reload(m).status for m in (first, last)} == {"sent"}


def test_an_error_in_the_middle_of_the_smtp_exchange_drops_that_connection(
        app, make_customer, smtp_server, point_relay, monkeypatch):
    """Something raises after MAIL was accepted (a fault injected into our RCPT): the server
    holds a half-open transaction, so that connection is dropped (no RSET/QUIT guesswork)
    and the next message goes over a fresh one."""
    server = point_relay(smtp_server())
    seen = _counting_connections(server)
    customer, _ = make_customer()
    [broken, nxt] = queue(customer, "broken@example.com", "next@example.com")
    real_rcpt = transport_module._rcpt

    def faulty_rcpt(smtp, recipient, options):
        if recipient == "broken@example.com":
            raise RuntimeError("injected fault at RCPT")
        return real_rcpt(smtp, recipient, options)

    monkeypatch.setattr(transport_module, "_rcpt", faulty_rcpt)
    result = sweep()
    assert (result.sent, result.deferred) == (1, 1)
    assert [r.rcpt_tos for r in server.wait_for(1)] == [["next@example.com"]]
    assert seen["connections"] == 2
    assert "injected fault at RCPT" in reload(broken).events[-1].detail
    assert reload(nxt).status == "sent"


def test_repeated_unexpected_errors_fail_the_message(app, make_customer, smtp_server,
                                                     point_relay):
    """Deferred after the first errors, failed at the third: it does not come back for ever."""
    point_relay(smtp_server())
    customer, _ = make_customer()
    [broken] = queue(customer, "first@example.com")
    _corrupt(broken, from_header="Broken <not an address>")
    for _ in range(ERRORS_BEFORE_FAILING):
        sweep()
        _corrupt(broken, next_attempt_at=utcnow())  # due again now, not in a few minutes
    broken = reload(broken)
    assert [e.type for e in broken.events] == ["queued"] + ["deferred"] * (
        ERRORS_BEFORE_FAILING - 1) + ["failed"]
    assert broken.status == "failed" and broken.attempts == ERRORS_BEFORE_FAILING
    assert broken.status_reason == f"failed after {ERRORS_BEFORE_FAILING} unexpected errors"
    assert sweep().failed == 0  # not picked up again


def test_a_message_the_server_accepted_stays_sent_when_recording_the_answer_fails(
        app, make_customer, smtp_server, point_relay, monkeypatch):
    """An error after the server said 250 must not make us send it again: it is `sent`,
    with the error on its timeline."""
    server = point_relay(smtp_server())
    customer, _ = make_customer()
    [message] = queue(customer, "a@example.com")

    def broken_record(*args, **kwargs):
        raise RuntimeError("recording failed")

    monkeypatch.setattr(sweep_service, "_record", broken_record)
    assert sweep().sent == 1
    assert len(server.wait_for(1)) == 1
    message = reload(message)
    assert (message.status, message.attempts, message.last_smtp_code) == ("sent", 1, 250)
    assert message.sent_at is not None and message.next_attempt_at is None
    assert "RuntimeError: recording failed" in message.events[-1].detail
