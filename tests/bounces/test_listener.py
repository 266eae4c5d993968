"""The bounce listener end to end: real SMTP in, statuses, timelines and suppressions out."""
from __future__ import annotations

import smtplib

import pytest

from dashboard.extensions import db
from dashboard.models import BounceReport, Message, Suppression
from dashboard.services.delivery import verp
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import intake

from ..smtp_servers import start_server
from .conftest import ORDER_DATA, report


def test_a_hard_bounce_suppresses_the_address_and_stops_the_next_notification(
        sent_message, post_report, relay):
    """Relay send → DSN to the VERP address → bounced, suppressed, next one `suppressed`."""
    message = sent_message("Mario.Rossi@example.org")
    [got] = relay.wait_for(1)
    assert got.mail_from == verp.address_for(message.public_id)
    post_report(got.mail_from, report("postfix_hard.eml", message))
    db.session.expire_all()
    message = db.session.get(Message, message.id)
    assert message.status == "bounced" and message.bounced_at is not None
    bounce = message.events[-1]
    assert (bounce.type, bounce.smtp_code) == ("bounce", 550)
    assert "5.1.1" in bounce.detail and "User unknown" in bounce.smtp_text
    entry = db.session.scalar(db.select(Suppression))
    assert (entry.address, entry.reason, entry.scope) == ("mario.rossi@example.org",
                                                          "hard_bounce", "relay")
    assert entry.smtp_code == "5.1.1" and entry.expires_at is None
    stored = db.session.scalar(db.select(BounceReport))
    assert stored.message_id == message.id and stored.suppression_id == entry.id
    assert "Recipient address rejected" in stored.raw
    [nxt] = intake.enqueue(message.customer, "order_closed", "mario.rossi@EXAMPLE.org",
                             data=ORDER_DATA)
    assert nxt.status == "suppressed" and nxt.suppression_id == entry.id
    assert sweep().sent == 0 and len(relay.received) == 1


def test_a_forged_verp_address_is_refused_at_rcpt(listener, sent_message):
    """A wrong signature, a foreign domain or any other address: 550 at RCPT."""
    message = sent_message()
    good = verp.address_for(message.public_id)
    forged = good.replace(good.split(".")[1][:16], "0" * 16)
    with smtplib.SMTP("127.0.0.1", listener.port_number, timeout=10) as smtp:
        smtp.ehlo("mx.example.net")
        assert smtp.mail("<>")[0] == 250
        for rcpt in (forged, f"bounces+{message.public_id}.0000000000000000@evil.example.com",
                     "postmaster@bounces.postino.example.com",
                     verp.address_for(message.public_id, "evil.example.com")):
            code, _text = smtp.rcpt(rcpt)
            assert code == 550, rcpt
        assert smtp.rcpt(good)[0] == 250
    assert db.session.scalar(db.select(db.func.count(BounceReport.id))) == 0


def test_the_null_sender_is_accepted(listener, sent_message):
    """Bounces come from <>: MAIL FROM:<> is answered 250."""
    message = sent_message()
    with smtplib.SMTP("127.0.0.1", listener.port_number, timeout=10) as smtp:
        smtp.ehlo("mx.example.net")
        assert smtp.mail("<>")[0] == 250
        assert smtp.rcpt(verp.address_for(message.public_id))[0] == 250


@pytest.mark.parametrize("raw", [
    b"complete junk without headers\r\n\x01\x02",
    b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\n"
    b"Content-Type: message/delivery-status\r\n\r\nAction: \r\n\r\n--x--\r\n",
    b"From: nobody\r\nContent-Type: text/plain; charset=bogus-charset\r\n\r\n\xff\xfe\r\n",
])
def test_junk_does_not_crash_the_listener(listener, post_report, sent_message, raw):
    """Unreadable mail is accepted and kept as evidence; the listener keeps answering."""
    message = sent_message()
    rcpt = verp.address_for(message.public_id)
    post_report(rcpt, raw)
    post_report(rcpt, report("success_dsn.eml", message))
    db.session.expire_all()
    kinds = [r.kind for r in db.session.scalars(
        db.select(BounceReport).order_by(BounceReport.id))]
    assert kinds == ["unknown", "delivered"]
    message = db.session.get(Message, message.id)
    assert message.status == "delivered" and message.delivered_at is not None
    assert [e.type for e in message.events][-2:] == ["report", "delivered"]


def test_a_success_dsn_marks_the_message_delivered(post_report, sent_message):
    """Action: delivered → status delivered with delivered_at, and no suppression."""
    message = sent_message()
    post_report(verp.address_for(message.public_id), report("success_dsn.eml", message))
    db.session.expire_all()
    message = db.session.get(Message, message.id)
    assert message.status == "delivered" and message.events[-1].type == "delivered"
    assert db.session.scalar(db.select(db.func.count(Suppression.id))) == 0


def test_a_delayed_dsn_is_on_the_timeline_without_changing_the_status(post_report, sent_message):
    """Action: delayed → a `delayed` event with its status; the message stays sent."""
    message = sent_message()
    post_report(verp.address_for(message.public_id), report("delayed_dsn.eml", message))
    db.session.expire_all()
    message = db.session.get(Message, message.id)
    event = message.events[-1]
    assert message.status == "sent" and event.type == "delayed"
    assert event.data["status"] == "4.4.1" and "Connection timed out" in event.smtp_text


def test_a_complaint_suppresses_the_recipient(post_report, sent_message):
    """An ARF abuse report → complaint event and a complaint suppression."""
    message = sent_message()
    post_report(verp.address_for(message.public_id), report("arf_complaint.eml", message))
    db.session.expire_all()
    message = db.session.get(Message, message.id)
    assert message.events[-1].type == "complaint"
    entry = db.session.scalar(db.select(Suppression))
    assert entry.reason == "complaint" and entry.expires_at is None


@pytest.mark.parametrize("name", ["exim_hard.eml", "qmail_hard.eml", "exchange_legacy.eml",
                                  "gmail_dsn.eml", "office365_ndr.eml"])
def test_non_postfix_hard_bounces_suppress_too(post_report, sent_message, name):
    """Exim, qmail, Exchange, Gmail and Office 365 hard bounces all suppress at once."""
    message = sent_message()
    post_report(verp.address_for(message.public_id), report(name, message))
    db.session.expire_all()
    assert db.session.get(Message, message.id).status == "bounced"
    assert db.session.scalar(db.select(Suppression.reason)) == "hard_bounce"


def test_one_report_for_two_messages_in_one_transaction(listener, sent_message):
    """Two VERP recipients in one SMTP transaction: each message gets its own report."""
    first, second = sent_message("a@example.org"), sent_message("b@example.org")
    with smtplib.SMTP("127.0.0.1", listener.port_number, timeout=10) as smtp:
        smtp.sendmail("<>", [verp.address_for(first.public_id),
                             verp.address_for(second.public_id)],
                      report("success_dsn.eml", first))
    db.session.expire_all()
    assert {r.message_id for r in db.session.scalars(db.select(BounceReport))} == {
        first.id, second.id}


def test_the_raw_report_is_size_capped(post_report, sent_message):
    """A huge report is kept only up to the cap."""
    from dashboard.services.bounces.reports import RAW_LIMIT

    message = sent_message()
    raw = report("postfix_hard.eml", message) + (b"X" * 70 + b"\r\n") * (RAW_LIMIT // 30)
    post_report(verp.address_for(message.public_id), raw)
    stored = db.session.scalar(db.select(BounceReport))
    assert len(stored.raw) == RAW_LIMIT and stored.kind == "hard"


def test_relay_messages_request_dsn_when_the_relay_advertises_it(app, make_customer):
    """With DSN advertised: NOTIFY=SUCCESS,FAILURE,DELAY per recipient, ENVID = public id."""
    server = start_server(dsn=True)
    saved = {k: app.config[k] for k in ("MAIL_SERVER", "MAIL_PORT")}
    app.config.update(MAIL_SERVER=server.host, MAIL_PORT=server.port)
    try:
        customer, _key = make_customer()
        [message] = intake.enqueue(customer, "order_closed", "dsn@example.org",
                                     data=ORDER_DATA)
        assert sweep().sent == 1
        [got] = server.wait_for(1)
    finally:
        app.config.update(saved)
        server.stop()
    assert got.rcpt_options == ["NOTIFY=SUCCESS,FAILURE,DELAY"]
    assert f"ENVID={message.public_id}".upper() in [o.upper() for o in got.mail_options]


def test_the_cli_command_is_registered(runner):
    """`flask bounce-listener --host --port` exists (it blocks, so only its help is run)."""
    result = runner.invoke(args=["bounce-listener", "--help"])
    assert result.exit_code == 0 and "--port" in result.output and "--host" in result.output
