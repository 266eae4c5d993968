"""The bounce listener under the trust rules: a report changes something only for a message
we still hold, and only about that message's recipient; who is at fault decides what."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from dashboard.extensions import db
from dashboard.models import BounceReport, Message, Suppression
from dashboard.services.delivery import verp
from dashboard.services.operations import purge

from .conftest import report

CORPUS = Path(__file__).parent / "corpus" / "eml"


def corpus(name: str, recipient: str, new_recipient: str | None = None) -> bytes:
    """A corpus message as it arrives over SMTP, about `new_recipient` instead of the
    address it was written for (when given)."""
    raw = (CORPUS / name).read_text(encoding="utf-8")
    if new_recipient:
        raw = raw.replace(recipient, new_recipient)
    return raw.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def entries() -> list[Suppression]:
    return db.session.scalars(select(Suppression)).all()


def reload(message: Message) -> Message:
    db.session.expire_all()
    return db.session.get(Message, message.id)


def test_a_report_for_an_unknown_message_is_kept_as_evidence_and_suppresses_nothing(
        post_report, app):
    """A signed VERP address whose message Postino never had (or purged): the report,
    naming an address, is stored without a message and nobody is suppressed."""
    rcpt = verp.address_for("f" * 24)
    post_report(rcpt, report("postfix_hard.eml", recipient="victim@example.org",
                             verp_address=rcpt))
    stored = db.session.scalar(select(BounceReport))
    assert stored.message_id is None and stored.kind == "hard"
    assert stored.recipient == "victim@example.org" and stored.suppression_id is None
    assert entries() == []


def test_a_report_after_the_purge_changes_nothing(post_report, sent_message):
    """The message is gone (retention purge): its late hard bounce is evidence only."""
    message = sent_message("late@example.org")
    rcpt = verp.address_for(message.public_id)
    db.session.execute(Message.__table__.update().values(
        created_at=message.created_at.replace(year=2000)))
    db.session.commit()
    assert purge.run_job(older_than_days=1, pause=0).messages == 1
    post_report(rcpt, report("postfix_hard.eml", recipient="late@example.org",
                             verp_address=rcpt))
    assert db.session.scalar(select(BounceReport.message_id)) is None
    assert entries() == []


def test_a_dmarc_bounce_marks_the_message_bounced_but_never_suppresses(post_report,
                                                                      sent_message):
    """Not delivered, because of the sender's domain: bounced, class on the timeline."""
    message = sent_message("mario.rossi@example.org")
    post_report(verp.address_for(message.public_id),
                corpus("postfix_dsn_dmarc.eml", "mario.rossi@example.org"))
    message = reload(message)
    assert message.status == "bounced"
    assert (message.fault_class, message.fault_reason) == ("sender_reputation", "dmarc")
    event = message.events[-1]
    assert event.type == "bounce" and event.data["fault_reason"] == "dmarc"
    assert db.session.scalar(select(BounceReport.kind)) == "failed"
    assert entries() == []


def test_a_forwarded_hard_bounce_applies_to_our_recipient(post_report, sent_message):
    """The report names the address our recipient forwards to: the verdict is ours."""
    message = sent_message("alias@example.org")
    post_report(verp.address_for(message.public_id),
                corpus("exim_unknown.eml", "ghost@hosting.example", "target@elsewhere.example"))
    [entry] = entries()
    assert entry.address == "alias@example.org" and entry.reason == "hard_bounce"
    assert db.session.scalar(select(BounceReport.recipient)) == "alias@example.org"


def test_a_report_naming_several_other_addresses_is_only_evidence(post_report, sent_message):
    """Two other recipients failed (a list expansion): not about ours, nothing changes."""
    message = sent_message("list@example.org")
    raw = corpus("postfix_dsn_user_unknown.eml", "mario.rossi@example.org",
                 "one@example.net").decode()
    start = raw.index("Final-Recipient")
    block = raw[start:raw.index("\r\n\r\n--", start)]  # one recipient's DSN fields
    raw = raw.replace(block, block + "\r\n\r\n" + block.replace("one@", "two@"))
    post_report(verp.address_for(message.public_id), raw.encode())
    assert entries() == []
    assert reload(message).status == "sent"
    assert db.session.scalar(select(func.count(BounceReport.id))) == 2


def test_an_auto_reply_is_recorded_and_changes_nothing(post_report, sent_message):
    """Out of office reaching the bounce address: an auto_reply event, no status, no list."""
    message = sent_message("mario.rossi@example.org")
    post_report(verp.address_for(message.public_id),
                corpus("autoreply_it_vacation.eml", "mario.rossi@example.org"))
    message = reload(message)
    assert message.status == "sent" and message.events[-1].type == "auto_reply"
    assert entries() == []


def test_a_feedback_loop_without_an_arf_part_is_a_complaint(post_report, sent_message):
    """Microsoft JMRP style (the original carries X-HmXmrOriginalRecipient): suppressed as a
    complaint, lifted by admins only."""
    message = sent_message("user@hotmail.example")
    post_report(verp.address_for(message.public_id),
                corpus("jmrp_hotmail.eml", "user@hotmail.example"))
    [entry] = entries()
    assert entry.reason == "complaint" and entry.address == "user@hotmail.example"


def test_a_delay_warning_counts_nothing_but_an_expiry_counts_one_soft_bounce(
        post_report, sent_message):
    """'Delayed' is only a warning; 'failed' after the retry time because the server stayed
    unreachable is one soft bounce."""
    delayed = sent_message("slow@example.org")
    post_report(verp.address_for(delayed.public_id),
                corpus("postfix_dsn_delay_timeout.eml", "x@slow.example", "slow@example.org"))
    expired = sent_message("slow@example.org")
    post_report(verp.address_for(expired.public_id),
                corpus("postfix_dsn_expired_timeout.eml", "x@slow.example", "slow@example.org"))
    kinds = db.session.scalars(select(BounceReport.kind).order_by(BounceReport.id)).all()
    assert kinds == ["delayed", "soft"]
    assert reload(delayed).status == "sent" and reload(expired).status == "bounced"


def test_a_non_standard_hard_bounce_in_italian_suppresses(post_report, sent_message):
    """An Office 365 NDR in Italian without a DSN part: the recipient is found and its
    permanent failure suppresses it."""
    message = sent_message("nessuno@contoso.example")
    post_report(verp.address_for(message.public_id),
                corpus("o365_it_notfound.eml", "nessuno@contoso.example"))
    [entry] = entries()
    assert (entry.reason, entry.fault_reason) == ("hard_bounce", "unknown_user")
