"""A bounce for an international address names it in A-labels, as the remote server saw it
(issue 14): it is the same address as the message's, so it is trusted and suppresses it."""
from __future__ import annotations

from dashboard.extensions import db
from dashboard.models import Message, Suppression
from dashboard.services.messages import intake

from .conftest import ORDER_DATA, report


def test_a_dsn_naming_the_punycode_form_suppresses_the_unicode_address(
        sent_message, post_report, relay):
    """Final-Recipient: rfc822; info@xn--mller-kva.de bounces info@müller.de: the entry is
    stored once, in the stored form, and stops the next message in either spelling."""
    message = sent_message("info@müller.de")
    [got] = relay.wait_for(1)
    assert got.rcpt_tos == ["info@xn--mller-kva.de"]
    post_report(got.mail_from, report("postfix_hard.eml", message,
                                      recipient="info@xn--mller-kva.de"))
    db.session.expire_all()
    assert db.session.get(Message, message.id).status == "bounced"
    entry = db.session.scalar(db.select(Suppression))
    assert (entry.address, entry.reason) == ("info@müller.de", "hard_bounce")
    for spelling in ("info@xn--mller-kva.de", "Info@Müller.de"):
        [nxt] = intake.enqueue(message.customer, "order_closed", spelling, data=ORDER_DATA)
        assert (nxt.status, nxt.suppression_id) == ("suppressed", entry.id)
