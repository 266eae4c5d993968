"""End to end over real SMTP: a relay refusing in every way, at RCPT and after DATA. Who is
at fault decides the status, the suppression list, the timeline, the circuit breaker and
the doctor's verdict."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dashboard.extensions import db
from dashboard.models import (
    Alert,
    BounceReport,
    Message,
    Suppression,
    TransportBreaker,
    utcnow,
)
from dashboard.services.core import settings
from dashboard.services.delivery.sweep import sweep
from dashboard.services.operations import doctor

from .conftest import queue, reload


def in_english(work, *args):
    """A service's words in English (outside a request it speaks the default language)."""
    from flask_babel import force_locale

    with force_locale("en"):
        return work(*args)

TO = "anna@example.com"


def _entries():
    return db.session.scalars(select(Suppression).where(Suppression.lifted_at.is_(None))).all()


# stage:reply, message status, suppressed at once, class, reason
REFUSALS = [
    ("rcpt:550 5.1.1 <anna@example.com>: Recipient address rejected: User unknown in virtual "
     "mailbox table", "failed", True, "recipient_permanent", "unknown_user"),
    ("rcpt:550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
     "lookup", "failed", True, "recipient_permanent", "unknown_user"),
    ("data:550 5.7.26 Unauthenticated email from cliente.example is not accepted due to "
     "domain's DMARC policy", "failed", False, "sender_reputation", "dmarc"),
    ("rcpt:554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using "
     "zen.spamhaus.org", "failed", False, "sender_reputation", "blocklist"),
    ("data:554 5.7.1 Message rejected as spam by Content Filtering", "failed", False,
     "sender_reputation", "spam"),
    ("data:554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed "
     "to process message", "deferred", False, "account_transport", "quota"),
    ("rcpt:550 5.4.5 Daily user sending limit exceeded", "deferred", False,
     "account_transport", "quota"),
    ("data:550 5.7.60 SMTP; Client does not have permissions to send as this sender",
     "deferred", False, "account_transport", "send_as_denied"),
    ("rcpt:554 5.7.1 <anna@example.com>: Relay access denied", "deferred", False,
     "account_transport", "relay_denied"),
    ("rcpt:552 5.2.2 The email account that you tried to reach is over quota", "failed", False,
     "recipient_temporary", "mailbox_full"),
    ("rcpt:452 4.2.2 Mailbox full", "deferred", False, "recipient_temporary", "mailbox_full"),
    ("rcpt:450 4.2.1 The user you are trying to contact is receiving mail at a rate that "
     "prevents additional messages from being delivered", "deferred", False,
     "recipient_temporary", "recipient_rate_limited"),
    ("rcpt:450 4.7.28 Our system has detected an unusual rate of unsolicited mail "
     "originating from your IP address", "deferred", False, "sender_reputation",
     "ip_reputation"),
    ("rcpt:451 4.7.1 Greylisting in action, please come back later", "deferred", False,
     "transient", "greylisted"),
    ("rcpt:550 Rejected", "failed", False, "unknown", "unclassified"),
]


@pytest.mark.parametrize("reply, status, suppressed, fault_class, reason", REFUSALS,
                         ids=[r[0][:45] for r in REFUSALS])
def test_each_refusal_moves_the_message_and_the_list_by_who_is_at_fault(
        app, smtp_server, point_relay, make_customer, reply, status, suppressed, fault_class,
        reason):
    """Status, suppression, timeline event and the message's own verdict, per refusal."""
    point_relay(smtp_server(faults={TO: reply}))
    customer, _ = make_customer()
    [message] = queue(customer, TO)
    sweep()
    message = reload(message)
    assert message.status == status, message.status_reason
    assert (message.fault_class, message.fault_reason) == (fault_class, reason)
    event = message.events[-1]
    assert event.type == status
    assert (event.data["fault_class"], event.data["fault_reason"]) == (fault_class, reason)
    assert event.data["stage"] == reply[:4]
    entries = _entries()
    assert bool(entries) is suppressed
    if suppressed:
        [entry] = entries
        assert (entry.reason, entry.fault_class, entry.fault_reason) == (
            "hard_bounce", fault_class, reason)
        assert message.suppression_id == entry.id
        assert queue(customer, TO)[0].status == "suppressed"
    soft = db.session.scalar(select(func.count(BounceReport.id)).where(
        BounceReport.kind == "soft"))
    assert soft == (1 if fault_class == "recipient_temporary" else 0)


def test_three_mailbox_full_refusals_suppress_for_a_while(app, smtp_server, point_relay,
                                                          make_customer):
    """Recipient-side temporary trouble is soft: the third message refused within the window
    puts the address on the list, with an expiry."""
    point_relay(smtp_server(faults={TO: "rcpt:552 5.2.2 Mailbox full"}))
    customer, _ = make_customer()
    for expected in (0, 0, 1):
        queue(customer, TO)
        sweep()
        assert len(_entries()) == expected
    [entry] = _entries()
    assert entry.reason == "soft_bounce" and entry.expires_at is not None
    assert (entry.fault_class, entry.fault_reason) == ("recipient_temporary", "mailbox_full")


def test_a_deferred_soft_refusal_counts_once_however_many_retries(app, smtp_server,
                                                                  point_relay, make_customer):
    """One message retried three times after 452 mailbox full is one soft bounce."""
    point_relay(smtp_server(faults={TO: "rcpt:452 4.2.2 Mailbox full"}))
    customer, _ = make_customer()
    [message] = queue(customer, TO)
    for _attempt in range(3):
        message = reload(message)
        message.next_attempt_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        sweep()
    assert reload(message).attempts == 3
    assert db.session.scalar(select(func.count(BounceReport.id))) == 1
    assert _entries() == []


def test_expiring_because_the_recipients_server_is_unreachable_counts_one_soft_bounce(
        app, smtp_server, point_relay, make_customer):
    """The relay keeps answering 'no answer from host' until the maximum age: the message
    fails as expired and the address gets one soft bounce (the seed's unreachable server)."""
    point_relay(smtp_server(faults={TO: "rcpt:451 4.4.1 No answer from host mx.example.com"}))
    customer, _ = make_customer()
    [message] = queue(customer, TO)
    message.created_at = utcnow() - timedelta(hours=24) + timedelta(seconds=30)
    db.session.commit()
    sweep()
    message = reload(message)
    assert message.status == "failed" and message.events[-1].type == "expired"
    [report] = db.session.scalars(select(BounceReport)).all()
    assert (report.kind, report.fault_reason, report.source) == ("soft", "unreachable", "smtp")


def test_our_own_connection_failing_until_expiry_counts_nothing(app, make_customer):
    """Nothing listening on our relay is not the recipient's server: no soft bounce."""
    customer, _ = make_customer()
    [message] = queue(customer, TO)
    message.created_at = utcnow() - timedelta(hours=24) + timedelta(seconds=30)
    db.session.commit()
    sweep()
    message = reload(message)
    assert message.status == "failed" and message.fault_reason == "connection"
    assert db.session.scalar(select(func.count(BounceReport.id))) == 0


def _own_smtp_customer(make_customer, server):
    customer, _ = make_customer(
        sending_mode="customer_smtp", from_address="notifiche@cliente.example",
        smtp_host=server.host, smtp_port=server.port, smtp_security="none", smtp_auth="none",
        smtp_timeout=5)
    return customer


def test_a_customers_account_refusals_trip_its_breaker_with_the_servers_words(
        app, smtp_server, make_customer, make_user):
    """Send-as denied three times in a row: the customer_smtp customer is paused (its mail
    held, not lost), the reason quotes the server, and nobody is suppressed."""
    make_user("admin")
    server = smtp_server(faults={f"u{i}@example.com": "data:550 5.7.60 SMTP; Client does not "
                                 "have permissions to send as this sender" for i in range(5)})
    customer = _own_smtp_customer(make_customer, server)
    queued = queue(customer, *[f"u{i}@example.com" for i in range(5)])
    sweep()
    db.session.expire_all()
    customer = db.session.get(type(customer), customer.id)
    assert customer.paused and "5.7.60" in customer.paused_reason
    assert "send-as" in customer.paused_reason
    # the third refusal pauses it; a message already out on its other lane (2 by default)
    # is refused too, the rest is held
    statuses = sorted(reload(m).status for m in queued)
    assert statuses in (["deferred"] * 3 + ["held"] * 2, ["deferred"] * 4 + ["held"])
    assert _entries() == []
    assert db.session.scalar(select(Alert).where(Alert.cause == f"paused:{customer.id}"))


def test_a_success_resets_the_customers_breaker(app, smtp_server, make_customer):
    """Two send-as refusals, then a message accepted: the count starts again from zero.
    (Quota refusals slow the transport down first: tests/delivery/test_lanes.py.)"""
    send_as = "rcpt:550 5.7.60 SMTP; Client does not have permissions to send as this sender"
    server = smtp_server(faults={"a@example.com": send_as, "b@example.com": send_as})
    customer = _own_smtp_customer(make_customer, server)
    queue(customer, "a@example.com", "b@example.com")
    sweep()
    db.session.refresh(customer)
    assert customer.auth_failures == 2 and not customer.paused
    queue(customer, "c@example.com")
    assert sweep().sent == 1
    db.session.refresh(customer)
    assert customer.auth_failures == 0


def test_our_relay_refusing_our_account_alerts_staff_and_a_success_clears_it(
        app, smtp_server, point_relay, make_customer, make_user):
    """Three account refusals by our relay: a relay_account alert (processing_blocked to the
    admins, queued for the relay); customers are not paused; a success clears it."""
    make_user("admin", email="boss@staff.example.com")
    # (a quota refusal would slow the relay down first: tests/delivery/test_lanes.py)
    refusal = "data:550 5.7.60 SMTP; Client does not have permissions to send as this sender"
    addresses = [f"u{i}@example.com" for i in range(3)] + ["boss@staff.example.com"]
    server = point_relay(smtp_server(faults={address: refusal for address in addresses}))
    customer, _ = make_customer()
    queue(customer, *addresses[:3])
    sweep()
    breaker = db.session.get(TransportBreaker, "relay")
    assert breaker.failures >= 3 and breaker.tripped_at is not None
    alert = db.session.scalar(select(Alert).where(Alert.cause == "relay_account",
                                                  Alert.cleared_at.is_(None)))
    assert alert is not None and "5.7.60" in alert.text
    from dashboard.services.operations.banners import active_banners

    with app.test_request_context("/"):
        assert any("Our relay refuses our own sending account" in banner.text
                   for banner in in_english(active_banners))
    assert not db.session.get(type(customer), customer.id).paused
    staff = db.session.scalars(select(Message).where(Message.event == "processing_blocked")
                               ).all()
    assert [m.recipient for m in staff] == ["boss@staff.example.com"]
    server.handler.faults.clear()
    queue(customer, "ok@example.com")
    sweep()
    db.session.expire_all()
    assert db.session.get(TransportBreaker, "relay").failures == 0
    assert db.session.get(Alert, alert.id).cleared_at is not None


def test_the_doctor_names_cause_b_for_a_dmarc_refusal_and_c_for_an_unknown_user(
        app, smtp_server, point_relay, make_customer, support_client):
    """DMARC: (b) with the DNS advice for a custom_from customer, the address not
    suppressed; unknown user: (c), and (b) is not blamed."""
    point_relay(smtp_server(faults={
        "dmarc@example.com": "data:550 5.7.26 Unauthenticated email from cliente.example is "
                             "not accepted due to domain's DMARC policy",
        "gone@example.com": "rcpt:550 5.1.1 <gone@example.com>: Recipient address rejected: "
                            "User unknown"}))
    customer, _ = make_customer(sending_mode="custom_from",
                                from_address="ordini@cliente.example")
    queue(customer, "dmarc@example.com", "gone@example.com")
    sweep()
    dmarc = in_english(doctor.diagnose, "dmarc@example.com")
    assert dmarc.primary.cause == "spam" and dmarc.primary.colour == "red"
    assert "SPF" in dmarc.primary.text and "standard sending mode" in dmarc.primary.text
    assert any("DMARC" in line for line in dmarc.primary.evidence)
    assert dmarc.verdict("suppression").colour == "green"
    page = support_client.get("/doctor/?address=dmarc@example.com").get_data(as_text=True)
    assert "Refused: the sender&#39;s domain does not authorise our mail" in page
    gone = in_english(doctor.diagnose, "gone@example.com")
    assert gone.primary.cause == "suppression"
    assert gone.verdict("spam").colour == "green"
    assert any("the address does not exist" in line
               for line in gone.verdict("suppression").evidence)


def test_the_doctor_counts_sender_refusals_of_the_customer_and_transport(
        app, smtp_server, point_relay, make_customer):
    """Several blocklist refusals of one customer's relay mail: a deliverability problem,
    counted in the doctor's evidence."""
    faults = {f"u{i}@example.com": "rcpt:554 5.7.1 Client host [127.0.0.1] blocked using "
              "zen.spamhaus.org" for i in range(3)}
    point_relay(smtp_server(faults=faults))
    customer, _ = make_customer(name="Bar Roma")
    queue(customer, *faults)
    sweep()
    verdict = in_english(doctor.diagnose, "u0@example.com").verdict("spam")
    assert verdict.colour == "red" and "blocklist" in verdict.evidence[0]
    assert any("3 messages of Bar Roma were refused" in line for line in verdict.evidence)


def test_the_log_shows_who_is_at_fault_in_the_list_and_on_the_timeline(
        app, smtp_server, point_relay, make_customer, support_client):
    """The Log's list and the message page show the class and the reason in words."""
    point_relay(smtp_server(faults={TO: "data:550 5.7.26 Unauthenticated email is not "
                                        "accepted due to domain's DMARC policy"}))
    customer, _ = make_customer()
    [message] = queue(customer, TO)
    sweep()
    listing = support_client.get(f"/log/?q={TO}").get_data(as_text=True)
    assert "Sender or reputation" in listing
    assert "the sender&#39;s domain does not authorise us (DMARC)" in listing
    page = support_client.get(f"/log/{message.public_id}").get_data(as_text=True)
    assert "Who is at fault" in page and "fault-sender_reputation" in page
    italian = support_client.get(f"/log/{message.public_id}",
                                 headers={"Accept-Language": "it"}).get_data(as_text=True)
    assert "Mittente o reputazione" in italian


def test_a_refusal_never_suppresses_when_the_soft_threshold_is_not_reached(
        app, smtp_server, point_relay, make_customer):
    """Sender-side refusals for the same address, many times: still never on the list."""
    settings.put("soft_bounce_threshold", 1)
    point_relay(smtp_server(faults={TO: "rcpt:554 5.7.1 Service unavailable; Client host "
                                        "[127.0.0.1] blocked using bl.spamcop.net"}))
    customer, _ = make_customer()
    for _i in range(3):
        queue(customer, TO)
        sweep()
    assert _entries() == []


def test_the_api_gives_each_events_class_and_reason(app, client, smtp_server, point_relay,
                                                    make_customer):
    """GET /api/v1/notifications/<id>: the failed event carries who was at fault (codes)."""
    point_relay(smtp_server(faults={TO: "rcpt:554 5.7.1 Client host [127.0.0.1] blocked "
                                        "using zen.spamhaus.org"}))
    customer, key = make_customer()
    [message] = queue(customer, TO)
    sweep()
    body = client.get(f"/api/v1/notifications/{message.public_id}",
                      headers={"Authorization": f"Bearer {key}"}).json
    failed = body["events"][-1]
    assert (failed["type"], failed["fault_class"], failed["fault_reason"]) == (
        "failed", "sender_reputation", "blocklist")
    assert body["events"][0]["fault_class"] is None  # queued: no verdict
